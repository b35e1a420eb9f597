"""`fluidos-sensors request`, `fluidos-sensors requests ...` and `fluidos-sensors consumer run`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from consumer import status as st
from fluidos_sensors.api import FLUIDOS_NAMESPACE, SENSOR_REQUEST
from fluidos_sensors.cli import (
    AggregateOption,
    Context,
    EveryOption,
    Kubeconfig,
    Liveness,
    Output,
    OutputFormat,
    ReadyFile,
    Verbose,
    WindowOption,
    echo_listing,
    fail,
    shape_option,
)
from fluidos_sensors.endpoints import AuthType, DeliveryFormat, EndpointError, check_endpoint_url
from fluidos_sensors.filter_cli import with_filter_options
from fluidos_sensors.filters import NO_FILTERS, FilterError, FilterOptions
from fluidos_sensors.kube import api_client, get_or_none
from fluidos_sensors.limits import clip
from fluidos_sensors.logs import setup_verbosity
from fluidos_sensors.units import QuantityError, parse_rate_hz

requests_app = typer.Typer(
    help="SensorRequests: sensors a consumer wants, bought from the providers.",
    no_args_is_help=True,
)
consumer_app = typer.Typer(help="Consumer side of the marketplace.", no_args_is_help=True)

Namespace = Annotated[
    str, typer.Option("--namespace", "-n", help="Namespace of the requests and providers.")
]
Texts = list[str] | None

_POLL_S = 1.0


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def _args(namespace: str) -> tuple[str, str, str, str]:
    return SENSOR_REQUEST.group, SENSOR_REQUEST.version, namespace, SENSOR_REQUEST.plural


def _get(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    return cast(
        dict[str, Any] | None,
        get_or_none(_custom(api).get_namespaced_custom_object, *_args(namespace), name),
    )


# ------------------------------------------------------------------------------ request


def _summary(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    name = (obj.get("metadata") or {}).get("name")
    lines = [
        f"SensorRequest {name}: {status.get('phase') or st.PENDING}"
        + (f" - {status['message']}" if status.get("message") else "")
    ]
    for contract in status.get("contracts") or []:
        lines.append(
            f"  contract {contract.get('contractID')}: {contract.get('flavorID')} at "
            f"{contract.get('provider')} (node {contract.get('node') or '?'}, "
            f"{contract.get('sensorType') or '?'})"
        )
    if status.get("firstData"):
        lines.append(f"  first data: {status['firstData']}")
    return "\n".join(lines)


def _settled(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    return status.get("observedGeneration") == generation and status.get("phase") in st.SETTLED


@with_filter_options
def request(
    endpoint: Annotated[str, typer.Option(help="Where the readings go (http or https URL).")],
    filters: FilterOptions = NO_FILTERS,
    format_name: Annotated[
        DeliveryFormat, typer.Option("--format", help="How readings are encoded.")
    ] = DeliveryFormat.INFLUX,
    auth_type: Annotated[
        AuthType | None, typer.Option(help="How providers authenticate to the endpoint.")
    ] = None,
    auth_secret: Annotated[
        str | None,
        typer.Option(help="Secret (same namespace): token, or username and password."),
    ] = None,
    aggregate: AggregateOption = None,
    window: WindowOption = None,
    every: EveryOption = None,
    rate: Annotated[
        str | None,
        typer.Option(
            help="Sampling rate to set on each sensor bought ('10Hz', '10'); only sensors "
            "that offer it are bought (--min-rate/--max-rate filter on the rate they run)."
        ),
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=100, help="How many sensors.")] = 1,
    provider: Annotated[
        Texts, typer.Option("--provider", help="SensorProvider to ask (repeat, in order).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Request name (default: generated).")] = None,
    namespace: Namespace = FLUIDOS_NAMESPACE,
    wait: Annotated[
        bool, typer.Option(help="Wait for the outcome; exit 1 unless fulfilled.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds --wait waits.")] = 120.0,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Ask for sensors: a SensorRequest the consumer operator resolves at the providers."""
    try:
        url = check_endpoint_url(endpoint)
    except EndpointError as exc:
        raise fail(f"--endpoint {exc}") from exc
    if (auth_type is None) != (auth_secret is None):
        raise fail("--auth-type and --auth-secret go together")
    try:
        spec_filter = filters.request_filter()
    except FilterError as exc:
        raise fail(str(exc)) from exc
    target: dict[str, Any] = {"url": url, "format": format_name.value}
    if auth_type is not None:
        target["auth"] = {"type": auth_type.value, "secretName": auth_secret}
    shape = shape_option(aggregate, window, every)
    if shape is not None:
        target["shape"] = shape.body()
    spec: dict[str, Any] = {"filter": spec_filter, "count": count, "endpoint": target}
    if rate is not None:
        try:
            parse_rate_hz(rate)
        except QuantityError as exc:
            raise fail(f"--rate {exc}") from exc
        spec["rate"] = rate.strip()
    if provider:
        spec["providers"] = list(provider)
    metadata: dict[str, Any] = {"namespace": namespace}
    if name:
        metadata["name"] = name
    else:
        types = filters.texts("sensor_type")
        metadata["generateName"] = f"{(types or ['sensors'])[0].lower()[:40]}-"
    body = {
        "apiVersion": SENSOR_REQUEST.api_version,
        "kind": SENSOR_REQUEST.kind,
        "metadata": metadata,
        "spec": spec,
    }
    with api_client(kubeconfig, context) as api:
        try:
            created = cast(
                dict[str, Any],
                _custom(api).create_namespaced_custom_object(*_args(namespace), body),
            )
        except ApiException as exc:
            raise fail(
                f"the API server refused the request: {exc.status} {_reason(exc)}", 1
            ) from exc
        made = created["metadata"]["name"]
        typer.echo(f"SensorRequest {namespace}/{made} created")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] | None = created
        while time.monotonic() < deadline:
            obj = _get(api, namespace, made)
            if obj is None:
                raise fail(f"SensorRequest {namespace}/{made} was deleted", 1)
            if _settled(obj):
                break
            time.sleep(_POLL_S)
        else:
            typer.echo(_summary(obj or created))
            raise fail(f"no outcome within {timeout:.0f}s", 1)
    typer.echo(_summary(obj))
    if (obj.get("status") or {}).get("phase") != st.FULFILLED:
        raise typer.Exit(1)


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


# ------------------------------------------------------------------------------ requests


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def request_rows(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One table row per SensorRequest."""
    rows = []
    for item in items:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        rows.append(
            {
                "NAME": str(meta.get("name", "")),
                "PHASE": str(status.get("phase") or st.PENDING),
                "MATCHED": str(status.get("matched", "-")),
                "CONTRACTS": str(status.get("contractCount", 0)),
                "FIRST DATA": str(status.get("firstData") or "-"),
                "AGE": _age(meta.get("creationTimestamp")),
                "MESSAGE": clip(str(status.get("message") or ""), 80),
            }
        )
    return rows


@requests_app.command("list")
def list_requests(
    namespace: Namespace = FLUIDOS_NAMESPACE,
    output: OutputFormat = Output.TABLE,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Every SensorRequest with its phase, contracts and first data."""
    with api_client(kubeconfig, context) as api:
        listing = _custom(api).list_namespaced_custom_object(*_args(namespace))
        items = cast(dict[str, Any], listing)["items"]
    items.sort(key=lambda i: i["metadata"]["name"])
    echo_listing(output, items, request_rows(items), empty=f"no requests in {namespace}")


@requests_app.command("delete")
def delete_request(
    name: Annotated[str, typer.Argument(help="The SensorRequest.")],
    namespace: Namespace = FLUIDOS_NAMESPACE,
    wait: Annotated[
        bool, typer.Option(help="Wait until its contracts are released and it is gone.")
    ] = False,
    timeout: Annotated[float, typer.Option(min=1)] = 120.0,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Delete a request: the operator releases its contracts at the providers first."""
    with api_client(kubeconfig, context) as api:
        try:
            _custom(api).delete_namespaced_custom_object(*_args(namespace), name)
        except ApiException as exc:
            if exc.status == 404:
                raise fail(f"SensorRequest {namespace}/{name} not found", 1) from exc
            raise fail(f"the API server refused: {exc.status} {_reason(exc)}", 1) from exc
        typer.echo(f"SensorRequest {namespace}/{name} deleting")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _get(api, namespace, name) is None:
                typer.echo(f"SensorRequest {namespace}/{name} gone; its contracts are released")
                return
            time.sleep(_POLL_S)
    raise fail(f"still there after {timeout:.0f}s (see its Events: kubectl describe sreq)", 1)


# ------------------------------------------------------------------------------ operator


@consumer_app.command()
def run(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Namespace = FLUIDOS_NAMESPACE,
    node_id: Annotated[
        str, typer.Option(envvar="FLUIDOS_NODE_ID", help="FLUIDOS node id of this consumer.")
    ] = "",
    ip: Annotated[
        str, typer.Option(envvar="FLUIDOS_NODE_IP", help="This consumer's address.")
    ] = "",
    domain: Annotated[str, typer.Option(envvar="FLUIDOS_DOMAIN")] = "fluidos.eu",
    resync: Annotated[
        float, typer.Option(min=1, help="Seconds between passes of unsettled requests.")
    ] = 20.0,
    rear_timeout: Annotated[float, typer.Option(min=1, help="Seconds per REAR call.")] = 10.0,
    influx_url: Annotated[
        str | None, typer.Option(help="The consumer's InfluxDB, to tell when data arrives.")
    ] = None,
    influx_token_file: Annotated[
        Path | None, typer.Option(help='File with its token (1.8: "user:password").')
    ] = None,
    influx_bucket: Annotated[str | None, typer.Option(help="Bucket (1.8: db/rp).")] = None,
    influx_org: Annotated[str, typer.Option()] = "-",
    ready_file: ReadyFile = None,
    liveness: Liveness = None,
    verbose: Verbose = False,
) -> None:
    """Run the consumer operator (kopf) until interrupted."""
    from consumer.firstdata import InfluxSettings
    from consumer.operator import ConsumerOperator
    from consumer.resolver import ConsumerSettings
    from fluidos_sensors.rear.wire import NodeIdentity

    setup_verbosity(verbose)
    if not node_id or not ip:
        raise fail("--node-id and --ip are required (or FLUIDOS_NODE_ID, FLUIDOS_NODE_IP)")
    influx = None
    given = [influx_url, influx_token_file, influx_bucket]
    if any(given):
        if not all(given):
            raise fail("--influx-url, --influx-token-file and --influx-bucket go together")
        assert influx_url and influx_token_file and influx_bucket
        try:
            token = influx_token_file.read_text().strip()
        except OSError as exc:
            raise fail(f"--influx-token-file: {exc}") from exc
        if not token:
            raise fail(f"--influx-token-file {influx_token_file} is empty")
        influx = InfluxSettings(url=influx_url, token=token, bucket=influx_bucket, org=influx_org)
    settings = ConsumerSettings(
        namespace=namespace,
        buyer=NodeIdentity(node_id=node_id, ip=ip, domain=domain),
        resync=resync,
        rear_timeout=rear_timeout,
        influx=influx,
    )
    api = api_client(kubeconfig, context)
    try:
        asyncio.run(ConsumerOperator(settings, api).run(ready_file, liveness))
    finally:
        api.close()

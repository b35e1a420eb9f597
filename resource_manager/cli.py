"""`fluidos-sensors resource-manager run` and `fluidos-sensors flavors list`."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, cast

import typer
from kubernetes import client

from fluidos_sensors.api import FLAVOR
from fluidos_sensors.cli import (
    Context,
    Kubeconfig,
    Liveness,
    Output,
    OutputFormat,
    ReadyFile,
    Verbose,
    echo_listing,
    fail,
)
from fluidos_sensors.filter_cli import with_filter_options
from fluidos_sensors.filters import NO_FILTERS, FilterError, FilterOptions, SensorFilter
from fluidos_sensors.flavor import (
    DEFAULT_FLAVOR_NAMESPACE,
    Location,
    Price,
    ProviderConfig,
    SensorFlavor,
    is_sensor_flavor,
    sensor_from_flavor,
)
from fluidos_sensors.kube import api_client
from fluidos_sensors.limits import allow_kubernetes_nesting
from fluidos_sensors.logs import setup_verbosity
from fluidos_sensors.units import format_number

app = typer.Typer(
    help="Provider side: Nodes + KubeEdge Devices -> Sensor Flavors.", no_args_is_help=True
)
flavors_app = typer.Typer(help="Sensor Flavors published in a cluster.", no_args_is_help=True)


@app.command()
def run(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Serve Devices of these namespaces only (repeat); without it, every "
            "namespace (KubeEdge's samples use default, FLUIDOS's fluidos).",
        ),
    ] = None,
    flavor_namespace: Annotated[
        str, typer.Option(help="Namespace of the Flavors (the FLUIDOS node's).")
    ] = DEFAULT_FLAVOR_NAMESPACE,
    node_id: Annotated[
        str, typer.Option(envvar="FLUIDOS_NODE_ID", help="FLUIDOS node id of this provider.")
    ] = "",
    domain: Annotated[str, typer.Option(envvar="FLUIDOS_DOMAIN")] = "fluidos.eu",
    ip: Annotated[
        str, typer.Option(envvar="FLUIDOS_NODE_IP", help="Address of this provider's REAR gateway.")
    ] = "",
    provider_id: Annotated[str, typer.Option(help="Defaults to the node id.")] = "",
    price_amount: Annotated[str, typer.Option()] = "0",
    price_currency: Annotated[str, typer.Option()] = "EUR",
    price_period: Annotated[str, typer.Option()] = "hourly",
    city: Annotated[str | None, typer.Option()] = None,
    country: Annotated[str | None, typer.Option()] = None,
    latitude: Annotated[str | None, typer.Option()] = None,
    longitude: Annotated[str | None, typer.Option()] = None,
    ready_file: ReadyFile = None,
    liveness: Liveness = None,
    verbose: Verbose = False,
) -> None:
    """Run the operator until interrupted."""
    from resource_manager.operator import FlavorOperator, Settings

    setup_verbosity(verbose)
    if not node_id or not ip:
        raise fail("--node-id and --ip are required (or FLUIDOS_NODE_ID, FLUIDOS_NODE_IP)")
    location = None
    if any((city, country, latitude, longitude)):
        location = Location(city=city, country=country, latitude=latitude, longitude=longitude)
    try:
        provider = ProviderConfig(
            node_id=node_id,
            domain=domain,
            ip=ip,
            provider_id=provider_id,
            price=Price(amount=price_amount, currency=price_currency, period=price_period),
            location=location,
            namespace=flavor_namespace,
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    logging.getLogger("resource_manager").info(
        "serving Devices of %s",
        ", ".join(sorted(set(namespace))) if namespace else "every namespace",
    )
    settings = Settings(
        provider=provider,
        api=api_client(kubeconfig, context),
        device_namespaces=frozenset(namespace or ()),
    )
    asyncio.run(FlavorOperator(settings).run(ready_file, liveness))


def _row(flavor: SensorFlavor) -> dict[str, str]:
    sensor = flavor.sensor
    accuracy = (
        ", ".join(f"±{format_number(a.value)} {a.unit}".strip() for a in sensor.accuracy) or "-"
    )

    def num(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{format_number(value)} {unit}"

    return {
        "NAME": flavor.name,
        "NODE": flavor.node,
        "TYPE": ",".join(sensor.types),
        "MANUFACTURER": sensor.manufacturer,
        "MODEL": sensor.model,
        "RATE": num(sensor.sampling_rate_hz, "Hz"),
        "LATENCY": num(sensor.latency_ms, "ms"),
        "ACCURACY": accuracy,
        "AVAILABLE": "yes" if flavor.availability else "no",
    }


@flavors_app.command("list")
@with_filter_options
def list_flavors(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = DEFAULT_FLAVOR_NAMESPACE,
    filters: FilterOptions = NO_FILTERS,
    query: Annotated[
        str | None,
        # Rich markup would read "[latency]" as a style tag: escape the brackets.
        typer.Option(help=r"REAR filter query, e.g. 'filter\[latency]\[range]\[max]=16'."),
    ] = None,
    available_only: Annotated[bool, typer.Option("--available-only")] = False,
    output: OutputFormat = Output.TABLE,
) -> None:
    """List Sensor Flavors, filtered (all filters must hold)."""
    try:
        wanted = filters.sensor_filter()
        if query:
            extra = SensorFilter.from_query_string(query)
            wanted = SensorFilter.from_query([*wanted.to_query(), *extra.to_query()])
    except FilterError as exc:
        raise fail(str(exc)) from exc
    allow_kubernetes_nesting()  # Flavors copied from other providers may nest deep
    with api_client(kubeconfig, context) as api:
        items = cast(
            dict[str, Any],
            client.CustomObjectsApi(api).list_namespaced_custom_object(
                FLAVOR.group, FLAVOR.version, namespace, FLAVOR.plural
            ),
        )["items"]
    chosen: list[tuple[dict[str, Any], SensorFlavor]] = []
    for item in items:
        if not is_sensor_flavor(item):
            continue
        try:
            view = sensor_from_flavor(item)
        except ValueError as exc:  # someone else's malformed Flavor: say so, list the rest
            typer.echo(f"warning: {exc}", err=True)
            continue
        if (not available_only or view.availability) and wanted.matches(view):
            chosen.append((item, view))
    chosen.sort(key=lambda pair: pair[1].name)
    echo_listing(
        output,
        [item for item, _ in chosen],
        [_row(view) for _, view in chosen],
        empty="no sensor flavors match",
    )


# The REAR gateway lives in its own package; mounted here so it is
# `fluidos-sensors resource-manager gateway`.
from resource_manager.gateway.cli import gateway as _gateway  # noqa: E402

app.command("gateway")(_gateway)

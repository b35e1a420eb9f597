"""`fluidos-sensors router-manager ...` (operator, edge agent) and `fluidos-sensors routes ...`."""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import FLAVOR, FLUIDOS_NAMESPACE, ROUTE_NAMESPACE
from fluidos_sensors.broker import BrokerConfigError, broker_access
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
    parse_listen,
    shape_option,
)
from fluidos_sensors.endpoints import EndpointError, check_endpoint_url, redact_url
from fluidos_sensors.flavor import (
    DEFAULT_FLAVOR_NAMESPACE,
    NODE_LABEL,
    FlavorError,
    sensor_from_flavor,
)
from fluidos_sensors.kube import api_client, get_or_none
from fluidos_sensors.logs import setup_logging, setup_verbosity
from fluidos_sensors.shaping import describe_shape
from router_manager.route import (
    AUTH_TYPES,
    BATCH_DELAY_MS_MAX,
    BATCH_SIZE_MAX,
    DEFAULT_BATCH_DELAY_MS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_FORMAT,
    DEFAULT_QUEUE_BYTES,
    FORMATS,
    QUEUE_BYTES_MIN,
    RouteTarget,
    TargetAuth,
    manual_target_id,
    parse_route,
    route_name,
)
from router_manager.routes_api import RouteApi, RouteConflict

app = typer.Typer(
    help="Purchases -> multicast data paths: the operator and the edge agent.",
    no_args_is_help=True,
)
routes_app = typer.Typer(
    help="SensorRoutes: delivery targets of each sensor, added and removed by hand.",
    no_args_is_help=True,
)

RouteNamespace = Annotated[
    str, typer.Option("--route-namespace", help="Namespace of the SensorRoutes.")
]


# ------------------------------------------------------------------------------ agent


@app.command()
def agent(
    node: Annotated[str, typer.Option(help="The edge node this agent serves.")],
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    mqtt_credentials: Annotated[
        Path | None,
        typer.Option(help='Broker JSON {"host","port","username","password"} (mode 0600).'),
    ] = None,
    mqtt_host: Annotated[str | None, typer.Option(help="Broker host.")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="Broker port.")] = None,
    state_dir: Annotated[
        Path, typer.Option(help="Where the durable queue lives (survives restarts).")
    ] = Path("/var/lib/fluidos-sensors/agent"),
    route_namespace: RouteNamespace = ROUTE_NAMESPACE,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Deliver only to these hosts (exact, *.suffix or CIDR; repeat)."),
    ] = None,
    status_interval: Annotated[
        float, typer.Option(min=0.5, help="Seconds between route status writes (at most).")
    ] = 5.0,
    status_file: Annotated[
        Path | None, typer.Option(help="Write local status here (JSON).")
    ] = None,
    metrics_listen: Annotated[
        str | None, typer.Option(help="Serve Prometheus metrics on HOST:PORT.")
    ] = None,
    metrics_token_file: Annotated[
        Path | None, typer.Option(help="File holding the bearer token metrics scrapers use.")
    ] = None,
    routes_file: Annotated[
        Path | None,
        typer.Option(
            help="Run without a cluster: SensorRoute objects from this YAML/JSON file "
            "(a list, or a List's items); no status is written back."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
    verbose: Verbose = False,
) -> None:
    """Run the edge agent of one node until SIGTERM or Ctrl-C."""
    import uvloop

    from router_manager.agent.service import Agent, AgentSettings

    try:
        setup_logging("DEBUG" if verbose else log_level)
        access = broker_access(mqtt_credentials, mqtt_host, mqtt_port)
    except (ValueError, BrokerConfigError) as exc:
        raise fail(str(exc)) from exc
    try:
        metrics_address = (
            parse_listen(metrics_listen, "--metrics-listen") if metrics_listen else None
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    token = ""
    if metrics_address is not None:
        if metrics_token_file is None:
            raise fail("--metrics-listen needs --metrics-token-file (metrics need a token)")
        token = metrics_token_file.read_text().strip()
        if len(token) < 16:
            raise fail(f"{metrics_token_file}: the token must have at least 16 characters")
    settings = AgentSettings(
        node=node,
        state_dir=state_dir,
        namespace=route_namespace,
        allowed_hosts=tuple(allow_host or ()),
        status_interval=status_interval,
        status_file=status_file,
        metrics_address=metrics_address,
        metrics_token=token,
    )
    static = _static_routes(routes_file) if routes_file else None
    api = None if routes_file else api_client(kubeconfig, context)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        agent = Agent(settings, access, api, static_routes=static)
        # What start-up made (modules, clients) lives as long as the process: kept out of the
        # collector's full passes, which otherwise stall the data path for tens of ms.
        gc.collect()
        gc.freeze()
        await agent.run(stop)

    try:
        # uvloop: the agent is network I/O on one event loop (MQTT in, HTTP out); libuv's
        # loop costs it a fifth less CPU per POST than asyncio's (bench/bench_http_clients.py).
        uvloop.run(serve())
    finally:
        if api is not None:
            api.close()


def _static_routes(path: Path) -> dict[str, dict[str, Any]]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"--routes-file {path}: {exc}") from exc
    items = loaded.get("items") if isinstance(loaded, dict) else loaded
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise fail(f"--routes-file {path}: expected a list of SensorRoute objects")
    return {f"{i.get('metadata', {}).get('name')}": i for i in items}


@app.command()
def run(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    route_namespace: RouteNamespace = ROUTE_NAMESPACE,
    contract_namespace: Annotated[
        str, typer.Option(help="Namespace of the FLUIDOS Contracts (the REAR gateway's).")
    ] = FLUIDOS_NAMESPACE,
    kubeedge_rules: Annotated[
        bool,
        typer.Option(
            "--kubeedge-rules/--no-kubeedge-rules",
            help="Also keep KubeEdge Rule/RuleEndpoint objects for every route.",
        ),
    ] = True,
    ready_file: ReadyFile = None,
    liveness: Liveness = None,
    verbose: Verbose = False,
) -> None:
    """Run the router manager (kopf operator) until interrupted."""
    from router_manager.operator import RouteOperator, Settings

    setup_verbosity(verbose)
    settings = Settings(
        api=api_client(kubeconfig, context),
        route_namespace=route_namespace,
        contract_namespace=contract_namespace,
        kubeedge_rules=kubeedge_rules,
    )
    asyncio.run(RouteOperator(settings).run(ready_file, liveness))


# ------------------------------------------------------------------------------ routes


def _flavor_source(api: client.ApiClient, namespace: str, name: str) -> tuple[str, str, str]:
    """(node, broker topic, "namespace/name") of one of this provider's Sensor Flavors."""
    obj = get_or_none(
        client.CustomObjectsApi(api).get_namespaced_custom_object,
        FLAVOR.group,
        FLAVOR.version,
        namespace,
        FLAVOR.plural,
        name,
    )
    if obj is None:
        raise fail(f"Flavor {namespace}/{name} not found", 1)
    try:
        flavor = sensor_from_flavor(obj)
    except FlavorError as exc:
        raise fail(str(exc), 1) from exc
    topic = flavor.broker_topic
    if topic is None or not flavor.node:
        raise fail(
            f"Flavor {namespace}/{name} names no Device and node of this provider "
            "(annotation sensors.fluidos.eu/device, characteristics.node)",
            1,
        )
    if not flavor.availability:
        typer.echo(f"warning: Flavor {namespace}/{name} is not available now", err=True)
    return flavor.node, topic, flavor.reference


@routes_app.command("add")
def add(
    flavor: Annotated[str, typer.Option(help="The Sensor Flavor whose readings to deliver.")],
    target: Annotated[str, typer.Option(help="Where to POST them (http or https URL).")],
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    flavor_namespace: Annotated[str, typer.Option()] = DEFAULT_FLAVOR_NAMESPACE,
    route_namespace: RouteNamespace = ROUTE_NAMESPACE,
    target_id: Annotated[
        str | None, typer.Option("--id", help="Target id (default: derived from the URL).")
    ] = None,
    format_name: Annotated[
        str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")
    ] = DEFAULT_FORMAT,
    auth_type: Annotated[str | None, typer.Option(help=f"{', '.join(AUTH_TYPES)}.")] = None,
    auth_secret: Annotated[
        str | None, typer.Option(help="Secret (route namespace) with the credentials.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=BATCH_SIZE_MAX)] = DEFAULT_BATCH_SIZE,
    batch_delay_ms: Annotated[
        int, typer.Option(min=0, max=BATCH_DELAY_MS_MAX)
    ] = DEFAULT_BATCH_DELAY_MS,
    queue_bytes: Annotated[int, typer.Option(min=QUEUE_BYTES_MIN)] = DEFAULT_QUEUE_BYTES,
    aggregate: AggregateOption = None,
    window: WindowOption = None,
    every: EveryOption = None,
) -> None:
    """Deliver a sensor's readings to one more target (the same Route: one subscription)."""
    try:
        url = check_endpoint_url(target)
    except EndpointError as exc:
        raise fail(f"--target {exc}") from exc
    if format_name not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}")
    if (auth_type is None) != (auth_secret is None):
        raise fail("--auth-type and --auth-secret go together")
    if auth_type is not None and auth_type not in AUTH_TYPES:
        raise fail(f"--auth-type must be one of {', '.join(AUTH_TYPES)}")
    shape = shape_option(aggregate, window, every)
    new = RouteTarget(
        id=target_id or manual_target_id(url),
        url=url,
        format=format_name,
        batch_size=batch_size,
        batch_delay_ms=batch_delay_ms,
        queue_bytes=queue_bytes,
        auth=TargetAuth(auth_type, auth_secret) if auth_type and auth_secret else None,
        shape=shape,
    )
    with api_client(kubeconfig, context) as api:
        node, topic, reference = _flavor_source(api, flavor_namespace, flavor)
        try:
            route = RouteApi(api, route_namespace).add_target(node, topic, reference, new)
        except RouteConflict as exc:
            raise fail(str(exc), 1) from exc
        except ApiException as exc:
            raise fail(f"the API server refused the route: {exc.status} {exc.reason}", 1) from exc
    typer.echo(
        f"SensorRoute {route_namespace}/{route.name}: target {new.id} -> {redact_url(url)} "
        f"({len(route.targets)} target(s) on {topic} at {node})"
    )


@routes_app.command("remove")
def remove(
    flavor: Annotated[str, typer.Option(help="The Sensor Flavor of the route.")],
    target: Annotated[str | None, typer.Option(help="The target URL to remove.")] = None,
    target_id: Annotated[str | None, typer.Option("--id", help="The target id to remove.")] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    flavor_namespace: Annotated[str, typer.Option()] = DEFAULT_FLAVOR_NAMESPACE,
    route_namespace: RouteNamespace = ROUTE_NAMESPACE,
) -> None:
    """Stop delivering a sensor to one target (the route goes when its last target does)."""
    if (target is None) == (target_id is None):
        raise fail("give either --target URL or --id ID")
    wanted = target_id or manual_target_id(target or "")
    with api_client(kubeconfig, context) as api:
        node, topic, _ = _flavor_source(api, flavor_namespace, flavor)
        routes = RouteApi(api, route_namespace)
        before, _ = parse_route(routes.get(route_name(node, topic)) or {"spec": None})
        if before is None or before.target(wanted) is None:
            raise fail(f"no target {wanted} delivers Flavor {flavor_namespace}/{flavor}", 1)
        try:
            after = routes.remove_target(node, topic, wanted)
        except RouteConflict as exc:
            raise fail(str(exc), 1) from exc
    left = len(after.targets) if after else 0
    typer.echo(f"target {wanted} removed ({left} target(s) left on {topic} at {node})")


def _rows(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for item in items:
        spec, status = item.get("spec") or {}, item.get("status") or {}
        states = {t.get("id"): t for t in status.get("targets") or []}
        for target in spec.get("targets") or [{"id": "-", "url": ""}]:
            seen = states.get(target.get("id"), {})
            rows.append(
                {
                    "NODE": str(spec.get("node", "")),
                    "TOPIC": str(spec.get("topic", "")),
                    "TARGET": str(target.get("id", "")),
                    "URL": redact_url(str(target.get("url", ""))) if target.get("url") else "-",
                    "FORMAT": str(target.get("format", DEFAULT_FORMAT)),
                    "SHAPE": describe_shape(target.get("shape")),
                    "STATE": str(seen.get("state", "-")),
                    "DELIVERED": str(seen.get("delivered", 0)),
                    "QUEUED": str(seen.get("queued", 0)),
                    "DROPPED": str(seen.get("dropped", 0)),
                    "REJECTED": str(seen.get("rejected", 0)),
                    "LAST ERROR": str(seen.get("lastError", ""))[:60],
                }
            )
    return rows


@routes_app.command("list")
def list_routes(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    route_namespace: RouteNamespace = ROUTE_NAMESPACE,
    node: Annotated[str | None, typer.Option(help="Only this edge node's routes.")] = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """Every route target with its delivery state."""
    with api_client(kubeconfig, context) as api:
        items = RouteApi(api, route_namespace).list(f"{NODE_LABEL}={node}" if node else None)
    items.sort(key=lambda i: (i["spec"].get("node", ""), i["spec"].get("topic", "")))
    echo_listing(output, items, _rows(items), empty="no routes")

"""`fluidos-sensors resource-manager gateway`: serve the REAR gateway with uvicorn."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fluidos_sensors.api import FLUIDOS_NAMESPACE, ROUTE_NAMESPACE
from fluidos_sensors.cli import Context, Kubeconfig, Verbose, fail, parse_listen
from fluidos_sensors.logs import setup_verbosity

if TYPE_CHECKING:
    import uvicorn


def gateway(
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    node_id: Annotated[
        str, typer.Option(envvar="FLUIDOS_NODE_ID", help="FLUIDOS node id of this provider.")
    ] = "",
    domain: Annotated[str, typer.Option(envvar="FLUIDOS_DOMAIN")] = "fluidos.eu",
    ip: Annotated[
        str,
        typer.Option(
            envvar="FLUIDOS_NODE_IP", help="Address consumers reach; defaults to the listen host."
        ),
    ] = "",
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve on.")] = "127.0.0.1:8443",
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (serve HTTPS).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="FLUIDOS namespace: Flavors, contracts.")
    ] = FLUIDOS_NAMESPACE,
    secret_namespace: Annotated[
        str, typer.Option(help="Namespace of the delivery credential Secrets.")
    ] = ROUTE_NAMESPACE,
    reservation_ttl: Annotated[
        float, typer.Option(help="Seconds a reservation holds before it expires.")
    ] = 300.0,
    max_consumers_per_sensor: Annotated[
        int, typer.Option(help="Contracts plus open reservations one sensor may have.")
    ] = 16,
    fluidos_compat_listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the FLUIDOS-compatibility listener: plain HTTP, NO token, "
            "read-only flavor listings without Sensor items, for unmodified FLUIDOS nodes. "
            "Off unless given; bind it only to a restricted network."
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Serve the REAR v2 gateway (list, reserve, purchase, release Sensor flavors)."""
    import uvicorn

    from fluidos_sensors.kube import api_client
    from resource_manager.gateway.market import MarketSettings
    from resource_manager.gateway.objects import Seller
    from resource_manager.gateway.service import build_gateway

    setup_verbosity(verbose)
    try:
        host, port = parse_listen(listen)
        compat = parse_listen(fluidos_compat_listen) if fluidos_compat_listen else None
        if compat == (host, port):
            raise ValueError("--fluidos-compat-listen must differ from --listen")
        if not node_id:
            raise ValueError("--node-id is required (or FLUIDOS_NODE_ID)")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        settings = MarketSettings(
            seller=Seller(node_id=node_id, domain=domain, ip=ip or host),
            namespace=namespace,
            secret_namespace=secret_namespace,
            reservation_ttl=reservation_ttl,
            max_consumers_per_sensor=max_consumers_per_sensor,
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    built = build_gateway(api_client(kubeconfig, context), settings)
    scheme = "https" if tls_cert else "http"
    logging.getLogger("resource_manager.gateway").info(
        "REAR gateway of %s on %s://%s:%d (namespace %s)",
        node_id,
        scheme,
        host,
        port,
        namespace,
    )
    common: dict[str, Any] = {"log_config": None, "access_log": verbose, "server_header": False}
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                built.app,
                host=host,
                port=port,
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None,
                **common,  # our logging; no access log unless --verbose (it is noisy)
            )
        )
    ]
    if compat is not None:
        logging.getLogger("resource_manager.gateway").warning(
            "FLUIDOS-compatibility listener on http://%s:%d: no authentication, read-only "
            "flavor listings without Sensor items",
            *compat,
        )
        servers.append(
            uvicorn.Server(
                uvicorn.Config(
                    built.compat_app, host=compat[0], port=compat[1], lifespan="off", **common
                )
            )
        )
    asyncio.run(_serve(servers))


async def _serve(servers: list[uvicorn.Server]) -> None:
    """Run the listeners together; when one stops (a signal, a bind error), stop them all."""
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)

"""`fluidos-sensors mapper run`: serve an edge node's BlueST boards."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from fluidos_sensors.broker import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    BrokerAccess,
    BrokerConfigError,
    broker_access,
)
from fluidos_sensors.cli import Verbose, fail
from fluidos_sensors.kube import api_client
from fluidos_sensors.logs import setup_logging
from mapper.ble import BleBackends
from mapper.dataplane.publisher import MqttPublisher
from mapper.dataplane.twins import TwinReporter
from mapper.kube import DeviceApi, DeviceStatusStore
from mapper.service import Mapper, MapperSettings
from mapper.simulated import simulated_boards, simulated_devices
from mapper.simulator import SimulatedRadio, client_backend, scanner_backend

app = typer.Typer(
    help="Edge: BlueST boards over BLE -> MQTT readings and device twins.", no_args_is_help=True
)


@app.command()
def run(
    node: Annotated[str, typer.Option(help="The edge node this mapper serves.")],
    kubeconfig: Annotated[
        Path | None,
        typer.Option(envvar="KUBECONFIG", help="Cluster of the Devices (in-cluster if unset)."),
    ] = None,
    namespace: Annotated[
        str,
        typer.Option(
            "--namespace",
            "-n",
            help="Devices' namespace (watched; simulated boards registered there).",
        ),
    ] = "default",
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", help="Watch Devices of every namespace.")
    ] = False,
    all_boards: Annotated[
        bool,
        typer.Option(
            "--all-boards", help="Also serve BlueST boards in range that no Device names."
        ),
    ] = False,
    no_kubernetes: Annotated[
        bool,
        typer.Option(
            "--no-kubernetes", help="Run without a cluster (implies --all-boards; no twins)."
        ),
    ] = False,
    simulate: Annotated[
        int,
        typer.Option(
            min=0, help="Simulate N boards (STWIN.box, SensorTile, ...) and register their Devices."
        ),
    ] = 0,
    inertial_hz: Annotated[float, typer.Option(help="Simulated inertial rate (10/20/30).")] = 10.0,
    environmental_hz: Annotated[
        float, typer.Option(help="Simulated environmental rate (1/10/20).")
    ] = 1.0,
    mqtt_credentials: Annotated[
        Path | None,
        typer.Option(help='Broker JSON {"host","port","username","password"} (mode 0600).'),
    ] = None,
    mqtt_host: Annotated[str | None, typer.Option(help=f"Broker host [{DEFAULT_HOST}].")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help=f"Broker port [{DEFAULT_PORT}].")] = None,
    qos: Annotated[int, typer.Option(min=0, max=1, help="MQTT QoS of readings.")] = 0,
    buffer: Annotated[
        int, typer.Option(min=1, help="Readings held while the broker is away.")
    ] = 10_000,
    provider: Annotated[str, typer.Option(help="Provider name put in every reading.")] = "",
    report_cycle: Annotated[
        float, typer.Option(help="Twin report cycle (s) for Devices that set none.")
    ] = 10.0,
    twin_min_interval: Annotated[
        float, typer.Option(help="Never write a device's twin more often than this (s).")
    ] = 1.0,
    resync: Annotated[float, typer.Option(help="Seconds between looks at the Devices.")] = 10.0,
    status_file: Annotated[
        Path | None, typer.Option(help="Write counters and device states here (JSON).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
    verbose: Verbose = False,
) -> None:
    """Run a mapper for one edge node until SIGTERM or Ctrl-C."""
    try:
        setup_logging("DEBUG" if verbose else log_level)
        access = broker_access(mqtt_credentials, mqtt_host, mqtt_port)
    except (ValueError, BrokerConfigError) as exc:
        raise fail(str(exc)) from exc
    settings = MapperSettings(
        node=node,
        namespace=namespace,
        all_namespaces=all_namespaces,
        all_boards=all_boards or no_kubernetes,
        provider=provider,
        resync_seconds=resync,
        status_file=status_file,
    )
    boards = (
        simulated_boards(node, simulate, inertial_hz=inertial_hz, environmental_hz=environmental_hz)
        if simulate
        else []
    )
    if boards:
        radio = SimulatedRadio()
        for _, board in boards:
            radio.add_board(board)
        backends = BleBackends(scanner_backend(radio), client_backend(radio))
    else:
        backends = BleBackends()  # the platform's BLE stack: BlueZ on Linux
    asyncio.run(
        _serve(
            settings,
            backends,
            access,
            kubeconfig=None if no_kubernetes else kubeconfig,
            use_kubernetes=not no_kubernetes,
            register=simulated_devices(node, namespace, boards, report_cycle_seconds=report_cycle)
            if boards and not no_kubernetes
            else [],
            qos=qos,
            capacity=buffer,
            report_cycle=report_cycle,
            twin_min_interval=twin_min_interval,
        )
    )


async def _serve(
    settings: MapperSettings,
    backends: BleBackends,
    access: BrokerAccess,
    *,
    kubeconfig: Path | None,
    use_kubernetes: bool,
    register: list[dict],
    qos: int,
    capacity: int,
    report_cycle: float,
    twin_min_interval: float,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    publisher = MqttPublisher(
        access, capacity=capacity, qos=qos, client_id=f"fluidos-sensors-mapper-{settings.node}"
    )
    api = api_client(kubeconfig) if use_kubernetes else None
    try:
        mapper = Mapper(
            settings,
            backends=backends,
            publisher=publisher,
            devices=DeviceApi(api) if api else None,
            twins=TwinReporter(
                DeviceStatusStore(api), min_interval=twin_min_interval, default_cycle=report_cycle
            )
            if api
            else None,
            register=register,
        )
        await mapper.run(stop)
    finally:
        if api is not None:
            api.close()

"""`fluidos-sensors testbed ...`: bring the local multi-cluster testbed up, report it, stop it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from fluidos_sensors.cli import fail
from testbed import binaries, manager, paths, supervisor
from testbed.kind import testbed as kind_testbed
from testbed.kind.cli import app as kind_app
from testbed.kind.docker import Engine, machine_engine_usable
from testbed.kind.steps import StepFailed
from testbed.state import TestbedState, pid_alive
from testbed.topology import default_topology

app = typer.Typer(
    help="Local multi-cluster testbed: real etcd + kube-apiserver per cluster.",
    no_args_is_help=True,
)

app.add_typer(kind_app, name="kind")

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Testbed state folder (default: $FLUIDOS_SENSORS_STATE or "
        "$XDG_STATE_HOME/fluidos-sensors/testbed).",
    ),
]


def _log(message: str) -> None:
    typer.echo(f"{time.strftime('%H:%M:%S')} {message}", err=True)


def _echo_access(state: TestbedState) -> None:
    kubectl = binaries.resolve(binaries.KUBECTL, install=False)
    for cluster in state.clusters.values():
        typer.echo(f"{cluster.name} ({cluster.role}) {cluster.server}")
        typer.echo(f"  {manager.kubectl_command(cluster.kubeconfig, kubectl)} get nodes")


@app.command()
def up(
    providers: Annotated[int, typer.Option(min=1, help="Provider clusters.")] = 1,
    consumers: Annotated[int, typer.Option(min=0, help="Consumer clusters.")] = 2,
    edge_workers: Annotated[int, typer.Option(min=1, help="Edge workers per provider.")] = 1,
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 300,
    kind: Annotated[
        bool | None,
        typer.Option(
            "--kind/--local",
            help="KIND clusters with the parts as pods from the chart, or the local control "
            "planes with the parts as processes. Default: KIND when this machine's Docker "
            "engine can run privileged containers, local otherwise.",
        ),
    ] = None,
) -> None:
    """Start the testbed, or report the one already running."""
    problem = paths.missing_checkout()
    if problem:
        raise fail(problem, 1)
    if kind is None:
        kind = machine_engine_usable()
        mode = "kind" if kind else "local"
        typer.echo(f"testbed mode: {mode} (--kind/--local to choose)", err=True)
    if kind:
        if edge_workers != 1:
            raise fail("the KIND testbed has one edge worker per provider")
        try:
            state = kind_testbed.up(providers, consumers, state_dir, log=_log)
        except (StepFailed, binaries.MissingBinary, OSError) as exc:
            raise fail(str(exc), 1) from exc
        typer.echo(f"KIND testbed ready (state: {state.directory})")
        _echo_access(state)
        return
    topology = default_topology(providers, consumers, edge_workers)
    try:
        state, started = manager.up(
            topology, state_dir, timeout=timeout, log=lambda m: typer.echo(m, err=True)
        )
    except (manager.TestbedError, binaries.MissingBinary) as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(f"testbed {'started' if started else 'already running'} (state: {state.directory})")
    _echo_access(state)


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop every testbed process and free its ports (KIND: delete the clusters, stop the
    testbed's engine)."""
    folder = state_dir or paths.state_dir()
    if kind_testbed.is_kind(folder) or Engine.default(folder).pid():
        try:
            kind_testbed.down(folder, log=_log)
        except (StepFailed, OSError) as exc:
            raise fail(str(exc), 1) from exc
        typer.echo(f"KIND testbed at {folder} removed")
        return
    try:
        if not manager.down(state_dir, log=typer.echo):
            typer.echo("no testbed running")
    except manager.TestbedError as exc:
        raise fail(str(exc), 1) from exc


@app.command()
def status(
    state_dir: StateDir = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json")] = "text",
) -> None:
    """Every process (up, down or held; restarts, ports, log) and every route target's
    deliveries in the last minute. Exits 1 when a process is down or a target failing."""
    from rich.console import Console

    from testbed import report

    state = TestbedState.read(state_dir or paths.state_dir())
    if state is None or not state.running:
        typer.echo("no testbed running", err=True)
        raise typer.Exit(1)
    if output == "json":
        typer.echo(json.dumps(state.status, indent=2))
        return
    console = Console(width=200)
    if state.status.get("mode") == kind_testbed.MODE:
        engine = state.supervisor_pid
        console.print(f"phase: {state.phase} (KIND; the testbed's dockerd pid {engine})")
        _echo_access(state)
        for name, listing in kind_testbed.pods(state):
            console.print(f"[bold]{name}[/]", highlight=False)
            console.print(listing.rstrip(), highlight=False, markup=False)
        bad = kind_testbed.unhealthy_pods(state)
        for line in bad:
            console.print(f"[red]not running:[/] {line}")
        healthy = not bad
    else:
        console.print(f"phase: {state.phase} (supervisor pid {state.supervisor_pid})")
        _echo_access(state)
        processes, healthy = report.processes_table(state)
        console.print(processes)
    try:
        targets = report.route_targets(state)
    except Exception as exc:  # the report must not fail on an API hiccup
        console.print(f"[red]route targets unavailable:[/] {exc}")
        raise typer.Exit(1) from exc
    if targets:
        console.print(report.routes_table(targets))
    else:
        console.print("no route targets (nothing bought yet)")
    if not healthy or not all(t.healthy for t in targets):
        raise typer.Exit(1)


@app.command("binaries")
def install_binaries(
    kind: Annotated[
        bool, typer.Option("--kind", help="The KIND mode's binaries (node image, kind) instead.")
    ] = False,
) -> None:
    """Find, build or install every binary the testbed runs, and helm for the chart's checks
    (cached per user and version)."""
    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    try:
        if kind:
            found = {n: binaries.resolve(b, log=log) for n, b in binaries.KIND_ALL.items()}
        else:
            found = binaries.resolve_all(
                [*manager.required_binaries(), binaries.HELM.name], log=log
            )
        for name, path in found.items():
            typer.echo(f"{name}: {path}")
    except binaries.MissingBinary as exc:
        raise fail(str(exc), 1) from exc


def _running_state(state_dir: Path | None) -> TestbedState:
    state = TestbedState.read(state_dir or paths.state_dir())
    if state is None or not state.running:
        typer.echo("no testbed running", err=True)
        raise typer.Exit(1)
    return state


def _process(state: TestbedState, name: str) -> str:
    """The full name of a process from its name or an unambiguous part of it."""
    names = list(state.status.get("processes", {}))
    if name in names:
        return name
    found = [n for n in names if n.endswith(f"/{name}") or name in n]
    if len(found) != 1:
        choice = ", ".join(found or names)
        raise fail(f"{name!r} names {len(found)} processes; one of: {choice}")
    return found[0]


def _wait_alive(state_dir: Path, name: str, alive: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = TestbedState.read(state_dir)
        proc = (current.status.get("processes", {}) if current else {}).get(name, {})
        if proc and proc.get("alive") == alive and pid_alive(proc.get("pid")) == alive:
            return True
        time.sleep(0.3)
    return False


@app.command("stop")
def stop_process(
    process: Annotated[str, typer.Argument(help="e.g. consumer-1/telegraf, or telegraf")],
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 60,
) -> None:
    """Stop one process and keep it stopped (the supervisor does not restart it)."""
    state = _running_state(state_dir)
    name = _process(state, process)
    held = supervisor.hold_file(state.directory, name)
    held.parent.mkdir(parents=True, exist_ok=True)
    held.touch()
    if not _wait_alive(state.directory, name, False, timeout):
        raise fail(f"{name} still running after {timeout:.0f}s", 1)
    typer.echo(f"{name} stopped (held until: fluidos-sensors testbed start {process})")


@app.command("start")
def start_process(
    process: Annotated[str, typer.Argument(help="A process stopped with `testbed stop`.")],
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 60,
) -> None:
    """Let a stopped process run again."""
    state = _running_state(state_dir)
    name = _process(state, process)
    supervisor.hold_file(state.directory, name).unlink(missing_ok=True)
    if not _wait_alive(state.directory, name, True, timeout):
        raise fail(f"{name} not running after {timeout:.0f}s", 1)
    typer.echo(f"{name} running")


@app.command()
def logs(
    component: Annotated[str, typer.Argument(help="e.g. provider-1/resource-manager, agent")],
    lines: Annotated[int, typer.Option("-n", "--lines", min=1)] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
    state_dir: StateDir = None,
) -> None:
    """Show the end of a component's log (and follow it with -f)."""
    state = _running_state(state_dir)
    name = _process(state, component)
    path = Path(state.status["processes"][name]["log"])
    typer.echo(f"==> {path} <==", err=True)
    text = path.read_text(errors="replace") if path.exists() else ""
    for line in text.splitlines()[-lines:]:
        typer.echo(line)
    if not follow:
        return
    with open(path, errors="replace") as stream:
        stream.seek(0, 2)
        try:
            while True:
                line = stream.readline()
                if line:
                    typer.echo(line, nl=False)
                elif stream.tell() > path.stat().st_size:  # rotated: start over
                    stream.seek(0)
                else:
                    time.sleep(0.3)
        except KeyboardInterrupt:
            return

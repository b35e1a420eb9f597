"""`fluidos-sensors testbed ...`: bring the local multi-cluster testbed up, report it, stop it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from testbed import binaries, manager, paths
from testbed.state import TestbedState
from testbed.topology import default_topology

app = typer.Typer(
    help="Local multi-cluster testbed: real etcd + kube-apiserver per cluster.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Testbed state folder (default: $FLUIDOS_SENSORS_STATE or "
        "$XDG_STATE_HOME/fluidos-sensors/testbed).",
    ),
]


def _echo_access(state: TestbedState) -> None:
    kubectl = binaries.resolve(binaries.KUBECTL, install=False)
    for cluster in state.clusters.values():
        typer.echo(f"{cluster.name} ({cluster.role}) {cluster.server}")
        typer.echo(f"  {manager.kubectl_command(cluster.kubeconfig, kubectl)} get nodes")


@app.command()
def up(
    providers: Annotated[int, typer.Option(min=1, help="Provider clusters.")] = 1,
    consumers: Annotated[int, typer.Option(min=0, help="Consumer clusters.")] = 1,
    edge_workers: Annotated[int, typer.Option(min=1, help="Edge workers per provider.")] = 1,
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 300,
) -> None:
    """Start the testbed, or report the one already running."""
    topology = default_topology(providers, consumers, edge_workers)
    try:
        state, started = manager.up(
            topology, state_dir, timeout=timeout, log=lambda m: typer.echo(m, err=True)
        )
    except (manager.TestbedError, binaries.MissingBinary) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"testbed {'started' if started else 'already running'} (state: {state.directory})")
    _echo_access(state)


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop every testbed process and free its ports."""
    try:
        if not manager.down(state_dir, log=typer.echo):
            typer.echo("no testbed running")
    except manager.TestbedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def status(
    state_dir: StateDir = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json")] = "text",
) -> None:
    """Show the clusters, their nodes and the processes of the running testbed."""
    state = TestbedState.read(state_dir or paths.state_dir())
    if state is None or not state.running:
        typer.echo("no testbed running", err=True)
        raise typer.Exit(1)
    if output == "json":
        typer.echo(json.dumps(state.status, indent=2))
        return
    typer.echo(f"phase: {state.phase} (supervisor pid {state.supervisor_pid})")
    _echo_access(state)
    for cluster in state.clusters.values():
        for node in cluster.nodes:
            typer.echo(f"  node {node['name']}{' (edge)' if node['edge'] else ''}")
    for name, proc in state.status.get("processes", {}).items():
        typer.echo(
            f"  process {name}: pid {proc['pid']} "
            f"{'running' if proc['alive'] else 'exited'}, restarts {proc['restarts']}"
        )


@app.command("binaries")
def install_binaries() -> None:
    """Find, build or install every binary the testbed runs (cached per user and version)."""
    try:
        for name, path in binaries.resolve_all(
            manager.required_binaries(), log=lambda m: typer.echo(m, err=True)
        ).items():
            typer.echo(f"{name}: {path}")
    except binaries.MissingBinary as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc

"""`fluidos-sensors testbed kind ...`: the KIND mode's engine, node image and clusters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from fluidos_sensors.cli import fail
from testbed import binaries
from testbed.kind import cluster as kind_cluster
from testbed.kind import nodeimage
from testbed.kind.docker import Engine, machine_engine_usable, missing_capabilities
from testbed.kind.steps import StepFailed

app = typer.Typer(
    help="KIND mode: a Docker engine for kind, the offline node image, clusters.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Testbed state folder (the engine lives in <it>/kind/)."),
]


def _log(message: str) -> None:
    typer.echo(f"{time.strftime('%H:%M:%S')} {message}", err=True)


@app.command("engine-up")
def engine_up(state_dir: StateDir = None) -> None:
    """Start the testbed's own dockerd (installing Debian's docker.io if needed)."""
    if machine_engine_usable():
        typer.echo("note: this machine's Docker engine can run --privileged containers", err=True)
    engine = Engine.default(state_dir)
    try:
        engine.start(_log)
    except (StepFailed, OSError) as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(f"export DOCKER_HOST={engine.host}")


@app.command("engine-down")
def engine_down(state_dir: StateDir = None) -> None:
    """Stop the testbed's dockerd and everything it runs (its images stay cached)."""
    try:
        Engine.default(state_dir).stop(_log)
    except (StepFailed, OSError) as exc:
        raise fail(str(exc), 1) from exc


@app.command("engine-status")
def engine_status(state_dir: StateDir = None) -> None:
    """Whether the testbed's dockerd runs and answers; exits 1 if not."""
    engine = Engine.default(state_dir)
    missing = missing_capabilities()
    typer.echo(f"capabilities missing from the bounding set: {', '.join(missing) or 'none'}")
    typer.echo(f"machine engine usable for kind: {machine_engine_usable()}")
    pid, healthy = engine.pid(), engine.healthy()
    typer.echo(f"testbed dockerd: pid {pid}, {'answering' if healthy else 'not answering'}")
    typer.echo(f"  DOCKER_HOST={engine.host}")
    if not (pid and healthy):
        raise typer.Exit(1)


@app.command("image")
def image(
    state_dir: StateDir = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the image exists.")] = False,
) -> None:
    """Build the offline kind node image (cached by version) in the testbed's engine."""
    engine = Engine.default(state_dir)
    try:
        engine.start(_log)
        tag = nodeimage.build(engine, _log, force=force)
    except (StepFailed, binaries.MissingBinary, OSError) as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(tag)


@app.command("smoke")
def smoke(
    state_dir: StateDir = None,
    keep: Annotated[bool, typer.Option(help="Leave the cluster and engine running.")] = False,
) -> None:
    """Milestone check: a one-node cluster from `kind/single.yaml` becomes Ready and runs a
    pod; then (unless --keep) the cluster and its network are removed, and the engine is
    stopped unless it was running before."""
    engine = Engine.default(state_dir)
    engine_was_running = bool(engine.pid())
    started = time.monotonic()
    cluster: kind_cluster.Cluster | None = None
    try:
        engine.start(_log)
        tag = nodeimage.build(engine, _log)
        cluster = kind_cluster.Cluster(engine, "fluidos-smoke", state_dir)
        cluster.create(kind_cluster.CONFIG_DIR / "single.yaml", tag, _log)
        etcd = f"registry.k8s.io/etcd:{nodeimage.ETCD_IMAGE_TAG}"
        output = kind_cluster.smoke(cluster, etcd, _log)
        typer.echo(output.strip())
        for line in kind_cluster.check_network(cluster, _log):
            typer.echo(line)
        typer.echo(cluster.kubectl_run("get", "nodes,pods", "-A", "-o", "wide", what="kubectl get"))
        _log(f"[kind] smoke test passed in {time.monotonic() - started:.0f} s")
    except (StepFailed, binaries.MissingBinary, OSError) as exc:
        raise fail(str(exc), 1) from exc
    finally:
        if not keep:
            _teardown(engine, [cluster] if cluster else [], stop=not engine_was_running)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Cluster name, e.g. provider-1.")],
    config: Annotated[
        str, typer.Option(help="A kind config in kind/ (single, provider, consumer) or a path.")
    ] = "single",
    state_dir: StateDir = None,
) -> None:
    """Create one kind cluster with the node image and its pod network; waits for Ready."""
    path = Path(config) if "/" in config else kind_cluster.CONFIG_DIR / f"{config}.yaml"
    engine = Engine.default(state_dir)
    try:
        engine.start(_log)
        tag = nodeimage.build(engine, _log)
        cluster = kind_cluster.Cluster(engine, name, state_dir)
        cluster.create(path, tag, _log)
        typer.echo(cluster.kubectl_run("get", "nodes", "-o", "wide", what="kubectl get nodes"))
    except (StepFailed, binaries.MissingBinary, OSError) as exc:
        raise fail(str(exc), 1) from exc
    typer.echo(f"kubectl --kubeconfig {cluster.kubeconfig} get pods -A")


@app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    state_dir: StateDir = None,
) -> None:
    """Pod network checks from every node: pod to pod across nodes, service IP, cluster DNS."""
    engine = Engine.default(state_dir)
    try:
        for line in kind_cluster.check_network(kind_cluster.Cluster(engine, name, state_dir), _log):
            typer.echo(line)
    except (StepFailed, OSError) as exc:
        raise fail(str(exc), 1) from exc


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    state_dir: StateDir = None,
) -> None:
    """Delete one kind cluster (the engine keeps running)."""
    engine = Engine.default(state_dir)
    try:
        kind_cluster.Cluster(engine, name, state_dir).delete(_log)
    except (StepFailed, OSError) as exc:
        raise fail(str(exc), 1) from exc


def _teardown(engine: Engine, clusters: list[kind_cluster.Cluster], *, stop: bool = True) -> None:
    if engine.pid():
        for one in clusters:
            try:
                if one.exists():
                    one.delete(_log)
            except StepFailed as exc:
                typer.echo(f"error: {exc}", err=True)
        try:
            kind_cluster.remove_network(engine, _log)
        except StepFailed as exc:
            typer.echo(f"error: {exc}", err=True)
    if stop:
        engine.stop(_log)


@app.command("down")
def down(state_dir: StateDir = None) -> None:
    """Delete every kind cluster on the testbed's engine, its network, and stop the engine."""
    engine = Engine.default(state_dir)
    clusters: list[kind_cluster.Cluster] = []
    if engine.pid():
        probe = kind_cluster.Cluster(engine, "", state_dir)
        names = probe.kind_clusters()
        clusters = [kind_cluster.Cluster(engine, name, state_dir) for name in names]
    try:
        _teardown(engine, clusters)
    except (StepFailed, OSError) as exc:
        raise fail(str(exc), 1) from exc

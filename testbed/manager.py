"""Bring a testbed up, report it, tear it down. Used by the CLI and by the pytest fixtures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from testbed import binaries, edge, paths, services
from testbed.controlplane import ClusterEndpoints
from testbed.processes import PortPool, port_open
from testbed.state import CONFIG_FILE, TestbedState, pid_alive, process_identity
from testbed.topology import Topology

# Binaries every testbed needs; edge processes add theirs via `edge.EDGE_BINARIES`.
CONTROL_PLANE_BINARIES = ["etcd", "kube-apiserver", "kubectl"]


class TestbedError(RuntimeError):
    __test__ = False


def required_binaries() -> list[str]:
    names = CONTROL_PLANE_BINARIES + edge.EDGE_BINARIES + services.SERVICE_BINARIES
    return list(dict.fromkeys(names))


def up(
    topology: Topology,
    state_dir: Path | None = None,
    *,
    timeout: float = 300,
    log: Callable[[str], None] = print,
    owner_pid: int | None = None,
) -> tuple[TestbedState, bool]:
    """Start a testbed (or find the running one). Returns (state, started_now).

    With `owner_pid`, a testbed started now stops by itself once that process ends (a test
    run that crashes or is killed leaves nothing running)."""
    state_dir = state_dir or paths.state_dir()
    existing = TestbedState.read(state_dir)
    if existing and existing.status.get("mode") == "kind":
        raise TestbedError(
            f"a KIND testbed lives in {state_dir}; stop it first (scripts/setup.sh --down)"
        )
    if existing and existing.running:
        if existing.config["topology"] != json.loads(json.dumps(topology.to_json())):
            raise TestbedError(
                f"a testbed with another topology runs from {state_dir}; "
                "stop it first (scripts/setup.sh --down)"
            )
        _wait_ready(state_dir, timeout)
        return TestbedState.read(state_dir), False  # type: ignore[return-value]
    if existing:
        down(state_dir, log=lambda _m: None)  # stale: a crashed or stopped supervisor

    resolved = binaries.resolve_all(required_binaries(), log=log)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    ports = PortPool()  # every port of the testbed from one pool: none given twice
    config = {
        "topology": topology.to_json(),
        "endpoints": {c.name: ClusterEndpoints.allocate(ports).__dict__ for c in topology.clusters},
        "binaries": {name: str(path) for name, path in resolved.items()},
        # Edge processes' ports, chosen once so a restarted broker listens where it did.
        "edge": edge.allocate_ports(topology, ports),
        "services": services.allocate_ports(topology, ports),
    }
    if owner_pid is not None:
        config["owner"] = process_identity(owner_pid)
    (state_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    with open(state_dir / "supervisor.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "testbed.supervisor", str(state_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that ran setup.sh
            cwd=Path(__file__).resolve().parent.parent,
        )
    log(f"starting the testbed ({len(topology.clusters)} clusters) from {state_dir}")
    try:
        return _wait_ready(state_dir, timeout, log), True
    except TestbedError:
        down(state_dir, log=lambda _m: None, keep_logs=True)
        raise


def _wait_ready(
    state_dir: Path, timeout: float, log: Callable[[str], None] = lambda _m: None
) -> TestbedState:
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    seen: set[str] = set()
    while time.monotonic() < deadline:
        state = TestbedState.read(state_dir)
        for name in state.status.get("processes", {}) if state else {}:
            if name not in seen:  # progress: the supervisor starts them one after the other
                seen.add(name)
                log(f"  {time.monotonic() - started:5.1f} s  starting {name}")
        if state and state.phase == "ready":
            return state
        if state and state.phase in ("failed", "stopped"):
            raise TestbedError(
                f"testbed failed to start: {state.status.get('error')}\n(logs under {state_dir})"
            )
        if state and not pid_alive(state.supervisor_pid):
            raise TestbedError(f"the testbed supervisor died; see {state_dir / 'supervisor.log'}")
        time.sleep(0.3)
    raise TestbedError(f"testbed not ready after {timeout:.0f}s; see {state_dir}")


def down(
    state_dir: Path | None = None, *, log: Callable[[str], None] = print, keep_logs: bool = False
) -> bool:
    """Stop every process of the testbed and free its ports. Returns whether one was running."""
    state_dir = state_dir or paths.state_dir()
    state = TestbedState.read(state_dir)
    if state is None:
        if state_dir.exists() and not keep_logs:
            shutil.rmtree(state_dir, ignore_errors=True)
        return False
    pid = state.supervisor_pid
    was_running = pid_alive(pid)
    if was_running and pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    if pid and pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)  # the supervisor leads its own session
    # Children exit with the supervisor (PDEATHSIG); make sure, by pid and by port.
    latest = TestbedState.read(state_dir) or state
    ports: list[int] = []
    for proc in latest.status.get("processes", {}).values():
        if pid_alive(proc.get("pid")):
            os.kill(proc["pid"], signal.SIGKILL)
        ports += proc.get("ports", [])
    deadline = time.monotonic() + 15
    busy = ports
    while busy and time.monotonic() < deadline:
        busy = [p for p in ports if port_open(p)]
        if busy:
            time.sleep(0.2)
    if busy:
        raise TestbedError(f"ports still in use after stopping the testbed: {busy}")
    if not keep_logs:
        shutil.rmtree(state_dir, ignore_errors=True)
    if was_running:
        log(f"testbed at {state_dir} stopped")
    return was_running


def kubectl_command(kubeconfig: Path, kubectl: Path) -> str:
    exe = "kubectl" if shutil.which("kubectl") == str(kubectl) else str(kubectl)
    return f"{exe} --kubeconfig {kubeconfig}"

"""The one long-lived testbed process: owns every child, keeps Nodes Ready, restarts the dead.

Started detached by `testbed up` as `python -m testbed.supervisor STATE_DIR`; `testbed down`
sends it SIGTERM and it stops its children in reverse order. Its children die with it even
when it is killed outright (PR_SET_PDEATHSIG), so nothing outlives the testbed. A testbed
started for a test run stops by itself when that run's process ends, however it ends.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from testbed import bootstrap, edge, marketplace, services
from testbed.controlplane import ClusterEndpoints, control_plane_processes, write_kubeconfig
from testbed.pki import ClusterPKI
from testbed.processes import ManagedProcess, ProcessFailed
from testbed.state import identity_alive, write_status
from testbed.topology import CONSUMER, PROVIDER, Topology

HEARTBEAT_SECONDS = 10.0
TICK_SECONDS = 1.0  # how soon a dead process is noticed and a hold applied
_RESTART_BACKOFF_MAX = 30.0
STABLE_SECONDS = 60.0  # a process up this long starts its restart backoff afresh
LOG_MAX_BYTES = 10 * 1024 * 1024
_ROTATE_EVERY = 30.0
HELD_DIR = "held"


def hold_file(state_dir: Path, process: str) -> Path:
    """The file that keeps a process stopped while it exists (`testbed stop/start`)."""
    return state_dir / HELD_DIR / process.replace("/", "__")


def rotate(log_file: Path, max_bytes: int = LOG_MAX_BYTES) -> bool:
    """Copy a log over its `.1` and truncate it (its writer appends, so it goes on at 0)."""
    try:
        if log_file.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(log_file, log_file.with_name(log_file.name + ".1"))
        os.truncate(log_file, 0)
    except OSError:
        return False
    return True


log = logging.getLogger("testbed.supervisor")


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        config = json.loads((state_dir / "config.json").read_text())
        self.topology = Topology.from_json(config["topology"])
        self.endpoints = {name: ClusterEndpoints(**ep) for name, ep in config["endpoints"].items()}
        self.binaries = {name: Path(p) for name, p in config["binaries"].items()}
        self.edge_ports: dict[str, dict[str, int]] = config.get("edge", {})
        self.service_ports: dict[str, dict[str, int]] = config.get("services", {})
        # The process this testbed lives for (a test run), if any: when it ends, even killed
        # outright, the testbed stops. setup.sh's testbed has none and stays up.
        self.owner: dict[str, int] | None = config.get("owner")
        self.processes: list[ManagedProcess] = []
        self.stopping = threading.Event()
        self.status: dict[str, Any] = {"pid": os.getpid(), "phase": "starting", "clusters": {}}

    def _publish(self, **changes: Any) -> None:
        self.status.update(changes)
        self.status["processes"] = {
            p.spec.name: {
                "pid": p.pid,
                "alive": p.alive,
                "restarts": p.restarts,
                "log": str(p.spec.log),
                "ports": p.spec.ports,
                "held": hold_file(self.state_dir, p.spec.name).exists(),
                "startedAt": p.started_at,
            }
            for p in self.processes
        }
        write_status(self.state_dir, self.status)

    def _launch(self, proc: ManagedProcess) -> None:
        self.processes.append(proc)
        proc.start()
        self._publish()
        proc.wait_ready()

    def start(self) -> None:
        # etcd and kube-apiserver of every cluster first: API servers take the longest.
        planes = {
            c.name: control_plane_processes(
                c.name, self.state_dir / c.name, self.endpoints[c.name], self.binaries
            )
            for c in self.topology.clusters
        }
        for specs in planes.values():
            self._launch(ManagedProcess(specs[0]))
        apiservers = [ManagedProcess(specs[1]) for specs in planes.values()]
        for proc in apiservers:
            self.processes.append(proc)
            proc.start()
        for proc in apiservers:
            proc.wait_ready()
        for cluster in self.topology.clusters:
            if self.stopping.is_set():
                return
            directory = self.state_dir / cluster.name
            server = self.endpoints[cluster.name].server
            kubeconfig = write_kubeconfig(
                directory / "kubeconfig",
                cluster.name,
                server,
                ClusterPKI(directory / "pki", cluster.name),
            )
            api = bootstrap.api_client(kubeconfig)
            crds = bootstrap.install_crds(api)
            core = client.CoreV1Api(api)
            for namespace in bootstrap.NAMESPACES:
                bootstrap.create_namespace(core, namespace)
            for node in cluster.nodes:
                bootstrap.register_node(core, node)
            self.status["clusters"][cluster.name] = {
                "role": cluster.role,
                "server": server,
                "kubeconfig": str(kubeconfig),
                "nodes": [
                    {"name": n.name, "labels": n.labels, "edge": n.is_edge} for n in cluster.nodes
                ],
                "crds": crds,
            }
            ports = self.service_ports.get(cluster.name, {})
            for spec in services.processes_for(cluster, directory, self.binaries, ports):
                self._launch(ManagedProcess(spec))
            for node in cluster.nodes:
                ports = self.edge_ports.get(node.name, {})
                for spec in edge.processes_for(cluster, node, directory, self.binaries, ports):
                    self._launch(ManagedProcess(spec))
        self._connect_marketplace()
        self._publish(phase="ready", ready_at=time.time())

    def _connect_marketplace(self) -> None:
        """Every consumer gets a token for, and a SensorProvider of, every provider's gateway."""
        consumers = [c for c in self.topology.clusters if c.role == CONSUMER]
        for provider in (c for c in self.topology.clusters if c.role == PROVIDER):
            directory = self.state_dir / provider.name
            ctx = services.ClusterContext(
                provider, directory, self.binaries, self.service_ports.get(provider.name, {})
            )
            ca = ClusterPKI(directory / "pki", provider.name).ca.cert
            for consumer in consumers:
                consumer_dir = self.state_dir / consumer.name
                marketplace.connect(
                    provider.name,
                    directory / "kubeconfig",
                    services.gateway_url(ctx),
                    ca,
                    consumer.name,
                    consumer_dir,
                    delivery_hosts=services.ConsumerStack.load(consumer_dir).delivery_hosts(),
                )

    def _heartbeat_all(self) -> None:
        for cluster in self.topology.clusters:
            info = self.status["clusters"].get(cluster.name)
            if not info:
                continue
            try:
                with bootstrap.api_client(Path(info["kubeconfig"])) as api:
                    core = client.CoreV1Api(api)
                    for node in cluster.nodes:
                        try:
                            bootstrap.heartbeat(core, node.name)
                        except client.ApiException as exc:
                            if exc.status == 404:  # deleted by a user or test: not ours to revive
                                continue
                            raise
            except Exception as exc:  # an API hiccup must not end the testbed
                log.warning("heartbeat for %s failed: %s", cluster.name, exc)

    def _restart_dead(self, backoff: dict[str, float]) -> None:
        now = time.monotonic()
        for proc in self.processes:
            if hold_file(self.state_dir, proc.spec.name).exists():
                if proc.alive:
                    log.info("%s held: stopping it", proc.spec.name)
                    proc.stop()
                    self._publish()
                continue
            if proc.alive or backoff.get(proc.spec.name, 0) > now:
                continue
            if proc.exit_code is not None:
                log.warning(
                    "%s exited with %s; restarting (restart #%d)",
                    proc.spec.name,
                    proc.exit_code,
                    proc.restarts + 1,
                )
            ran = time.time() - (proc.started_at or 0)
            streak = 0 if ran > STABLE_SECONDS else proc.restart_streak + 1
            proc.restarts += 1
            proc.restart_streak = streak
            rotate(proc.spec.log)
            proc.start()
            backoff[proc.spec.name] = now + min(2.0**streak, _RESTART_BACKOFF_MAX)
            self._publish()

    def run(self) -> int:
        try:
            self.start()
        except (ProcessFailed, Exception) as exc:  # report any start failure to `up`
            log.error("testbed failed to start: %s", exc)
            self._publish(phase="failed", error=str(exc))
            self.stop()
            return 1
        backoff: dict[str, float] = {}
        next_heartbeat = next_rotation = time.monotonic()
        while not self.stopping.wait(TICK_SECONDS):
            if self.owner and not identity_alive(self.owner):
                log.warning("owner process %s ended: stopping the testbed", self.owner["pid"])
                break
            now = time.monotonic()
            if now >= next_heartbeat:
                self._heartbeat_all()
                next_heartbeat = now + HEARTBEAT_SECONDS
            if now >= next_rotation:
                for proc in self.processes:
                    rotate(proc.spec.log)
                next_rotation = now + _ROTATE_EVERY
            self._restart_dead(backoff)
        self.stop()
        return 0

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self._publish(phase="stopped")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    state_dir = Path(argv[1])
    supervisor = Supervisor(state_dir)

    def _on_signal(signum: int, _frame: object) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

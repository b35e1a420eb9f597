"""Processes that run once per cluster: a provider's control-plane parts, a consumer's stack.

Like `edge.py`: each factory turns a `ClusterContext` into a `ProcessSpec`; `SERVICES` lists
them per cluster role, in start order. Ports are chosen once, at `up` (`allocate_ports`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed import bootstrap, credentials
from testbed.edge import DEVICE_NAMESPACE
from testbed.processes import ProcessSpec, free_port
from testbed.topology import CONSUMER, PROVIDER, ClusterSpec, Topology

_REPO = Path(__file__).resolve().parent.parent
RESOURCE_MANAGER_RBAC = _REPO / "deploy" / "resource-manager" / "rbac.yaml"
ROUTER_MANAGER_RBAC = _REPO / "deploy" / "router-manager" / "rbac.yaml"

# Named ports per cluster role; add a name when a cluster process needs one.
CLUSTER_PORTS: dict[str, list[str]] = {PROVIDER: [], CONSUMER: []}


@dataclass(frozen=True)
class ClusterContext:
    """Everything a cluster process factory needs to know about its cluster."""

    cluster: ClusterSpec
    directory: Path
    """The cluster's state folder: <state>/<cluster>."""
    binaries: dict[str, Path]
    ports: dict[str, int]

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def folder(self, what: str) -> Path:
        path = self.directory / "services" / what
        path.mkdir(parents=True, exist_ok=True)
        return path

    def service_account_kubeconfig(self, manifest: Path, account: str) -> Path:
        """A kubeconfig for `account` (namespace fluidos) after applying its RBAC manifest."""
        with bootstrap.api_client(self.kubeconfig) as api:
            credentials.apply_manifest(api, manifest)
        return credentials.service_account_kubeconfig(
            self.kubeconfig,
            bootstrap.FLUIDOS_NAMESPACE,
            account,
            self.directory / "accounts" / f"{account}.kubeconfig",
            hours=24 * 30,
        )

    def process_name(self, what: str) -> str:
        return f"{self.cluster.name}/{what}"


ServiceFactory = Callable[[ClusterContext], ProcessSpec]


def allocate_ports(topology: Topology) -> dict[str, dict[str, int]]:
    """Free loopback ports for every cluster's services, by cluster name, then port name."""
    return {
        cluster.name: {name: free_port() for name in CLUSTER_PORTS[cluster.role]}
        for cluster in topology.clusters
    }


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fluidos_sensors", *args]


def resource_manager(ctx: ClusterContext) -> ProcessSpec:
    """Nodes + Devices -> Sensor Flavors, as its least-privilege ServiceAccount."""
    folder = ctx.folder("resource-manager")
    ready = folder / "ready"
    ready.unlink(missing_ok=True)
    kubeconfig = ctx.service_account_kubeconfig(
        RESOURCE_MANAGER_RBAC, "fluidos-sensors-resource-manager"
    )
    return ProcessSpec(
        name=ctx.process_name("resource-manager"),
        argv=_python_cli(
            "resource-manager",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--node-id",
            ctx.cluster.name,
            "--ip",
            "127.0.0.1",
            "--price-amount",
            "1",
            "--price-currency",
            "EUR",
            "--price-period",
            "hourly",
            "--city",
            "Turin",
            "--country",
            "IT",
            # The Devices the testbed's mappers register; tests and users may run more
            # resource managers for other namespaces without the two fighting.
            "--namespace",
            DEVICE_NAMESPACE,
            "--ready-file",
            str(ready),
        ),
        log=folder / "resource-manager.log",
        ready=ready.exists,
        ready_timeout=60.0,
        cwd=_REPO,
    )


def router_manager(ctx: ClusterContext) -> ProcessSpec:
    """Routes -> KubeEdge Rules, observed latency -> Flavors, as its own ServiceAccount."""
    folder = ctx.folder("router-manager")
    ready = folder / "ready"
    ready.unlink(missing_ok=True)
    kubeconfig = ctx.service_account_kubeconfig(
        ROUTER_MANAGER_RBAC, "fluidos-sensors-router-manager"
    )
    return ProcessSpec(
        name=ctx.process_name("router-manager"),
        argv=_python_cli(
            "router-manager", "run", "--kubeconfig", str(kubeconfig), "--ready-file", str(ready)
        ),
        log=folder / "router-manager.log",
        ready=ready.exists,
        ready_timeout=60.0,
        cwd=_REPO,
    )


SERVICES: dict[str, list[ServiceFactory]] = {
    PROVIDER: [resource_manager, router_manager],
    CONSUMER: [],
}
# Binaries those processes need, resolved by `testbed up` before anything starts.
SERVICE_BINARIES: list[str] = []


def processes_for(
    cluster: ClusterSpec, directory: Path, binaries: dict[str, Path], ports: dict[str, int]
) -> list[ProcessSpec]:
    """The cluster-level processes of `cluster`; `directory` is the cluster's state folder."""
    ctx = ClusterContext(cluster, directory, binaries, dict(ports))
    return [factory(ctx) for factory in SERVICES[cluster.role]]

"""Processes that run on each edge worker of a provider (broker, mapper, agent).

Each entry of `EDGE_PROCESSES` turns an `EdgeNode` into a `ProcessSpec`; adding an edge
process to the testbed is adding one function here. Ports are chosen once, at `up`
(`allocate_ports`, kept in config.json), so a restarted process listens where it did.
"""

from __future__ import annotations

import getpass
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluidos_sensors.api import DEVICE_NAMESPACES
from fluidos_sensors.broker import (
    AGENT_USER,
    BROKER_USERS,
    MAPPER_USER,
    BrokerAccess,
    mosquitto_config,
    write_password_file,
)
from testbed import bootstrap, credentials, paths
from testbed.processes import PortPool, ProcessSpec, port_open
from testbed.topology import ClusterSpec, NodeSpec, Topology

MQTT_PORT = "mqtt"
AGENT_METRICS_PORT = "agent-metrics"
# Named ports every edge node gets; add a name here when an edge process needs one.
EDGE_PORTS: list[str] = [MQTT_PORT, AGENT_METRICS_PORT]
SIMULATED_BOARDS = 4  # STWIN.box, SensorTile, STWIN.box, SensorTile
DEVICE_NAMESPACE = DEVICE_NAMESPACES[0]  # one the resource manager serves
_REPO = Path(__file__).resolve().parent.parent
MAPPER_RBAC = paths.rbac_manifest("mapper")
AGENT_RBAC = paths.rbac_manifest("edge-agent")
# The broker's ACL: the same file the Helm chart mounts.
BROKER_ACL = paths.CHART_DIR / "files" / "mosquitto" / "acl"


@dataclass(frozen=True)
class EdgeNode:
    """Everything an edge process factory needs to know about its node."""

    cluster: ClusterSpec
    node: NodeSpec
    directory: Path
    """The node's state folder: <state>/<cluster>/nodes/<node>."""
    cluster_directory: Path
    binaries: dict[str, Path]
    ports: dict[str, int]

    @property
    def kubeconfig(self) -> Path:
        """The cluster's admin kubeconfig."""
        return self.cluster_directory / "kubeconfig"

    def service_account_kubeconfig(self, manifest: Path, account: str) -> Path:
        """A kubeconfig for `account` (namespace fluidos) after applying its RBAC manifest."""
        with bootstrap.api_client(self.kubeconfig) as api:
            credentials.apply_manifest(api, manifest)
        return credentials.service_account_kubeconfig(
            self.kubeconfig,
            bootstrap.FLUIDOS_NAMESPACE,
            account,
            self.directory / f"{account}.kubeconfig",
            hours=24 * 30,
        )

    def broker_credentials(self, user: str) -> Path:
        """The node broker's address and `user`'s credentials (JSON, 0600)."""
        return broker_credentials(self.directory, user)

    def process_name(self, what: str) -> str:
        return f"{self.cluster.name}/{self.node.name}/{what}"


EdgeProcessFactory = Callable[[EdgeNode], ProcessSpec]


def broker_credentials(node_directory: Path, user: str) -> Path:
    """Where the credentials of one broker user (`MAPPER_USER`, `AGENT_USER`) of an edge node
    live; each process is given only its own."""
    return node_directory / "mqtt" / f"{user}.json"


def allocate_ports(topology: Topology, ports: PortPool) -> dict[str, dict[str, int]]:
    """Free loopback ports for every edge node, by node name, then port name."""
    return {
        node.name: {name: ports.take() for name in EDGE_PORTS}
        for cluster in topology.clusters
        for node in cluster.nodes
        if node.is_edge
    }


def mosquitto(edge: EdgeNode) -> ProcessSpec:
    """The node's MQTT broker: loopback only, a password per user, the ACL of `BROKER_ACL`,
    persistent sessions."""
    port = edge.ports[MQTT_PORT]
    folder = edge.directory / "mosquitto"
    folder.mkdir(parents=True, exist_ok=True)
    # The one user every client shared before roles: its password must not open anything.
    (edge.directory / "mqtt" / "credentials.json").unlink(missing_ok=True)
    accesses = []
    for user in BROKER_USERS:
        credentials = edge.broker_credentials(user)
        if credentials.exists():
            access = BrokerAccess.load(credentials)
        else:
            access = BrokerAccess.generate("127.0.0.1", port, user)
            access.save(credentials)
        accesses.append(access)
    password_file = folder / "passwords"
    write_password_file(password_file, *accesses)
    config = folder / "mosquitto.conf"
    data = folder / "data"
    data.mkdir(exist_ok=True)
    config.write_text(
        mosquitto_config(
            port,
            password_file,
            run_as=getpass.getuser(),
            persistence_dir=data,
            acl_file=BROKER_ACL,
        )
    )
    return ProcessSpec(
        name=edge.process_name("mosquitto"),
        argv=[str(edge.binaries["mosquitto"]), "-c", str(config)],
        log=folder / "mosquitto.log",
        ready=lambda: port_open(port),
        ready_timeout=20.0,
        ports=[port],
    )


def mapper(edge: EdgeNode) -> ProcessSpec:
    """The node's mapper with simulated boards, whose Devices it registers."""
    folder = edge.directory / "mapper"
    folder.mkdir(parents=True, exist_ok=True)
    status = folder / "status.json"
    status.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "fluidos_sensors_cli",
        "mapper",
        "run",
        "--node",
        edge.node.name,
        "--kubeconfig",
        # Its own ServiceAccount with the shipped least-privilege RBAC, not the admin.
        str(edge.service_account_kubeconfig(MAPPER_RBAC, "fluidos-sensors-mapper")),
        "--namespace",
        DEVICE_NAMESPACE,
        "--simulate",
        str(SIMULATED_BOARDS),
        "--mqtt-credentials",
        str(edge.broker_credentials(MAPPER_USER)),
        # QoS 1 end to end: the broker keeps readings for the agent while it is away.
        "--qos",
        "1",
        "--provider",
        edge.cluster.name,
        "--status-file",
        str(status),
    ]
    return ProcessSpec(
        name=edge.process_name("mapper"),
        argv=argv,
        log=folder / "mapper.log",
        # Written once its Devices are registered and it has looked at them: cannot hang,
        # the mapper retries the API on its own and the supervisor's timeout bounds the wait.
        ready=status.exists,
        ready_timeout=60.0,
        cwd=_REPO,
    )


def agent_metrics_token(node_directory: Path) -> Path:
    """The bearer token file of a node agent's metrics endpoint (0600)."""
    return node_directory / "agent" / "metrics-token"


def agent(edge: EdgeNode) -> ProcessSpec:
    """The node's edge router agent: executes the node's SensorRoutes."""
    folder = edge.directory / "agent"
    folder.mkdir(parents=True, exist_ok=True)
    status = folder / "status.json"
    status.unlink(missing_ok=True)
    token = agent_metrics_token(edge.directory)
    if not token.exists():
        credentials.write_secret_file(token, secrets.token_urlsafe(24))
    argv = [
        sys.executable,
        "-m",
        "fluidos_sensors_cli",
        "router-manager",
        "agent",
        "--node",
        edge.node.name,
        "--kubeconfig",
        str(edge.service_account_kubeconfig(AGENT_RBAC, "fluidos-sensors-edge-agent")),
        "--mqtt-credentials",
        str(edge.broker_credentials(AGENT_USER)),
        "--state-dir",
        str(folder / "queue"),
        "--status-file",
        str(status),
        "--metrics-listen",
        f"127.0.0.1:{edge.ports[AGENT_METRICS_PORT]}",
        "--metrics-token-file",
        str(token),
        # The node's outer bound: every consumer of the testbed listens on loopback (a sold
        # target is further held to its buyer's delivery policy, recorded on the route).
        "--allow-host",
        "127.0.0.0/8",
    ]
    return ProcessSpec(
        name=edge.process_name("agent"),
        argv=argv,
        log=folder / "agent.log",
        ready=status.exists,  # written once it has seen the node's routes
        ready_timeout=60.0,
        cwd=_REPO,
        ports=[edge.ports[AGENT_METRICS_PORT]],
    )


EDGE_PROCESSES: list[EdgeProcessFactory] = [mosquitto, mapper, agent]
# Binaries those processes need, resolved by `testbed up` before anything starts.
EDGE_BINARIES: list[str] = ["mosquitto"]


def processes_for(
    cluster: ClusterSpec,
    node: NodeSpec,
    directory: Path,
    binaries: dict[str, Path],
    ports: dict[str, int] | None = None,
) -> list[ProcessSpec]:
    """The edge processes of `node` (none for other nodes); `directory` is the cluster's."""
    if not node.is_edge:
        return []
    edge = EdgeNode(
        cluster=cluster,
        node=node,
        directory=directory / "nodes" / node.name,
        cluster_directory=directory,
        binaries=binaries,
        ports=dict(ports or {}),
    )
    return [factory(edge) for factory in EDGE_PROCESSES]

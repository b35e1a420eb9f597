"""Which clusters and nodes a testbed has. Plain data: the supervisor turns it into processes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fluidos_sensors.api import EDGE_WORKER_LABEL, RESOURCE_WORKER_LABEL, ROLE_LABEL_VALUE

PROVIDER = "provider"
CONSUMER = "consumer"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def is_edge(self) -> bool:
        return self.labels.get(EDGE_WORKER_LABEL) == ROLE_LABEL_VALUE


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    role: str
    nodes: tuple[NodeSpec, ...]


@dataclass(frozen=True)
class Topology:
    clusters: tuple[ClusterSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Topology:
        return cls(
            tuple(
                ClusterSpec(c["name"], c["role"], tuple(NodeSpec(**n) for n in c["nodes"]))
                for c in data["clusters"]
            )
        )


def _node(cluster: str, suffix: str, role_label: str) -> NodeSpec:
    return NodeSpec(
        f"{cluster}-{suffix}",
        {
            role_label: ROLE_LABEL_VALUE,
            "kubernetes.io/hostname": f"{cluster}-{suffix}",
            "kubernetes.io/os": "linux",
        },
    )


def default_topology(providers: int = 1, consumers: int = 2, edge_workers: int = 1) -> Topology:
    """Providers with one ordinary and `edge_workers` edge workers; consumers with one worker."""
    if providers < 1 or consumers < 0 or edge_workers < 1:
        raise ValueError("need at least one provider with one edge worker; consumers >= 0")
    clusters = []
    for i in range(1, providers + 1):
        name = f"provider-{i}"
        nodes = [_node(name, "worker", RESOURCE_WORKER_LABEL)]
        nodes += [
            _node(name, "edge" if edge_workers == 1 else f"edge-{j}", EDGE_WORKER_LABEL)
            for j in range(1, edge_workers + 1)
        ]
        clusters.append(ClusterSpec(name, PROVIDER, tuple(nodes)))
    for i in range(1, consumers + 1):
        name = f"consumer-{i}"
        clusters.append(
            ClusterSpec(name, CONSUMER, (_node(name, "worker", RESOURCE_WORKER_LABEL),))
        )
    return Topology(tuple(clusters))

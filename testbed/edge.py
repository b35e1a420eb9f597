"""Processes that run on each edge worker of a provider (broker, mapper, agent).

Each entry of `EDGE_PROCESSES` turns (cluster, node, folder, binaries) into a `ProcessSpec`;
adding an edge process to the testbed is adding one function here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from testbed.processes import ProcessSpec
from testbed.topology import ClusterSpec, NodeSpec

EdgeProcessFactory = Callable[[ClusterSpec, NodeSpec, Path, dict[str, Path]], ProcessSpec]

EDGE_PROCESSES: list[EdgeProcessFactory] = []
# Binaries those processes need, resolved by `testbed up` before anything starts.
EDGE_BINARIES: list[str] = []


def processes_for(
    cluster: ClusterSpec, node: NodeSpec, directory: Path, binaries: dict[str, Path]
) -> list[ProcessSpec]:
    if not node.is_edge:
        return []
    node_dir = directory / "nodes" / node.name
    return [factory(cluster, node, node_dir, binaries) for factory in EDGE_PROCESSES]

"""The testbed's ports: every process of one testbed gets a port of its own."""

from __future__ import annotations

import itertools

from testbed import edge, services
from testbed.controlplane import ClusterEndpoints
from testbed.processes import PortPool
from testbed.topology import default_topology


def test_a_pool_never_hands_out_a_port_twice() -> None:
    probe = iter([50633, 50633, 41000, 50633, 41000, 42000])
    pool = PortPool(lambda: next(probe))
    assert [pool.take(), pool.take(), pool.take()] == [50633, 41000, 42000]


def test_every_port_of_a_testbed_differs_even_when_the_os_repeats_itself() -> None:
    """bind(0) may give the same free port again until something listens on it: here it
    cycles through fewer ports than the testbed needs twice over."""
    probe = itertools.cycle(range(40000, 40040))
    pool = PortPool(lambda: next(probe))
    topology = default_topology()
    taken = [
        port
        for cluster in topology.clusters
        for port in ClusterEndpoints.allocate(pool).__dict__.values()
    ]
    for ports in (edge.allocate_ports(topology, pool), services.allocate_ports(topology, pool)):
        taken += [port for names in ports.values() for port in names.values()]
    assert len(taken) == len(set(taken)) > 10

"""Session fixtures: one real testbed for the whole run.

The suite always starts its own testbed, in a temporary state folder on free ports, and stops
it at the end. A testbed the user runs (scripts/setup.sh, with its demo's requests, contracts
and route targets) is never reused, changed or stopped: the suite's objects would collide with
the demo's, and the demo would lose what the tests delete. Nothing here skips: if a binary
cannot be had, the fixture fails with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from testbed import bootstrap, manager
from testbed.state import ClusterAccess, TestbedState
from testbed.topology import default_topology


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestbedState]:
    state_dir = tmp_path_factory.mktemp("testbed")
    # Processes the tests start (operators, mappers) find this testbed through the variable.
    previous = os.environ.get("FLUIDOS_SENSORS_STATE")
    os.environ["FLUIDOS_SENSORS_STATE"] = str(state_dir)
    state, _ = manager.up(
        default_topology(providers=1, consumers=2),
        state_dir,
        log=lambda m: print(m),
        owner_pid=os.getpid(),  # a crashed run (a segfault, a kill) leaves nothing running
    )
    try:
        yield state
    finally:
        manager.down(state_dir, log=lambda _m: None)
        if previous is None:
            os.environ.pop("FLUIDOS_SENSORS_STATE", None)
        else:
            os.environ["FLUIDOS_SENSORS_STATE"] = previous


def _cluster(state: TestbedState, role: str) -> ClusterAccess:
    return next(c for c in state.clusters.values() if c.role == role)


@pytest.fixture(scope="session")
def provider(testbed: TestbedState) -> ClusterAccess:
    return _cluster(testbed, "provider")


@pytest.fixture(scope="session")
def consumer(testbed: TestbedState) -> ClusterAccess:
    return _cluster(testbed, "consumer")


def _api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = bootstrap.api_client(kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def provider_api(provider: ClusterAccess) -> Iterator[client.ApiClient]:
    yield from _api(provider.kubeconfig)


@pytest.fixture(scope="session")
def consumer_api(consumer: ClusterAccess) -> Iterator[client.ApiClient]:
    yield from _api(consumer.kubeconfig)


@pytest.fixture
def namespace(provider_api: client.ApiClient, request: pytest.FixtureRequest) -> str:
    """A fresh namespace on the provider per test (the testbed has no namespace controller to
    finish deleting it, so it is left behind; names are unique)."""
    import uuid

    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:6]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    # kubernetes takes a dict body too; its annotation names only the model
    client.CoreV1Api(provider_api).create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    return name


@pytest.fixture(scope="session")
def consumers(testbed: TestbedState) -> list[ClusterAccess]:
    """Every consumer cluster, in name order (the testbed has two)."""
    return sorted(
        (c for c in testbed.clusters.values() if c.role == "consumer"), key=lambda c: c.name
    )

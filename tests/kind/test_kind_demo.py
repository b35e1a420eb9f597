"""The demo on the KIND testbed, for real: kind clusters (provider-1 with an edge worker,
consumer-1, consumer-2) on the testbed's own Docker engine, every part a pod installed with the
chart from the images scripts/build-images.sh builds. The seed's scenarios are bought through
the provider's gateway NodePort; readings reach both consumers' InfluxDB; the edge agent's pod,
deleted, comes back and nothing of the streams is lost.

The test's engine has a bridge and addresses of its own, so a KIND demo the user runs is left
alone. Cold (no node image, no project images) it builds them first; see README, KIND mode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import binaries, demo
from testbed.kind import testbed as kind_testbed
from testbed.kind.docker import Engine
from testbed.services import ConsumerStack
from testbed.state import TestbedState

# Setup (clusters, images, chart) takes 5-10 minutes warm and teardown 1-2: the item's
# timeout covers its fixture's setup and teardown too.
pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EDGE_AGENT = "app.kubernetes.io/component=edge-agent"


@pytest.fixture(scope="module")
def kind_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestbedState]:
    state_dir = tmp_path_factory.mktemp("kind-testbed")
    engine = dataclasses.replace(
        Engine.default(state_dir),
        bridge=f"fskd{os.getpid() % 100000}",
        bridge_address="10.217.250.1/24",
        address_pool="10.218.0.0/16",
    )
    try:
        yield kind_testbed.up(1, 2, state_dir, engine=engine)
    finally:
        kind_testbed.down(state_dir, engine=engine)
        assert not engine.processes(), "the engine left processes behind"
        assert not Path(f"/sys/class/net/{engine.bridge}").exists()


def _kubectl(state: TestbedState, cluster: str, *args: str) -> str:
    kubectl = str(binaries.resolve(binaries.KUBECTL))
    access = state.clusters[cluster]
    return subprocess.run(
        [kubectl, "--kubeconfig", str(access.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout


def _agent_pod(state: TestbedState) -> str:
    listed = json.loads(
        _kubectl(
            state, "provider-1", "-n", "fluidos", "get", "pods", "-l", EDGE_AGENT, "-o", "json"
        )
    )
    running = [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in running]
    return str(running[0]["metadata"]["name"])


def test_the_demo_runs_on_kind_and_survives_a_killed_agent(kind_state: TestbedState) -> None:
    state = kind_state
    assert set(state.clusters) == {"provider-1", "consumer-1", "consumer-2"}
    assert kind_testbed.unhealthy_pods(state) == []
    # The parts run as pods from the chart, on the nodes their roles name.
    provider_pods = _kubectl(state, "provider-1", "get", "pods", "-n", "fluidos", "-o", "wide")
    for part in ("resource-manager", "rear-gateway", "router-manager", "mapper", "edge-agent"):
        assert f"fluidos-sensors-{part}" in provider_pods, (part, provider_pods)
    edge_lines = [line for line in provider_pods.splitlines() if "edge-agent" in line]
    assert all("provider-1-worker2" in line for line in edge_lines), edge_lines

    demo.ask(state)
    assert demo.wait_fulfilled(state), "every demo request fulfilled, with a first reading"
    time.sleep(demo.COUNT_WINDOW_SECONDS)
    assert demo.check(state), "every sensor bought reached its consumer's InfluxDB lately"

    # The agent's pod (with its node's broker) goes away and comes back: the mapper holds its
    # readings while the broker is away, the broker saved what it held for the agent, and the
    # agent's queue is on the node. Nothing of a bought stream is lost.
    contract = demo._status(state.clusters["consumer-1"], "s1-temperature")["contracts"][0]
    device, sensor = str(contract["device"]), str(contract["sensor"])
    stack = ConsumerStack.load(state.directory / "consumer-1")
    began = time.time()
    time.sleep(5)
    old = _agent_pod(state)
    _kubectl(state, "provider-1", "-n", "fluidos", "delete", "pod", old, "--wait=true")
    _kubectl(
        state,
        "provider-1",
        "-n",
        "fluidos",
        "rollout",
        "status",
        "daemonset/fluidos-sensors-edge-agent",
        "--timeout=240s",
    )
    assert _agent_pod(state) != old
    restarted = time.time()
    time.sleep(30)
    seqs = sorted(stack.seq_times(device, sensor, since=began))
    assert seqs, (device, sensor, "no readings since the test began")
    times = stack.seq_times(device, sensor, since=began)
    assert max(times.values()) > restarted + 10, "readings arrive after the restart"
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    assert not missing, (device, sensor, len(missing), missing[:20])
    assert demo.check(state)

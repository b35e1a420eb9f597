"""Readings into real consumers: each consumer cluster runs a real Telegraf (HTTP listener,
line protocol, basic auth) writing to a real InfluxDB 1.8; we read back with influxdb-client.

These are the data-path scenarios of the seed: multicast to two consumers, a consumer down
for a minute while sensors stream at >= 200 readings/s, the agent killed during that outage,
and the edge broker restarted. Loss is judged by the mapper's per-sensor sequence numbers:
what arrives must be every number from the first delivered one to the last published one,
each once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from kubernetes import client
from routing import (
    EDGE,
    Endpoint,
    agent_status,
    cli,
    eventually,
    flavor_topic,
    route_of,
    target_status,
    wait_for_flavor,
)

from fluidos_sensors import api as fs_api
from fluidos_sensors.flavor import sensor_from_flavor
from mapper.broker import BrokerAccess
from router_manager.route import RouteTarget, TargetAuth, route_body, route_name
from testbed import edge
from testbed.services import ConsumerStack
from testbed.state import ClusterAccess, TestbedState

pytestmark = pytest.mark.integration


def stack_of(testbed: TestbedState, consumer: ClusterAccess) -> ConsumerStack:
    return ConsumerStack.load(testbed.directory / consumer.name)


def influx_seqs(stack: ConsumerStack, device: str, sensor: str) -> list[int]:
    """The seq field of every point of one sensor in the consumer's InfluxDB."""
    flux = (
        f'from(bucket: "{stack.bucket}") |> range(start: -1d)'
        f' |> filter(fn: (r) => r._field == "seq" and r.device == "{device}"'
        f' and r.sensor == "{sensor}")'
    )
    with InfluxDBClient(url=stack.influx_url, token=stack.influx_token, org="-") as influx:
        tables = influx.query_api().query(flux)
    return sorted(int(record.get_value()) for table in tables for record in table.records)


def contiguous(seqs: list[int]) -> bool:
    return bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def delivery_secret(api: client.ApiClient, name: str, stack: ConsumerStack) -> str:
    """The consumer's Telegraf credentials as a delivery Secret in the route namespace."""
    body = {
        "metadata": {"name": name, "namespace": fs_api.ROUTE_NAMESPACE},
        "stringData": {"username": stack.telegraf_username, "password": stack.telegraf_password},
    }
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_secret(fs_api.ROUTE_NAMESPACE, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    return name


def run_testbed_cli(testbed: TestbedState, *args: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluidos_sensors",
            "testbed",
            *args,
            "--state-dir",
            str(testbed.directory),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@contextmanager
def stopped(testbed: TestbedState, process: str) -> Iterator[None]:
    """Hold a testbed process down (the supervisor does not restart it) for the block."""
    run_testbed_cli(testbed, "stop", process)
    try:
        yield
    finally:
        run_testbed_cli(testbed, "start", process)


def drained(api: client.ApiClient, routes: list[str]) -> bool:
    for name in routes:
        status = (route_of(api, name) or {}).get("status") or {}
        if not status.get("targets") or any(t.get("queued", 1) for t in status["targets"]):
            return False
    return True


def test_multicast_to_two_consumers(
    provider: ClusterAccess,
    provider_api: client.ApiClient,
    consumers: list[ClusterAccess],
    testbed: TestbedState,
) -> None:
    """Consumers 1 and 2 both receive subset S1, consumer 2 also S3; one subscription each."""
    s1 = [
        wait_for_flavor(provider_api, "stwin-box", "temperature"),
        wait_for_flavor(provider_api, "stwin-box", "acceleration"),
    ]
    s3 = [wait_for_flavor(provider_api, "sensortile", "humidity")]
    stacks = [stack_of(testbed, c) for c in consumers]
    secrets = [
        delivery_secret(provider_api, f"telegraf-{c.name}", s)
        for c, s in zip(consumers, stacks, strict=True)
    ]
    plan = [(f, 0) for f in s1] + [(f, 1) for f in s1 + s3]
    for flavor, who in plan:
        cli(
            "routes",
            "add",
            "--flavor",
            flavor["metadata"]["name"],
            "--target",
            stacks[who].telegraf_url,
            "--auth-type",
            "basic",
            "--auth-secret",
            secrets[who],
            "--batch-delay-ms",
            "200",
            kubeconfig=provider.kubeconfig,
        )
    routes = [route_name(EDGE, flavor_topic(f)) for f in s1 + s3]
    try:
        # One subscription per topic whatever the number of consumers.
        status = eventually(
            lambda: (
                (s := agent_status(testbed, provider))
                and all(flavor_topic(f) in s["topics"] for f in s1 + s3)
                and s
            ),
            "the agent subscribed",
        )
        assert len(status["topics"]) == len(set(status["topics"]))
        for flavor in s1:
            obj = route_of(provider_api, route_name(EDGE, flavor_topic(flavor)))
            assert obj is not None and len(obj["spec"]["targets"]) == 2

        # Data arrives in both InfluxDBs (temperature is 1 Hz: give it some seconds).
        def key(flavor: dict[str, Any]) -> tuple[str, str]:
            view = sensor_from_flavor(flavor)
            return view.device.split("/", 1)[1], view.sensor.key  # type: ignore[union-attr]

        eventually(
            lambda: all(len(influx_seqs(stacks[w], *key(f))) >= 5 for f, w in plan),
            "five readings of each sensor at each consumer",
            timeout=90,
        )
    finally:
        for flavor, who in plan:
            cli(
                "routes",
                "remove",
                "--flavor",
                flavor["metadata"]["name"],
                "--target",
                stacks[who].telegraf_url,
                kubeconfig=provider.kubeconfig,
                check=False,
            )
    eventually(lambda: all(route_of(provider_api, r) is None for r in routes), "routes removed")
    time.sleep(3)  # Telegraf flushes every second
    for flavor, who in plan:
        seqs = influx_seqs(stacks[who], *key(flavor))
        assert contiguous(seqs), (key(flavor), who, seqs[:10])
    # Consumer 1 never got S3.
    assert influx_seqs(stacks[0], *key(s3[0])) == []
    for stack in stacks:  # the credentials travelled in a Secret, not in the URL
        assert "@" not in stack.telegraf_url


LOAD_DEVICES_PREFIX = "bluest-"


class LoadMapper:
    """A second mapper on the edge node's broker, boards simulated at their fastest rates and
    not registered as Devices: about 400 readings/s on topics of unbound boards."""

    def __init__(self, credentials: Path, log: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fluidos_sensors",
                "mapper",
                "run",
                # Its own name: a mapper's MQTT client id is per node, and the testbed's
                # mapper of the edge node is connected already.
                "--node",
                f"{EDGE}-load",
                "--no-kubernetes",
                "--simulate",
                "3",
                "--inertial-hz",
                "30",
                "--environmental-hz",
                "20",
                "--qos",
                "1",
                "--mqtt-credentials",
                str(credentials),
                "--status-file",
                str(log.with_suffix(".json")),
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.status = log.with_suffix(".json")

    def published(self) -> dict[str, Any]:
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Recorder:
    """Every reading the broker carries on the load topics, by (device, sensor) -> seqs."""

    def __init__(self, access: BrokerAccess, log: Path) -> None:
        self.log = log
        # A persistent session: across a broker restart it misses nothing either.
        script = (
            "import asyncio, json, aiomqtt\n"
            "async def main():\n"
            "  while True:\n"
            "    try:\n"
            f"      async with aiomqtt.Client({access.host!r}, {access.port}, "
            f"username={access.username!r}, password={access.password!r}, "
            "identifier='test-recorder', clean_session=False) as c:\n"
            "        await c.subscribe('default/fluidos-sensors/+/+', qos=1)\n"
            "        print('ready', flush=True)\n"
            "        async for m in c.messages:\n"
            "          r = json.loads(m.payload)\n"
            "          if r['device'].startswith('bluest-'):\n"
            "            print(r['device'], r['sensor'], r['seq'], flush=True)\n"
            "    except aiomqtt.MqttError:\n"
            "      await asyncio.sleep(0.2)\n"
            "asyncio.run(main())\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script], stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        eventually(lambda: "ready" in log.read_text(), "the recorder subscribed")

    def seen(self) -> dict[tuple[str, str], list[int]]:
        found: dict[tuple[str, str], list[int]] = {}
        for line in self.log.read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                found.setdefault((parts[0], parts[1]), []).append(int(parts[2]))
        return found

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_outage_agent_crash_and_broker_restart_lose_nothing(
    provider: ClusterAccess,
    provider_api: client.ApiClient,
    consumers: list[ClusterAccess],
    testbed: TestbedState,
    tmp_path: Path,
) -> None:
    node_dir = testbed.directory / provider.name / "nodes" / EDGE
    credentials = edge.broker_credentials(node_dir)
    stack = stack_of(testbed, consumers[0])
    secret = delivery_secret(provider_api, f"telegraf-{consumers[0].name}", stack)
    recorder = Recorder(BrokerAccess.load(credentials), tmp_path / "recorder.log")
    load = LoadMapper(credentials, tmp_path / "load-mapper.log")
    custom = client.CustomObjectsApi(provider_api)
    routes: list[str] = []
    try:
        seen = eventually(
            lambda: (s := recorder.seen()) and len(s) >= 8 and s,
            "the load mapper publishing on its sensors' topics",
        )
        rate_start = sum(len(v) for v in seen.values()), time.monotonic()
        watcher = Endpoint()  # a second target, to see the order of arrival
        watcher.__enter__()
        for device, sensor in sorted(seen):
            topic = f"default/fluidos-sensors/{device}/{sensor}"
            body = route_body(
                EDGE,
                topic,
                [
                    RouteTarget(
                        id="telegraf",
                        url=stack.telegraf_url,
                        batch_delay_ms=200,
                        auth=TargetAuth("basic", secret),
                    ),
                    RouteTarget(id="watcher", url=watcher.url, batch_delay_ms=200),
                ],
            )
            custom.create_namespaced_custom_object(
                fs_api.SENSOR_ROUTE.group,
                fs_api.SENSOR_ROUTE.version,
                fs_api.ROUTE_NAMESPACE,
                fs_api.SENSOR_ROUTE.plural,
                body,
            )
            routes.append(body["metadata"]["name"])
        eventually(
            lambda: all(
                target_status(provider_api, r, "telegraf").get("delivered", 0) > 0 for r in routes
            ),
            "deliveries to Telegraf",
            timeout=60,
        )
        counted, started = rate_start
        rate = (sum(len(v) for v in recorder.seen().values()) - counted) / (
            time.monotonic() - started
        )
        assert rate >= 200, f"the load streams at {rate:.0f} readings/s"

        with stopped(testbed, "consumer-1/telegraf"):
            watcher.status = 503
            time.sleep(20)
            agent_pid = running_pid(testbed, f"{provider.name}/{EDGE}/agent")
            os.kill(agent_pid, signal.SIGKILL)  # crash in the middle of the outage
            eventually(
                lambda: (
                    running_pid(testbed, f"{provider.name}/{EDGE}/agent") not in (None, agent_pid)
                ),
                "the agent restarted",
                timeout=60,
            )
            time.sleep(40)
            queued = sum(
                target_status(provider_api, r, "telegraf").get("queued", 0) for r in routes
            )
            assert queued > 5000, queued  # a minute of readings waited at the edge
            watcher.status = 204

        # The broker restarts too (gracefully: it saves what it holds).
        with stopped(testbed, f"{EDGE}/mosquitto"):
            time.sleep(3)
        time.sleep(10)
        load.stop()
        final = recorder.seen()
        eventually(lambda: drained(provider_api, routes), "every queue drained", timeout=180)
        time.sleep(3)  # Telegraf flushes every second
        for device, sensor in sorted(final):
            seqs = influx_seqs(stack, device, sensor)
            published = sorted(set(final[(device, sensor)]))
            assert contiguous(seqs), (device, sensor, seqs[:5])
            # Everything from the first delivered reading to the last published one, once.
            assert seqs[-1] >= published[-1], (device, sensor, seqs[-1], published[-1])
            arrived = watcher.seqs(device, sensor)
            assert arrived == sorted(arrived), (device, sensor)  # in order, even after retries
        dropped = sum(target_status(provider_api, r, "telegraf").get("dropped", 0) for r in routes)
        assert dropped == 0
        watcher.__exit__()
    finally:
        if load.proc.poll() is None:
            load.stop()
        recorder.stop()
        for name in routes:
            custom.delete_namespaced_custom_object(
                fs_api.SENSOR_ROUTE.group,
                fs_api.SENSOR_ROUTE.version,
                fs_api.ROUTE_NAMESPACE,
                fs_api.SENSOR_ROUTE.plural,
                name,
            )


def running_pid(testbed: TestbedState, process: str) -> int | None:
    current = TestbedState.read(testbed.directory)
    proc = (current.status.get("processes", {}) if current else {}).get(process) or {}
    return proc.get("pid") if proc.get("alive") else None

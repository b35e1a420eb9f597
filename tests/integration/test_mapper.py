"""The mapper against a real mosquitto and a real API server, boards simulated behind bleak."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import re
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest
from kubernetes import client

from fluidos_sensors import api as fs_api
from fluidos_sensors.backoff import Backoff
from fluidos_sensors.broker import (
    AGENT_USER,
    MAPPER_USER,
    BrokerAccess,
    mosquitto_config,
    write_password_file,
)
from fluidos_sensors.kube import get_or_none
from fluidos_sensors.reading import Reading
from fluidos_sensors.sensor import parse_sensors_annotation
from fluidos_sensors.topics import broker_topic
from fluidos_sensors.twins import EXTENSIONS_KEY, reported_twin
from mapper.ble import BleBackends, LinkSettings
from mapper.dataplane.publisher import MqttPublisher, settle_disconnect
from mapper.dataplane.twins import DeviceKey, TwinReporter
from mapper.kube import DeviceApi, DeviceStatusStore
from mapper.service import Mapper, MapperSettings, unbound_device_name
from mapper.simulated import SIMULATED_LABEL, simulated_boards, simulated_devices
from mapper.simulator import SimulatedRadio, client_backend, scanner_backend
from testbed import edge
from testbed.pki import ClusterPKI
from testbed.processes import ManagedProcess, ProcessSpec, free_port, port_open
from testbed.state import ClusterAccess, TestbedState
from testbed.topology import ClusterSpec, NodeSpec

pytestmark = pytest.mark.integration

EDGE = "provider-1-edge"


# ----------------------------------------------------------------------------------------
# helpers


def edge_access(
    testbed: TestbedState, provider: ClusterAccess, user: str = AGENT_USER
) -> BrokerAccess:
    """A broker user's access: the agent's reads readings, the mapper's publishes them."""
    return BrokerAccess.load(
        edge.broker_credentials(testbed.directory / provider.name / "nodes" / EDGE, user)
    )


class Subscriber:
    """Collects decoded readings from one topic filter, reconnecting when the broker goes."""

    def __init__(self, access: BrokerAccess, topic_filter: str) -> None:
        self.access = access
        self.filter = topic_filter
        self.readings: list[tuple[str, Reading, float]] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            mqtt = aiomqtt.Client(
                self.access.host,
                self.access.port,
                username=self.access.username,
                password=self.access.password,
            )
            try:
                async with mqtt:
                    await mqtt.subscribe(self.filter)
                    self.connected.set()
                    async for message in mqtt.messages:
                        reading = Reading.decode(message.payload)
                        self.readings.append((str(message.topic), reading, time.monotonic()))
            except aiomqtt.MqttError:
                settle_disconnect(mqtt)
                self.connected.clear()
                await asyncio.sleep(0.05)

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self.connected.wait()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    def of(self, device: str, sensor: str) -> list[Reading]:
        return [r for _, r, _ in self.readings if r.device == device and r.sensor == sensor]


async def until(condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.1)


def fast_links() -> LinkSettings:
    return LinkSettings(scan_timeout=2.0, stable_after=2.0, backoff=lambda: Backoff(0.1, 1.0))


def radio_with(boards: list[tuple[str, Any]]) -> tuple[SimulatedRadio, BleBackends]:
    radio = SimulatedRadio(advertising_interval=0.02, connect_delay=0.005)
    for _, board in boards:
        radio.add_board(board)
    return radio, BleBackends(scanner_backend(radio), client_backend(radio))


@pytest.fixture
async def run_mapper() -> AsyncIterator[Callable[[Mapper], None]]:
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(mapper: Mapper) -> None:
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(mapper.run(stop))))

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 20)


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def get_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    r = fs_api.DEVICE_STATUS
    return cast(
        dict[str, Any] | None,
        get_or_none(
            custom(api).get_namespaced_custom_object, r.group, r.version, namespace, r.plural, name
        ),
    )


# ----------------------------------------------------------------------------------------
# the testbed's own edge processes


async def test_edge_broker_is_loopback_only_and_each_role_has_its_own_password(
    testbed: TestbedState, provider: ClusterAccess
) -> None:
    node_dir = testbed.directory / provider.name / "nodes" / EDGE
    accesses = {}
    for user in (MAPPER_USER, AGENT_USER):
        credentials = edge.broker_credentials(node_dir, user)
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        accesses[user] = access = BrokerAccess.load(credentials)
        assert access.username == user
        assert access.port == testbed.config["edge"][EDGE]["mqtt"]
        async with aiomqtt.Client(
            access.host, access.port, username=access.username, password=access.password
        ):
            pass
    mapper, agent = accesses[MAPPER_USER], accesses[AGENT_USER]
    assert mapper.password != agent.password
    # Listening on 127.0.0.1 only: /proc/net/tcp shows the socket bound to 0100007F.
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and line.split()[1].endswith(f":{mapper.port:04X}")
    ]
    assert listening == [f"0100007F:{mapper.port:04X}"]
    # No anonymous client, no wrong password, no password of another user.
    for username, password in (
        (MAPPER_USER, "wrong"),
        (MAPPER_USER, agent.password),
        ("fluidos-sensors", mapper.password),
        (None, None),
    ):
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                mapper.host, mapper.port, username=username, password=password
            ):
                pass
    # Each process is given its own role's credentials only.
    state = TestbedState.read(testbed.directory)
    assert state is not None
    for process, own, other in (
        ("mapper", MAPPER_USER, AGENT_USER),
        ("agent", AGENT_USER, MAPPER_USER),
    ):
        pid = state.status["processes"][f"{provider.name}/{EDGE}/{process}"]["pid"]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert str(edge.broker_credentials(node_dir, own)).encode() in argv
        assert not [arg for arg in argv if f"{other}.json".encode() in arg]
    for access in (mapper, agent):
        assert access.password
        assert access.password not in (node_dir / "mapper" / "mapper.log").read_text()
        assert access.password not in (node_dir / "agent" / "agent.log").read_text()


FORGED_TOPIC = "default/fluidos-sensors/acl-test-device/temperature"


async def test_with_the_agents_password_nothing_can_be_published(
    testbed: TestbedState, provider: ClusterAccess
) -> None:
    agent, mapper = edge_access(testbed, provider), edge_access(testbed, provider, MAPPER_USER)

    def client(access: BrokerAccess, name: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            access.host,
            access.port,
            username=access.username,
            password=access.password,
            identifier=f"test-acl-{name}",
        )

    async with client(agent, "reader") as reader:
        await reader.subscribe(FORGED_TOPIC, qos=1)
        async with client(agent, "forger") as forger:
            # Acknowledged (MQTT 3.1.1 has no way to say no), and dropped by the broker.
            await forger.publish(FORGED_TOPIC, b"forged with the agent's password", qos=1)
        async with client(mapper, "mapper") as publisher:
            await publisher.publish(FORGED_TOPIC, b"published by the mapper", qos=1)
        # The broker routed the first publication before it acknowledged it, so a delivered
        # one would reach the reader before the mapper's.
        received = []
        async with asyncio.timeout(30):
            async for message in reader.messages:
                received.append(message.payload)
                if message.payload == b"published by the mapper":
                    break
    assert received == [b"published by the mapper"]


async def test_with_the_mappers_password_nothing_can_be_read(
    testbed: TestbedState, provider: ClusterAccess
) -> None:
    agent, mapper = edge_access(testbed, provider), edge_access(testbed, provider, MAPPER_USER)

    def client(access: BrokerAccess, name: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            access.host,
            access.port,
            username=access.username,
            password=access.password,
            identifier=f"test-acl-{name}",
        )

    async with client(mapper, "spy") as spy, client(agent, "reader") as reader:
        # mosquitto accepts the subscriptions (an ACL file never refuses one) and delivers
        # nothing on them: not the testbed mapper's readings, not this test's.
        await spy.subscribe("default/fluidos-sensors/#", qos=1)
        await spy.subscribe("#", qos=1)
        await reader.subscribe(FORGED_TOPIC, qos=1)
        async with client(mapper, "mapper") as publisher:
            await publisher.publish(FORGED_TOPIC, b"published by the mapper", qos=1)
        async with asyncio.timeout(30):
            async for message in reader.messages:
                if message.payload == b"published by the mapper":
                    break
        # A round trip on the spy's own connection after the publication was routed: whatever
        # the broker had sent it would have arrived before this answer.
        await spy.subscribe(FORGED_TOPIC, qos=1)
        assert len(spy.messages) == 0


async def test_testbed_mapper_registers_its_boards_and_publishes_their_topics(
    testbed: TestbedState, provider: ClusterAccess, provider_api: client.ApiClient
) -> None:
    r = fs_api.DEVICE
    devices = cast(
        dict[str, Any],
        custom(provider_api).list_namespaced_custom_object(r.group, r.version, "default", r.plural),
    )["items"]
    ours = sorted(
        (
            d
            for d in devices
            if d["spec"].get("nodeName") == EDGE
            and (d["metadata"].get("labels") or {}).get(SIMULATED_LABEL) == "true"
        ),
        key=lambda d: d["metadata"]["name"],
    )
    assert [d["metadata"]["name"] for d in ours] == [
        f"{EDGE}-sensortile-2",
        f"{EDGE}-sensortile-4",
        f"{EDGE}-stwin-box-1",
        f"{EDGE}-stwin-box-3",
    ]
    topics = {}
    for device in ours:
        assert device["spec"]["protocol"]["protocolName"] == "bluetooth"
        specs, problems = parse_sensors_annotation(
            device["metadata"]["annotations"][fs_api.SENSORS_ANNOTATION], device="x"
        )
        assert problems == [] and specs
        for spec in specs:
            topics[broker_topic("default", device["metadata"]["name"], spec.key)] = spec
            assert (
                spec.access.resource.topic
                == f"fluidos-sensors/{device['metadata']['name']}/{spec.key}"
            )
    async with Subscriber(edge_access(testbed, provider), "default/fluidos-sensors/#") as sub:
        await until(
            lambda: set(topics) <= {topic for topic, _, _ in sub.readings},
            what="a reading on every advertised sensor topic",
        )
    for topic, reading, _ in sub.readings:
        if topic in topics:
            assert reading.node == EDGE and reading.provider == provider.name
            assert reading.unit == topics[topic].units.measurement[0]
    for device in ours:

        def read(d: dict[str, Any] = device) -> dict[str, Any] | None:
            return get_status(provider_api, "default", d["metadata"]["name"])

        status = await until(read, what="DeviceStatus")
        assert status["status"]["state"] == "online"


# ----------------------------------------------------------------------------------------
# a mapper in this process: the test holds the radio


async def test_streams_at_rate_reconnects_and_reports_twins(
    testbed: TestbedState,
    provider: ClusterAccess,
    provider_api: client.ApiClient,
    namespace: str,
    run_mapper: Callable[[Mapper], None],
) -> None:
    node = f"{namespace}-edge"  # no testbed mapper serves it
    boards = simulated_boards(node, 2, inertial_hz=30, environmental_hz=20)
    radio, backends = radio_with(boards)
    bodies = simulated_devices(node, namespace, boards, report_cycle_seconds=0.5)
    broken = json.loads(json.dumps(bodies[1]))
    broken["metadata"]["name"] = "broken-mac"
    broken["spec"]["protocol"]["configData"]["macAddress"] = "C0:8A:ZZ"
    access = edge_access(testbed, provider, MAPPER_USER)
    store = DeviceStatusStore(provider_api)
    mapper = Mapper(
        MapperSettings(
            node=node, namespace=namespace, provider="p", link=fast_links(), resync_seconds=1.0
        ),
        backends=backends,
        publisher=MqttPublisher(access, client_id=f"test-{namespace}"),
        devices=DeviceApi(provider_api),
        twins=TwinReporter(store, min_interval=0.2, default_cycle=5.0),
        register=[*bodies, broken],
    )
    stwin, tile = (b["metadata"]["name"] for b in bodies)
    stwin_mac = boards[0][1].mac
    async with Subscriber(edge_access(testbed, provider), f"{namespace}/fluidos-sensors/#") as sub:
        run_mapper(mapper)
        await until(
            lambda: sub.of(stwin, "acceleration") and sub.of(tile, "humidity"),
            what="first readings",
        )
        start_count = len(sub.of(stwin, "acceleration")), len(sub.of(tile, "pressure"))
        await asyncio.sleep(3.0)
        inertial = (len(sub.of(stwin, "acceleration")) - start_count[0]) / 3.0
        environmental = (len(sub.of(tile, "pressure")) - start_count[1]) / 3.0
        # 30 Hz and 20 Hz, loosely: a busy machine may deliver late, never much more.
        assert 15 <= inertial <= 36, inertial
        assert 10 <= environmental <= 24, environmental

        # Twins: read back what the mapper wrote (the API server prunes what the CRD
        # does not declare, so this checks the shape as much as the values).
        key = DeviceKey(namespace, stwin)
        device = cast(
            dict[str, Any],
            custom(provider_api).get_namespaced_custom_object(
                fs_api.DEVICE.group, fs_api.DEVICE.version, namespace, fs_api.DEVICE.plural, stwin
            ),
        )

        def twins_filled() -> dict[str, Any] | None:
            found = get_status(provider_api, namespace, stwin)
            return found if found and len(found["status"].get("twins", [])) >= 5 else None

        status = await until(twins_filled, what="twins with values")
        assert status["metadata"]["ownerReferences"][0]["uid"] == device["metadata"]["uid"]
        body = status["status"]
        assert body["state"] == "online"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["lastOnlineTime"])
        names = {t["propertyName"] for t in body["twins"]}
        assert {
            "acceleration",
            "angular-velocity",
            "magnetic-field",
            "pressure",
            "temperature",
        } <= names
        accel = next(t for t in body["twins"] if t["propertyName"] == "acceleration")
        assert set(json.loads(accel["reported"]["value"])) == {"x", "y", "z"}
        assert {"timestamp", "unit", "seq", "deviceTime", "type"} <= set(
            accel["reported"]["metadata"]
        )
        extensions = body["extensions"][EXTENSIONS_KEY]
        assert extensions["stm32Uid"] == radio.board(stwin_mac).uid_hex
        assert extensions["mac"] == stwin_mac and extensions["node"] == node

        # The broken Device: a Warning Event names it and the field; the others stream on.
        def warning() -> list[Any]:
            events = client.CoreV1Api(provider_api).list_namespaced_event(namespace).items
            return [e for e in events if e.involved_object.name == "broken-mac"]

        (event,) = await until(warning, what="a Warning Event")
        assert event.type == "Warning" and event.involved_object.kind == "Device"
        assert "spec.protocol.configData.macAddress" in event.message

        # Forced disconnect: offline in DeviceStatus, then back online, sequence continuing.
        # The board may be back (0.1 s backoff) before the offline state's turn to be written
        # comes (0.2 s after the last write): the twin then shows a connection more instead.
        before = [r.seq for r in sub.of(stwin, "acceleration")]

        def twin_status() -> dict[str, Any]:
            return (get_status(provider_api, namespace, stwin) or {}).get("status", {})

        connects = twin_status()["extensions"][EXTENSIONS_KEY]["connects"]
        assert radio.force_disconnect(stwin_mac)
        await until(
            lambda: (
                twin_status().get("state") == "offline"
                or twin_status()["extensions"][EXTENSIONS_KEY]["connects"] > connects
            ),
            what="state offline, or a reconnection",
        )
        await until(
            lambda: (
                (get_status(provider_api, namespace, stwin) or {}).get("status", {}).get("state")
                == "online"
            ),
            what="state online again",
        )
        await until(
            lambda: len(sub.of(stwin, "acceleration")) > len(before) + 10,
            what="readings after the reconnect",
        )
        seqs = [r.seq for r in sub.of(stwin, "acceleration")]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert seqs[0] == 0 and seqs[-1] == len(seqs) - 1  # no reset, no gap
        assert mapper.links[stwin_mac].stats.connects == 2
        assert mapper.twins is not None and mapper.twins.stats.failures == 0
    assert key in mapper.twins.tracked()


async def test_device_status_round_trips_without_pruning(
    provider_api: client.ApiClient, namespace: str
) -> None:
    r = fs_api.DEVICE
    device = cast(
        dict[str, Any],
        custom(provider_api).create_namespaced_custom_object(
            r.group,
            r.version,
            namespace,
            r.plural,
            {
                "apiVersion": r.api_version,
                "kind": r.kind,
                "metadata": {"name": "twin"},
                "spec": {"nodeName": "nowhere"},
            },
        ),
    )
    reading = Reading(
        namespace=namespace,
        device="twin",
        sensor="temperature",
        quantity="temperature",
        unit="°C",
        values={"value": 24.5},
        node="n",
        seq=7,
        received_at=1767225600.25,
        device_time=1.5,
    )
    status = {
        "state": "online",
        "lastOnlineTime": "2026-01-01T00:00:00Z",
        "twins": [reported_twin(reading)],
        "extensions": {EXTENSIONS_KEY: {"stm32Uid": "00AB", "rssi": -60, "connects": 2}},
    }
    store = DeviceStatusStore(provider_api)
    key = DeviceKey(namespace, "twin")
    store.write(key, device["metadata"]["uid"], json.loads(json.dumps(status)))
    read = get_status(provider_api, namespace, "twin")
    assert read is not None and read["status"] == status
    # Someone else (KubeEdge's device controller) writes observedDesired: we keep it.
    read["status"]["twins"][0]["observedDesired"] = {"value": "20", "metadata": {"type": "float"}}
    rs = fs_api.DEVICE_STATUS
    custom(provider_api).replace_namespaced_custom_object(
        rs.group, rs.version, namespace, rs.plural, "twin", read
    )
    status["state"] = "offline"
    store.write(key, device["metadata"]["uid"], json.loads(json.dumps(status)))  # stale version
    again = get_status(provider_api, namespace, "twin")
    assert again is not None and again["status"]["state"] == "offline"
    assert again["status"]["twins"][0]["observedDesired"]["value"] == "20"


async def test_broker_restart_is_survived_with_bounded_buffering(
    tmp_path: Path, testbed: TestbedState, run_mapper: Callable[[Mapper], None]
) -> None:
    """The testbed's own mosquitto factory, on a broker this test may stop and start."""
    cluster = ClusterSpec("restart", "provider", ())
    node = NodeSpec("restart-edge")
    broker = ManagedProcess(
        edge.mosquitto(
            edge.EdgeNode(
                cluster,
                node,
                tmp_path / "node",
                tmp_path,
                {"mosquitto": Path(testbed.config["binaries"]["mosquitto"])},
                {edge.MQTT_PORT: free_port()},
            )
        )
    )
    broker.start()
    try:
        broker.wait_ready()
        access = BrokerAccess.load(edge.broker_credentials(tmp_path / "node", MAPPER_USER))
        reader = BrokerAccess.load(edge.broker_credentials(tmp_path / "node", AGENT_USER))
        boards = simulated_boards(node.name, 1, inertial_hz=30, environmental_hz=20)
        _, backends = radio_with(boards)
        capacity = 150
        publisher = MqttPublisher(access, capacity=capacity, backoff=lambda: Backoff(0.1, 0.5))
        mapper = Mapper(
            MapperSettings(node=node.name, all_boards=True, link=fast_links()),
            backends=backends,
            publisher=publisher,
        )
        name = unbound_device_name(boards[0][1].mac)
        async with Subscriber(reader, "default/fluidos-sensors/#") as sub:
            run_mapper(mapper)
            await until(lambda: len(sub.of(name, "acceleration")) >= 10, what="first readings")

            broker.stop()
            assert not port_open(access.port)
            outage_started = len(sub.of(name, "acceleration"))
            # ~75 messages/s for ~3 s: more than the buffer holds.
            await until(lambda: publisher.stats.dropped > 0, what="drops once the buffer is full")
            # The client notices the lost connection on its own schedule.
            await until(lambda: not publisher.stats.connected, what="disconnect noticed")
            assert publisher.buffered <= capacity

            broker.start()
            broker.wait_ready()
            await until(lambda: publisher.stats.connected, what="publisher reconnected")
            await until(
                lambda: len(sub.of(name, "acceleration")) >= outage_started + 30,
                what="publishing resumed",
            )
        seqs = [r.seq for r in sub.of(name, "acceleration")]
        assert seqs == sorted(seqs) and seqs[-1] > seqs[outage_started - 1] + 30
        assert publisher.stats.connects >= 2 and publisher.stats.dropped > 0
        assert mapper.links[boards[0][1].mac].stats.connects == 1  # BLE never noticed
    finally:
        broker.stop()
    assert not port_open(access.port)


async def test_publisher_speaks_tls_and_checks_the_brokers_certificate(
    tmp_path: Path, testbed: TestbedState
) -> None:
    """As in the Helm chart, where the mapper reaches its node's broker over the pod network:
    TLS, the broker's certificate checked against the CA its credentials name. A broker whose
    certificate another CA signed gets no reading."""
    port = free_port()
    ours, theirs = ClusterPKI(tmp_path / "ours", "ours"), ClusterPKI(tmp_path / "theirs", "x")
    serving = ours.mqtt_serving()
    access = BrokerAccess.generate("127.0.0.1", port, MAPPER_USER)
    write_password_file(tmp_path / "passwords", access)
    config = mosquitto_config(port, tmp_path / "passwords", run_as=getpass.getuser())
    (tmp_path / "mosquitto.conf").write_text(
        config + f"certfile {serving.cert}\nkeyfile {serving.key}\n"
    )
    broker = ManagedProcess(
        ProcessSpec(
            name="tls-mosquitto",
            argv=[testbed.config["binaries"]["mosquitto"], "-c", str(tmp_path / "mosquitto.conf")],
            log=tmp_path / "mosquitto.log",
            ready=lambda: port_open(port),
            ports=[port],
        )
    )
    broker.start()
    try:
        broker.wait_ready()
        received: list[bytes] = []

        async def subscribe() -> None:
            tls = aiomqtt.TLSParameters(ca_certs=str(ours.ca.cert))
            async with aiomqtt.Client(
                "127.0.0.1",
                port,
                username=access.username,
                password=access.password,
                tls_params=tls,
            ) as mqtt:
                await mqtt.subscribe("tls/#")
                subscribed.set()
                async for message in mqtt.messages:
                    received.append(bytes(message.payload))

        subscribed = asyncio.Event()
        reader = asyncio.create_task(subscribe())
        await asyncio.wait_for(subscribed.wait(), 10)
        wrong = MqttPublisher(
            dataclasses.replace(access, ca=str(theirs.ca.cert)),
            backoff=lambda: Backoff(0.1, 0.2),
        )
        right = MqttPublisher(dataclasses.replace(access, ca=str(ours.ca.cert)))
        tasks = [asyncio.create_task(p.run()) for p in (wrong, right)]
        try:
            wrong.submit("tls/wrong", b"must not arrive")
            right.submit("tls/right", b"over TLS")
            await until(lambda: received == [b"over TLS"], what="the reading over TLS")
            await until(lambda: wrong.stats.connect_failures >= 3, what="refused attempts")
            assert not wrong.stats.connected and wrong.buffered == 1
            assert right.stats.connected and right.stats.published == 1
        finally:
            for task in (*tasks, reader):
                task.cancel()
            await asyncio.gather(*tasks, reader, return_exceptions=True)
    finally:
        broker.stop()

"""The mapper's glue, through bleak and the simulator, with in-memory broker and API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.rates import with_desired_rate
from fluidos_sensors.reading import Reading
from fluidos_sensors.twins import EXTENSIONS_KEY, OFFLINE, ONLINE
from mapper.ble import BleBackends, LinkSettings
from mapper.ble.link import characteristic_rates
from mapper.bluest import ACCELEROMETER, BATTERY, GYROSCOPE, MAGNETOMETER, PRESSURE, TEMPERATURE
from mapper.dataplane.publisher import PublisherStats
from mapper.dataplane.twins import DeviceKey, TwinReporter
from mapper.devices import DeviceProblem
from mapper.service import Mapper, MapperSettings, unbound_device_name
from mapper.simulated import simulated_boards, simulated_devices
from mapper.simulator import SimulatedRadio, client_backend, scanner_backend

NODE = "unit-edge"


class Publisher:
    """Stands in for MqttPublisher: keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Reading]] = []
        self.stats = PublisherStats(connected=True)
        self.buffered = 0

    def submit(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, Reading.decode(payload)))
        self.stats.published += 1

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def flush(self, timeout: float) -> bool:
        return True

    def of(self, device: str, sensor: str) -> list[Reading]:
        return [r for _, r in self.messages if r.device == device and r.sensor == sensor]


@dataclass
class Devices:
    """Stands in for DeviceApi."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    registered: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[DeviceProblem] = field(default_factory=list)
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("API server unreachable")

    def list_devices(self, namespace: str | None) -> list[dict[str, Any]]:
        self._check()
        return [o for o in self.objects if namespace in (None, o["metadata"]["namespace"])]

    def apply_device(self, body: dict[str, Any]) -> None:
        self._check()
        self.registered.append(body)
        self.objects.append(body)

    def warn(self, problem: DeviceProblem, *, node: str) -> None:
        self._check()
        self.warnings.append(problem)


class Store:
    def __init__(self) -> None:
        self.states: list[tuple[DeviceKey, str]] = []
        self.latest: dict[DeviceKey, dict[str, Any]] = {}

    def write(self, key: DeviceKey, owner_uid: str | None, status: dict[str, Any]) -> None:
        self.states.append((key, status["state"]))
        self.latest[key] = status

    def reported(self, key: DeviceKey, twin: str) -> str | None:
        twins = (self.latest.get(key) or {}).get("twins") or []
        return next((t["reported"]["value"] for t in twins if t["propertyName"] == twin), None)


def fast_links() -> LinkSettings:
    return LinkSettings(scan_timeout=1.0, backoff=lambda: Backoff(0.05, 0.2))


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[SimulatedRadio, list[tuple[str, Any]]]]:
    radio = SimulatedRadio(advertising_interval=0.02, connect_delay=0.005)
    boards = simulated_boards(NODE, 2, inertial_hz=30, environmental_hz=20)
    for _, board in boards:
        radio.add_board(board)
    yield radio, boards


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Mapper], Any]]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(mapper: Mapper) -> None:
        stop = asyncio.Event()
        stops.append((stop, asyncio.create_task(mapper.run(stop))))

    yield start
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 10)


def backends(radio: SimulatedRadio) -> BleBackends:
    return BleBackends(scanner_backend(radio), client_backend(radio))


async def test_registered_devices_stream_one_message_per_sensor(fleet, running) -> None:
    radio, boards = fleet
    devices, publisher, store = Devices(), Publisher(), Store()
    bodies = simulated_devices(NODE, "default", boards, report_cycle_seconds=1)
    mapper = Mapper(
        MapperSettings(node=NODE, provider="p1", link=fast_links()),
        backends=backends(radio),
        publisher=publisher,  # type: ignore[arg-type]
        devices=devices,  # type: ignore[arg-type]
        twins=TwinReporter(store, min_interval=0.05, default_cycle=1.0),
        register=bodies,
    )
    running(mapper)
    stwin = bodies[0]["metadata"]["name"]
    await until(lambda: len(publisher.of(stwin, "acceleration")) >= 10)
    assert [b["metadata"]["name"] for b in devices.registered] == [
        b["metadata"]["name"] for b in bodies
    ]
    # An inertial notification is three messages, one per sensor, sharing one receive time.
    first = publisher.of(stwin, "acceleration")[0]
    siblings = [
        r for _, r in publisher.messages if r.device == stwin and r.received_at == first.received_at
    ]
    assert {r.sensor for r in siblings} == {"acceleration", "angular-velocity", "magnetic-field"}
    assert set(first.values) == {"x", "y", "z"} and first.unit == "mg"
    assert first.node == NODE and first.provider == "p1" and first.device_time is not None
    topic = next(t for t, r in publisher.messages if r is first)
    assert topic == f"default/fluidos-sensors/{stwin}/acceleration"
    await until(lambda: bool(publisher.of(stwin, "battery")))
    battery = publisher.of(stwin, "battery")[0]
    assert battery.units is not None and battery.unit_of("voltage") == "mV"
    await until(lambda: (DeviceKey("default", stwin), ONLINE) in store.states)


def first_board_mapper(
    radio: SimulatedRadio, boards: list[tuple[str, Any]], publisher: Publisher, store: Store
) -> tuple[Mapper, list[dict[str, Any]]]:
    """A mapper serving the fleet's first board through its registered Device."""
    bodies = simulated_devices(NODE, "default", boards[:1], report_cycle_seconds=1)
    mapper = Mapper(
        MapperSettings(node=NODE, link=fast_links()),
        backends=backends(radio),
        publisher=publisher,  # type: ignore[arg-type]
        devices=Devices(),  # type: ignore[arg-type]
        twins=TwinReporter(store, min_interval=0.05, default_cycle=1.0),
        register=bodies,
    )
    return mapper, bodies


async def test_disconnect_reconnect_keeps_sequence_and_reports_offline(fleet, running) -> None:
    radio, boards = fleet
    publisher, store = Publisher(), Store()
    mapper, bodies = first_board_mapper(radio, boards, publisher, store)
    running(mapper)
    name = bodies[0]["metadata"]["name"]
    key = DeviceKey("default", name)
    await until(lambda: len(publisher.of(name, "acceleration")) >= 5)
    assert radio.force_disconnect(boards[0][1].mac)
    before = len(publisher.of(name, "acceleration"))

    def connects() -> int:
        return int(store.latest[key]["extensions"][EXTENSIONS_KEY]["connects"])

    # Offline is written unless the board is back (50 ms backoff) before the reporter's next
    # pass (every 100 ms): then the written twin shows the second connection instead.
    await until(lambda: (key, OFFLINE) in store.states or connects() == 2)
    await until(lambda: len(publisher.of(name, "acceleration")) >= before + 5)
    seqs = [r.seq for r in publisher.of(name, "acceleration")]
    assert seqs == list(range(len(seqs)))  # continues across the reconnect, no reset
    await until(lambda: store.states[-1] == (key, ONLINE))
    assert mapper.links[boards[0][1].mac].stats.connects == 2


async def test_malformed_frames_are_counted_and_dropped(fleet, running, caplog) -> None:
    radio, boards = fleet
    board = boards[0][1]
    original = board.notification
    calls = {"n": 0}

    def sometimes_short(mask: int, now: float | None = None) -> bytes:
        calls["n"] += 1
        frame = original(mask, now)
        return frame[:3] if calls["n"] % 3 == 0 else frame

    board.notification = sometimes_short
    publisher = Publisher()
    mapper = Mapper(
        MapperSettings(node=NODE, all_boards=True, link=fast_links()),
        backends=backends(radio),
        publisher=publisher,  # type: ignore[arg-type]
    )
    running(mapper)
    await until(lambda: board.mac in mapper.links and mapper.links[board.mac].stats.malformed >= 5)
    link = mapper.links[board.mac]
    assert link.connected and link.stats.connects == 1  # the link survives bad frames
    name = unbound_device_name(board.mac)
    assert publisher.of(name, "acceleration")
    malformed_lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed_lines) == 1  # one line, not one per frame


async def test_bad_device_is_warned_once_and_others_keep_working(fleet, running, caplog) -> None:
    radio, boards = fleet
    good = simulated_devices(NODE, "default", boards[:1], report_cycle_seconds=1)[0]
    bad = simulated_devices(NODE, "default", boards[1:], report_cycle_seconds=1)[0]
    bad["metadata"]["name"] = "broken"
    bad["spec"]["protocol"]["configData"]["macAddress"] = "12:34"
    devices, publisher = Devices(objects=[good, bad]), Publisher()
    mapper = Mapper(
        MapperSettings(node=NODE, resync_seconds=0.1, link=fast_links()),
        backends=backends(radio),
        publisher=publisher,  # type: ignore[arg-type]
        devices=devices,  # type: ignore[arg-type]
    )
    running(mapper)
    await until(lambda: len(publisher.of(good["metadata"]["name"], "temperature")) >= 3)
    await asyncio.sleep(0.3)  # several resyncs
    assert [str(p) for p in devices.warnings] == [
        'Device default/broken: "spec.protocol.configData.macAddress" must be a MAC address '
        "like AA:BB:CC:DD:EE:FF, got '12:34'"
    ]
    assert len([r for r in caplog.records if "default/broken" in r.getMessage()]) == 1


async def test_api_outage_keeps_known_boards_streaming(fleet, running) -> None:
    radio, boards = fleet
    bodies = simulated_devices(NODE, "default", boards, report_cycle_seconds=1)
    devices, publisher = Devices(objects=list(bodies)), Publisher()
    mapper = Mapper(
        MapperSettings(node=NODE, resync_seconds=0.1, link=fast_links()),
        backends=backends(radio),
        publisher=publisher,  # type: ignore[arg-type]
        devices=devices,  # type: ignore[arg-type]
    )
    running(mapper)
    name = bodies[1]["metadata"]["name"]
    await until(lambda: len(publisher.of(name, "humidity")) >= 2)
    devices.down = True
    count = len(publisher.of(name, "humidity"))
    await until(lambda: mapper.api_failures >= 2)
    await until(lambda: len(publisher.of(name, "humidity")) >= count + 3)
    assert len(mapper.links) == 2
    # A Device deleted meanwhile stops being served once the API answers again.
    devices.objects = devices.objects[:1]
    devices.down = False
    await until(lambda: len(mapper.links) == 1)


def test_without_kubernetes_only_all_boards_makes_sense() -> None:
    with pytest.raises(ValueError, match="all-boards"):
        Mapper(MapperSettings(node=NODE), backends=BleBackends(), publisher=Publisher())  # type: ignore[arg-type]


async def test_nothing_is_published_while_the_clock_is_before_the_window(
    fleet, running, monkeypatch, caplog
) -> None:
    # A board without a real-time clock boots at 1970; the edge agent would refuse it all.
    import time

    import mapper.ble.link as link

    class Clock1970:
        """The link's `time` module, its wall clock a day after the epoch."""

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def time() -> float:
            return 86_400.0

    monkeypatch.setattr(link, "time", Clock1970())
    radio, _ = fleet
    publisher = Publisher()
    mapper = Mapper(
        MapperSettings(node=NODE, all_boards=True, link=fast_links()),
        backends=backends(radio),
        publisher=publisher,  # type: ignore[arg-type]
    )
    running(mapper)
    await until(lambda: mapper.unset_clock >= 10)
    assert publisher.messages == []
    assert mapper.status()["unsetClock"] == mapper.unset_clock
    warnings = [r.getMessage() for r in caplog.records if "not publishing" in r.getMessage()]
    assert len(warnings) == 1 and "before 2000-01-01" in warnings[0]


async def test_the_desired_rate_reaches_the_board_and_its_answer_the_twin(fleet, running) -> None:
    """A Device's desired `samplingRate.<group>` is written to the board over the BlueST config
    characteristic; the board's answer is the reported twin. A rate the firmware does not offer
    is refused and the board keeps its rate; with no desired rate the board goes back to the
    rate the Device declares."""
    radio, boards = fleet
    devices, store = Devices(), Store()
    bodies = simulated_devices(NODE, "default", boards[:1], report_cycle_seconds=1)
    mapper = Mapper(
        MapperSettings(node=NODE, link=fast_links(), resync_seconds=0.2),
        backends=backends(radio),
        publisher=Publisher(),  # type: ignore[arg-type]
        devices=devices,  # type: ignore[arg-type]
        twins=TwinReporter(store, min_interval=0.05, default_cycle=1.0),
        register=bodies,
    )
    board = boards[0][1]
    environmental = PRESSURE.mask | TEMPERATURE.mask  # one characteristic: one rate
    key = DeviceKey("default", bodies[0]["metadata"]["name"])
    running(mapper)
    # Declared 20 Hz (the fleet's boards run 20 Hz); said again on connect, and reported.
    await until(lambda: store.reported(key, "samplingRate.environmental") == "20")
    assert store.reported(key, "samplingRate.inertial") == "30"

    def desire(rate: str | None) -> None:
        spec = devices.objects[0]["spec"]
        spec["properties"] = with_desired_rate(
            spec["properties"], "environmental", None if rate is None else float(rate)
        )

    desire("10")
    await until(lambda: board.rate_hz(environmental) == 10.0)
    await until(lambda: store.reported(key, "samplingRate.environmental") == "10")
    assert board.rate_hz(ACCELEROMETER.mask | GYROSCOPE.mask | MAGNETOMETER.mask) == 30.0

    desire("15")  # not offered by the firmware (1, 10, 20 Hz)
    await until(lambda: mapper.links[board.mac].wanted_rates.get(TEMPERATURE.mask) == 15.0)
    await asyncio.sleep(0.5)
    assert board.rate_hz(environmental) == 10.0
    assert store.reported(key, "samplingRate.environmental") == "10"

    desire(None)
    await until(lambda: board.rate_hz(environmental) == 20.0)
    await until(lambda: store.reported(key, "samplingRate.environmental") == "20")


def test_characteristic_rates_take_the_highest_of_a_split_characteristic() -> None:
    inertial = ACCELEROMETER.mask | GYROSCOPE.mask | MAGNETOMETER.mask
    environmental = PRESSURE.mask | TEMPERATURE.mask
    wanted = {ACCELEROMETER.mask: 10.0, GYROSCOPE.mask: 30.0, TEMPERATURE.mask: 1.0}
    assert characteristic_rates(wanted, [inertial, environmental, BATTERY.mask]) == {
        inertial: 30.0,
        environmental: 1.0,
    }


async def test_a_board_that_refuses_config_writes_keeps_streaming(
    fleet, running, monkeypatch, caplog
) -> None:
    """Bad input from a board costs only the rate: no reconnect loop, readings flow."""
    from bleak.exc import BleakError

    from mapper.simulator import backend

    def refuse(self: Any, board: Any, handle: int, frame: bytes) -> None:
        raise BleakError("write not permitted")

    monkeypatch.setattr(backend.SimulatedClient, "_configure", refuse)
    radio, boards = fleet
    publisher = Publisher()
    mapper, bodies = first_board_mapper(radio, boards, publisher, Store())
    running(mapper)
    name = bodies[0]["metadata"]["name"]
    await until(lambda: len(publisher.of(name, "acceleration")) >= 30)
    assert mapper.links[boards[0][1].mac].stats.connects == 1
    assert "rate not written" in caplog.text

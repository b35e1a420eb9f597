"""The simulator through real BleakScanner/BleakClient objects, as the mapper drives BLE."""

from __future__ import annotations

import asyncio
import math

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDeviceNotFoundError

from mapper.bluest import (
    CONSOLE_TERMINAL_UUID,
    FEATURE_SERVICE_UUID,
    UID_COMMAND,
    BlueSTAdvertisement,
    ConsoleLineReader,
    Sample,
    TimestampUnwrapper,
    decode_notification,
    feature_characteristic_uuid,
    feature_mask,
    parse_advertisement,
    parse_uid_answer,
)
from mapper.simulator import (
    SimulatedRadio,
    client_backend,
    scanner_backend,
    sensortile,
    stwin_box,
)

STWIN_MAC = "C0:8A:31:0E:00:01"
SENSORTILE_MAC = "C0:8A:31:02:00:01"
ENVIRONMENTAL = 0x00140000
INERTIAL = 0x00E00000


def num(value: float | int | None) -> float:
    """A decoded value that must be known (not None)."""
    assert value is not None
    return float(value)


@pytest.fixture
def radio() -> SimulatedRadio:
    radio = SimulatedRadio(advertising_interval=0.02, connect_delay=0.005)
    radio.add_board(stwin_box(STWIN_MAC, environmental_hz=20, inertial_hz=30, seed=7))
    radio.add_board(sensortile(SENSORTILE_MAC, environmental_hz=20, seed=8))
    return radio


async def scan(
    radio: SimulatedRadio, seconds: float = 0.1
) -> dict[str, tuple[BLEDevice, BlueSTAdvertisement]]:
    found: dict[str, tuple[BLEDevice, BlueSTAdvertisement]] = {}

    def on_advertisement(device: BLEDevice, advertisement: AdvertisementData) -> None:
        parsed = parse_advertisement(advertisement.manufacturer_data)
        if parsed is not None:
            found[device.address] = (device, parsed)

    async with BleakScanner(detection_callback=on_advertisement, backend=scanner_backend(radio)):
        await asyncio.sleep(seconds)
    return found


class Collector:
    """A notification callback that decodes and keeps what arrives."""

    def __init__(self) -> None:
        self.frames: dict[str, list[list[Sample]]] = {}

    def __call__(self, characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        self.frames.setdefault(characteristic.uuid, []).append(
            decode_notification(characteristic.uuid, data)
        )

    def of(self, mask: int) -> list[list[Sample]]:
        return self.frames.get(feature_characteristic_uuid(mask), [])


async def test_scan_finds_stwin_box_and_sensortile(radio: SimulatedRadio) -> None:
    found = await scan(radio)
    assert set(found) == {STWIN_MAC, SENSORTILE_MAC}
    stwin = found[STWIN_MAC][1]
    assert (stwin.board_id, stwin.sdk_version, stwin.mac) == (0x0E, 2, STWIN_MAC)
    tile = found[SENSORTILE_MAC][1]
    assert (tile.board_id, tile.sdk_version, tile.feature_mask) == (0x02, 1, 0x00FE0000)
    assert found[STWIN_MAC][0].name == "STWINBX"


async def test_service_uuid_filter_hides_bluest_boards(radio: SimulatedRadio) -> None:
    # ST firmware advertises no service UUIDs, so filtering on one finds nothing (as on BlueZ).
    devices = await BleakScanner.discover(
        0.08, service_uuids=[FEATURE_SERVICE_UUID], backend=scanner_backend(radio)
    )
    assert devices == []


async def test_connect_discover_subscribe_and_decode(radio: SimulatedRadio) -> None:
    device, _ = (await scan(radio))[STWIN_MAC]
    collector = Collector()
    async with BleakClient(device, backend=client_backend(radio)) as client:
        features = client.services.get_service(FEATURE_SERVICE_UUID)
        assert features is not None
        masks = {feature_mask(c.uuid) for c in features.characteristics}
        assert masks == {ENVIRONMENTAL, INERTIAL, 0x00020000}
        await client.start_notify(feature_characteristic_uuid(ENVIRONMENTAL), collector)
        await client.start_notify(feature_characteristic_uuid(INERTIAL), collector)
        await asyncio.sleep(0.5)
    environmental, inertial = collector.of(ENVIRONMENTAL), collector.of(INERTIAL)
    # 20 Hz and 30 Hz for 0.5 s: loose bounds, the machine may be slow.
    assert 2 <= len(environmental) <= 12
    assert 3 <= len(inertial) <= 17
    assert len(inertial) >= len(environmental)
    for pressure, temperature in environmental:
        assert pressure.sensor == "pressure" and 950 < num(pressure.values["value"]) < 1080
        assert temperature.sensor == "temperature" and 10 < num(temperature.values["value"]) < 40
    for acceleration, angular_velocity, magnetic_field in inertial:
        assert acceleration.sensor == "acceleration"
        assert 900 < num(acceleration.values["z"]) < 1100
        assert all(abs(num(v)) < 5 for v in angular_velocity.values.values())
        field = math.sqrt(sum(num(v) ** 2 for v in magnetic_field.values.values()))
        assert 200 < field < 800
    unwrapper = TimestampUnwrapper()
    times = [unwrapper.unwrap(frame[0].timestamp) for frame in inertial]
    assert times == sorted(times) and times[-1] > times[0]


async def test_sensortile_environmental_carries_humidity(radio: SimulatedRadio) -> None:
    device, _ = (await scan(radio))[SENSORTILE_MAC]
    collector = Collector()
    async with BleakClient(device, backend=client_backend(radio)) as client:
        await client.start_notify(feature_characteristic_uuid(0x001C0000), collector)
        await asyncio.sleep(0.2)
    frames = collector.of(0x001C0000)
    assert frames
    assert [s.sensor for s in frames[0]] == ["pressure", "humidity", "temperature"]
    assert 0 < num(frames[0][1].values["value"]) < 100


async def test_uid_console_command(radio: SimulatedRadio) -> None:
    device, _ = (await scan(radio))[STWIN_MAC]
    reader = ConsoleLineReader()
    lines: list[str] = []
    async with BleakClient(device, backend=client_backend(radio)) as client:
        await client.start_notify(
            CONSOLE_TERMINAL_UUID, lambda _, data: lines.extend(reader.feed(data))
        )
        await client.write_gatt_char(CONSOLE_TERMINAL_UUID, UID_COMMAND, response=True)
        for _ in range(50):
            if lines:
                break
            await asyncio.sleep(0.01)
    assert len(lines) == 1
    uid = parse_uid_answer(lines[0])
    assert uid.uid == radio.board(STWIN_MAC).uid_hex
    assert len(uid.uid) == 24


async def test_forced_disconnect_then_reconnect_only_after_rescan(radio: SimulatedRadio) -> None:
    device, _ = (await scan(radio))[STWIN_MAC]
    disconnected = asyncio.Event()
    client = BleakClient(
        device, disconnected_callback=lambda _: disconnected.set(), backend=client_backend(radio)
    )
    await client.connect()
    collector = Collector()
    await client.start_notify(feature_characteristic_uuid(INERTIAL), collector)
    assert client.is_connected

    assert radio.force_disconnect(STWIN_MAC)
    await asyncio.wait_for(disconnected.wait(), 1.0)
    assert not client.is_connected
    stopped_at = len(collector.of(INERTIAL))
    await asyncio.sleep(0.1)
    assert len(collector.of(INERTIAL)) == stopped_at  # no notifications after the link drop

    # BlueZ forgot the board: the old BLEDevice no longer connects...
    with pytest.raises(BleakDeviceNotFoundError):
        await BleakClient(device, backend=client_backend(radio)).connect()

    # ...until it is seen advertising again.
    device, _ = (await scan(radio))[STWIN_MAC]
    collector = Collector()
    async with BleakClient(device, backend=client_backend(radio)) as again:
        await again.start_notify(feature_characteristic_uuid(INERTIAL), collector)
        await asyncio.sleep(0.15)
    assert collector.of(INERTIAL)


async def test_clean_disconnect_also_forgets_and_fires_callback(radio: SimulatedRadio) -> None:
    device, _ = (await scan(radio))[SENSORTILE_MAC]
    calls: list[BleakClient] = []
    client = BleakClient(device, disconnected_callback=calls.append, backend=client_backend(radio))
    await client.connect()
    await client.disconnect()
    assert calls == [client]
    assert not radio.is_known(SENSORTILE_MAC)


async def test_connected_board_stops_advertising(radio: SimulatedRadio) -> None:
    device, _ = (await scan(radio))[STWIN_MAC]
    async with BleakClient(device, backend=client_backend(radio)):
        assert set(await scan(radio, 0.06)) == {SENSORTILE_MAC}
        with pytest.raises(TimeoutError):
            await BleakClient(device, timeout=0.1, backend=client_backend(radio)).connect()


async def test_bare_address_scans_first_like_bluez(radio: SimulatedRadio) -> None:
    assert not radio.is_known(STWIN_MAC)
    async with BleakClient(STWIN_MAC.lower(), backend=client_backend(radio)) as client:
        assert client.is_connected
    with pytest.raises(BleakDeviceNotFoundError):
        await BleakClient("C0:8A:31:FF:FF:FF", timeout=0.1, backend=client_backend(radio)).connect()

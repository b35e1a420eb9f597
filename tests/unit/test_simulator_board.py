"""The simulated boards' wire output: frames, advertisements, console, signal quality."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from mapper.bluest import (
    ACCELEROMETER,
    BATTERY,
    PRESSURE,
    TEMPERATURE,
    TimestampUnwrapper,
    decode_notification,
    parse_advertisement,
    parse_uid_answer,
)
from mapper.simulator import SensorModel, SimulatedBoard, sensortile, stwin_box
from mapper.simulator.encode import encode_notification
from mapper.simulator.signals import SensorSignal


def num(value: float | int | None) -> float:
    """A decoded value that must be known (not None)."""
    assert value is not None
    return float(value)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_encoder_matches_struct_layout_msb_first() -> None:
    frame = encode_notification(
        0x00140000, 0x12345, {PRESSURE.mask: (1013.25,), TEMPERATURE.mask: (-5.26,)}
    )
    assert frame == struct.pack("<Hih", 0x2345, 101325, -53)


def test_encoder_saturates_instead_of_wrapping() -> None:
    frame = encode_notification(ACCELEROMETER.mask, 0, {ACCELEROMETER.mask: (40000, -40000, 1)})
    assert frame == struct.pack("<Hhhh", 0, 32767, -32768, 1)


def test_encoder_battery_unknown_current_is_0x8000() -> None:
    frame = encode_notification(BATTERY.mask, 7, {BATTERY.mask: (87.5, 3987, math.nan, 1)})
    assert frame == struct.pack("<HhhHB", 7, 875, 3987, 0x8000, 1)


def test_encoder_refuses_bits_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="0x04000000"):
        encode_notification(0x04000000, 0, {})


def test_stwin_box_v2_advertisement_is_byte_exact() -> None:
    board = stwin_box("C0:8A:31:0E:00:01")
    assert board.advertising_payload() == bytes.fromhex("3000" + "020e01000000" + "c08a310e0001")
    assert board.manufacturer_data() == {0x0030: bytes.fromhex("020e01000000c08a310e0001")}
    adv = parse_advertisement(board.manufacturer_data())
    assert adv is not None
    assert (adv.board_id, adv.sdk_version, adv.firmware_id) == (0x0E, 2, 0x01)
    assert adv.mac == "C0:8A:31:0E:00:01"


def test_stwin_box_rev_b_and_v1_advertisement() -> None:
    board = stwin_box("C0:8A:31:0E:00:02", rev_b=True, advertising="v1")
    assert board.advertising_payload() == bytes.fromhex("3000" + "011200f60000" + "c08a310e0002")
    adv = parse_advertisement(board.manufacturer_data())
    assert adv is not None and adv.board_name == "STWIN.box rev B"
    assert adv.feature_mask == 0x00F60000


def test_sensortile_legacy_advertisement_has_no_company_id() -> None:
    board = sensortile("C0:8A:31:02:00:01")
    assert board.advertising_payload() == bytes.fromhex("0102" + "00fe0000" + "c08a31020001")
    # bleak takes 01 02 as company id 0x0201.
    assert list(board.manufacturer_data()) == [0x0201]
    adv = parse_advertisement(board.manufacturer_data())
    assert adv is not None
    assert (adv.board_id, adv.sdk_version, adv.feature_mask) == (0x02, 1, 0x00FE0000)


def test_every_characteristic_decodes_to_plausible_values() -> None:
    for board in (stwin_box(seed=1), sensortile(seed=2)):
        for mask in board.characteristics:
            samples = decode_notification(mask, board.notification(mask))
            values = {s.sensor: s.values for s in samples}
            if "pressure" in values:
                assert 1000 < num(values["pressure"]["value"]) < 1030
            if "temperature" in values:
                assert 20 < num(values["temperature"]["value"]) < 28
            if "humidity" in values:
                assert 30 < num(values["humidity"]["value"]) < 60
            if "acceleration" in values:
                assert 900 < num(values["acceleration"]["z"]) < 1100
            if "battery" in values:
                assert 0 < num(values["battery"]["level"]) <= 100
                assert 3300 <= num(values["battery"]["voltage"]) <= 4200
                assert values["battery"]["current"] is not None
    assert {
        s.sensor for s in decode_notification(0x001C0000, sensortile().notification(0x001C0000))
    } == {
        "pressure",
        "humidity",
        "temperature",
    }


def test_battery_current_can_be_unknown() -> None:
    board = stwin_box(battery_current_known=False)
    (battery,) = decode_notification(BATTERY.mask, board.notification(BATTERY.mask))
    assert battery.values["current"] is None


def test_tick_counter_is_10ms_and_wraps() -> None:
    clock = FakeClock()
    board = stwin_box(tick_offset=65530, clock=clock)
    unwrapper = TimestampUnwrapper()
    raw_ticks = []
    device_times = []
    for step in range(4):
        clock.now = 1000.0 + step * 0.05
        (sample, *_) = decode_notification(0x00140000, board.notification(0x00140000))
        raw_ticks.append(sample.timestamp)
        device_times.append(unwrapper.unwrap(sample.timestamp))
    assert raw_ticks == [65530, 65535, 4, 9]
    assert device_times == pytest.approx([655.30, 655.35, 655.40, 655.45])


def test_uid_console_answer_is_firmware_format_and_stable_per_mac() -> None:
    board = stwin_box("C0:8A:31:0E:00:01")
    answer = board.console_answer(b"uid\n")
    assert answer.endswith(b"\r\n")
    parsed = parse_uid_answer(answer.decode())
    assert parsed.uid == board.uid_hex
    assert parsed.mcu_device_id == 0x482
    # Words are printed most significant byte first from little-endian memory.
    assert board.uid_hex[:8] == board.uid[3::-1].hex().upper()
    assert stwin_box("C0:8A:31:0E:00:01").uid_hex == board.uid_hex
    assert stwin_box("C0:8A:31:0E:00:02").uid_hex != board.uid_hex
    assert parse_uid_answer(sensortile().console_answer(b"uid").decode()).mcu_device_id == 0x415


def test_console_echoes_unknown_commands() -> None:
    assert stwin_box().console_answer(b"bogus\n") == b"bogus\n"


def test_rates_are_the_firmware_choices() -> None:
    board = stwin_box()
    board.set_rate(0x00140000, 10)
    assert board.rate_hz(0x00140000) == 10
    with pytest.raises(ValueError, match="1, 10, 20"):
        board.set_rate(0x00140000, 5)
    with pytest.raises(ValueError, match="10, 20, 30"):
        stwin_box(inertial_hz=1)


def test_characteristic_without_sensor_is_rejected() -> None:
    with pytest.raises(ValueError, match="0x00080000"):
        SimulatedBoard(
            model="broken",
            board_id=0x0E,
            mac="C0:8A:31:0E:00:09",
            local_name="X",
            sensors=(),
            characteristics={0x00080000: 1.0},
        )


def test_readings_stay_within_datasheet_accuracy_of_truth() -> None:
    model = SensorModel("STTS22H", TEMPERATURE.mask, 0.5, 0.01, (24.0,), 0.3, 60.0)
    for seed in range(20):
        signal = SensorSignal(model, np.random.default_rng(seed))
        errors = []
        for step in range(200):
            reading = signal.read(step * 0.1)
            errors.append(reading[0] - signal.truth[0])
        assert abs(float(np.mean(errors))) <= 0.5
        assert float(np.std(errors)) == pytest.approx(0.01, rel=0.3)


def test_truth_drifts_slowly_but_stays_near_ambient() -> None:
    model = SensorModel("ILPS22QS", PRESSURE.mask, 0.5, 0.0, (1013.25,), 0.3, 60.0)
    signal = SensorSignal(model, np.random.default_rng(3))
    truths = []
    for step in range(2000):
        signal.read(step * 1.0)
        truths.append(signal.truth[0])
    steps = np.abs(np.diff(truths))
    assert float(np.max(steps)) < 0.3  # slow: no jumps between 1 s samples
    assert float(np.std(truths)) > 0.05  # but it does move
    assert abs(float(np.mean(truths)) - 1013.25) < 0.5

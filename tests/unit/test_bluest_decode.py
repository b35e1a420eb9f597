"""Decoding BlueST notifications from byte vectors built here with struct.pack."""

from __future__ import annotations

import struct

import pytest

from mapper.bluest import (
    FEATURES,
    FrameError,
    UnknownFeatureError,
    decode_notification,
    feature_characteristic_uuid,
    features_of,
)

TEMPERATURE_MASK = 0x00040000
STWIN_ENVIRONMENTAL = 0x00140000
STWIN_INERTIAL = 0x00E00000


def test_feature_order_is_msb_first_with_brief_sensor_keys() -> None:
    assert [f.sensor for f in features_of(0x00FF0000)] == [
        "acceleration",
        "angular_velocity",
        "magnetic_field",
        "pressure",
        "humidity",
        "temperature",
        "battery",
        "temperature2",
    ]
    assert [f.mask for f in FEATURES] == sorted((f.mask for f in FEATURES), reverse=True)


def test_features_of_accepts_uuid_in_any_case() -> None:
    uuid = "00140000-0001-11E1-AC36-0002A5D5C51B"
    assert [f.sensor for f in features_of(uuid)] == ["pressure", "temperature"]
    assert feature_characteristic_uuid(0x00140000) == uuid.lower()


def test_features_of_rejects_non_feature_uuid() -> None:
    with pytest.raises(ValueError, match="not a BlueST feature characteristic"):
        features_of("00000001-000e-11e1-ac36-0002a5d5c51b")


@pytest.mark.parametrize(
    ("mask", "payload", "sensor", "values", "unit"),
    [
        (0x00040000, struct.pack("<h", 235), "temperature", {"value": 23.5}, "°C"),
        (0x00010000, struct.pack("<h", 301), "temperature2", {"value": 30.1}, "°C"),
        (0x00080000, struct.pack("<H", 456), "humidity", {"value": 45.6}, "%RH"),
        (0x00100000, struct.pack("<i", 101325), "pressure", {"value": 1013.25}, "hPa"),
        (
            0x00800000,
            struct.pack("<hhh", -12, 34, 1002),
            "acceleration",
            {"x": -12, "y": 34, "z": 1002},
            "mg",
        ),
        (
            0x00400000,
            struct.pack("<hhh", -15, 0, 123),
            "angular_velocity",
            {"x": -1.5, "y": 0.0, "z": 12.3},
            "dps",
        ),
        (
            0x00200000,
            struct.pack("<hhh", 210, -45, 398),
            "magnetic_field",
            {"x": 210, "y": -45, "z": 398},
            "mGa",
        ),
    ],
)
def test_single_feature(
    mask: int, payload: bytes, sensor: str, values: dict[str, float], unit: str
) -> None:
    frame = struct.pack("<H", 1234) + payload
    (sample,) = decode_notification(mask, frame)
    assert sample.sensor == sensor
    assert sample.unit == unit
    assert sample.timestamp == 1234
    assert sample.values == pytest.approx(values)
    assert set(sample.units) == set(values)


def test_negative_temperature() -> None:
    (sample,) = decode_notification(TEMPERATURE_MASK, struct.pack("<Hh", 7, -125))
    assert sample.values["value"] == pytest.approx(-12.5)


def test_high_pressure_and_humidity_use_full_unsigned_and_32_bit_range() -> None:
    frame = struct.pack("<HiH", 0, 110000, 1000)
    pressure, humidity = decode_notification(0x00180000, frame)
    assert pressure.values["value"] == pytest.approx(1100.0)
    assert humidity.values["value"] == pytest.approx(100.0)


def test_stwin_environmental_is_pressure_then_temperature() -> None:
    frame = struct.pack("<Hih", 65535, 98765, -3)
    pressure, temperature = decode_notification(
        feature_characteristic_uuid(STWIN_ENVIRONMENTAL), frame
    )
    assert pressure.sensor == "pressure"
    assert pressure.values["value"] == pytest.approx(987.65)
    assert temperature.sensor == "temperature"
    assert temperature.values["value"] == pytest.approx(-0.3)
    assert pressure.timestamp == temperature.timestamp == 65535


def test_stwin_inertial_is_acc_gyro_mag() -> None:
    frame = struct.pack("<H9h", 42, 1, 2, 1000, 10, -20, 30, -300, 200, 100)
    acc, gyro, mag = decode_notification(STWIN_INERTIAL, frame)
    assert acc.values == {"x": 1, "y": 2, "z": 1000}
    assert gyro.values == pytest.approx({"x": 1.0, "y": -2.0, "z": 3.0})
    assert mag.values == {"x": -300, "y": 200, "z": 100}


def test_sensortile_environmental_is_pressure_humidity_temperature() -> None:
    frame = struct.pack("<HiHh", 9, 100012, 551, 219)
    pressure, humidity, temperature = decode_notification(0x001C0000, frame)
    assert pressure.values["value"] == pytest.approx(1000.12)
    assert humidity.values["value"] == pytest.approx(55.1)
    assert temperature.values["value"] == pytest.approx(21.9)


def test_battery_fields() -> None:
    frame = struct.pack("<HhhhB", 5, 875, 3987, -120, 0x01)
    (battery,) = decode_notification(0x00020000, frame)
    assert battery.sensor == "battery"
    assert battery.values == {"level": 87.5, "voltage": 3987.0, "current": -120.0, "status": 1}
    assert battery.units["voltage"] == "mV"
    assert battery.units["current"] == "mA"


def test_battery_unknown_current_is_none() -> None:
    frame = struct.pack("<HhhHB", 5, 500, 3700, 0x8000, 0x04)
    (battery,) = decode_notification(0x00020000, frame)
    assert battery.values["current"] is None
    assert battery.values["status"] == 4


def test_battery_high_resolution_current_flag() -> None:
    frame = struct.pack("<HhhhB", 5, 500, 3700, -1234, 0x81)
    (battery,) = decode_notification(0x00020000, frame)
    assert battery.values["current"] == pytest.approx(-123.4)
    assert battery.values["status"] == 1


def test_short_frame_names_characteristic_and_lengths() -> None:
    uuid = feature_characteristic_uuid(STWIN_INERTIAL)
    with pytest.raises(FrameError) as caught:
        decode_notification(uuid, bytes(19))
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.expected, error.actual) == (20, 19)
    assert uuid in str(error)
    assert "20" in str(error) and "19" in str(error)


def test_frame_without_timestamp_is_short() -> None:
    with pytest.raises(FrameError):
        decode_notification(TEMPERATURE_MASK, b"\x01")


def test_trailing_bytes_are_tolerated() -> None:
    frame = struct.pack("<Hh", 1, 200) + b"\xde\xad\xbe\xef"
    (sample,) = decode_notification(TEMPERATURE_MASK, frame)
    assert sample.values["value"] == pytest.approx(20.0)


def test_unknown_bits_raise_with_the_bits() -> None:
    mask = 0x00040000 | 0x04000000  # temperature + mic level (not decoded here)
    with pytest.raises(UnknownFeatureError) as caught:
        decode_notification(mask, bytes(32))
    assert caught.value.unknown_bits == 0x04000000
    assert "0x04000000" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_bytearray_input_like_bleak_delivers() -> None:
    (sample,) = decode_notification(TEMPERATURE_MASK, bytearray(struct.pack("<Hh", 1, 1)))
    assert sample.values["value"] == pytest.approx(0.1)

"""Decoding BlueST feature notifications into samples.

A notification is `uint16 timestamp (10 ms ticks) | payload | payload | ...`, little-endian,
with one payload per feature bit of the characteristic, most significant bit first.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mapper.bluest.features import (
    ACCELEROMETER,
    BATTERY,
    GYROSCOPE,
    HUMIDITY,
    MAGNETOMETER,
    PRESSURE,
    SECOND_TEMPERATURE,
    TEMPERATURE,
    describe_characteristic,
    features_of,
    frame_length,
)

Value = float | int | None


class FrameError(ValueError):
    """A notification too short for the features its characteristic announces."""

    def __init__(self, characteristic: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{characteristic}: frame has {actual} bytes, its features need at least {expected}"
        )
        self.characteristic = characteristic
        self.expected = expected
        self.actual = actual


class BatteryStatus(enum.IntEnum):
    """ST's battery status codes (low 7 bits of the status byte)."""

    LOW_BATTERY = 0x00
    DISCHARGING = 0x01
    PLUGGED_NOT_CHARGING = 0x02
    CHARGING = 0x03
    UNKNOWN = 0x04
    # Any other code means the gauge reported an error.


BATTERY_UNKNOWN_CURRENT = -0x8000
"""Raw current value (0x8000 as int16) meaning the board cannot measure it."""
_BATTERY_HIGH_RESOLUTION_CURRENT = 0x80
"""Status flag: the current is in 0.1 mA instead of mA."""


@dataclass(frozen=True)
class Sample:
    """One feature's values from one notification."""

    sensor: str
    values: Mapping[str, Value] = field(hash=False)
    unit: str
    timestamp: int
    """Raw device timestamp: 10 ms ticks, wrapping at 65536 (see TimestampUnwrapper)."""
    units: Mapping[str, str] = field(hash=False, compare=False, repr=False)
    """Unit of every key in `values`."""


def _axes(data: bytes, offset: int, scale: float) -> dict[str, Value]:
    x, y, z = struct.unpack_from("<hhh", data, offset)
    return {"x": x / scale, "y": y / scale, "z": z / scale}


def _acceleration(data: bytes, offset: int) -> dict[str, Value]:
    return _axes(data, offset, 1)


def _angular_velocity(data: bytes, offset: int) -> dict[str, Value]:
    return _axes(data, offset, 10)


def _magnetic_field(data: bytes, offset: int) -> dict[str, Value]:
    return _axes(data, offset, 1)


def _pressure(data: bytes, offset: int) -> dict[str, Value]:
    (raw,) = struct.unpack_from("<i", data, offset)
    return {"value": raw / 100}


def _humidity(data: bytes, offset: int) -> dict[str, Value]:
    (raw,) = struct.unpack_from("<H", data, offset)
    return {"value": raw / 10}


def _temperature(data: bytes, offset: int) -> dict[str, Value]:
    (raw,) = struct.unpack_from("<h", data, offset)
    return {"value": raw / 10}


def _battery(data: bytes, offset: int) -> dict[str, Value]:
    level, voltage, current, status = struct.unpack_from("<hhhB", data, offset)
    milliamps: float | None
    if current == BATTERY_UNKNOWN_CURRENT:
        milliamps = None
    elif status & _BATTERY_HIGH_RESOLUTION_CURRENT:
        milliamps = current / 10
    else:
        milliamps = float(current)
    return {
        "level": level / 10,
        "voltage": float(voltage),
        "current": milliamps,
        "status": status & 0x7F,
    }


_DECODERS: Mapping[int, Callable[[bytes, int], dict[str, Value]]] = {
    ACCELEROMETER.mask: _acceleration,
    GYROSCOPE.mask: _angular_velocity,
    MAGNETOMETER.mask: _magnetic_field,
    PRESSURE.mask: _pressure,
    HUMIDITY.mask: _humidity,
    TEMPERATURE.mask: _temperature,
    BATTERY.mask: _battery,
    SECOND_TEMPERATURE.mask: _temperature,
}


def decode_notification(characteristic: str | int, data: bytes | bytearray) -> list[Sample]:
    """Decode one notification of a feature characteristic (its UUID or mask).

    Raises UnknownFeatureError if the mask has bits we cannot decode, FrameError if the
    frame is shorter than its features need. Trailing bytes are ignored: firmwares pad.
    """
    features = features_of(characteristic)
    data = bytes(data)
    expected = frame_length(features)
    if len(data) < expected:
        raise FrameError(describe_characteristic(characteristic), expected, len(data))
    (timestamp,) = struct.unpack_from("<H", data, 0)
    samples: list[Sample] = []
    offset = 2
    for feature in features:
        values = _DECODERS[feature.mask](data, offset)
        samples.append(Sample(feature.sensor, values, feature.unit, timestamp, feature.field_units))
        offset += feature.payload_length
    return samples

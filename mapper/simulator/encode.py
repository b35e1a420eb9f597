"""The firmware side of the wire: BlueST notifications and advertisements as boards send them.

Written independently of `mapper.bluest.decode` on purpose: tests that pass frames from
here through the decoder check two implementations of ST's format against each other.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence

from mapper.bluest.features import (
    ACCELEROMETER,
    BATTERY,
    GYROSCOPE,
    HUMIDITY,
    MAGNETOMETER,
    PRESSURE,
    SECOND_TEMPERATURE,
    TEMPERATURE,
)

ST_COMPANY_ID = 0x0030
_INT16 = (-0x8000, 0x7FFF)
_UINT16 = (0, 0xFFFF)
_INT32 = (-0x80000000, 0x7FFFFFFF)
_CURRENT_UNKNOWN = -0x8000


def _fixed(value: float, scale: float, limits: tuple[int, int]) -> int:
    """Firmware-style fixed point: scale, round, saturate instead of wrapping."""
    low, high = limits
    return max(low, min(high, round(value * scale)))


def _axes(values: Sequence[float], scale: float) -> bytes:
    x, y, z = values
    return struct.pack(
        "<hhh", _fixed(x, scale, _INT16), _fixed(y, scale, _INT16), _fixed(z, scale, _INT16)
    )


def encode_acceleration(mg: Sequence[float]) -> bytes:
    return _axes(mg, 1)


def encode_angular_velocity(dps: Sequence[float]) -> bytes:
    return _axes(dps, 10)


def encode_magnetic_field(mgauss: Sequence[float]) -> bytes:
    return _axes(mgauss, 1)


def encode_pressure(hpa: Sequence[float]) -> bytes:
    return struct.pack("<i", _fixed(hpa[0], 100, _INT32))


def encode_humidity(percent: Sequence[float]) -> bytes:
    return struct.pack("<H", _fixed(percent[0], 10, _UINT16))


def encode_temperature(celsius: Sequence[float]) -> bytes:
    return struct.pack("<h", _fixed(celsius[0], 10, _INT16))


def encode_battery(values: Sequence[float]) -> bytes:
    """`(level %, voltage mV, current mA or NaN when unknown, status code)`."""
    level, millivolts, milliamps, status = values
    current = (
        _CURRENT_UNKNOWN
        if math.isnan(milliamps)
        # -32768 is reserved for "unknown", so a real current saturates one above it.
        else _fixed(milliamps, 1, (_INT16[0] + 1, _INT16[1]))
    )
    return struct.pack(
        "<hhhB",
        _fixed(level, 10, _INT16),
        _fixed(millivolts, 1, _INT16),
        current,
        int(status) & 0xFF,
    )


PAYLOAD_ENCODERS: Mapping[int, Callable[[Sequence[float]], bytes]] = {
    ACCELEROMETER.mask: encode_acceleration,
    GYROSCOPE.mask: encode_angular_velocity,
    MAGNETOMETER.mask: encode_magnetic_field,
    PRESSURE.mask: encode_pressure,
    HUMIDITY.mask: encode_humidity,
    TEMPERATURE.mask: encode_temperature,
    BATTERY.mask: encode_battery,
    SECOND_TEMPERATURE.mask: encode_temperature,
}


def encode_notification(mask: int, ticks: int, readings: Mapping[int, Sequence[float]]) -> bytes:
    """One notification of characteristic `mask`: timestamp, then each bit's payload MSB first.

    `readings` maps every feature bit of `mask` to its values in payload order.
    """
    frame = bytearray(struct.pack("<H", ticks & 0xFFFF))
    for bit in range(31, -1, -1):
        feature = 1 << bit
        if not mask & feature:
            continue
        encoder = PAYLOAD_ENCODERS.get(feature)
        if encoder is None:
            raise ValueError(f"the simulator cannot encode feature bit 0x{feature:08x}")
        frame += encoder(readings[feature])
    return bytes(frame)


def _mac_bytes(mac: str) -> bytes:
    # Firmware writes bdaddr[5] first: the advertised MAC is in display order.
    return bytes.fromhex(mac.replace(":", ""))


def advertising_payload_v2(
    board_id: int, firmware_id: int, option_bytes: bytes, mac: str | None
) -> bytes:
    """Manufacturer-specific AD payload (after the 0xFF type byte) of SDK v2 firmware."""
    if len(option_bytes) != 3:
        raise ValueError("SDK v2 advertisements carry exactly 3 option bytes")
    body = struct.pack("<HBBB", ST_COMPANY_ID, 0x02, board_id, firmware_id) + option_bytes
    return body + (_mac_bytes(mac) if mac else b"")


def advertising_payload_v1(
    board_id: int, feature_mask: int, mac: str | None, *, company_id: bool
) -> bytes:
    """SDK v1 payload, with the ST company id (newer firmware) or without it (legacy)."""
    body = struct.pack(">BBI", 0x01, board_id, feature_mask)
    if company_id:
        body = struct.pack("<H", ST_COMPANY_ID) + body
    return body + (_mac_bytes(mac) if mac else b"")


def as_bleak_manufacturer_data(payload: bytes) -> dict[int, bytes]:
    """What bleak reports for a manufacturer-specific AD payload: the first two bytes
    taken as a little-endian company id, the rest as its value."""
    return {int.from_bytes(payload[:2], "little"): payload[2:]}

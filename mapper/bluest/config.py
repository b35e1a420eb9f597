"""Commands on the BlueST config characteristic: setting a feature characteristic's rate.

ST's frame format: a command written to the config characteristic is
``destination feature mask (uint32, big-endian) | command id (uint8) | data (0-15 bytes)``;
the board answers with a notification
``timestamp (uint16 LE, 10 ms ticks) | sender feature mask (uint32 BE) | command id | data``.

BlueST leaves command ids to each feature's firmware and publishes none for the notification
rate, so this one is ours (one definition, here; the simulator implements it, a real board's
firmware must too): ``SET_RATE`` carries the rate in mHz (uint32 LE) and the board answers
``status (uint8) | rate it now runs, mHz (uint32 LE)``: status 0 = applied, 1 = not offered
(the rate is unchanged).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SET_RATE = 0x5A
RATE_APPLIED = 0
RATE_NOT_OFFERED = 1
_COMMAND = struct.Struct(">IB")
_RATE = struct.Struct("<I")
_ANSWER = struct.Struct("<H")
_MILLI = 1000


class ConfigFrameError(ValueError):
    """A config frame that cannot be read."""


@dataclass(frozen=True)
class RateCommand:
    mask: int
    """The feature characteristic whose rate is set."""
    rate_hz: float


@dataclass(frozen=True)
class RateAnswer:
    mask: int
    applied: bool
    rate_hz: float
    """The rate the characteristic runs after the command."""


def _millihertz(rate_hz: float) -> int:
    value = round(rate_hz * _MILLI)
    if not 0 < value <= 0xFFFFFFFF:
        raise ValueError(f"rate {rate_hz:g} Hz does not fit a BlueST rate command")
    return value


def encode_rate_command(mask: int, rate_hz: float) -> bytes:
    return _COMMAND.pack(mask, SET_RATE) + _RATE.pack(_millihertz(rate_hz))


def decode_rate_command(frame: bytes) -> RateCommand:
    """What the board reads from a write to its config characteristic."""
    if len(frame) != _COMMAND.size + _RATE.size:
        raise ConfigFrameError(f"a rate command is 9 bytes, got {len(frame)}")
    mask, command = _COMMAND.unpack_from(frame)
    if command != SET_RATE:
        raise ConfigFrameError(f"command 0x{command:02x} is not the rate command")
    (millihertz,) = _RATE.unpack_from(frame, _COMMAND.size)
    if millihertz == 0:
        raise ConfigFrameError("a rate of 0 Hz")
    return RateCommand(mask, millihertz / _MILLI)


def encode_rate_answer(ticks: int, mask: int, applied: bool, rate_hz: float) -> bytes:
    status = RATE_APPLIED if applied else RATE_NOT_OFFERED
    return (
        _ANSWER.pack(ticks & 0xFFFF)
        + _COMMAND.pack(mask, SET_RATE)
        + bytes([status])
        + _RATE.pack(_millihertz(rate_hz))
    )


def decode_rate_answer(frame: bytes) -> RateAnswer | None:
    """A rate answer from a config notification; None for answers to other commands."""
    if len(frame) < _ANSWER.size + _COMMAND.size:
        raise ConfigFrameError(f"a config answer is at least 7 bytes, got {len(frame)}")
    mask, command = _COMMAND.unpack_from(frame, _ANSWER.size)
    if command != SET_RATE:
        return None
    data = frame[_ANSWER.size + _COMMAND.size :]
    if len(data) != 1 + _RATE.size:
        raise ConfigFrameError(f"a rate answer carries 5 bytes of data, got {len(data)}")
    (millihertz,) = _RATE.unpack_from(data, 1)
    return RateAnswer(mask, data[0] == RATE_APPLIED, millihertz / _MILLI)

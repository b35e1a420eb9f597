"""The rate command on the BlueST config characteristic, byte by byte."""

from __future__ import annotations

import pytest

from mapper.bluest.config import (
    SET_RATE,
    ConfigFrameError,
    RateAnswer,
    RateCommand,
    decode_rate_answer,
    decode_rate_command,
    encode_rate_answer,
    encode_rate_command,
)


def test_a_command_is_mask_big_endian_then_id_then_millihertz() -> None:
    frame = encode_rate_command(0x00140000, 20.0)
    assert frame == bytes([0x00, 0x14, 0x00, 0x00, SET_RATE]) + (20_000).to_bytes(4, "little")
    assert decode_rate_command(frame) == RateCommand(0x00140000, 20.0)
    assert decode_rate_command(encode_rate_command(0x00E00000, 0.5)).rate_hz == 0.5


def test_an_answer_carries_the_status_and_the_rate_that_runs() -> None:
    frame = encode_rate_answer(0x1_2345, 0x00E00000, False, 30.0)
    assert frame[:2] == (0x2345).to_bytes(2, "little")  # ticks wrap at 16 bits
    assert decode_rate_answer(frame) == RateAnswer(0x00E00000, False, 30.0)
    assert decode_rate_answer(encode_rate_answer(7, 0x00140000, True, 1.0)) == RateAnswer(
        0x00140000, True, 1.0
    )
    other = (7).to_bytes(2, "little") + bytes([0x00, 0x14, 0x00, 0x00, 0x01, 0xFF])
    assert decode_rate_answer(other) is None  # another command's answer


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        bytes(8),
        bytes([0, 0x14, 0, 0, 0x01]) + bytes(4),  # not the rate command
        bytes([0, 0x14, 0, 0, SET_RATE]) + bytes(4),  # 0 Hz
    ],
)
def test_a_bad_command_is_refused(frame: bytes) -> None:
    with pytest.raises(ConfigFrameError):
        decode_rate_command(frame)


def test_a_short_or_odd_answer_is_refused() -> None:
    with pytest.raises(ConfigFrameError):
        decode_rate_answer(bytes(5))
    with pytest.raises(ConfigFrameError):
        decode_rate_answer(bytes(2) + bytes([0, 0x14, 0, 0, SET_RATE]) + bytes(2))
    with pytest.raises(ValueError):
        encode_rate_command(0x00140000, 0.0)

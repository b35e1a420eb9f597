"""Unwrapping BlueST's uint16 10 ms tick counter."""

from __future__ import annotations

import pytest

from mapper.bluest import TimestampUnwrapper


def test_first_value_is_its_own_time() -> None:
    assert TimestampUnwrapper().unwrap(1234) == pytest.approx(12.34)


def test_monotonic_without_wrap() -> None:
    unwrapper = TimestampUnwrapper()
    times = [unwrapper.unwrap(raw) for raw in (100, 110, 200)]
    assert times == pytest.approx([1.0, 1.1, 2.0])


def test_wrap_around() -> None:
    unwrapper = TimestampUnwrapper()
    times = [unwrapper.unwrap(raw) for raw in (65530, 65535, 4, 20)]
    assert times == pytest.approx([655.30, 655.35, 655.40, 655.56])


def test_several_wraps_accumulate() -> None:
    unwrapper = TimestampUnwrapper()
    last = 0.0
    for _ in range(3):
        for raw in (0, 30000, 60000):
            now = unwrapper.unwrap(raw)
            assert now > last or (now == last == 0.0)
            last = now
    assert last == pytest.approx((2 * 65536 + 60000) / 100)


def test_host_time_counts_wraps_missed_during_a_long_gap() -> None:
    unwrapper = TimestampUnwrapper()
    unwrapper.unwrap(1000, received_at=0.0)
    # 2 wraps + 500 ticks later: ticks alone would say 5 s.
    later = unwrapper.unwrap(1500, received_at=2 * 655.36 + 5.0)
    assert later == pytest.approx(10.0 + 2 * 655.36 + 5.0)


def test_host_time_jitter_does_not_invent_wraps() -> None:
    unwrapper = TimestampUnwrapper()
    unwrapper.unwrap(65500, received_at=100.0)
    assert unwrapper.unwrap(10, received_at=100.9) == pytest.approx(655.46)


def test_reset_forgets_history() -> None:
    unwrapper = TimestampUnwrapper()
    unwrapper.unwrap(60000)
    unwrapper.reset()
    assert unwrapper.unwrap(5) == pytest.approx(0.05)


def test_rejects_values_outside_uint16() -> None:
    with pytest.raises(ValueError):
        TimestampUnwrapper().unwrap(65536)

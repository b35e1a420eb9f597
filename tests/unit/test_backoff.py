"""Capped exponential backoff and the bounded buffer between BLE and the broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fluidos_sensors.backoff import Backoff, backoff_schedule
from mapper.dataplane.buffer import BoundedBuffer


def test_schedule_doubles_then_caps() -> None:
    assert backoff_schedule(0.5, 30.0, 9) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_reset_starts_again() -> None:
    backoff = Backoff(1.0, 10.0, jitter=0.0)
    assert [backoff.next() for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_jitter_stays_within_its_fraction_and_the_cap() -> None:
    low = Backoff(1.0, 4.0, jitter=0.2, rng=lambda: 0.0)
    high = Backoff(1.0, 4.0, jitter=0.2, rng=lambda: 0.999999)
    assert low.next() == pytest.approx(0.8)
    assert high.next() == pytest.approx(1.2, abs=1e-5)
    for _ in range(10):
        assert high.next() <= 4.0


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next()
    assert delay == 30.0


@pytest.mark.parametrize("args", [(0.0, 1.0), (2.0, 1.0), (1.0, 2.0, 0.5), (1.0, 2.0, 2.0, 1.0)])
def test_nonsense_is_refused(args: tuple[float, ...]) -> None:
    kwargs: dict[str, Any] = dict(zip(("factor", "jitter"), args[2:], strict=False))
    with pytest.raises(ValueError):
        Backoff(args[0], args[1], **kwargs)


def test_buffer_drops_the_oldest_and_counts() -> None:
    buffer: BoundedBuffer[int] = BoundedBuffer(3)
    assert all(buffer.put(i) for i in range(3))
    assert buffer.put(3) is False
    assert buffer.put(4) is False
    assert buffer.dropped == 2 and len(buffer) == 3 and buffer.high_water == 3
    assert [buffer.get_nowait() for _ in range(4)] == [2, 3, 4, None]


def test_put_back_goes_first_unless_newer_items_filled_the_buffer() -> None:
    buffer: BoundedBuffer[str] = BoundedBuffer(2)
    buffer.put("a")
    buffer.put("b")
    taken = buffer.get_nowait()
    assert taken == "a"
    assert buffer.put_back(taken)
    assert buffer.get_nowait() == "a"
    buffer.put("c")  # now full: b, c
    assert buffer.put_back("a") is False
    assert buffer.dropped == 1
    assert [buffer.get_nowait(), buffer.get_nowait()] == ["b", "c"]


async def test_get_waits_for_a_put() -> None:
    buffer: BoundedBuffer[int] = BoundedBuffer(5)
    waiter = asyncio.create_task(buffer.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    buffer.put(7)
    assert await asyncio.wait_for(waiter, 1) == 7


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BoundedBuffer(0)

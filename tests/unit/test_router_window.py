"""The latency window: percentiles and rate over the last minute, bounded in memory."""

import pytest

from router_manager.agent import window as window_module
from router_manager.agent.window import LatencyWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_and_rate_over_batches() -> None:
    clock = Clock()
    window = LatencyWindow(60.0, clock=clock)
    clock.now += 10
    window.add([0.001 * i for i in range(1, 51)])
    window.add([0.001 * i for i in range(51, 101)])
    summary = window.summary()
    assert summary.count == 100
    assert summary.rate_hz == pytest.approx(10.0)
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert window.latencies() == pytest.approx([0.001 * i for i in range(1, 101)])


def test_batches_older_than_the_window_leave_it() -> None:
    clock = Clock()
    window = LatencyWindow(60.0, clock=clock)
    window.add([1.0, 1.0])
    clock.now += 30
    window.add([0.002])
    clock.now += 31  # the first batch is 61 s old, the second 31 s
    assert window.latencies() == [0.002]
    clock.now += 30
    summary = window.summary()
    assert (summary.count, summary.p50_ms, summary.rate_hz) == (0, None, 0.0)


def test_memory_is_bounded_keeping_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(window_module, "_MAX_SAMPLES", 10)
    window = LatencyWindow(60.0, clock=Clock())
    for value in range(8):
        window.add([float(value)] * 3)
    kept = window.latencies()
    assert 10 <= len(kept) < 13
    assert kept[-3:] == [7.0, 7.0, 7.0] and kept[0] >= 4.0


def test_an_empty_batch_changes_nothing() -> None:
    window = LatencyWindow(60.0, clock=Clock())
    window.add([])
    assert window.summary().count == 0

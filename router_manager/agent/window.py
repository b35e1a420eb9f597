"""Latency and rate over the last minute, for route status, metrics and observed Flavors."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

WINDOW_SECONDS = 60.0
_MAX_SAMPLES = 120_000  # beyond ~2000 readings/s per target, keep the newest only


@dataclass(frozen=True)
class WindowSummary:
    count: int
    rate_hz: float
    p50_ms: float | None
    p99_ms: float | None


class LatencyWindow:
    """(time, latency) samples of the last `seconds`; percentiles computed on demand."""

    def __init__(self, seconds: float = WINDOW_SECONDS, clock=time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._started = clock()
        self._samples: deque[tuple[float, float]] = deque(maxlen=_MAX_SAMPLES)

    def add(self, latencies_s: list[float]) -> None:
        now = self._clock()
        self._samples.extend((now, latency) for latency in latencies_s)

    def _trim(self, now: float) -> None:
        horizon = now - self.seconds
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def latencies(self) -> list[float]:
        """The latencies (s) of the window."""
        self._trim(self._clock())
        return [sample[1] for sample in self._samples]

    def summary(self) -> WindowSummary:
        now = self._clock()
        self._trim(now)
        count = len(self._samples)
        span = min(self.seconds, max(now - self._started, 1e-9))
        if not count:
            return WindowSummary(0, 0.0, None, None)
        values = np.fromiter((s[1] for s in self._samples), dtype=float, count=count)
        p50, p99 = np.percentile(values, [50, 99]) * 1000.0
        return WindowSummary(count, count / span, float(p50), float(p99))

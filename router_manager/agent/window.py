"""Latency and rate over the last minute, for route status, metrics and observed Flavors."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
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
    """Latencies of the last `seconds`, kept as one array per batch (a delivery or an ingest
    adds hundreds at once); percentiles computed on demand."""

    def __init__(self, seconds: float = WINDOW_SECONDS, clock=time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._started = clock()
        self._chunks: deque[tuple[float, np.ndarray]] = deque()
        self._count = 0

    def add(self, latencies_s: Sequence[float]) -> None:
        if not len(latencies_s):
            return
        chunk = np.asarray(latencies_s, dtype=float)
        self._chunks.append((self._clock(), chunk))
        self._count += len(chunk)
        while self._count - len(self._chunks[0][1]) >= _MAX_SAMPLES:
            self._count -= len(self._chunks.popleft()[1])

    def _trim(self, now: float) -> None:
        horizon = now - self.seconds
        while self._chunks and self._chunks[0][0] < horizon:
            self._count -= len(self._chunks.popleft()[1])

    def _values(self) -> np.ndarray:
        self._trim(self._clock())
        if not self._chunks:
            return np.empty(0)
        return np.concatenate([chunk for _, chunk in self._chunks])

    def latencies(self) -> list[float]:
        """The latencies (s) of the window."""
        return self._values().tolist()

    def summary(self) -> WindowSummary:
        values = self._values()
        now = self._clock()
        count = len(values)
        span = min(self.seconds, max(now - self._started, 1e-9))
        if not count:
            return WindowSummary(0, 0.0, None, None)
        p50, p99 = np.percentile(values, [50, 99]) * 1000.0
        return WindowSummary(count, count / span, float(p50), float(p99))

"""Window aggregates and downsampling, computed: readings in (with their store row id),
records out. Pure logic; the edge agent runs it (`router_manager.agent.shapers`), what a buyer
may ask for is `fluidos_sensors.shaping`.

Windows are aligned to multiples of their length on the mapper's receive clock (``receivedAt``,
Unix time). Not the board's own clock: it counts from the board's boot and restarts at every
BLE reconnection, so windows on it would neither line up with the raw series (whose timestamp
is ``receivedAt``) nor stay in order. A window's record: the raw reading's measurement and
tags, ``seq`` = the window's first reading's, ``received_at`` = window start, no
``deviceTime``; ``count`` counts the readings that had a value for the field.

A window closes when a reading of a later window arrives, or, when the topic has gone quiet
(nothing arrived for `grace_s`, by the agent's clock), `grace_s` after its end. Quiet, not just
late: readings a broker kept while the agent was down arrive after their window's end, and
must still fall into it. A reading that arrives for a window already closed is late: counted,
left out. Every decision depends only on the readings in arrival order and on the start of the
last closed window (`mark`), so a shaper rebuilt from the readings stored after its cursor
decides exactly as the one that was killed: no window is lost or made twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fluidos_sensors.reading import Reading
from fluidos_sensors.shaping import Shaping

GRACE_S = 1.0

# ---------------------------------------------------------------------------------------
# Aggregation


def _aggregate(values: np.ndarray, function: str) -> float:
    if function == "count":
        return float(values.size)
    if function == "last":
        return float(values[-1])
    if function == "min":
        return float(values.min())
    if function == "max":
        return float(values.max())
    # mean and rms on values scaled by the largest magnitude: no overflow near float's limit.
    scale = float(np.abs(values).max())
    if scale == 0.0 or not math.isfinite(scale):
        return 0.0 if scale == 0.0 else float("nan")
    scaled = values / scale
    if function == "mean":
        return scale * float(scaled.mean())
    return scale * math.sqrt(float((scaled * scaled).mean()))


def window_record(readings: Sequence[Reading], shaping: Shaping, start_s: float) -> Reading:
    """The one record of a window's readings (same sensor, arrival order)."""
    first = readings[0]
    names: dict[str, None] = {}
    for reading in readings:
        names.update(dict.fromkeys(reading.values))
    values: dict[str, float | None] = {}
    units: dict[str, str] = {}
    for name in names:
        column = np.array(
            [r.values[name] for r in readings if r.values.get(name) is not None], dtype=float
        )
        for function in shaping.aggregates:
            if column.size == 0 and function != "count":
                continue
            values[f"{name}_{function}"] = _aggregate(column, function)
            if first.units:
                units[f"{name}_{function}"] = first.unit_of(name)
    return Reading(
        namespace=first.namespace,
        device=first.device,
        sensor=first.sensor,
        quantity=first.quantity,
        unit=first.unit,
        values=values,
        node=first.node,
        seq=first.seq,
        received_at=start_s,
        provider=first.provider,
        units=units or None,
    )


# ---------------------------------------------------------------------------------------
# Shapers: readings in (with their store row id), records out


class WindowShaper:
    """Tumbling windows of one topic for one aggregate shaping.

    `settled` is the row id through which every reading fed is in a closed window or late:
    the shaper's cursor may move there once the closed windows' records are stored.
    """

    def __init__(self, shaping: Shaping, *, mark_s: float = 0.0, grace_s: float = GRACE_S):
        self.shaping = shaping
        self._window_us = shaping.window_ms * 1000
        self._grace_us = round(grace_s * 1e6)
        # Start (µs) of the last window closed; 0 = none yet.
        self.mark_us = round(mark_s * 1e6)
        self._open: list[Reading] = []
        self._open_start_us = 0
        self._last_id = 0
        self._last_arrival_s = 0.0
        self.settled = 0
        self.late = 0

    @property
    def mark_s(self) -> float:
        return self.mark_us / 1e6

    def _window_of(self, reading: Reading) -> int:
        return round(reading.received_at * 1e6) // self._window_us * self._window_us

    def _close(self, settled: int) -> Reading:
        record = window_record(self._open, self.shaping, self._open_start_us / 1e6)
        self.mark_us = self._open_start_us
        self._open = []
        self.settled = settled
        return record

    def feed(self, row_id: int, reading: Reading, now_s: float) -> list[Reading]:
        """One reading in arrival order (at `now_s`); the record of the window it closes."""
        self._last_arrival_s = max(self._last_arrival_s, now_s)
        start = self._window_of(reading)
        closed: list[Reading] = []
        if self._open and start > self._open_start_us:
            closed.append(self._close(self._last_id))
        if self._open and start == self._open_start_us:
            self._open.append(reading)
        elif start <= self.mark_us or (self._open and start < self._open_start_us):
            self.late += 1
            if not self._open:
                self.settled = row_id
        else:
            self._open = [reading]
            self._open_start_us = start
        self._last_id = row_id
        return closed

    def due(self, now_s: float) -> list[Reading]:
        """The open window's record if it ended `grace_s` ago and nothing arrived since
        `grace_s` (by the agent's clock)."""
        now_us = now_s * 1e6
        if (
            self._open
            and now_us >= self._open_start_us + self._window_us + self._grace_us
            and now_us >= self._last_arrival_s * 1e6 + self._grace_us
        ):
            return [self._close(self._last_id)]
        return []


class Downsampler:
    """Every N-th reading of one topic, by ``seq`` (stable across agent restarts)."""

    def __init__(self, shaping: Shaping) -> None:
        self.shaping = shaping
        self.settled = 0
        self.late = 0
        self.mark_s = 0.0

    def feed(self, row_id: int, reading: Reading, now_s: float) -> list[Reading]:
        self.settled = row_id
        return [reading] if reading.seq % self.shaping.every == 0 else []

    def due(self, now_s: float) -> list[Reading]:
        return []


Shaper = WindowShaper | Downsampler


def make_shaper(shaping: Shaping, *, mark_s: float = 0.0) -> Shaper:
    if shaping.every:
        return Downsampler(shaping)
    return WindowShaper(shaping, mark_s=mark_s)

"""Plausible sensor values: a slowly wandering environment seen through an imperfect sensor.

The true value follows an Ornstein-Uhlenbeck process (drifts, but stays near its ambient
mean); each sensor adds a fixed offset within its datasheet accuracy plus white noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SensorModel:
    """One sensing element as the simulator models it."""

    part: str
    """ST part number, e.g. "STTS22H"."""
    feature_mask: int
    """The BlueST feature bit this sensor feeds."""
    accuracy: float
    """± datasheet accuracy (offset) per field, in the feature's unit."""
    noise_rms: float
    ambient: tuple[float, ...]
    """Mean true value of every field."""
    wander: float
    """Standard deviation of the true value's slow drift around `ambient`."""
    drift_seconds: float = 900.0
    """Correlation time of that drift."""


class SensorSignal:
    """Successive readings of one sensor."""

    def __init__(self, model: SensorModel, rng: np.random.Generator) -> None:
        self.model = model
        self._rng = rng
        size = len(model.ambient)
        self._ambient = np.asarray(model.ambient, dtype=float)
        # A calibrated part sits somewhere inside its accuracy band, not at its edge.
        self._offset = rng.uniform(-0.5, 0.5, size) * model.accuracy
        self._truth = self._ambient + rng.normal(0.0, model.wander, size)
        self._last: float | None = None

    @property
    def truth(self) -> tuple[float, ...]:
        """The current true value (what a perfect sensor would read)."""
        return tuple(float(v) for v in self._truth)

    def read(self, now: float) -> tuple[float, ...]:
        """A reading at monotonic time `now` (seconds)."""
        if self._last is not None and now > self._last:
            # Exact OU step, so the drift statistics do not depend on the sampling rate.
            decay = math.exp(-(now - self._last) / self.model.drift_seconds)
            spread = self.model.wander * math.sqrt(1.0 - decay * decay)
            self._truth = (
                self._ambient
                + (self._truth - self._ambient) * decay
                + self._rng.normal(0.0, spread, self._truth.size)
            )
        if self._last is None or now > self._last:
            self._last = now
        noise = self._rng.normal(0.0, self.model.noise_rms, self._truth.size)
        return tuple(float(v) for v in self._truth + self._offset + noise)


@dataclass(frozen=True)
class BatteryModel:
    """A Li-Po cell discharging under a steady load."""

    feature_mask: int
    level_percent: float = 87.0
    drain_percent_per_hour: float = 4.0
    load_milliamps: float = 95.0
    current_known: bool = True
    """Some gauges cannot measure current and send 0x8000."""


class BatterySignal:
    """Successive battery readings: `(level %, voltage mV, current mA or NaN, status)`."""

    _DISCHARGING = 0x01
    _LOW_BATTERY = 0x00

    def __init__(self, model: BatteryModel, rng: np.random.Generator, start: float) -> None:
        self.model = model
        self._rng = rng
        self._start = start

    def read(self, now: float) -> tuple[float, ...]:
        hours = max(0.0, now - self._start) / 3600.0
        level = max(0.0, self.model.level_percent - self.model.drain_percent_per_hour * hours)
        # Roughly linear Li-Po curve between 3.3 V (empty) and 4.2 V (full).
        millivolts = 3300.0 + 9.0 * level + float(self._rng.normal(0.0, 2.0))
        current = (
            -(self.model.load_milliamps + float(self._rng.normal(0.0, 2.0)))
            if self.model.current_known
            else math.nan
        )
        status = self._LOW_BATTERY if level < 10.0 else self._DISCHARGING
        return (level, millivolts, current, float(status))

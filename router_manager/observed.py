"""What the data path measured, back on the sensor's Flavor (no I/O).

A route's status carries the delivery latency (mapper receive -> 2xx) and the rate readings
arrive at; the Flavor gets them as ``typeData.observed`` beside the declared values, so a
buyer can filter on what is measured. Written at a bounded rate: only when a value moved by
more than `RELATIVE_CHANGE` or `REFRESH_SECONDS` passed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from fluidos_sensors.flavor import ObservedPerformance, observed_body

RELATIVE_CHANGE = 0.2
REFRESH_SECONDS = 60.0
MIN_INTERVAL_SECONDS = 10.0


def observed_from_status(status: Mapping[str, Any], now: float) -> ObservedPerformance | None:
    """The observed performance a route status shows, or None before anything was delivered."""
    latency = status.get("latencyP50Ms")
    rate = status.get("rateHz")
    if not isinstance(latency, int | float) or not math.isfinite(latency):
        return None
    rate_hz = float(rate) if isinstance(rate, int | float) and math.isfinite(rate) else None
    updated = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ObservedPerformance(
        latency_ms=round(float(latency), 3),
        rate_hz=None if rate_hz is None else round(rate_hz, 3),
        updated=updated,
    )


def _moved(old: float | None, new: float | None) -> bool:
    if old is None or new is None:
        return old != new
    scale = max(abs(old), abs(new), 1e-9)
    return abs(new - old) / scale > RELATIVE_CHANGE


def worth_writing(
    last: ObservedPerformance | None, last_at: float | None, new: ObservedPerformance, now: float
) -> bool:
    """Whether to write `new` over `last` (written at `last_at`)."""
    if last is None or last_at is None:
        return True
    if now - last_at < MIN_INTERVAL_SECONDS:
        return False
    if now - last_at >= REFRESH_SECONDS:
        return True
    return _moved(last.latency_ms, new.latency_ms) or _moved(last.rate_hz, new.rate_hz)


def observed_patch(observed: ObservedPerformance) -> dict[str, Any]:
    """A merge patch setting the Flavor's ``typeData.observed`` (other typeData stays)."""
    return {"spec": {"flavorType": {"typeData": {"observed": observed_body(observed)}}}}

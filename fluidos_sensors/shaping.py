"""Data shaped for a buyer at the edge, as a buyer asks for it: window aggregates or
downsampling instead of every raw reading. The vocabulary every part shares (requests, the
REAR purchase, Contracts, routes); the edge agent computes it (`router_manager.aggregation`).

- **aggregates over tumbling windows**: any of ``mean, min, max, rms, count, last`` over
  windows of ``windowMs``; one record per window and sensor, per axis, fields
  ``<field>_<function>``, timestamp = window start;
- **downsampling**: ``every: N`` keeps the readings whose ``seq`` is a multiple of N.

As an object (route target ``shape``, request ``endpoint.shape``, the purchase's
``ingressTelemetryEndpoint.shape``, a Contract's annotation): ``{"aggregate": ["mean",
"max"], "windowMs": 1000}`` or ``{"every": 10}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Aggregate = Literal["mean", "min", "max", "rms", "count", "last"]
AGGREGATES: tuple[Aggregate, ...] = ("mean", "min", "max", "rms", "count", "last")
WINDOW_MS_MIN = 10
WINDOW_MS_MAX = 3_600_000  # an hour: a window's readings wait in the edge's log until it closes
EVERY_MAX = 1_000_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


class ShapingError(ValueError):
    """A shaping that cannot be used; the message names the field."""


@dataclass(frozen=True, order=True)
class Shaping:
    """What a target asks for instead of raw readings (aggregates over a window, or every
    N-th reading). Two targets asking the same share one computation."""

    aggregates: tuple[str, ...] = ()  # in AGGREGATES order
    window_ms: int = 0
    every: int = 0

    @property
    def key(self) -> str:
        """A short stable name: ``mean,max@1000ms`` or ``every=10``."""
        if self.every:
            return f"every={self.every}"
        return f"{','.join(self.aggregates)}@{self.window_ms}ms"

    def body(self) -> dict[str, object]:
        """As a route target's ``shape`` holds it."""
        if self.every:
            return {"every": self.every}
        return {"aggregate": list(self.aggregates), "windowMs": self.window_ms}


def parse_shaping(raw: object, path: str = "shape") -> Shaping | None:
    """A target's ``shape`` (None or {} for raw readings); ShapingError names the field."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ShapingError(f"{path}: must be an object")
    unknown = set(raw) - {"aggregate", "windowMs", "every"}
    if unknown:
        raise ShapingError(f"{path}.{sorted(unknown)[0]}: unknown field")
    aggregate, window, every = raw.get("aggregate"), raw.get("windowMs"), raw.get("every")
    if every is not None:
        if aggregate is not None or window is not None:
            raise ShapingError(f"{path}.every: goes without aggregate and windowMs")
        if isinstance(every, bool) or not isinstance(every, int) or not 2 <= every <= EVERY_MAX:
            raise ShapingError(f"{path}.every: must be an integer 2..{EVERY_MAX}")
        return Shaping(every=every)
    if aggregate is None and window is None:
        return None
    if not isinstance(aggregate, list) or not aggregate:
        raise ShapingError(f"{path}.aggregate: must be a list of {', '.join(AGGREGATES)}")
    for index, name in enumerate(aggregate):
        if name not in AGGREGATES:
            raise ShapingError(
                f"{path}.aggregate[{index}]: must be one of {', '.join(AGGREGATES)}, "
                f"got {str(name)[:40]!r}"
            )
    if (
        isinstance(window, bool)
        or not isinstance(window, int)
        or not WINDOW_MS_MIN <= window <= WINDOW_MS_MAX
    ):
        raise ShapingError(f"{path}.windowMs: must be an integer {WINDOW_MS_MIN}..{WINDOW_MS_MAX}")
    return Shaping(aggregates=tuple(a for a in AGGREGATES if a in aggregate), window_ms=window)


def describe_shape(raw: object) -> str:
    """A ``shape`` object as listings show it: "raw", its key, or "invalid"."""
    try:
        shaping = parse_shaping(raw)
    except ShapingError:
        return "invalid"
    return shaping.key if shaping else "raw"


def parse_aggregates(text: str) -> list[str]:
    """``mean,max`` (the CLI's form) -> the list a shape holds; ShapingError says why not."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [name for name in names if name not in AGGREGATES]
    if not names or wrong:
        raise ShapingError(f"must be a comma-separated list of {', '.join(AGGREGATES)}")
    return names


def parse_window(text: str) -> int:
    """``1s``, ``500ms``, ``2m``, ``1h`` (a bare number is seconds) -> milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ShapingError(f"must be a duration such as 500ms, 1s or 5m, got {text[:40]!r}")
    milliseconds = float(match.group(1)) * _UNIT_MS[match.group(2) or "s"]
    if milliseconds != int(milliseconds):
        raise ShapingError(f"must be a whole number of milliseconds, got {text[:40]!r}")
    return int(milliseconds)

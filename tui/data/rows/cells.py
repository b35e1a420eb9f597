"""What every table's rows are made of: object keys, cells (text plus a sort value and a tone
the widgets map to CSS component classes), and the formatting of numbers, times and rates."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.units import format_number

ObjectKey = tuple[str, str, str]
"""(cluster, namespace, name) of one object."""

# Tones: what a value means to an operator; the stylesheet gives each its colour.
GOOD, BAD, WARN, DIM = "good", "bad", "warn", "dim"

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16


def row_key(key: ObjectKey, part: str | None = None) -> str:
    """The DataTable row key of an object (and of one part of it, e.g. a route target)."""
    text = "/".join(key)
    return text if part is None else f"{text}#{part}"


def object_key(cluster: str, obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (cluster, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


@dataclass(frozen=True)
class Cell:
    """One table cell: what it says, how it sorts (unknowns last) and its tone."""

    text: str
    sort: tuple[Any, ...]
    tone: str = ""


def cell(text: object, sort: Any = None, tone: str = "") -> Cell:
    """A cell sorting by `sort` (its text when None); empty cells sort last."""
    shown = "" if text is None else str(text)
    if sort is None:
        sort = shown.casefold()
    return Cell(shown or "-", (0, sort) if shown else (1, ""), tone)


def number_cell(value: float | None, unit: str = "", tone: str = "") -> Cell:
    if value is None:
        return cell(None)
    text = format_number(round(value, 3)) + (f" {unit}" if unit else "")
    return cell(text, float(value), tone)


def count_cell(value: object, tone: str = "") -> Cell:
    number = as_number(value)
    if number is None:
        return cell(None)
    return cell(format_number(number), number, tone if number else "")


def as_number(value: object) -> float | None:
    """A finite number from a JSON value, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 time (as the API server writes it), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def short_time(value: object) -> str:
    """ "2025-03-01T12:00:03Z" -> "03-01 12:00:03" (UTC); unparsable text is kept."""
    parsed = parse_time(value)
    if parsed is None:
        return str(value) if value else ""
    return parsed.astimezone(dt.UTC).strftime("%m-%d %H:%M:%S")


def time_cell(value: object) -> Cell:
    parsed = parse_time(value)
    return cell(short_time(value), parsed.timestamp() if parsed else None)


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters scaled to their maximum ("" when none)."""
    recent = [max(0.0, v) for v in values[-width:]]
    if not recent:
        return ""
    top = max(recent)
    if top <= 0:
        return SPARK_BLOCKS[0] * len(recent)
    last = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[min(last, round(v / top * last))] for v in recent)


def object_ref(key: ObjectKey) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


def join_present(values: Iterable[str]) -> str:
    return ", ".join(v for v in values if v)

"""Shaping at the edge: window aggregates and downsampling, with plain values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluidos_sensors.reading import Reading
from fluidos_sensors.shaping import (
    Shaping,
    ShapingError,
    parse_aggregates,
    parse_shaping,
    parse_window,
)
from router_manager.aggregation import Downsampler, WindowShaper, window_record

T0 = 1767225600.0  # a window boundary for every window length used here


def reading(seq: int, at: float, **changes: Any) -> Reading:
    base: dict[str, Any] = dict(
        namespace="default",
        device="stwin-1",
        sensor="acceleration",
        quantity="acceleration",
        unit="mg",
        values={"x": float(seq), "y": -float(seq), "z": 1000.0},
        node="provider-1-edge",
        seq=seq,
        received_at=at,
        device_time=seq / 100,
        provider="provider-1",
    )
    base.update(changes)
    return Reading(**base)


MEAN_MAX_1S = Shaping(aggregates=("mean", "max"), window_ms=1000)


def test_shapes_parse_and_name_the_field() -> None:
    assert parse_shaping(None) is None and parse_shaping({}) is None
    shaping = parse_shaping({"aggregate": ["max", "mean"], "windowMs": 1000})
    assert shaping == MEAN_MAX_1S and shaping.key == "mean,max@1000ms"
    assert parse_shaping({"every": 10}) == Shaping(every=10)
    assert Shaping(every=10).key == "every=10"
    for raw, field in (
        ({"aggregate": ["median"], "windowMs": 1000}, "shape.aggregate[0]"),
        ({"aggregate": [], "windowMs": 1000}, "shape.aggregate"),
        ({"aggregate": ["mean"]}, "shape.windowMs"),
        ({"aggregate": ["mean"], "windowMs": 5}, "shape.windowMs"),
        ({"aggregate": ["mean"], "windowMs": True}, "shape.windowMs"),
        ({"every": 1}, "shape.every"),
        ({"every": 10, "windowMs": 1000}, "shape.every"),
        ({"speed": 1}, "shape.speed"),
        ("mean", "shape"),
    ):
        with pytest.raises(ShapingError, match=f"^{field.replace('[', '.').replace(']', '.')}:"):
            parse_shaping(raw)
    assert parse_shaping(MEAN_MAX_1S.body()) == MEAN_MAX_1S
    assert parse_shaping(Shaping(every=3).body()) == Shaping(every=3)


def test_cli_forms() -> None:
    assert parse_aggregates("mean, max") == ["mean", "max"]
    with pytest.raises(ShapingError):
        parse_aggregates("mean,median")
    assert [parse_window(t) for t in ("1s", "500ms", "2m", "1h", "2", "0.25s")] == [
        1000, 500, 120_000, 3_600_000, 2000, 250,
    ]  # fmt: skip
    for bad in ("fast", "1.0005s", "-1s", "1d"):
        with pytest.raises(ShapingError):
            parse_window(bad)


def test_a_window_record_per_axis() -> None:
    rows = [reading(n, T0 + n / 10) for n in range(4)]
    shaping = Shaping(aggregates=("mean", "min", "max", "rms", "count", "last"), window_ms=1000)
    record = window_record(rows, shaping, T0)
    assert (record.seq, record.received_at, record.device_time) == (0, T0, None)
    assert (record.device, record.sensor, record.unit, record.units) == (
        "stwin-1", "acceleration", "mg", None,
    )  # fmt: skip
    values = record.values
    assert values["x_mean"] == 1.5 and values["x_min"] == 0.0 and values["x_max"] == 3.0
    assert values["y_max"] == 0.0 and values["x_last"] == 3.0 and values["x_count"] == 4.0
    assert values["x_rms"] == pytest.approx(math.sqrt((0 + 1 + 4 + 9) / 4))
    assert values["z_mean"] == 1000.0
    assert len(values) == 18


def test_unknown_values_count_as_absent_and_units_follow_their_field() -> None:
    rows = [
        reading(0, T0, values={"level": 80.0, "voltage": None}, units={"level": "%"}),
        reading(1, T0 + 0.1, values={"level": 70.0, "voltage": None}, units={"level": "%"}),
    ]
    record = window_record(rows, Shaping(aggregates=("mean", "count"), window_ms=1000), T0)
    assert record.values == {"level_mean": 75.0, "level_count": 2.0, "voltage_count": 0.0}
    assert record.units == {"level_mean": "%", "level_count": "%", "voltage_count": "mg"}


@given(st.lists(st.floats(-1.7e308, 1.7e308), min_size=1, max_size=30))
def test_mean_and_rms_stay_finite_near_the_float_limit(xs: list[float]) -> None:
    rows = [reading(n, T0, values={"v": x}) for n, x in enumerate(xs)]
    record = window_record(rows, Shaping(aggregates=("mean", "rms"), window_ms=1000), T0)
    mean, rms = record.values["v_mean"], record.values["v_rms"]
    assert mean is not None and rms is not None and math.isfinite(mean) and math.isfinite(rms)
    assert min(xs) - 1e-9 * abs(min(xs)) <= mean <= max(xs) + 1e-9 * abs(max(xs))
    assert rms >= abs(mean) * (1 - 1e-9)
    record.encode()  # a record is a reading every encoder takes


def test_windows_close_when_a_later_one_starts_or_after_the_grace() -> None:
    shaper = WindowShaper(MEAN_MAX_1S, grace_s=0.5)
    out = []
    for row_id, r in enumerate([reading(n, T0 + n * 0.25) for n in range(9)], start=101):
        out += [(row_id, record) for record in shaper.feed(row_id, r, r.received_at)]
    # Readings at 0, .25, .5, .75 | 1.0 ... 1.75 | 2.0 (open).
    assert [(row_id, rec.received_at, rec.values["x_max"]) for row_id, rec in out] == [
        (105, T0, 3.0),
        (109, T0 + 1, 7.0),
    ]
    assert shaper.settled == 108 and shaper.mark_s == T0 + 1
    assert shaper.due(T0 + 3.4) == []
    (last,) = shaper.due(T0 + 3.5)  # the window ended at 3, the last reading came at 2
    assert (last.received_at, last.values["x_mean"], shaper.settled) == (T0 + 2, 8.0, 109)
    assert shaper.due(T0 + 10) == []


def test_a_backlog_arriving_late_still_falls_into_its_windows() -> None:
    """Readings a broker kept while the agent was down arrive long after their window ended:
    the clock does not close a window while readings keep arriving."""
    shaper = WindowShaper(MEAN_MAX_1S, grace_s=0.5)
    restart = T0 + 60
    records = []
    for n in range(8):  # two windows' worth, arriving 1 ms apart a minute late
        now = restart + n / 1000
        records += shaper.feed(n + 1, reading(n, T0 + n * 0.25), now)
        records += shaper.due(now)
    assert [r.values["x_max"] for r in records] == [3.0]  # all four of the first window
    assert [r.received_at for r in records] == [T0]
    assert shaper.late == 0
    (last,) = shaper.due(restart + 0.6)
    assert last.received_at == T0 + 1 and last.values["x_max"] == 7.0


def test_late_readings_are_counted_and_left_out() -> None:
    shaper = WindowShaper(MEAN_MAX_1S)
    assert shaper.feed(1, reading(0, T0 + 1.1), T0 + 1.1) == []
    assert shaper.feed(2, reading(1, T0 + 0.9), T0 + 1.2) == []  # before the open window
    (record,) = shaper.feed(3, reading(2, T0 + 2.0), T0 + 2.0)
    assert record.values["x_max"] == 0.0 and shaper.late == 1 and shaper.settled == 2
    shaper.due(T0 + 9)
    assert shaper.feed(4, reading(3, T0 + 2.5), T0 + 9.1) == []  # closed by the grace
    assert shaper.late == 2 and shaper.settled == 4


def run(shaper: WindowShaper, rows: list[tuple[int, Reading]], clock: list[float]) -> list[Any]:
    """Feed rows, calling `due` at each clock time in between (clock[i] after row i)."""
    out = []
    for (row_id, r), now in zip(rows, clock, strict=True):
        out += shaper.feed(row_id, r, now)
        out += shaper.due(now)
    return out


@given(
    gaps=st.lists(st.floats(0, 0.7), min_size=2, max_size=60),
    kill_at=st.integers(0, 59),
    lag=st.floats(0, 2),
)
def test_a_shaper_rebuilt_after_a_kill_makes_the_same_windows_once(
    gaps: list[float], kill_at: int, lag: float
) -> None:
    """The agent is killed after `kill_at` readings: what it stored survives (the records of
    closed windows, its cursor `settled` and `mark`, written together). The restarted agent
    feeds a new shaper every stored reading after the cursor (no clock in between), then goes
    on as before. Together they make exactly the windows an unkilled shaper makes, once."""
    times = list(np.cumsum(gaps) + T0)
    rows = [(100 + n, reading(n, at)) for n, at in enumerate(times)]
    clock = [at + lag for at in times]
    whole = run(WindowShaper(MEAN_MAX_1S), rows, clock)

    kill_at = min(kill_at, len(rows))
    first = WindowShaper(MEAN_MAX_1S)
    stored = run(first, rows[:kill_at], clock[:kill_at])
    cursor, mark = first.settled, first.mark_s
    second = WindowShaper(MEAN_MAX_1S, mark_s=mark)
    restart = clock[kill_at - 1] if kill_at else T0
    for row_id, r in rows[:kill_at]:
        if row_id > cursor:
            stored += second.feed(row_id, r, restart)  # the replay at restart
    stored += run(second, rows[kill_at:], clock[kill_at:])
    assert [(r.received_at, r.values) for r in stored] == [(r.received_at, r.values) for r in whole]


def test_downsampling_keeps_every_nth_seq() -> None:
    shaper = Downsampler(Shaping(every=3))
    kept = [r.seq for n in range(10) for r in shaper.feed(n, reading(n, T0 + n), T0 + n)]
    assert kept == [0, 3, 6, 9] and shaper.settled == 9

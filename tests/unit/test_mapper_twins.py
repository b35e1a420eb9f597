"""Twin reporting: the rate limit, the DeviceStatus shape, and surviving an API outage."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.reading import Reading
from fluidos_sensors.twins import EXTENSIONS_KEY, OFFLINE, ONLINE, reported_twin
from mapper.dataplane.twins import DeviceKey, ReportGate, TwinReporter, merge_observed_desired

KEY = DeviceKey("default", "stwin-1")


def reading(sensor: str = "pressure", seq: int = 0, **values: float | None) -> Reading:
    return Reading(
        namespace="default",
        device="stwin-1",
        sensor=sensor,
        quantity=sensor,
        unit="hPa",
        values=values or {"value": 1013.25},
        node="edge",
        seq=seq,
        received_at=1767225600.5,
        device_time=3.21,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Store:
    def __init__(self) -> None:
        self.writes: list[tuple[DeviceKey, str | None, dict[str, Any]]] = []
        self.failing = False

    def write(self, key: DeviceKey, owner_uid: str | None, status: dict[str, Any]) -> None:
        if self.failing:
            raise ConnectionError("API server unreachable")
        self.writes.append((key, owner_uid, json.loads(json.dumps(status))))


def test_gate_cycle_never_below_min_interval() -> None:
    gate = ReportGate(cycle=0.01, min_interval=1.0)
    assert gate.cycle == 1.0
    assert gate.due(0.0, urgent=False)
    gate.mark(0.0)
    assert not gate.due(0.5, urgent=True)
    assert gate.due(1.0, urgent=False)


def test_gate_urgent_changes_wait_only_min_interval() -> None:
    gate = ReportGate(cycle=10.0, min_interval=0.5)
    gate.mark(0.0)
    assert not gate.due(0.4, urgent=True)
    assert gate.due(0.5, urgent=True)
    assert not gate.due(9.9, urgent=False)
    assert gate.due(10.0, urgent=False)


def test_reported_twin_values_and_metadata_are_strings() -> None:
    single = reported_twin(reading())
    assert single["propertyName"] == "pressure"
    assert single["reported"]["value"] == "1013.25"
    meta = single["reported"]["metadata"]
    assert meta["timestamp"] == "1767225600500" and meta["type"] == "float"
    assert meta["seq"] == "0" and meta["deviceTime"] == "3.21" and meta["unit"] == "hPa"
    axes = reported_twin(reading("acceleration", x=1.0, y=2.0, z=3.0))
    assert json.loads(axes["reported"]["value"]) == {"x": 1.0, "y": 2.0, "z": 3.0}
    assert axes["reported"]["metadata"]["encoding"] == "json"
    assert all(isinstance(v, str) for v in axes["reported"]["metadata"].values())


def test_observed_desired_written_by_others_is_kept() -> None:
    status = {"twins": [reported_twin(reading())]}
    previous = {"twins": [{"propertyName": "pressure", "observedDesired": {"value": "1000"}}]}
    merged = merge_observed_desired(status, previous)
    assert merged["twins"][0]["observedDesired"] == {"value": "1000"}


async def test_reporter_writes_state_twins_and_respects_the_cycle() -> None:
    clock, store = Clock(), Store()
    reporter = TwinReporter(
        store, min_interval=1.0, default_cycle=5.0, clock=clock, wall=lambda: 1767225600.0
    )
    reporter.track(KEY, "uid-1", None)
    await reporter.report_due()
    assert store.writes == []  # nothing known yet

    reporter.set_state(KEY, ONLINE, mac="AA:BB:CC:DD:EE:FF", stm32Uid="00AB")
    reporter.update(KEY, reading(seq=0))
    await reporter.report_due()
    key, owner, status = store.writes[-1]
    assert (key, owner) == (KEY, "uid-1")
    assert status["state"] == ONLINE and status["lastOnlineTime"] == "2026-01-01T00:00:00Z"
    assert [t["propertyName"] for t in status["twins"]] == ["pressure"]
    assert status["extensions"][EXTENSIONS_KEY]["stm32Uid"] == "00AB"

    for seq in range(1, 50):  # a stream of readings is not a reason to write more often
        reporter.update(KEY, reading(seq=seq))
        clock.now += 0.05
        await reporter.report_due()
    assert len(store.writes) == 1
    clock.now = 100.0 + 5.0
    await reporter.report_due()
    assert len(store.writes) == 2
    assert store.writes[-1][2]["twins"][0]["reported"]["metadata"]["seq"] == "49"


async def test_state_change_goes_out_after_min_interval_not_the_cycle() -> None:
    clock, store = Clock(), Store()
    reporter = TwinReporter(
        store, min_interval=1.0, default_cycle=30.0, clock=clock, wall=lambda: 1767225600.0
    )
    reporter.track(KEY, None, None)
    reporter.set_state(KEY, ONLINE)
    await reporter.report_due()
    reporter.set_state(KEY, OFFLINE, reason="link lost")
    clock.now += 0.5
    await reporter.report_due()
    assert len(store.writes) == 1
    clock.now += 0.5
    await reporter.report_due()
    status = store.writes[-1][2]
    assert status["state"] == OFFLINE
    assert status["lastOnlineTime"] == "2026-01-01T00:00:00Z"
    assert status["extensions"][EXTENSIONS_KEY]["reason"] == "link lost"


async def test_device_report_cycle_is_used_but_floored() -> None:
    clock, store = Clock(), Store()
    reporter = TwinReporter(store, min_interval=2.0, default_cycle=30.0, clock=clock)
    reporter.track(KEY, None, 0.1)
    assert reporter.state_of(KEY).gate.cycle == 2.0  # type: ignore[union-attr]
    reporter.track(KEY, None, 7.0)
    assert reporter.state_of(KEY).gate.cycle == 7.0  # type: ignore[union-attr]


async def test_api_outage_is_counted_and_survived() -> None:
    clock, store = Clock(), Store()
    reporter = TwinReporter(
        store,
        min_interval=0.1,
        default_cycle=0.1,
        clock=clock,
        backoff=lambda: Backoff(1.0, 1.0, jitter=0.0),
    )
    reporter.track(KEY, None, None)
    reporter.set_state(KEY, ONLINE)
    store.failing = True
    await reporter.report_due()
    assert reporter.stats.failures == 1 and store.writes == []
    for _ in range(5):  # within the backoff: skipped, not attempted
        clock.now += 0.15
        reporter.update(KEY, reading())
        await reporter.report_due()
    assert reporter.stats.failures == 1 and reporter.stats.skipped >= 1
    store.failing = False
    clock.now += 1.0
    await reporter.report_due()
    assert reporter.stats.writes == 1
    assert store.writes[-1][2]["state"] == ONLINE  # the pending state was not lost


async def test_flush_writes_pending_changes_within_its_timeout() -> None:
    store = Store()
    reporter = TwinReporter(store, min_interval=0.05, default_cycle=60.0)
    reporter.track(KEY, None, None)
    reporter.set_state(KEY, ONLINE)
    await reporter.report_due()
    reporter.set_state(KEY, OFFLINE, reason="mapper stopped")
    await reporter.flush(timeout=1.0)
    assert store.writes[-1][2]["state"] == OFFLINE


def test_untracked_devices_are_ignored() -> None:
    reporter = TwinReporter(Store())
    reporter.set_state(KEY, ONLINE)
    reporter.update(KEY, reading())
    assert reporter.tracked() == [] and reporter.due() == []


def test_min_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReportGate(1.0, 0.0)

"""Device twins: online state, last-online time and latest values, written to DeviceStatus.

The DeviceStatus format is `fluidos_sensors/twins.py`'s (the TUI reads it too). Each device is
written at its report cycle and never more often than `min_interval`; a state change goes out
as soon as `min_interval` allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.reading import Reading
from fluidos_sensors.twins import ONLINE, UNKNOWN, device_status

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class DeviceKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ReportGate:
    """When a device's twin may be written: every `cycle` s, urgent changes after `min_interval`.

    The effective cycle is never shorter than `min_interval`, whatever the Device asks for.
    """

    def __init__(self, cycle: float, min_interval: float) -> None:
        if min_interval <= 0:
            raise ValueError(f"min_interval must be > 0, got {min_interval}")
        self.min_interval = min_interval
        self.cycle = max(cycle, min_interval)
        self.last: float | None = None

    def due(self, now: float, *, urgent: bool) -> bool:
        if self.last is None:
            return True
        return now - self.last >= (self.min_interval if urgent else self.cycle)

    def mark(self, now: float) -> None:
        self.last = now


@dataclass
class TwinState:
    """What the mapper knows of one device, waiting to be written."""

    key: DeviceKey
    owner_uid: str | None
    gate: ReportGate
    state: str = UNKNOWN
    last_online: float | None = None
    latest: dict[str, Reading] = field(default_factory=dict)
    rates: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Rate group -> (the rate the board answered it runs, Unix time of the answer)."""
    extensions: dict[str, Any] = field(default_factory=dict)
    dirty: bool = False
    urgent: bool = False

    def status(self, now: float) -> dict[str, Any]:
        """The DeviceStatus `status` for this state at Unix time `now`."""
        return device_status(
            self.state, self.last_online, self.latest, self.extensions, now, self.rates
        )


def merge_observed_desired(
    status: dict[str, Any], previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Keep the `observedDesired` the device controller wrote into twins we rewrite."""
    if not previous:
        return status
    observed = {
        twin.get("propertyName"): twin["observedDesired"]
        for twin in (previous.get("twins") or [])
        if isinstance(twin, Mapping) and twin.get("observedDesired")
    }
    for twin in status.get("twins", []):
        if twin["propertyName"] in observed:
            twin["observedDesired"] = observed[twin["propertyName"]]
    return status


class StatusStore(Protocol):
    """Writes a DeviceStatus (blocking; the reporter calls it from a worker thread)."""

    def write(self, key: DeviceKey, owner_uid: str | None, status: dict[str, Any]) -> None: ...


@dataclass
class TwinStats:
    writes: int = 0
    failures: int = 0
    skipped: int = 0
    """Reports not attempted because the API was failing (waiting out its backoff)."""


class TwinReporter:
    """Keeps every tracked device's DeviceStatus up to date, within its rate limits."""

    def __init__(
        self,
        store: StatusStore,
        *,
        min_interval: float = 1.0,
        default_cycle: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        backoff: Callable[[], Backoff] = lambda: Backoff(1.0, 30.0),
    ) -> None:
        self._store = store
        self.min_interval = min_interval
        self.default_cycle = default_cycle
        self._clock = clock
        self._wall = wall
        self._devices: dict[DeviceKey, TwinState] = {}
        self._backoff = backoff()
        self._blocked_until = 0.0
        self._failing = False
        self.stats = TwinStats()

    # What the data plane tells it

    def track(self, key: DeviceKey, owner_uid: str | None, cycle: float | None) -> None:
        """Start (or keep) reporting for a Device; `cycle` None means the default."""
        cycle = cycle if cycle and cycle > 0 else self.default_cycle
        known = self._devices.get(key)
        if known is not None:
            known.owner_uid = owner_uid
            if known.gate.cycle != max(cycle, self.min_interval):
                gate = ReportGate(cycle, self.min_interval)
                gate.last = known.gate.last
                known.gate = gate
            return
        self._devices[key] = TwinState(key, owner_uid, ReportGate(cycle, self.min_interval))

    def untrack(self, key: DeviceKey) -> None:
        self._devices.pop(key, None)

    def tracked(self) -> list[DeviceKey]:
        return sorted(self._devices)

    def state_of(self, key: DeviceKey) -> TwinState | None:
        return self._devices.get(key)

    def set_state(self, key: DeviceKey, state: str, **extensions: Any) -> None:
        twin = self._devices.get(key)
        if twin is None:
            return
        twin.extensions.update(extensions)
        if twin.state == state:
            return
        if twin.state == ONLINE:
            twin.last_online = self._wall()
        twin.state = state
        twin.dirty = twin.urgent = True

    def update(self, key: DeviceKey, reading: Reading) -> None:
        twin = self._devices.get(key)
        if twin is None:
            return
        twin.latest[reading.sensor] = reading
        twin.dirty = True

    def set_rate(self, key: DeviceKey, group: str, rate_hz: float) -> None:
        """The board runs rate group `group` at `rate_hz` (reported at once: a buyer waits)."""
        twin = self._devices.get(key)
        if twin is None:
            return
        twin.rates[group] = (rate_hz, self._wall())
        twin.dirty = twin.urgent = True

    def set_extensions(self, key: DeviceKey, **extensions: Any) -> None:
        twin = self._devices.get(key)
        if twin is not None:
            twin.extensions.update(extensions)

    # Writing

    def due(self) -> list[TwinState]:
        now = self._clock()
        return [
            twin
            for twin in self._devices.values()
            if twin.dirty and twin.gate.due(now, urgent=twin.urgent)
        ]

    async def report_due(self) -> None:
        """Write every device whose report is due (one pass)."""
        for twin in self.due():
            if self._clock() < self._blocked_until:
                self.stats.skipped += 1
                twin.gate.mark(self._clock())  # its next turn comes a cycle later
                continue
            await self._write(twin)

    async def _write(self, twin: TwinState) -> bool:
        now = self._clock()
        status = twin.status(self._wall())
        twin.gate.mark(now)
        was_urgent = twin.urgent
        twin.dirty = twin.urgent = False
        try:
            await asyncio.to_thread(self._store.write, twin.key, twin.owner_uid, status)
        except Exception as exc:
            self.stats.failures += 1
            twin.dirty, twin.urgent = True, was_urgent
            self._blocked_until = self._clock() + self._backoff.next()
            if not self._failing:
                self._failing = True
                log.warning(
                    "twin updates failing (%s: %s); skipping until the API answers",
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
            return False
        self.stats.writes += 1
        self._backoff.reset()
        if self._failing:
            self._failing = False
            log.info(
                "twin updates work again (%d skipped, %d failed meanwhile)",
                self.stats.skipped,
                self.stats.failures,
            )
        return True

    async def run(self, tick: float = 0.1) -> None:
        """Report forever; only cancellation ends it."""
        while True:
            try:
                await self.report_due()
            except Exception:
                log.exception("twin reporting pass failed")
            await asyncio.sleep(tick)

    async def flush(self, timeout: float) -> None:
        """Write every pending change now, waiting out `min_interval` if needed (shutdown)."""
        deadline = self._clock() + timeout
        while self._clock() < deadline:
            pending = [t for t in self._devices.values() if t.dirty]
            if not pending:
                return
            now = self._clock()
            for twin in pending:
                if twin.gate.due(now, urgent=True):
                    await self._write(twin)
            await asyncio.sleep(0.05)

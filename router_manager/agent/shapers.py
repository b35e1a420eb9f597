"""The edge agent's shapers: one per (topic, shaping) some target asks for, whatever the
number of targets asking the same (see `router_manager.aggregation` for what they compute).

A shaper is a cursor on its topic's raw readings in the durable log, like a target's. What it
makes (window records, kept readings) is stored as readings of its own topic,
``<topic>#<shaping key>``, which the targets that asked for it have their cursors on: from
there on a window is delivered like a raw reading (in order, batched, retried, at least once,
in any format). The records of the windows a shaper closes and its cursor move (with the start
of the last window closed) are written in one transaction, so a killed agent rebuilds the open
window from the readings stored after the cursor: no window is lost or made twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fluidos_sensors.reading import Reading, ReadingError
from fluidos_sensors.shaping import Shaping
from router_manager.agent.store import DurableLog, Entry
from router_manager.aggregation import Shaper, make_shaper
from router_manager.encoding import LineProtocolEncoder

log = logging.getLogger(__name__)

# A shaper holds the raw readings of its open window (an hour at most) in the log; its bound
# must not drop them, or a window would be made of less than what arrived in it.
SHAPER_BOUND_BYTES = 2**40
REPLAY_CHUNK = 10_000


def shaped_topic(topic: str, shaping: Shaping) -> str:
    """Where a shaper stores what it makes ('#' never appears in an MQTT topic name)."""
    return f"{topic}#{shaping.key}"


def raw_topic(store_topic: str) -> str:
    """The MQTT topic a store topic comes from."""
    return store_topic.split("#", 1)[0]


def shaper_key(topic: str, shaping: Shaping) -> str:
    """A shaper's cursor in the store."""
    return f"shaper/{shaped_topic(topic, shaping)}"


@dataclass
class _Running:
    key: str
    topic: str
    output: str
    shaper: Shaper


class Shapers:
    """Every shaper of the agent, fed at ingest and by the clock."""

    def __init__(self, store: DurableLog, encoder: LineProtocolEncoder) -> None:
        self._store = store
        self._encoder = encoder
        self._running: dict[str, _Running] = {}
        self._by_topic: dict[str, list[_Running]] = {}

    @property
    def keys(self) -> set[str]:
        return set(self._running)

    def late(self, topic: str, shaping: Shaping) -> int:
        running = self._running.get(shaper_key(topic, shaping))
        return running.shaper.late if running else 0

    def apply(self, wanted: Iterable[tuple[str, Shaping]]) -> set[str]:
        """Run a shaper for each (topic, shaping), and no other. A new one resumes at its
        stored cursor: the readings stored after it are fed again (the open window). Returns
        the output topics that got records."""
        wanted_by_key = {shaper_key(topic, shaping): (topic, shaping) for topic, shaping in wanted}
        for key in set(self._running) - set(wanted_by_key):
            del self._running[key]
            self._store.remove(key)
        touched: set[str] = set()
        for key, (topic, shaping) in wanted_by_key.items():
            if key in self._running:
                continue
            state = self._store.register(key, topic, "json", SHAPER_BOUND_BYTES)
            running = _Running(
                key, topic, shaped_topic(topic, shaping), make_shaper(shaping, mark_s=state.mark)
            )
            self._running[key] = running
            replayed: list[Reading] = []
            after, now = state.acked, time.time()
            while chunk := self._store.readings_after(topic, after, REPLAY_CHUNK):
                for item in chunk:
                    reading = _decoded(item.payload, key)
                    if reading is not None:
                        replayed += running.shaper.feed(item.id, reading, now)
                after = chunk[-1].id
            if replayed:
                log.info("%s: %d window(s) closed on resuming", key, len(replayed))
            touched |= self._emit([(running, replayed)])
        self._by_topic = {}
        for running in self._running.values():
            self._by_topic.setdefault(running.topic, []).append(running)
        return touched

    def feed(
        self, stored: Sequence[tuple[int, Entry]], readings: Sequence[Reading], now: float
    ) -> set[str]:
        """Readings just stored, arrived at `now` (row ids from the store, decoded readings
        alongside, in the same order); returns the output topics that got records."""
        if not self._by_topic:
            return set()
        made: dict[str, tuple[_Running, list[Reading]]] = {}
        for (row_id, entry), reading in zip(stored, readings, strict=True):
            for running in self._by_topic.get(entry.topic, ()):
                records = running.shaper.feed(row_id, reading, now)
                made.setdefault(running.key, (running, []))[1].extend(records)
        return self._emit(made.values())

    def tick(self, now: float) -> set[str]:
        """Close the windows that ended a grace ago; returns the output topics that got
        records."""
        return self._emit((r, r.shaper.due(now)) for r in self._running.values())

    def _emit(self, made: Iterable[tuple[_Running, list[Reading]]]) -> set[str]:
        entries: list[Entry] = []
        closed = False
        for running, records in made:
            # Moved with the next transaction: the records' own, when there are records.
            self._store.settle_through(
                running.key, running.shaper.settled, mark=running.shaper.mark_s
            )
            closed |= bool(records)
            entries += [
                Entry(running.output, r.received_at, self._encoder.encode(r), r.encode())
                for r in records
            ]
        if not closed:
            return set()
        if not self._store.append(entries):
            self._store.flush()  # no target wants them any more: the cursor still moves
        return {entry.topic for entry in entries}


def _decoded(payload: bytes, key: str) -> Reading | None:
    try:
        return Reading.decode(payload)
    except ReadingError as exc:  # stored readings were decoded once; only tampering gets here
        log.error("%s: stored reading skipped: %s", key, exc)
        return None

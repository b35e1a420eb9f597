"""The edge agent's durable queue: one on-disk log of readings, one cursor per target.

Each reading is written once, whatever the number of targets of its topic (fan-out costs a
cursor, not a copy). A target's queue is every reading of its topic after its cursor; its
bound is in bytes of the stored encoding its format is made from (line protocol, or the
reading's JSON for JSON and CloudEvents, whose envelope is not counted). Beyond the bound the
oldest readings are skipped for that target only, and counted as dropped. A cursor moves only
when a batch was answered 2xx (delivered) or refused for good (rejected), so delivery is
at-least-once and in order.

SQLite in WAL mode with synchronous=NORMAL: a committed append survives the agent being
killed (not a power cut, which the edge broker would not survive either). Cursor moves are
written with the next append's transaction (milliseconds apart under load) or by `flush`
(housekeeping, close), not each in a transaction of its own: a target's every batch would
otherwise cost a commit. A kill in between sends those batches again (at-least-once; the
same series and timestamps downstream). The store is used from one thread (the agent's
event loop); every call is short.
"""

from __future__ import annotations

import bisect
import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from router_manager.encoding import stored_encoding

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    -- AUTOINCREMENT: ids never come back after deletes, or cursors would skip new readings.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    received REAL NOT NULL,
    line BLOB NOT NULL,
    json BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_by_topic ON readings (topic, id);
CREATE TABLE IF NOT EXISTS cursors (
    target TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    format TEXT NOT NULL,
    acked INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    -- A shaper's (router_manager.aggregation) start of the last window it closed.
    mark REAL NOT NULL DEFAULT 0
);
"""
# Stores written before `mark` existed get it (their cursors keep their positions).
_MIGRATIONS = ("ALTER TABLE cursors ADD COLUMN mark REAL NOT NULL DEFAULT 0",)
# Separator overhead per reading in a batch body ("\n" or ",").
_SEPARATOR = 1
TAIL_SIZE = 4096  # newest readings per topic kept in memory as well
DISK_RUN_BATCHES = 4  # a read from disk fetches this many batches, for every lagging target


@dataclass(frozen=True, slots=True)
class Entry:
    """One reading to store: its topic, mapper receive time and both encodings."""

    topic: str
    received: float
    line: bytes
    json: bytes


@dataclass(frozen=True, slots=True)
class Queued:
    """A stored reading as a target's batch sees it."""

    id: int
    received: float
    payload: bytes


@dataclass
class TargetState:
    """A target's cursor and counters (persisted) and its backlog (kept in memory)."""

    target: str
    topic: str
    format: str
    acked: int
    bound: int
    delivered: int = 0
    rejected: int = 0
    dropped: int = 0
    failed: int = 0
    mark: float = 0.0
    queued: int = 0
    queued_bytes: int = 0


class _Tail:
    """The newest readings of one topic in memory: targets that keep up read their batches
    from here instead of from the disk (they all want the same recent rows)."""

    def __init__(self, complete_after: int, size: int = TAIL_SIZE) -> None:
        self.size = size
        # Every reading of the topic with a greater id is here (appended since, not trimmed).
        self.complete_after = complete_after
        self.ids: list[int] = []
        # Per format, made once and shared by every target: a batch is a slice.
        self.lines: list[Queued] = []
        self.jsons: list[Queued] = []

    def add(self, row_id: int, entry: Entry) -> None:
        self.ids.append(row_id)
        self.lines.append(Queued(row_id, entry.received, entry.line))
        self.jsons.append(Queued(row_id, entry.received, entry.json))
        if len(self.ids) > 2 * self.size:  # trim in steps, not at every reading
            self.complete_after = self.ids[-self.size - 1]
            del self.ids[: -self.size]
            del self.lines[: -self.size]
            del self.jsons[: -self.size]

    def after(self, acked: int, limit: int, *, json: bool) -> list[Queued] | None:
        """The readings after id `acked`, if the tail surely holds them all (else None)."""
        if acked < self.complete_after:
            return None
        start = bisect.bisect_right(self.ids, acked)
        return (self.jsons if json else self.lines)[start : start + limit]


@dataclass
class _DiskRun:
    """The last rows of one topic and format read from disk: every reading of the topic with
    an id in (`after`, `ids[-1]`], as stored rows never change. Targets of a topic that fell
    behind the tail move through the same rows, so one read serves all of them."""

    after: int
    ids: list[int]
    queued: list[Queued]
    complete: bool  # the read found fewer rows than asked: nothing more was stored then

    def after_id(self, acked: int, limit: int) -> list[Queued] | None:
        if not self.ids or not self.after <= acked < self.ids[-1]:
            return None
        start = bisect.bisect_right(self.ids, acked)
        if len(self.ids) - start < limit and not self.complete:
            return None  # too few left for a full batch: read on
        return self.queued[start : start + limit]


class DurableLog:
    """Readings on disk, fanned out to targets by cursor."""

    def __init__(self, path: Path, *, tail_size: int = TAIL_SIZE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tail_size = tail_size
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(cursors)")}
        if columns and "mark" not in columns:
            for statement in _MIGRATIONS:
                self._db.execute(statement)
        self._db.executescript(SCHEMA)
        self._targets: dict[str, TargetState] = {}
        self._by_topic: dict[str, list[TargetState]] = {}
        self._tail: dict[str, _Tail] = {}
        self._disk: dict[tuple[str, str], _DiskRun] = {}
        self._moved: set[str] = set()  # targets whose cursor moved since it was written

    def close(self) -> None:
        self.flush()
        self._db.close()

    def flush(self) -> None:
        """Write the cursor moves not written yet."""
        if self._moved:
            with self._transaction():
                pass

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction, which also writes the cursors and counters of targets that moved
        (before or inside it); rolled back, moves kept for the next one, on any error."""
        self._db.execute("BEGIN")
        try:
            yield
            moved = [self._targets[t] for t in self._moved if t in self._targets]
            self._db.executemany(
                "UPDATE cursors SET acked = ?, delivered = ?, rejected = ?, dropped = ?, "
                "failed = ?, mark = ? WHERE target = ?",
                [
                    (s.acked, s.delivered, s.rejected, s.dropped, s.failed, s.mark, s.target)
                    for s in moved
                ],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._moved.clear()

    # ------------------------------------------------------------------ targets

    def register(self, target: str, topic: str, format_name: str, bound: int) -> TargetState:
        """Start (or resume) a target. A new target starts after the newest stored reading;
        a known one resumes at its cursor. Changing its topic or format starts it afresh."""
        existing = self._targets.get(target)
        if existing and (existing.topic, existing.format) == (topic, format_name):
            existing.bound = bound
            self._enforce_bound(existing)
            return existing
        self.flush()  # the row read below must carry the latest counters
        row = self._db.execute(
            "SELECT topic, format, acked, delivered, rejected, dropped, failed, mark "
            "FROM cursors WHERE target = ?",
            (target,),
        ).fetchone()
        if row is None or (row[0], row[1]) != (topic, format_name):
            newest = self._newest_id()
            counters = row[3:7] if row else (0, 0, 0, 0)
            self._db.execute(
                "INSERT OR REPLACE INTO cursors "
                "(target, topic, format, acked, delivered, rejected, dropped, failed, mark) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (target, topic, format_name, newest, *counters),
            )
            row = (topic, format_name, newest, *counters, 0.0)
        if existing:
            self._forget(existing)
        state = TargetState(target, topic, format_name, row[2], bound, *row[3:])
        self._targets[target] = state
        self._by_topic.setdefault(topic, []).append(state)
        self.recount(target)
        self._enforce_bound(state)
        return state

    def _newest_id(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        return int(row[0]) if row else 0

    def _forget(self, state: TargetState) -> None:
        self._targets.pop(state.target, None)
        siblings = self._by_topic.get(state.topic, [])
        if state in siblings:
            siblings.remove(state)
        if not siblings:
            self._by_topic.pop(state.topic, None)
            self._tail.pop(state.topic, None)
            for column in ("line", "json"):
                self._disk.pop((state.topic, column), None)

    def remove(self, target: str) -> None:
        """Stop a target for good: its cursor and whatever only it still needed go."""
        state = self._targets.get(target)
        if state:
            self._forget(state)
        self._moved.discard(target)
        self._db.execute("DELETE FROM cursors WHERE target = ?", (target,))
        if state:
            self.compact([state.topic])

    def target(self, target: str) -> TargetState | None:
        return self._targets.get(target)

    def targets(self) -> list[TargetState]:
        return list(self._targets.values())

    def known_targets(self) -> list[tuple[str, str]]:
        """(target, topic) of every stored cursor, registered now or not (to find leftovers)."""
        return [(row[0], row[1]) for row in self._db.execute("SELECT target, topic FROM cursors")]

    def topics(self) -> list[str]:
        return list(self._by_topic)

    # ------------------------------------------------------------------ data

    def append(self, entries: Sequence[Entry]) -> list[tuple[int, Entry]]:
        """Store readings (one transaction) for every target of their topics; readings of a
        topic without targets are not stored. Returns the stored ones with their row ids."""
        kept = [e for e in entries if e.topic in self._by_topic]
        if not kept:
            return []
        with self._transaction():
            self._db.executemany(
                "INSERT INTO readings (topic, received, line, json) VALUES (?, ?, ?, ?)",
                [(e.topic, e.received, e.line, e.json) for e in kept],
            )
            # One writer, one transaction: the rows got the ids up to the last one, in order.
            last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
            over: list[TargetState] = []
            for entry in kept:
                for state in self._by_topic[entry.topic]:
                    state.queued += 1
                    column = stored_encoding(state.format)
                    payload = entry.json if column == "json" else entry.line
                    state.queued_bytes += len(payload) + _SEPARATOR
                    if state.queued_bytes > state.bound and state not in over:
                        over.append(state)
            for state in over:
                self._enforce_bound(state)
        first = last - len(kept) + 1
        for row_id, entry in enumerate(kept, start=first):
            tail = self._tail.get(entry.topic)
            if tail is None:
                tail = self._tail[entry.topic] = _Tail(first - 1, self._tail_size)
            tail.add(row_id, entry)
        for topic in {entry.topic for entry in kept}:
            for column in ("line", "json"):
                run = self._disk.get((topic, column))
                if run is not None:
                    run.complete = False  # more was stored after it
        return list(enumerate(kept, start=first))

    def _enforce_bound(self, state: TargetState) -> None:
        """Skip the oldest readings of a target over its bound, counting them as dropped."""
        if state.queued_bytes <= state.bound:
            return
        column = stored_encoding(state.format)
        excess = state.queued_bytes - state.bound
        freed = skipped = 0
        last = state.acked
        for row_id, size in self._db.execute(
            f"SELECT id, LENGTH({column}) FROM readings WHERE topic = ? AND id > ? ORDER BY id",
            (state.topic, state.acked),
        ):
            if freed >= excess:
                break
            freed += size + _SEPARATOR
            skipped += 1
            last = row_id
        self._advance(state, last, skipped, freed, "dropped")

    def recount(self, target: str) -> TargetState:
        """Recompute a target's backlog from the disk (after an inconsistency was noticed)."""
        state = self._targets[target]
        column = stored_encoding(state.format)
        count, size = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH({column})), 0) FROM readings "
            "WHERE topic = ? AND id > ?",
            (state.topic, state.acked),
        ).fetchone()
        state.queued, state.queued_bytes = count, size + count * _SEPARATOR
        return state

    def peek(self, target: str, limit: int) -> list[Queued]:
        """The oldest readings a target has not had yet, in order."""
        state = self._targets[target]
        tail = self._tail.get(state.topic)
        if tail is not None:
            found = tail.after(state.acked, limit, json=stored_encoding(state.format) == "json")
            if found is not None:
                return found
        column = stored_encoding(state.format)
        run = self._disk.get((state.topic, column))
        found = run.after_id(state.acked, limit) if run is not None else None
        if found is not None:
            return found
        wanted = limit * DISK_RUN_BATCHES
        queued = [
            Queued(*row)
            for row in self._db.execute(
                f"SELECT id, received, {column} FROM readings WHERE topic = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (state.topic, state.acked, wanted),
            )
        ]
        ids = [item.id for item in queued]
        self._disk[(state.topic, column)] = _DiskRun(state.acked, ids, queued, len(ids) < wanted)
        return queued[:limit]

    def readings_after(self, topic: str, after: int, limit: int) -> list[Queued]:
        """Stored readings of a topic after row `after`, as published (JSON), from disk."""
        return [
            Queued(*row)
            for row in self._db.execute(
                "SELECT id, received, json FROM readings WHERE topic = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (topic, after, limit),
            )
        ]

    def reading_json(self, row_id: int) -> bytes | None:
        """A stored reading as published (JSON), while some target's cursor is before it."""
        row = self._db.execute("SELECT json FROM readings WHERE id = ?", (row_id,)).fetchone()
        return bytes(row[0]) if row else None

    def ack(self, target: str, batch: Sequence[Queued]) -> None:
        """The target answered 2xx for `batch`: it is delivered."""
        self._settle(target, batch, "delivered")

    def reject(self, target: str, batch: Sequence[Queued]) -> None:
        """The target refused `batch` for good (4xx): not retried, counted."""
        self._settle(target, batch, "rejected")

    def settle_through(self, target: str, last_id: int, *, mark: float | None = None) -> None:
        """Every reading of the target's topic up to row `last_id` is done with (delivered);
        `mark` is kept with the cursor. Written with the next append, or by flush()."""
        state = self._targets.get(target)
        if state is None:
            return
        if mark is not None and mark != state.mark:
            state.mark = mark
            self._moved.add(target)
        if last_id <= state.acked:
            return
        column = stored_encoding(state.format)
        count, size = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH({column})), 0) FROM readings "
            "WHERE topic = ? AND id > ? AND id <= ?",
            (state.topic, state.acked, last_id),
        ).fetchone()
        if count == 0:  # nothing stored in between: only the cursor moves
            state.acked = last_id
            self._moved.add(target)
            return
        self._advance(state, last_id, count, size + count * _SEPARATOR, "delivered")

    def count_failure(self, target: str) -> None:
        """An attempt failed and will be retried (written like a cursor move)."""
        self._targets[target].failed += 1
        self._moved.add(target)

    def _settle(self, target: str, batch: Sequence[Queued], counter: str) -> None:
        state = self._targets.get(target)
        if state is None or not batch:
            return
        if batch[0].id <= state.acked:  # partly dropped meanwhile
            batch = [item for item in batch if item.id > state.acked]
            if not batch:
                return
        size = sum([len(item.payload) for item in batch]) + _SEPARATOR * len(batch)
        self._advance(state, batch[-1].id, len(batch), size, counter)

    def _advance(
        self, state: TargetState, last_id: int, count: int, size: int, counter: str
    ) -> None:
        if count == 0:
            return
        state.acked = last_id
        state.queued = max(0, state.queued - count)
        state.queued_bytes = max(0, state.queued_bytes - size)
        setattr(state, counter, getattr(state, counter) + count)
        self._moved.add(state.target)  # written with the next append, or by flush()

    def compact(self, topics: Iterable[str] | None = None) -> int:
        """Delete readings every target of their topic is past; returns how many."""
        self.flush()  # no cursor on disk may point before what is deleted
        removed = 0
        wanted = list(self._by_topic) if topics is None else list(topics)
        for topic in wanted:
            states = self._by_topic.get(topic)
            floor = min(s.acked for s in states) if states else None
            if floor is None:
                cursor = self._db.execute("DELETE FROM readings WHERE topic = ?", (topic,))
            else:
                cursor = self._db.execute(
                    "DELETE FROM readings WHERE topic = ? AND id <= ?", (topic, floor)
                )
            removed += cursor.rowcount
        # Topics nobody wants any more (targets removed while the agent was down).
        if topics is None:
            cursor = self._db.execute(
                "DELETE FROM readings WHERE topic NOT IN (SELECT DISTINCT topic FROM cursors)"
            )
            removed += cursor.rowcount
        return removed

"""The edge agent's durable queue: fan-out by cursor, bounds in bytes, order, restarts."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router_manager.agent.store import DurableLog, Entry, Queued, TargetState

TOPIC = "default/fluidos-sensors/stwin-1/temperature"
OTHER = "default/fluidos-sensors/stwin-1/pressure"


def _target(store: DurableLog, key: str) -> TargetState:
    state = store.target(key)
    assert state is not None, f"target {key} is not registered"
    return state


def entry(n: int, topic: str = TOPIC, size: int = 10) -> Entry:
    line = f"t{n:0{size - 1}d}".encode()
    return Entry(topic, 1000.0 + n, line, b'{"n":%d}' % n)


def numbers(batch) -> list[int]:
    return [int(item.payload[1:]) for item in batch]


@pytest.fixture
def log(tmp_path: Path):
    store = DurableLog(tmp_path / "queue.sqlite")
    yield store
    store.close()


def test_each_target_gets_every_reading_of_its_topic_in_order(log: DurableLog) -> None:
    log.register("a", TOPIC, "influx", 10**6)
    log.register("b", TOPIC, "influx", 10**6)
    log.register("c", OTHER, "influx", 10**6)
    log.append([entry(1), entry(2), entry(3, OTHER), entry(4)])
    assert numbers(log.peek("a", 10)) == [1, 2, 4]
    assert numbers(log.peek("b", 10)) == [1, 2, 4]
    assert numbers(log.peek("c", 10)) == [3]
    # The reading is stored once, whatever the number of targets.
    rows = log._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    assert rows == 4


def test_json_targets_get_the_json_encoding(log: DurableLog) -> None:
    log.register("j", TOPIC, "json", 10**6)
    log.append([entry(7)])
    assert log.peek("j", 1)[0].payload == b'{"n":7}'


def test_a_new_target_starts_with_new_readings_only(log: DurableLog) -> None:
    log.register("a", TOPIC, "influx", 10**6)
    log.append([entry(1)])
    log.register("late", TOPIC, "influx", 10**6)
    log.append([entry(2)])
    assert numbers(log.peek("late", 10)) == [2]


def test_ack_moves_one_cursor_and_counts_delivered(log: DurableLog) -> None:
    log.register("a", TOPIC, "influx", 10**6)
    log.register("b", TOPIC, "influx", 10**6)
    log.append([entry(n) for n in range(1, 6)])
    batch = log.peek("a", 3)
    log.ack("a", batch)
    assert numbers(log.peek("a", 10)) == [4, 5]
    assert numbers(log.peek("b", 10)) == [1, 2, 3, 4, 5]
    state = _target(log, "a")
    assert (state.delivered, state.queued, state.queued_bytes) == (3, 2, 2 * 11)


def test_reject_skips_the_batch_and_counts_it(log: DurableLog) -> None:
    log.register("a", TOPIC, "influx", 10**6)
    log.append([entry(1), entry(2)])
    log.reject("a", log.peek("a", 1))
    assert numbers(log.peek("a", 10)) == [2]
    assert (_target(log, "a").rejected, _target(log, "a").delivered) == (1, 0)


def test_bound_drops_the_oldest_for_that_target_only(log: DurableLog) -> None:
    # Each line is 10 bytes + 1 separator: a 35-byte bound holds 3 readings.
    log.register("small", TOPIC, "influx", 35)
    log.register("big", TOPIC, "influx", 10**6)
    log.append([entry(n) for n in range(1, 6)])
    assert numbers(log.peek("small", 10)) == [3, 4, 5]
    assert _target(log, "small").dropped == 2
    assert _target(log, "small").queued_bytes <= 35
    assert numbers(log.peek("big", 10)) == [1, 2, 3, 4, 5]
    assert _target(log, "big").dropped == 0


def test_ack_of_a_batch_partly_dropped_meanwhile_counts_only_the_rest(log: DurableLog) -> None:
    log.register("a", TOPIC, "influx", 35)
    log.append([entry(1), entry(2), entry(3)])
    batch = log.peek("a", 3)
    log.append([entry(4), entry(5)])  # 1 and 2 dropped while the batch was in flight
    log.ack("a", batch)
    state = _target(log, "a")
    assert (state.delivered, state.dropped) == (1, 2)
    assert numbers(log.peek("a", 10)) == [4, 5]


def test_compact_keeps_what_a_slow_target_still_needs(log: DurableLog) -> None:
    log.register("fast", TOPIC, "influx", 10**6)
    log.register("slow", TOPIC, "influx", 10**6)
    log.append([entry(n) for n in range(1, 5)])
    log.ack("fast", log.peek("fast", 10))
    log.ack("slow", log.peek("slow", 2))
    assert log.compact() == 2
    assert numbers(log.peek("slow", 10)) == [3, 4]
    log.remove("slow")
    log.compact()
    assert log._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0


def test_readings_of_a_topic_without_targets_are_not_kept(log: DurableLog) -> None:
    log.append([entry(1)])
    assert log._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0


def test_restart_resumes_cursors_backlog_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    first = DurableLog(path)
    first.register("a", TOPIC, "influx", 10**6)
    first.append([entry(n) for n in range(1, 5)])
    first.ack("a", first.peek("a", 1))
    first.close()
    second = DurableLog(path)
    state = second.register("a", TOPIC, "influx", 10**6)
    assert numbers(second.peek("a", 10)) == [2, 3, 4]
    assert (state.delivered, state.queued, state.queued_bytes) == (1, 3, 33)
    second.close()


def test_changing_a_targets_topic_starts_it_afresh_keeping_counters(log: DurableLog) -> None:
    log.register("a", TOPIC, "influx", 10**6)
    log.append([entry(1)])
    log.ack("a", log.peek("a", 1))
    log.append([entry(2)])
    state = log.register("a", OTHER, "influx", 10**6)
    assert log.peek("a", 10) == []
    assert state.delivered == 1
    log.append([entry(3, OTHER)])
    assert numbers(log.peek("a", 10)) == [3]


def _append_forever(path: str, ready: multiprocessing.synchronize.Event) -> None:
    store = DurableLog(Path(path))
    store.register("a", TOPIC, "influx", 10**9)
    n = 0
    while True:
        n += 1
        store.append([entry(n)])
        if n == 200:
            ready.set()


def test_committed_appends_survive_sigkill(tmp_path: Path) -> None:
    """Every committed reading is there after the writer dies mid-stream, in order, no gaps."""
    path = tmp_path / "queue.sqlite"
    ready = multiprocessing.get_context("fork").Event()
    proc = multiprocessing.get_context("fork").Process(
        target=_append_forever, args=(str(path), ready)
    )
    proc.start()
    assert ready.wait(60)
    assert proc.pid is not None  # started
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    survivor = DurableLog(path)
    survivor.register("a", TOPIC, "influx", 10**9)
    got = numbers(survivor.peek("a", 10**6))
    assert len(got) >= 200
    assert got == list(range(1, len(got) + 1))
    survivor.close()


def test_ids_never_come_back_once_everything_was_delivered(log: DurableLog) -> None:
    """Compacting a caught-up queue empties the table; new readings must still be seen."""
    log.register("a", TOPIC, "influx", 10**6)
    log.append([entry(n) for n in range(1, 4)])
    log.ack("a", log.peek("a", 10))
    log.compact()
    log.append([entry(4)])
    assert numbers(log.peek("a", 10)) == [4]
    log.remove("a")
    log.register("b", TOPIC, "influx", 10**6)
    log.append([entry(5)])
    assert numbers(log.peek("b", 10)) == [5]


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["append", "ack", "reject", "reopen"]), st.integers(1, 40)),
        max_size=40,
    )
)
@settings(max_examples=60, deadline=None)
def test_the_memory_tail_answers_exactly_what_the_disk_does(steps) -> None:
    """Batches read from the in-memory tail equal those read from the disk."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "queue.sqlite"
        store = DurableLog(path, tail_size=16)
        for name, size in (("a", 10**6), ("b", 10**6), ("small", 200)):
            store.register(name, TOPIC, "influx", size)
        n = 0
        for action, count in steps:
            if action == "append":
                store.append(
                    [entry(n := n + 1, OTHER if n % 3 == 0 else TOPIC) for _ in range(count)]
                )
            elif action == "reopen":
                store.close()
                store = DurableLog(path, tail_size=16)
                for name, size in (("a", 10**6), ("b", 10**6), ("small", 200)):
                    store.register(name, TOPIC, "influx", size)
            else:
                batch = store.peek("a", count)
                (store.ack if action == "ack" else store.reject)("a", batch)
            # The truth, straight from SQLite: neither the tail nor the runs read from disk.
            disk = sqlite3.connect(path)
            for name in ("a", "b", "small"):
                state = store.target(name)
                assert state is not None
                rows = disk.execute(
                    "SELECT id, received, line FROM readings WHERE topic = ? AND id > ? "
                    "ORDER BY id LIMIT 25",
                    (TOPIC, state.acked),
                )
                assert store.peek(name, 25) == [Queued(*row) for row in rows], (name, steps)
            disk.close()
        store.close()


def test_cursor_moves_are_written_with_the_next_append_or_a_flush(tmp_path: Path) -> None:
    """A delivered batch costs no commit of its own; a kill before the next write sends it
    again (at-least-once), never skips a reading."""
    path = tmp_path / "queue.sqlite"
    store = DurableLog(path)
    store.register("a", TOPIC, "influx", 10**6)
    store.append([entry(n) for n in range(1, 5)])
    on_disk = sqlite3.connect(path)

    def acked() -> int:
        return on_disk.execute("SELECT acked FROM cursors WHERE target = 'a'").fetchone()[0]

    start = acked()
    store.ack("a", store.peek("a", 2))
    assert acked() == start  # not written yet: after a kill, readings 1-2 go again
    store.append([entry(5)])
    assert acked() == start + 2
    store.ack("a", store.peek("a", 1))
    store.flush()
    assert acked() == start + 3
    on_disk.close()
    store.close()


def test_a_shaper_settles_through_a_row_and_keeps_its_mark_across_restarts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.sqlite"
    store = DurableLog(path)
    store.register("shaper", TOPIC, "json", 10**6)
    store.register("windows", TOPIC + "#mean@1000ms", "influx", 10**6)
    stored = store.append([entry(n) for n in range(1, 6)])
    ids = [row_id for row_id, _ in stored]
    assert [e.received for _, e in stored] == [1001.0, 1002.0, 1003.0, 1004.0, 1005.0]
    store.settle_through("shaper", ids[2], mark=1002.0)
    state = _target(store, "shaper")
    assert (state.acked, state.queued, state.delivered, state.mark) == (ids[2], 2, 3, 1002.0)
    store.append([Entry(TOPIC + "#mean@1000ms", 1002.0, b"w", b"{}")])  # commits the move
    reopened = DurableLog(path)
    state = reopened.register("shaper", TOPIC, "json", 10**6)
    assert (state.acked, state.queued, state.mark) == (ids[2], 2, 1002.0)
    assert [item.id for item in reopened.readings_after(TOPIC, state.acked, 10)] == ids[3:]
    reopened.close()
    store._db.close()  # not close(): no flush, as if killed


def test_a_store_from_before_marks_keeps_its_cursors(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE cursors (target TEXT PRIMARY KEY, topic TEXT NOT NULL, format TEXT NOT "
        "NULL, acked INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, rejected INTEGER "
        "NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL "
        "DEFAULT 0);"
        f"INSERT INTO cursors VALUES ('a', '{TOPIC}', 'influx', 7, 3, 0, 0, 1);"
    )
    db.commit()
    db.close()
    store = DurableLog(path)
    state = store.register("a", TOPIC, "influx", 10**6)
    assert (state.acked, state.delivered, state.failed, state.mark) == (7, 3, 1, 0.0)
    store.close()

"""Batch timing of a delivery target: how much of the batch delay a reading has used up."""

import time
from pathlib import Path

from router_manager.agent.delivery import TargetWorker, already_waited
from router_manager.agent.store import DurableLog
from router_manager.route import RouteTarget


def test_the_hop_from_the_mapper_counts_toward_the_delay() -> None:
    assert already_waited(0.0, 0.1) == 0.0
    assert already_waited(0.03, 0.1) == 0.03
    assert already_waited(0.1, 0.1) == 0.1


def test_a_reading_older_than_the_delay_or_from_the_future_starts_it_afresh() -> None:
    # A backlog (or a clock set apart) must still go in batches, not one by one.
    assert already_waited(0.5, 0.1) == 0.0
    assert already_waited(-0.02, 0.1) == 0.0


def test_the_first_reading_after_a_batch_starts_the_clock_and_later_ones_do_not(
    tmp_path: Path,
) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    worker = TargetWorker(
        "r/t", RouteTarget(id="t", url="http://127.0.0.1:9/x", batch_delay_ms=100), store
    )
    before = time.monotonic()
    worker.notify(0.04)
    after = time.monotonic()
    assert worker._pending_since is not None
    assert before - 0.04 <= worker._pending_since <= after - 0.04
    started = worker._pending_since
    worker.notify(0.09)  # the batch is already being timed from an older reading
    assert worker._pending_since == started
    store.close()

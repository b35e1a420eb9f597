"""A delivery target: batch timing, and what each kind of HTTP answer does to its queue."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from fluidos_sensors.backoff import Backoff
from router_manager.agent.delivery import TargetWorker, already_waited
from router_manager.agent.store import DurableLog, Entry
from router_manager.route import RouteTarget, TargetAuth, TargetState


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


# ---------------------------------------------------------------------------------------------
# Deliveries over HTTP, against a real server on loopback: what each kind of answer does to
# the queue, and what the target is sent.

TOPIC = "fluidos/n/d/humidity"


class Consumer:
    """An HTTP endpoint whose answers the test scripts: a list of (status, headers, body),
    the last one repeated; it records every request."""

    def __init__(
        self, answers: list[tuple[int, dict[str, str], bytes]], delay: float = 0.0
    ) -> None:
        self.answers = answers
        self.delay = delay  # before each answer
        self.requests: list[tuple[str, dict[str, str], bytes, float]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Consumer:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append((request.path, dict(request.headers), body, time.monotonic()))
            status, headers, text = self.answers[min(len(self.requests), len(self.answers)) - 1]
            await asyncio.sleep(self.delay)
            return web.Response(status=status, headers=headers, body=text)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def url(self, path: str = "/telegraf") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _queue(store: DurableLog, key: str, count: int) -> None:
    store.register(key, TOPIC, "influx", 1 << 20)
    store.append(
        [Entry(TOPIC, 1.0e9 + i, f"humidity value={i} {i}".encode(), b"{}") for i in range(count)]
    )


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _worker(store: DurableLog, url: str, **kwargs: Any) -> TargetWorker:
    target = RouteTarget(id="t", url=url, batch_size=10, batch_delay_ms=10, **kwargs)
    return TargetWorker(
        "r/t", target, store, timeout=2.0, backoff=lambda: Backoff(0.01, 0.05, jitter=0.0),
        credentials=lambda: "Bearer s3cret-token",
    )  # fmt: skip


async def test_a_2xx_delivers_the_batch_in_order_with_its_headers(tmp_path: Path) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 25)
    async with Consumer([(204, {}, b"")]) as consumer:
        worker = _worker(store, consumer.url(), auth=TargetAuth("bearer", "creds"))
        worker.start()
        await _until(lambda: store.target("r/t").delivered == 25)
        await worker.stop()
    lines = [line for _, _, body, _ in consumer.requests for line in body.splitlines()]
    assert lines == [f"humidity value={i} {i}".encode() for i in range(25)]
    _, headers, _, _ = consumer.requests[0]
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Authorization"] == "Bearer s3cret-token"
    assert headers["User-Agent"] == "fluidos-sensors-agent"
    assert worker.health.state is TargetState.DELIVERING
    assert store.target("r/t").queued == 0
    store.close()


async def test_a_400_rejects_the_batch_once_and_keeps_the_answer_visible(tmp_path: Path) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    answer = b"unable to parse 'humidity value=': missing field value\n" + b"x" * 5000
    async with Consumer([(400, {}, answer)]) as consumer:
        worker = _worker(store, consumer.url())
        worker.start()
        await _until(lambda: store.target("r/t").rejected == 10)
        await asyncio.sleep(0.1)  # time enough for a (wrong) retry
        await worker.stop()
    assert len(consumer.requests) == 1
    assert worker.health.state is TargetState.REJECTING
    assert worker.health.last_error.startswith("HTTP 400: unable to parse 'humidity value='")
    assert len(worker.health.last_error) < 400  # a huge answer is cut, not kept whole
    store.close()


async def test_a_503_is_retried_after_its_retry_after_then_delivered(tmp_path: Path) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    answers = [(503, {"Retry-After": "0.3"}, b"overloaded"), (204, {}, b"")]
    async with Consumer(answers) as consumer:
        worker = _worker(store, consumer.url())
        worker.start()
        await _until(lambda: store.target("r/t").delivered == 10)
        await worker.stop()
    (_, _, first, sent), (_, _, second, resent) = consumer.requests
    assert first == second  # the same batch, again
    assert resent - sent >= 0.29  # Retry-After honoured, though the backoff is 10 ms
    assert store.target("r/t").failed == 1
    store.close()


async def test_a_redirect_is_not_followed_but_retried_as_an_error(tmp_path: Path) -> None:
    # The host allowlist checked the target's URL, not where a 3xx points.
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    async with Consumer([(307, {"Location": "/elsewhere"}, b"")]) as consumer:
        worker = _worker(store, consumer.url())
        worker.start()
        await _until(lambda: store.target("r/t").failed >= 2)
        await worker.stop()
    assert {path for path, _, _, _ in consumer.requests} == {"/telegraf"}
    assert worker.health.state is TargetState.RETRYING
    assert worker.health.last_error.startswith("HTTP 307")
    assert store.target("r/t").queued == 10  # nothing lost, nothing counted delivered
    store.close()


async def test_an_absent_target_is_retried_without_echoing_its_credentials(
    tmp_path: Path,
) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = _worker(store, f"http://user:pa55word@127.0.0.1:{port}/write?token=hunter2")
    worker.start()
    await _until(lambda: store.target("r/t").failed >= 2)
    await worker.stop()
    error = worker.health.last_error
    assert worker.health.state is TargetState.RETRYING
    assert f"127.0.0.1:{port}/write" in error
    assert "pa55word" not in error and "hunter2" not in error and "user" not in error
    assert store.target("r/t").queued == 10
    store.close()


async def test_stop_ends_deliveries_at_once_whatever_the_target_is_doing(tmp_path: Path) -> None:
    # The agent stops a worker while applying routes: it must not wait for a slow answer or
    # a retry, and nothing may be sent for the removed target afterwards.
    store = DurableLog(tmp_path / "queue.sqlite")
    for answers, delay in (([(204, {}, b"")], 3.0), ([(503, {}, b"")], 0.0)):
        _queue(store, "r/t", 10)
        async with Consumer(answers, delay=delay) as consumer:
            worker = _worker(store, consumer.url())
            worker.start()
            await _until(lambda c=consumer: len(c.requests) >= 1)
            started = time.monotonic()
            await worker.stop()
            assert time.monotonic() - started < 2.5  # it did not wait for the 3 s answer
            sent = len(consumer.requests)
            await asyncio.sleep(0.3)
            assert len(consumer.requests) == sent
        store.remove("r/t")
    store.close()

"""A delivery target: batch timing, and what each kind of HTTP answer does to its queue."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.delivery import TargetState
from fluidos_sensors.reading import Reading
from router_manager.agent.delivery import (
    ISOLATION_REQUESTS_MAX,
    Isolation,
    TargetWorker,
)
from router_manager.agent.store import DurableLog, Entry
from router_manager.agent.store import TargetState as StoredTarget
from router_manager.encoding import LineProtocolEncoder
from router_manager.route import RouteTarget, TargetAuth


def _isolate(
    batch: list[int], bad: set[int], budget: int = ISOLATION_REQUESTS_MAX
) -> tuple[list[int], list[int], list[list[int]]]:
    """Run an isolation against a target refusing (400) every part holding a bad reading:
    (delivered, rejected, parts sent), in order."""
    isolation = Isolation(batch, budget)
    delivered: list[int] = []
    rejected: list[int] = []
    sent: list[list[int]] = []
    while (part := isolation.part) is not None:
        sent.append(list(part))
        if bad & set(part):
            rejected += isolation.refused(splittable=True)
        else:
            delivered += isolation.delivered()
    return delivered, rejected, sent


def test_isolation_delivers_every_good_reading_in_order_and_rejects_only_the_bad() -> None:
    delivered, rejected, sent = _isolate(list(range(10)), {3})
    assert delivered == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert rejected == [3]
    assert sent == [list(range(10)), [0, 1, 2, 3, 4], [0, 1, 2], [3, 4], [3], [4], [5, 6, 7, 8, 9]]
    assert sent[0] == list(range(10))  # the first request is the batch itself


def test_isolation_costs_at_most_two_requests_per_bad_reading_per_halving() -> None:
    for bad in ({0}, {999}, {0, 999}, {10, 500, 990}):
        delivered, rejected, sent = _isolate(list(range(1000)), bad)
        assert sorted(rejected) == sorted(bad)
        assert len(delivered) == 1000 - len(bad)
        assert len(sent) - 1 <= 2 * len(bad) * math.ceil(math.log2(1000))


def test_isolation_is_bounded_and_then_rejects_what_is_left_of_a_refused_part() -> None:
    # Everything refused: a full bisection would cost 2 * 1000 - 1 requests.
    delivered, rejected, sent = _isolate(list(range(1000)), set(range(1000)))
    assert len(sent) - 1 <= ISOLATION_REQUESTS_MAX
    assert delivered == [] and rejected == list(range(1000))  # each exactly once, in order
    # Once the budget is spent, the parts made so far are still sent: good ones go through.
    delivered, rejected, sent = _isolate(list(range(64)), {0, 63}, budget=4)
    assert len(sent) - 1 <= 4
    assert sorted(delivered + rejected) == list(range(64))
    assert {0, 63} <= set(rejected) and delivered


def test_a_refusal_that_does_not_blame_the_content_settles_the_part_whole() -> None:
    isolation = Isolation([1, 2, 3])
    assert list(isolation.refused(splittable=False)) == [1, 2, 3]
    assert isolation.part is None and not isolation.split
    assert Isolation([]).part is None


# ---------------------------------------------------------------------------------------------
# Deliveries over HTTP, against a real server on loopback: what each kind of answer does to
# the queue, and what the target is sent.

TOPIC = "fluidos/n/d/humidity"


class Consumer:
    """An HTTP endpoint whose answers the test scripts: a list of (status, headers, body),
    the last one repeated; it records every request."""

    def __init__(
        self,
        answers: list[tuple[int, dict[str, str], bytes]],
        delay: float = 0.0,
        decide: Callable[[bytes], int] | None = None,
    ) -> None:
        self.answers = answers
        self.delay = delay  # before each answer
        self.decide = decide  # the status by the body, instead of the scripted one
        self.requests: list[tuple[str, dict[str, str], bytes, float]] = []
        self.answered: list[tuple[str, dict[str, str], bytes, float, int]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Consumer:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests.append((request.path, dict(request.headers), body, time.monotonic()))
            status, headers, text = self.answers[min(len(self.requests), len(self.answers)) - 1]
            if self.decide is not None:
                status = self.decide(body)
            self.answered.append((*self.requests[-1], status))
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


def _target(store: DurableLog, key: str) -> StoredTarget:
    state = store.target(key)
    assert state is not None, f"target {key} is not registered"
    return state


async def test_an_idle_target_is_sent_at_once_and_what_gathers_in_flight_goes_next(
    tmp_path: Path,
) -> None:
    """Adaptive batching: no timer. The route's delay is a minute here, and the first reading
    still goes at once; the readings that arrive while its request is in flight go together
    in the next request, up to the batch size (10)."""
    store = DurableLog(tmp_path / "queue.sqlite")
    async with Consumer([(204, {}, b"")], delay=0.5) as consumer:
        target = RouteTarget(id="t", url=consumer.url(), batch_size=10, batch_delay_ms=60_000)
        worker = TargetWorker("r/t", target, store, timeout=5.0)
        worker.start()
        _queue(store, "r/t", 1)
        worker.notify()
        await _until(lambda: len(consumer.requests) == 1)
        store.append(
            [Entry(TOPIC, 2.0e9 + i, f"humidity value={i} {i}".encode(), b"{}") for i in range(15)]
        )
        worker.notify()
        await _until(lambda: _target(store, "r/t").delivered == 16)
        await worker.stop()
    assert [body.count(b"\n") for _, _, body, _ in consumer.requests] == [1, 10, 5]
    store.close()


async def test_a_2xx_delivers_the_batch_in_order_with_its_headers(tmp_path: Path) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 25)
    async with Consumer([(204, {}, b"")]) as consumer:
        worker = _worker(store, consumer.url(), auth=TargetAuth("bearer", "creds"))
        worker.start()
        await _until(lambda: _target(store, "r/t").delivered == 25)
        await worker.stop()
    lines = [line for _, _, body, _ in consumer.requests for line in body.splitlines()]
    assert lines == [f"humidity value={i} {i}".encode() for i in range(25)]
    _, headers, _, _ = consumer.requests[0]
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Authorization"] == "Bearer s3cret-token"
    assert headers["User-Agent"] == "fluidos-sensors-agent"
    assert worker.health.state is TargetState.DELIVERING
    assert _target(store, "r/t").queued == 0
    store.close()


async def test_a_400_to_every_reading_rejects_each_alone_once_and_keeps_the_answer(
    tmp_path: Path,
) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    answer = b"unable to parse 'humidity value=': missing field value\n" + b"x" * 5000
    async with Consumer([(400, {}, answer)]) as consumer:
        worker = _worker(store, consumer.url())
        worker.start()
        await _until(lambda: _target(store, "r/t").rejected == 10)
        await asyncio.sleep(0.1)  # time enough for a (wrong) retry
        await worker.stop()
    # Bisected down to single readings: the batch, then halves, ..., 10 single ones.
    assert len(consumer.requests) == 2 * 10 - 1
    singles = [body for _, _, body, _ in consumer.requests if body.count(b"\n") == 1]
    assert sorted(singles) == sorted(f"humidity value={i} {i}\n".encode() for i in range(10))
    assert worker.health.state is TargetState.REJECTING
    assert worker.health.last_error.startswith("HTTP 400: unable to parse 'humidity value='")
    assert len(worker.health.last_error) < 400  # a huge answer is cut, not kept whole
    assert worker.health.last_rejected.startswith("1 reading(s): HTTP 400: unable to parse")
    store.close()


async def test_a_4xx_that_does_not_blame_the_content_rejects_the_batch_whole(
    tmp_path: Path,
) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    async with Consumer([(403, {}, b"forbidden")]) as consumer:
        worker = _worker(store, consumer.url())
        worker.start()
        await _until(lambda: _target(store, "r/t").rejected == 10)
        await asyncio.sleep(0.1)
        await worker.stop()
    assert len(consumer.requests) == 1  # every part would be refused alike: not split
    assert worker.health.last_rejected == "10 reading(s): HTTP 403: forbidden"
    store.close()


def _reading(seq: int) -> Reading:
    return Reading(
        namespace="fluidos",
        device="d",
        sensor="humidity",
        quantity="humidity",
        unit="%",
        values={"value": float(seq)},
        node="n",
        seq=seq,
        received_at=1.767e9 + seq,
    )


async def test_a_refused_batch_is_split_so_that_only_the_bad_readings_are_rejected(
    tmp_path: Path,
) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    store.register("r/t", TOPIC, "influx", 1 << 20)
    encoder = LineProtocolEncoder()
    readings = [_reading(seq) for seq in range(25)]
    store.append([Entry(TOPIC, r.received_at, encoder.encode(r), r.encode()) for r in readings])
    bad = (b"seq=7i", b"seq=18i")

    def parser(body: bytes) -> int:  # refuses a whole batch for one bad line, as Telegraf does
        return 400 if any(mark in body for mark in bad) else 204

    async with Consumer([(204, {}, b"unable to parse")], decide=parser) as consumer:
        worker = _worker(store, consumer.url())  # batches of 10
        worker.start()
        await _until(lambda: _target(store, "r/t").queued == 0)
        await worker.stop()
    taken = [
        int(line.rsplit(b"seq=", 1)[1].split(b"i", 1)[0])
        for _, _, body, _, status in consumer.answered
        if status == 204
        for line in body.splitlines()
    ]
    assert taken == [seq for seq in range(25) if seq not in (7, 18)]  # each once, in order
    state = _target(store, "r/t")
    assert (state.delivered, state.rejected) == (23, 2)
    assert worker.health.last_rejected == "d/humidity seq 18: HTTP 400: unable to parse"
    # Batch 0-9: 1 + 2 (0-4 delivered, 5-9 refused) + 2 (5-7 refused, 8-9) + 2 (5-6, 7)
    # = 7 requests; 10-19 likewise; 20-24: 1.
    assert len(consumer.requests) == 7 + 7 + 1
    store.close()


async def test_a_503_is_retried_after_its_retry_after_then_delivered(tmp_path: Path) -> None:
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    answers = [(503, {"Retry-After": "0.3"}, b"overloaded"), (204, {}, b"")]
    async with Consumer(answers) as consumer:
        worker = _worker(store, consumer.url())
        worker.start()
        await _until(lambda: _target(store, "r/t").delivered == 10)
        await worker.stop()
    (_, _, first, sent), (_, _, second, resent) = consumer.requests
    assert first == second  # the same batch, again
    assert resent - sent >= 0.29  # Retry-After honoured, though the backoff is 10 ms
    assert _target(store, "r/t").failed == 1
    store.close()


async def test_a_redirect_is_not_followed_but_retried_as_an_error(tmp_path: Path) -> None:
    # The host allowlist checked the target's URL, not where a 3xx points.
    store = DurableLog(tmp_path / "queue.sqlite")
    _queue(store, "r/t", 10)
    async with Consumer([(307, {"Location": "/elsewhere"}, b"")]) as consumer:
        worker = _worker(store, consumer.url())
        worker.start()
        await _until(lambda: _target(store, "r/t").failed >= 2)
        await worker.stop()
    assert {path for path, _, _, _ in consumer.requests} == {"/telegraf"}
    assert worker.health.state is TargetState.RETRYING
    assert worker.health.last_error.startswith("HTTP 307")
    assert _target(store, "r/t").queued == 10  # nothing lost, nothing counted delivered
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
    await _until(lambda: _target(store, "r/t").failed >= 2)
    await worker.stop()
    error = worker.health.last_error
    assert worker.health.state is TargetState.RETRYING
    assert f"127.0.0.1:{port}/write" in error
    assert "pa55word" not in error and "hunter2" not in error and "user" not in error
    assert _target(store, "r/t").queued == 10
    store.close()


async def test_stop_ends_deliveries_at_once_whatever_the_target_is_doing(tmp_path: Path) -> None:
    # The agent stops a worker while applying routes: it must not wait for a slow answer or
    # a retry, and nothing may be sent for the removed target afterwards.
    store = DurableLog(tmp_path / "queue.sqlite")
    cases: list[tuple[list[tuple[int, dict[str, str], bytes]], float]] = [
        ([(204, {}, b"")], 3.0),
        ([(503, {}, b"")], 0.0),
    ]
    for answers, delay in cases:
        _queue(store, "r/t", 10)
        async with Consumer(answers, delay=delay) as consumer:
            worker = _worker(store, consumer.url())
            worker.start()

            def asked(c: Consumer = consumer) -> bool:
                return len(c.requests) >= 1

            await _until(asked)
            started = time.monotonic()
            await worker.stop()
            assert time.monotonic() - started < 2.5  # it did not wait for the 3 s answer
            sent = len(consumer.requests)
            await asyncio.sleep(0.3)
            assert len(consumer.requests) == sent
        store.remove("r/t")
    store.close()

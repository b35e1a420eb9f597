"""Delivery of one target's queue: batches over HTTP, in order, retried until answered.

Adaptive batching: a target with no request in flight is sent what is queued at once; while a
request is in flight, what arrives gathers, and goes as the next batch (up to the batch size)
when the answer comes. A reading waits for one answer at most, never for a timer: at low rates
each goes alone with the hop's latency, under load batches grow by themselves.

A batch counts as delivered only on a 2xx answer. A 4xx other than 408 and 429 will not get
better by retrying. When it blames the content (400, 413, 422), the refused batch is bisected
and the halves sent again, in order, down to single readings (`Isolation`, bounded in extra
requests): every reading the target takes is delivered, and only those it refuses alone are
rejected (counted, named in the status with the answer). Any other 4xx refuses the batch whole.
Anything else (5xx, 408, 429, timeouts, refused connections) is retried with capped
exponential backoff and jitter, honouring Retry-After; meanwhile readings wait in the durable
queue, in order.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, TypeVar

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.delivery import TargetState
from fluidos_sensors.endpoints import redact_url
from fluidos_sensors.reading import Reading, ReadingError
from router_manager.agent.store import DurableLog, Queued
from router_manager.agent.window import LatencyWindow
from router_manager.encoding import CloudEventEncoder, batch_body, readings_per_request
from router_manager.route import RouteTarget

log = logging.getLogger(__name__)

ERROR_TEXT_MAX = 300
STOP_TIMEOUT_S = 5.0
USER_AGENT = "fluidos-sensors-agent"
RETRY_AFTER_MAX_S = 60.0
# Answers that blame the content of a batch (malformed, too large, unprocessable): part of it
# may be fine. Any other 4xx (401, 403, 404, ...) would refuse every part alike.
SPLIT_STATUSES = frozenset({400, 413, 422})
# Extra requests one refused batch may cost to isolate its bad readings. Bisection costs at
# most 2*log2(n) requests per bad reading: within this, 3 bad readings in a batch of 1000
# (the default size), or every reading of a batch of 32. Beyond it, what is left of the
# batch is still sent in the parts made so far, and a part refused then is rejected whole.
ISOLATION_REQUESTS_MAX = 64
T = TypeVar("T")


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"
    RETRY = "retry"


def classify(status: int) -> Verdict:
    """What an HTTP answer means for the batch."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if 400 <= status < 500 and status not in (408, 429):
        return Verdict.REJECTED
    return Verdict.RETRY


class Isolation(Generic[T]):
    """What to send next of a batch a target may refuse, and what each answer settles.

    Starts with the whole batch as its one part. A refusal that blames the content splits the
    refused part in two halves sent in its place (the first half first: order is kept), while
    the budget of extra requests lasts; a single reading, or a part refused otherwise, is
    settled as refused. So a target refusing k readings of n costs at most 2k*log2(n) extra
    requests, and every other reading is delivered.
    """

    def __init__(self, batch: Sequence[T], budget: int = ISOLATION_REQUESTS_MAX) -> None:
        self._parts: list[Sequence[T]] = [batch] if batch else []
        self.budget = budget
        self.extra = 0  # requests beyond the batch's first

    @property
    def part(self) -> Sequence[T] | None:
        """What to send next (None: the whole batch is settled)."""
        return self._parts[0] if self._parts else None

    @property
    def split(self) -> bool:
        """Whether the batch was split (its parts are no longer the queue's head batch)."""
        return self.extra > 0

    def delivered(self) -> Sequence[T]:
        """The target took `part`: it is settled as delivered (returned)."""
        return self._parts.pop(0)

    def refused(self, *, splittable: bool) -> Sequence[T]:
        """The target refused `part`: split (nothing settled: returns []) when the answer
        blames content, the part has several readings and the budget allows; else the part
        is settled as refused (returned)."""
        part = self._parts[0]
        if splittable and len(part) > 1 and self.extra + 2 <= self.budget:
            half = (len(part) + 1) // 2
            self._parts[0:1] = [part[:half], part[half:]]
            self.extra += 2
            return []
        return self._parts.pop(0)

    def replace_part(self, part: Sequence[T]) -> None:
        """Send `part` instead of the current one (what is left of it after drops)."""
        if part:
            self._parts[0] = part
        else:
            self._parts.pop(0)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in seconds form (dates are rare; ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S) if math.isfinite(seconds) else None


def authorization(kind: str, secret: dict[str, str]) -> str:
    """The Authorization header for a target's auth type and its Secret's (decoded) data."""
    if kind == "basic":
        pair = f"{secret['username']}:{secret['password']}".encode()
        return "Basic " + base64.b64encode(pair).decode()
    scheme = "Token" if kind == "token" else "Bearer"
    return f"{scheme} {secret['token']}"


def _printable(text: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return cleaned[:ERROR_TEXT_MAX] + ("…" if len(cleaned) > ERROR_TEXT_MAX else "")


@dataclass
class TargetHealth:
    """What the status and metrics show of a target besides its queue counters."""

    state: TargetState = TargetState.IDLE
    last_error: str = ""
    last_error_time: float | None = None
    last_success: float | None = None
    last_rejected: str = ""
    """The last readings the target refused (device/sensor and seq) and its answer."""
    window: LatencyWindow = field(default_factory=LatencyWindow)

    def error(self, message: str, state: TargetState) -> None:
        self.state = state
        self.last_error = message
        self.last_error_time = time.time()


class TargetWorker:
    """Sends one target's queue, batch by batch, until stopped."""

    def __init__(
        self,
        key: str,
        target: RouteTarget,
        store: DurableLog,
        *,
        timeout: float = 10.0,
        credentials: Callable[[], str | None] | None = None,
        backoff: Callable[[], Backoff] = lambda: Backoff(0.2, 30.0),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.target = target
        self.store = store
        self._timeout = timeout
        self.http: Client | None = None
        self.health = TargetHealth()
        self._credentials = credentials
        self._backoff = backoff()
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._events = CloudEventEncoder()

    def _per_request(self) -> int:
        return readings_per_request(self.target.format, self.target.batch_size)

    def start(self) -> None:
        # A client (connection pool) per target. pyreqwest runs the HTTP exchange in Rust
        # (reqwest/hyper) off the event loop: 0.14 ms of the agent's CPU per POST against
        # aiohttp's 0.23 ms (bench/bench_http_clients.py), most of its work at many targets.
        # Redirects are not followed: the allowlist checked the target's host, not where a
        # 3xx points (a 3xx is an error and retried, visible in the status). No proxy from
        # the environment: a target is reached as its URL says.
        self.http = (
            ClientBuilder()
            .timeout(timedelta(seconds=self._timeout))
            .follow_redirects(False)
            .no_proxy()
            .error_for_status(False)
            .user_agent(USER_AGENT)
            .build()
        )
        self._task = asyncio.create_task(self._run(), name=f"deliver {self.key}")

    async def stop(self) -> None:
        """Stop delivering. Bounded: the agent stops a worker while applying routes, and one
        stuck request must not hold up the routes of every other target."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_TIMEOUT_S)
            if not self._task.done():
                log.error("target %s: delivery still running after stop; left", self.key)
            elif not self._task.cancelled() and self._task.exception() is not None:
                log.error("target %s: delivery ended with %r", self.key, self._task.exception())
        if self.http is not None:
            try:
                await asyncio.wait_for(self.http.close(), STOP_TIMEOUT_S)
            except (TimeoutError, PyreqwestError) as exc:
                log.error("target %s: closing its HTTP client: %s", self.key, type(exc).__name__)

    def update(self, target: RouteTarget) -> None:
        """New settings (same id): they apply from the next batch."""
        self.target = target
        self._wake.set()

    def notify(self) -> None:
        """New readings were queued for this target: sent at once if no request is in flight,
        else with the next batch."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                batch = await self._next_batch()
                await self._deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the data path for good
                log.exception("target %s: unexpected error", self.key)
                self.health.error(f"internal error: {type(exc).__name__}", TargetState.RETRYING)
                await asyncio.sleep(self._backoff.next())

    async def _next_batch(self) -> list[Queued]:
        """What is queued, up to the batch size, as soon as anything is."""
        while True:
            self._wake.clear()
            state = self.store.target(self.key)
            if state is not None and state.queued > 0:
                batch = self.store.peek(self.key, self._per_request())
                if batch:
                    return batch
                log.error("target %s: queue counters out of step; recounting", self.key)
                self.store.recount(self.key)
                continue
            await self._wake.wait()

    async def _deliver(self, batch: list[Queued]) -> None:
        """Send the oldest batch until each of its readings is delivered or rejected."""
        isolation = Isolation(batch)
        while (part := isolation.part) is not None:
            authorization: str | None = None
            if self.target.auth is not None:
                authorization = self._credentials() if self._credentials else None
                if authorization is None:
                    self.health.error(
                        f"Secret {self.target.auth.secret_name} is missing or lacks the keys "
                        f"auth type {self.target.auth.type} needs; readings wait in the queue",
                        TargetState.WAITING,
                    )
                    await asyncio.sleep(self._backoff.next())
                    isolation = self._resume(isolation)
                    continue
            try:
                body, content_type = batch_body(
                    self.target.format, [item.payload for item in part], self._events
                )
            except ReadingError as exc:  # only a store changed behind the agent's back
                self._reject(isolation.refused(splittable=False), f"stored reading: {exc}")
                continue
            wait: float | None = None
            status = 0
            assert self.http is not None
            try:
                request = self.http.post(self.target.url).header("Content-Type", content_type)
                if authorization is not None:
                    request = request.header("Authorization", authorization, is_sensitive=True)
                async with request.body_bytes(body).build_streamed() as answer:
                    head = await answer.body_reader.read(ERROR_TEXT_MAX * 4)
                    text = bytes(head or b"").decode("utf-8", "replace")
                    status = answer.status
                    wait = retry_after(answer.get_header("Retry-After"))
            except PyreqwestError as exc:  # refused, reset, timed out: the target is not there
                if self._stopping:  # whatever the client made of the cancellation: stop
                    raise asyncio.CancelledError from exc
                verdict = Verdict.RETRY
                message = f"{type(exc).__name__} posting to {redact_url(self.target.url)}"
            else:
                verdict = classify(status)
                message = f"HTTP {status}: {_printable(text)}"
            if verdict is Verdict.DELIVERED:
                now = self._clock()
                settled = isolation.delivered()
                self.store.ack(self.key, settled)
                self.health.window.add([now - item.received for item in settled])
                self.health.state = TargetState.DELIVERING
                self.health.last_success = now
                self._backoff.reset()
                continue
            if verdict is Verdict.REJECTED:
                settled = isolation.refused(splittable=status in SPLIT_STATUSES)
                if settled:
                    self._reject(settled, message)
                continue
            self.store.count_failure(self.key)
            if self.health.state is not TargetState.RETRYING:
                log.warning("target %s failing, retrying: %s", self.key, message[:120])
            self.health.error(message, TargetState.RETRYING)
            await asyncio.sleep(max(self._backoff.next(), wait or 0.0))
            if self._stopping:
                return
            isolation = self._resume(isolation)

    def _resume(self, isolation: Isolation[Queued]) -> Isolation[Queued]:
        """What to send after a wait: readings dropped at the bound meanwhile are not sent.
        An unsplit batch is read again (it may have grown to its full size); a split one
        goes on with what is left of its current part."""
        if not isolation.split:
            return Isolation(self.store.peek(self.key, self._per_request()))
        state, part = self.store.target(self.key), isolation.part
        if state is not None and part:
            isolation.replace_part([item for item in part if item.id > state.acked])
        return isolation

    def _reject(self, readings: Sequence[Queued], message: str) -> None:
        """The target refused these readings for good: counted, named in the status."""
        named = self._name(readings)
        self.store.reject(self.key, readings)
        self.health.error(message, TargetState.REJECTING)
        self.health.last_rejected = f"{named}: {message}"[: ERROR_TEXT_MAX + 200]
        log.warning("target %s refused %s: %s", self.key, named, message[:120])

    def _name(self, readings: Sequence[Queued]) -> str:
        """ "<device>/<sensor> seq N" (or "seq N to M, K readings") from the stored readings."""

        def seq_of(item: Queued) -> tuple[str, int] | None:
            payload = self.store.reading_json(item.id)
            try:
                reading = Reading.decode(payload) if payload is not None else None
            except ReadingError:
                return None
            return (f"{reading.device}/{reading.sensor}", reading.seq) if reading else None

        first, last = seq_of(readings[0]), seq_of(readings[-1])
        if first is None or last is None:
            return f"{len(readings)} reading(s)"
        if len(readings) == 1:
            return f"{first[0]} seq {first[1]}"
        return f"{first[0]} seq {first[1]} to {last[1]} ({len(readings)} readings)"

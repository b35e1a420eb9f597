"""Delivery of one target's queue: batches over HTTP, in order, retried until answered.

A batch counts as delivered only on a 2xx answer. A 4xx other than 408 and 429 will not get
better by retrying: the batch is rejected (counted, the error kept visible) and the next one
goes. Anything else (5xx, 408, 429, timeouts, refused connections) is retried with capped
exponential backoff and jitter, honouring Retry-After; meanwhile readings wait in the durable
queue, in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.endpoints import redact_url
from router_manager.agent.store import DurableLog, Queued
from router_manager.agent.window import LatencyWindow
from router_manager.encoding import batch_body
from router_manager.route import RouteTarget, TargetState

log = logging.getLogger(__name__)

ERROR_TEXT_MAX = 300
STOP_TIMEOUT_S = 5.0
USER_AGENT = "fluidos-sensors-agent"
RETRY_AFTER_MAX_S = 60.0


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


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in seconds form (dates are rare; ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S) if math.isfinite(seconds) else None


def already_waited(age: float, delay: float) -> float:
    """How much of the batch delay a reading `age` seconds old (since the mapper read it, on
    the same node's clock) has used up on arrival.

    The delay bounds how long a reading is held back since it was read, so the hop from the
    mapper counts. A reading already older than the delay (a backlog after an outage, or a
    clock set apart) starts the delay afresh: sending each at once would make batches of one.
    """
    return age if 0.0 <= age <= delay else 0.0


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
        self._pending_since: float | None = None  # monotonic: when readings began to wait
        self._stopping = False

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

    def notify(self, age: float = 0.0) -> None:
        """New readings were queued for this target; the oldest was read `age` seconds ago."""
        if self._pending_since is None:
            # They start waiting now, even while the previous batch is still being sent.
            waited = already_waited(age, self.target.batch_delay_ms / 1000.0)
            self._pending_since = time.monotonic() - waited
        else:
            # Already timing a batch: only a full one is worth waking up for.
            state = self.store.target(self.key)
            if state is None or state.queued < self.target.batch_size:
                return
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
        """Wait for a full batch, or for the oldest waiting reading to have waited the batch
        delay (see `already_waited`)."""
        while True:
            state = self.store.target(self.key)
            size, delay = self.target.batch_size, self.target.batch_delay_ms / 1000.0
            self._wake.clear()
            timeout: float | None = None
            if state is not None and state.queued > 0:
                now = time.monotonic()
                if self._pending_since is None:
                    self._pending_since = now
                if state.queued >= size or now - self._pending_since >= delay:
                    batch = self.store.peek(self.key, size)
                    self._pending_since = None
                    if batch:
                        return batch
                    log.error("target %s: queue counters out of step; recounting", self.key)
                    self.store.recount(self.key)
                    continue
                timeout = delay - (now - self._pending_since)
            else:
                self._pending_since = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _deliver(self, batch: list[Queued]) -> None:
        """Send the oldest batch until it is delivered or rejected."""
        while True:
            if not batch:
                return
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
                    batch = self.store.peek(self.key, self.target.batch_size)
                    continue
            body, content_type = batch_body(self.target.format, (item.payload for item in batch))
            wait: float | None = None
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
                self.store.ack(self.key, batch)
                self.health.window.add([now - item.received for item in batch])
                self.health.state = TargetState.DELIVERING
                self.health.last_success = now
                self._backoff.reset()
                return
            if verdict is Verdict.REJECTED:
                self.store.reject(self.key, batch)
                self.health.error(message, TargetState.REJECTING)
                log.warning(
                    "target %s refused %d reading(s): %s", self.key, len(batch), message[:120]
                )
                return
            self.store.count_failure(self.key)
            if self.health.state is not TargetState.RETRYING:
                log.warning("target %s failing, retrying: %s", self.key, message[:120])
            self.health.error(message, TargetState.RETRYING)
            await asyncio.sleep(max(self._backoff.next(), wait or 0.0))
            if self._stopping:
                return
            # Re-read: readings dropped at the bound meanwhile are not sent, and the batch may
            # have grown to its full size.
            batch = self.store.peek(self.key, self.target.batch_size)

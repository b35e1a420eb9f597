"""List + watch of one kind of Kubernetes object in a background thread, feeding a sink.

A paginated list hands the sink every object (`replace`), a watch from the list's
resourceVersion each change (`upsert`, `delete`). Bookmarks keep that version fresh, so a
watch the server ends (at its timeout, spread so that many watches do not reconnect together)
or a connection that breaks resumes where it was; a 410 Gone relists. Every failure is
reported to the sink (`report`: unreachable, forbidden, absent or failing, a short reason and
when the next try comes) and logged, then retried: a forbidden or absent kind slowly, anything
else after a capped exponential backoff (`fluidos_sensors.backoff`). `stop` shuts the open
connection, so the thread ends at once, not at the server's timeout.

Objects stay the plain dicts the API server sends: nothing is deserialized into client
models, so a Secret's data never lands in one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.limits import allow_kubernetes_nesting

log = logging.getLogger(__name__)

ListCall = Callable[..., Any]
"""A kubernetes client's `list_*` method with its positional arguments bound
(`functools.partial`); lists and watches call it with `_preload_content=False`."""

CONNECT_TIMEOUT = 3.0
LIST_TIMEOUT = 60.0  # read timeout of one page of a list
PAGE_SIZE = 500
WATCH_SECONDS = 240  # server-side timeout of one watch, before spreading
# A missing CRD or a forbidden kind will not change soon; look again now and then.
SLOW_RETRY = 60.0
GONE = 410

CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException)


class State(StrEnum):
    """How a watch is doing."""

    SYNCED = "synced"  # listed, and watching
    UNREACHABLE = "unreachable"  # no answer from the API server
    FORBIDDEN = "forbidden"  # our credentials may not list the kind
    ABSENT = "absent"  # the kind is not served (its CRD is not installed)
    FAILING = "failing"  # the API server answers with errors


@dataclass(frozen=True)
class Report:
    """What a watch tells its sink about itself."""

    state: State
    reason: str = ""
    retry_in: float | None = None
    """Seconds until the next try, after a failure."""


class Sink(Protocol):
    """Where a watch puts what it learns; called from the watch's thread."""

    def replace(self, objects: list[dict[str, Any]], /) -> None:
        """Every object, after a (re)list."""

    def upsert(self, obj: dict[str, Any], /) -> None: ...

    def delete(self, obj: dict[str, Any], /) -> None: ...

    def report(self, report: Report, /) -> None:
        """The watch's state changed, or a try failed."""


def _unheeded(report: Report) -> None:
    """The watch logs its failures anyway."""


@dataclass(frozen=True)
class Callbacks:
    """A sink made of functions."""

    replace: Callable[[list[dict[str, Any]]], None]
    upsert: Callable[[dict[str, Any]], None]
    delete: Callable[[dict[str, Any]], None]
    report: Callable[[Report], None] = _unheeded


Snapshot = dict[str, dict[str, Any]]


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Snapshots:
    """A sink that keeps every object by "namespace/name" and hands `on_change` a copy of
    them all after each list and each change."""

    def __init__(self, on_change: Callable[[Snapshot], None]) -> None:
        self._objects: Snapshot = {}
        self._on_change = on_change

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self._objects = {object_key(obj): obj for obj in objects}
        self._on_change(dict(self._objects))

    def upsert(self, obj: dict[str, Any]) -> None:
        self._objects[object_key(obj)] = obj
        self._on_change(dict(self._objects))

    def delete(self, obj: dict[str, Any]) -> None:
        self._objects.pop(object_key(obj), None)
        self._on_change(dict(self._objects))

    def report(self, report: Report) -> None:
        """The watch logs its failures; the last snapshot stays what there is."""


class ApiError(Exception):
    """The API server answered a list or watch with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def status_message(body: object, reason: object) -> str:
    """The `message` of a Status body, else the HTTP reason."""
    try:
        return str(json.loads(body).get("message") or reason)  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        return str(reason or "")


def connection_problem(exc: BaseException) -> str:
    """A short reason for a failed connection ("connection refused", "timed out", ...)."""
    reason: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    text = str(reason)
    for known in ("Connection refused", "timed out", "Connection reset", "certificate verify"):
        if known.casefold() in text.casefold():
            return known.lower()
    if isinstance(reason, urllib3.exceptions.ProtocolError):
        return "connection broken"
    line = text.splitlines()[0] if text else ""
    return f"{type(reason).__name__}: {line}"[:160]


def diagnose(exc: BaseException) -> tuple[State, str]:
    """What a failed list or watch (other than 410 Gone) means, with a short reason."""
    if isinstance(exc, ApiError):
        if exc.status == 403:
            return State.FORBIDDEN, exc.message
        if exc.status == 404:
            return State.ABSENT, exc.message
        return State.FAILING, str(exc)
    if isinstance(exc, CONNECTION_ERRORS):
        return State.UNREACHABLE, connection_problem(exc)
    return State.FAILING, f"{type(exc).__name__}: {exc}"


class _Stopped(Exception):
    """`stop` came while a request was being sent: it could not break it yet."""


class ListWatch:
    """Keeps a sink in step with one kind of object, in a daemon thread, until `stop`.

    `synced` is set once the first list reached the sink (and stays set).
    """

    def __init__(
        self,
        name: str,
        list_call: ListCall,
        sink: Sink,
        *,
        label_selector: str | None = None,
        backoff: Backoff | None = None,
        watch_seconds: int = WATCH_SECONDS,
        list_timeout: float = LIST_TIMEOUT,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.name = name
        self._list_call = list_call
        self._selector = {"label_selector": label_selector} if label_selector else {}
        self._sink = sink
        self._backoff = backoff or Backoff(0.5, 30.0)
        self._watch_seconds = watch_seconds
        self._list_timeout = list_timeout
        self._page_size = page_size
        self.synced = threading.Event()
        self._state: State | None = None
        self._version: str | None = None  # None: list first
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._response: Any = None
        self._response_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch {name}", daemon=True)

    # Control (any thread)

    def start(self) -> None:
        allow_kubernetes_nesting()  # objects may nest as deep as the API server stores them
        self._thread.start()

    def wake(self) -> None:
        """Retry now instead of waiting out the backoff."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """End the thread: shut its open connection so the blocked read returns, then wait
        up to `timeout` seconds (0: do not wait). Whether the thread has ended."""
        self._stopping.set()
        self._wake.set()
        with self._response_lock:
            response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # already closed: nothing to break
                log.debug("%s: shutting the connection down failed", self.name, exc_info=True)
        return self.join(timeout)

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the thread to end; whether it has."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # The loop

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._version is None:
                    self._list()
                self._watch()
                continue  # the server ended the watch: resume it
            except Exception as exc:  # a bug must not end the watch silently either
                if self._stopping.is_set():
                    return  # its connection was shut on purpose
                if isinstance(exc, ApiError) and exc.status == GONE:
                    # Routine, and a healthy steady state logs nothing (fluidos_sensors.logs).
                    log.debug("%s: watch expired (410), relisting", self.name)
                    self._version = None  # too old to resume from
                    continue
                delay = self._failed(exc)
            self._wake.wait(delay)
            self._wake.clear()

    def _failed(self, exc: Exception) -> float:
        """Report and log a failed try; the seconds to wait before the next."""
        state, reason = diagnose(exc)
        delay = SLOW_RETRY if state in (State.FORBIDDEN, State.ABSENT) else self._backoff.next()
        if isinstance(exc, (ApiError, *CONNECTION_ERRORS)):
            log.warning("%s: watch failed (%s); retrying in %.1fs", self.name, reason, delay)
        else:
            log.exception("%s: watch failed; retrying in %.1fs", self.name, delay)
        if not isinstance(exc, CONNECTION_ERRORS):
            self._version = None  # not a broken connection: start again from a full list
        self._state = state
        self._sink.report(Report(state, reason, delay))
        return delay

    def _synced(self) -> None:
        self._backoff.reset()
        if self._state is State.SYNCED:
            return
        if self._state is None:
            log.info("%s: listed, watching", self.name)
        else:
            log.info("%s: watching again", self.name)
        self._state = State.SYNCED
        self._sink.report(Report(State.SYNCED))

    @contextlib.contextmanager
    def _request(self, **params: Any) -> Iterator[Any]:
        """The raw response of one list or watch request, for `stop` to shut."""
        try:
            response = self._list_call(**self._selector, **params, _preload_content=False)
        except ApiException as exc:
            raise ApiError(int(exc.status or 0), status_message(exc.body, exc.reason)) from None
        with self._response_lock:
            self._response = response
            stopping = self._stopping.is_set()
        try:
            if stopping:
                raise _Stopped
            yield response
        finally:
            with self._response_lock:
                self._response = None
            response.release_conn()

    def _list(self) -> None:
        """Every object, page by page, to the sink; the list's version is where the watch starts."""
        objects: list[dict[str, Any]] = []
        token: str | None = None
        timeout = (CONNECT_TIMEOUT, self._list_timeout)
        while True:
            with self._request(
                limit=self._page_size, _continue=token, _request_timeout=timeout
            ) as response:
                page = json.loads(response.data)
            objects.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or None
            if token is None:
                break
        self._sink.replace(objects)
        self._version = str(metadata.get("resourceVersion") or "")
        self.synced.set()
        self._synced()

    def _watch(self) -> None:
        """Hand the sink every change after our version until the server ends the watch."""
        seconds = int(self._watch_seconds * (0.8 + 0.2 * random.random()))
        with self._request(
            watch=True,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _request_timeout=(CONNECT_TIMEOUT, seconds + 30),
        ) as response:
            self._synced()
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":  # 410 Gone among them
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("message") or obj))
                if kind in ("ADDED", "MODIFIED"):
                    self._sink.upsert(obj)
                elif kind == "DELETED":
                    self._sink.delete(obj)
                meta = obj.get("metadata") or {}
                self._version = str(meta.get("resourceVersion") or self._version)

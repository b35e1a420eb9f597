"""List + watch every kind the TUI shows, per cluster, in background threads.

Each (cluster, kind) has one thread: a paginated list fills the store, a watch from the
list's resourceVersion keeps it current (bookmarks keep that version fresh), a 410 Gone
relists, and any failure waits a capped exponential backoff (`fluidos_sensors.backoff`)
before trying again. A cluster that stops answering is reported unreachable in the store;
the other clusters' threads never notice. Stopping shuts the open watch connections down,
so no thread lingers until a server timeout.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from fluidos_sensors.api import (
    DEVICE,
    DEVICE_STATUS,
    EVENT,
    FLAVOR,
    SENSOR_PROVIDER,
    SENSOR_REQUEST,
    SENSOR_ROUTE,
    Resource,
)
from fluidos_sensors.backoff import Backoff
from fluidos_sensors.limits import allow_kubernetes_nesting
from tui.data.clusters import ClusterConfig
from tui.data.store import Health, Kind, Store

log = logging.getLogger(__name__)

RESOURCES: dict[Kind, Resource] = {
    Kind.FLAVORS: FLAVOR,
    Kind.DEVICES: DEVICE,
    Kind.DEVICE_STATUSES: DEVICE_STATUS,
    Kind.ROUTES: SENSOR_ROUTE,
    Kind.REQUESTS: SENSOR_REQUEST,
    Kind.PROVIDERS: SENSOR_PROVIDER,
    # Events through events.k8s.io/v1 (the same objects as core/v1): one code path for every
    # kind, and no import of the large CoreV1Api module, which costs a second at startup.
    Kind.EVENTS: EVENT,
}
CONNECT_TIMEOUT = 3.0
LIST_TIMEOUT = 60.0
PAGE_SIZE = 500
# A missing CRD or a forbidden kind will not change soon; look again now and then.
SLOW_RETRY = 60.0


class ApiError(Exception):
    """The API server answered a list or watch with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _message(body: object, reason: object) -> str:
    """The `message` of a Status body, else the HTTP reason."""
    try:
        return str(json.loads(body).get("message") or reason)  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        return str(reason or "")


def _api_error(response: Any) -> ApiError:
    return ApiError(response.status, _message(response.data, response.reason))


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


_CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException)


class KindWatch(threading.Thread):
    """Keeps one kind of one cluster in the store, forever (until `stop`)."""

    def __init__(
        self,
        cluster: str,
        kind: Kind,
        api: client.ApiClient,
        store: Store,
        *,
        stopping: threading.Event,
        backoff: Callable[[], Backoff],
        watch_timeout: int,
    ) -> None:
        super().__init__(name=f"watch-{cluster}-{kind.value}", daemon=True)
        self.cluster = cluster
        self.kind = kind
        self.resource = RESOURCES[kind]
        self._api = api
        self._store = store
        self._stopping = stopping
        self._wake = threading.Event()
        self._backoff = backoff()
        self._watch_timeout = watch_timeout
        self._response: Any = None
        self._response_lock = threading.Lock()

    # Control (any thread)

    def wake(self) -> None:
        """Retry now instead of waiting out the backoff."""
        self._wake.set()

    def interrupt(self) -> None:
        """Break an open watch (stop): shut its socket so the blocked read returns."""
        self._wake.set()
        with self._response_lock:
            response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # already closed: nothing to interrupt
                log.debug("shutdown of %s watch failed", self.name, exc_info=True)

    # The loop

    def run(self) -> None:
        version: str | None = None
        while not self._stopping.is_set():
            delay: float | None = None
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
            except ApiError as exc:
                version, delay = self._api_failed(exc)
            except _CONNECTION_ERRORS as exc:
                if self._stopping.is_set():
                    return
                delay = self._backoff.next()
                self._store.report(
                    self.cluster,
                    self.kind,
                    Health.UNREACHABLE,
                    connection_problem(exc),
                    retry_in=delay,
                )
            except Exception as exc:  # a bug must not end the watch silently
                log.exception("%s failed", self.name)
                delay = self._backoff.next()
                self._store.report(
                    self.cluster, self.kind, Health.FAILING, f"{type(exc).__name__}: {exc}", delay
                )
            if delay is not None and not self._stopping.is_set():
                self._wake.wait(delay)
                self._wake.clear()

    def _api_failed(self, exc: ApiError) -> tuple[str | None, float | None]:
        """What to do after an error answer: (version to resume from, delay)."""
        if exc.status == 410:
            return None, None  # our version is too old: relist right away
        if exc.status == 403:
            self._store.report(self.cluster, self.kind, Health.FORBIDDEN, exc.message, SLOW_RETRY)
            return None, SLOW_RETRY
        if exc.status == 404:
            self._store.report(self.cluster, self.kind, Health.ABSENT, exc.message, SLOW_RETRY)
            return None, SLOW_RETRY
        delay = self._backoff.next()
        self._store.report(self.cluster, self.kind, Health.FAILING, str(exc), retry_in=delay)
        return None, delay

    def _call(self, **params: Any) -> Any:
        """The raw (streamed) response of a list or watch of this kind across namespaces."""
        try:
            resource = self.resource
            return client.CustomObjectsApi(self._api).list_cluster_custom_object(
                resource.group, resource.version, resource.plural, _preload_content=False, **params
            )
        except ApiException as exc:
            raise ApiError(int(exc.status or 0), _message(exc.body, exc.reason)) from None

    def _list(self) -> str:
        """List every object (in pages), replace the store's, return the list's version."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            response = self._call(
                limit=PAGE_SIZE, _continue=token, _request_timeout=(CONNECT_TIMEOUT, LIST_TIMEOUT)
            )
            try:
                if not 200 <= response.status < 300:
                    raise _api_error(response)
                body = json.loads(response.data)
            finally:
                response.release_conn()
            items.extend(body.get("items") or [])
            metadata = body.get("metadata") or {}
            token = metadata.get("continue") or None
            if token is None:
                self._store.replace(self.cluster, self.kind, items)
                self._store.report(self.cluster, self.kind, Health.SYNCED)
                self._backoff.reset()
                return str(metadata.get("resourceVersion") or "")

    def _watch(self, version: str) -> str | None:
        """Apply watch events from `version` until the server ends the watch; the version to
        resume from, or None to relist."""
        # Spread the server-side timeouts so many watches do not reconnect together.
        timeout = int(self._watch_timeout * (0.8 + 0.2 * random.random()))
        response = self._call(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=(CONNECT_TIMEOUT, timeout + 30),
        )
        if not 200 <= response.status < 300:
            error = _api_error(response)
            response.release_conn()
            raise error
        self._store.report(self.cluster, self.kind, Health.SYNCED)
        self._backoff.reset()
        with self._response_lock:
            self._response = response
        try:
            if self._stopping.is_set():
                return version
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("message") or obj))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "DELETED":
                    self._store.delete(self.cluster, self.kind, obj)
                elif kind in ("ADDED", "MODIFIED"):
                    self._store.upsert(self.cluster, self.kind, obj)
        finally:
            with self._response_lock:
                self._response = None
            response.release_conn()
        return version


class ClusterWatch:
    """Every watch of one cluster, plus its API client for the TUI's actions."""

    def __init__(
        self,
        cluster: ClusterConfig,
        store: Store,
        *,
        kinds: tuple[Kind, ...] = tuple(Kind),
        backoff: Callable[[], Backoff] = lambda: Backoff(0.5, 30.0),
        watch_timeout: int = 300,
    ) -> None:
        self.config = cluster
        self.api = cluster.api_client()
        self._stopping = threading.Event()
        store.add_cluster(cluster.name, cluster.role)
        self.watches = [
            KindWatch(
                cluster.name,
                kind,
                self.api,
                store,
                stopping=self._stopping,
                backoff=backoff,
                watch_timeout=watch_timeout,
            )
            for kind in kinds
        ]

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        for watch in self.watches:
            watch.start()

    def reconnect(self) -> None:
        """Try every failed watch now."""
        for watch in self.watches:
            watch.wake()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for watch in self.watches:
            watch.interrupt()
        for watch in self.watches:
            if watch.is_alive():
                watch.join(timeout)
        self.api.close()


class Watches:
    """The watches of every cluster the TUI shows."""

    def __init__(self, clusters: list[ClusterConfig], store: Store, **options: Any) -> None:
        self.store = store
        self.clusters = {c.name: ClusterWatch(c, store, **options) for c in clusters}

    def start(self) -> None:
        allow_kubernetes_nesting()  # objects may nest as deep as the API server stores them
        for cluster in self.clusters.values():
            cluster.start()

    def stop(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()

    def api(self, cluster: str) -> client.ApiClient:
        return self.clusters[cluster].api

    def reconnect(self, cluster: str | None = None) -> None:
        for name, watch in self.clusters.items():
            if cluster is None or name == cluster:
                watch.reconnect()

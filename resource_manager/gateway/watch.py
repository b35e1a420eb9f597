"""List-then-watch of one kind of object in a background thread, feeding a local view.

The usual reflector: list (``replace`` the view with everything), then watch from the list's
resourceVersion (``upsert``/``delete`` per event); a watch that ends is resumed from the last
version seen, a 410 Gone relists, and any failure retries with capped backoff. Objects are
handled as plain dicts (no model deserialization: Secrets' data stays out of client models).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.backoff import Backoff

log = logging.getLogger("resource_manager.gateway.watch")

ListCall = Callable[..., Any]  # a list_* method of a kubernetes API object (watch-capable)
_WATCH_SECONDS = 240  # server-side timeout of one watch request; resumed right after
_GONE = 410


class Reflector:
    """Keeps a view in sync with the API server: ``synced`` is set after the first list."""

    def __init__(
        self,
        what: str,
        list_call: ListCall,
        *,
        replace: Callable[[Iterable[Mapping[str, Any]]], None],
        upsert: Callable[[Mapping[str, Any]], None],
        delete: Callable[[Mapping[str, Any]], None],
        request_timeout: float = 30.0,
        **list_args: Any,
    ) -> None:
        self.what = what
        self._list_call = list_call
        self._list_args = list_args
        self._replace = replace
        self._upsert = upsert
        self._delete = delete
        self._request_timeout = request_timeout
        self.synced = threading.Event()
        self._stopping = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{what}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout)

    def _list(self) -> str:
        answer = self._list_call(
            **self._list_args, _preload_content=False, _request_timeout=self._request_timeout
        )
        try:
            body = json.loads(answer.data)
        finally:
            answer.release_conn()
        self._replace(body.get("items") or [])
        return str(body["metadata"]["resourceVersion"])

    def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                    if not self.synced.is_set():
                        log.info("%s: listed, watching", self.what)
                    self.synced.set()
                version = self._follow(version)
                backoff.reset()
            except ApiException as exc:
                if exc.status == _GONE:
                    log.info("%s: watch expired (410), relisting", self.what)
                    version = None
                    continue
                self._pause(backoff, f"API error {exc.status} {exc.reason}")
            except Exception as exc:  # the API server went away, a socket broke, ...
                self._pause(backoff, f"{type(exc).__name__}: {exc}")

    def _pause(self, backoff: Backoff, why: str) -> None:
        delay = backoff.next()
        log.warning("%s: watch failed (%s); retrying in %.1fs", self.what, why, delay)
        self._stopping.wait(delay)

    def _follow(self, version: str) -> str:
        """Stream events from `version`; the last version seen when the stream ends."""
        self._watch = watch.Watch()
        for event in self._watch.stream(
            self._list_call,
            **self._list_args,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=_WATCH_SECONDS,
            _request_timeout=_WATCH_SECONDS + self._request_timeout,
            deserialize=False,
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":  # the stream already raised for 410 when it had a code
                code = obj.get("code")
                raise ApiException(status=code, reason=str(obj.get("message", "")))
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED"):
                self._upsert(obj)
            elif kind == "DELETED":
                self._delete(obj)
            if self._stopping.is_set():
                break
        return version

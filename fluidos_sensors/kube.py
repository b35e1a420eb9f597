"""Kubernetes access shared by the long-running parts: API clients and a resilient watch."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import Resource
from fluidos_sensors.backoff import Backoff
from fluidos_sensors.limits import allow_kubernetes_nesting

log = logging.getLogger(__name__)

# (connect, read) seconds for single requests: an API outage costs a retry, not a hang.
REQUEST_TIMEOUT = (3.0, 15.0)
_WATCH_SECONDS = 240
_T = TypeVar("_T")


def api_client(kubeconfig: Path | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a Pod without a kubeconfig, else the kubeconfig."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(
        config_file=str(kubeconfig) if kubeconfig else None, context=context
    )


def kopf_login(api: client.ApiClient, default_namespace: str | None = None) -> Any:
    """kopf's connection info from our API client, so an operator and its own API calls use
    the same credentials (a kubeconfig's token or client certificate, or in-cluster)."""
    import kopf  # only operators need it

    conf = api.configuration
    keys = conf.api_key or {}
    # The client names the header value "BearerToken" (newer) or "authorization" (older).
    token = keys.get("BearerToken") or keys.get("authorization") or ""
    scheme, _, value = token.partition(" ")
    return kopf.ConnectionInfo(
        server=conf.host,
        ca_path=conf.ssl_ca_cert,
        insecure=not conf.verify_ssl,
        certificate_path=conf.cert_file,
        private_key_path=conf.key_file,
        scheme=scheme or None,
        token=value or None,
        default_namespace=default_namespace,
    )


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def get_or_none(read: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
    """`read(*args, **kwargs)` (a `get_*`/`read_*` call of the kubernetes client), or None
    when the API server answers 404: the object does not exist. Other errors raise."""
    try:
        return read(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


Snapshot = dict[str, dict[str, Any]]


class ObjectWatch:
    """The current objects of one custom resource kind, kept by list + watch in a thread.

    `on_change(snapshot)` is called from the watch thread after the first list and after
    every change, with a copy of every object by "namespace/name". Expired resource versions
    relist; errors retry with capped backoff; `synced` tells whether the last list succeeded.
    """

    def __init__(
        self,
        api: client.ApiClient,
        resource: Resource,
        on_change: Callable[[Snapshot], None],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        name: str = "",
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.on_change = on_change
        self.objects: Snapshot = {}
        self.synced = False
        self.last_error = ""
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=name or f"watch {resource.plural}"
        )

    def start(self) -> None:
        allow_kubernetes_nesting()  # objects may nest as deep as the API server stores them
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _call(self, method: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        r = self.resource
        if self.namespace:
            return getattr(self._custom, f"list_namespaced_{method}"), (
                r.group,
                r.version,
                self.namespace,
                r.plural,
            )
        return getattr(self._custom, f"list_cluster_{method}"), (r.group, r.version, r.plural)

    def _list(self) -> str:
        func, args = self._call("custom_object")
        kwargs: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT}
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        answer = func(*args, **kwargs)
        self.objects = {object_key(item): item for item in answer.get("items") or []}
        self.synced = True
        self.last_error = ""
        self.on_change(dict(self.objects))
        return str((answer.get("metadata") or {}).get("resourceVersion") or "")

    def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                backoff.reset()
                func, args = self._call("custom_object")
                self._watch = watch.Watch()
                kwargs: dict[str, Any] = {
                    "resource_version": version,
                    "timeout_seconds": _WATCH_SECONDS,
                    "allow_watch_bookmarks": True,
                    "_request_timeout": (REQUEST_TIMEOUT[0], _WATCH_SECONDS + 30),
                }
                if self.label_selector:
                    kwargs["label_selector"] = self.label_selector
                for event in self._watch.stream(func, *args, **kwargs):
                    kind, obj = event["type"], event["object"]
                    meta = obj.get("metadata") or {}
                    version = str(meta.get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "ERROR":
                        raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                    if kind == "DELETED":
                        self.objects.pop(object_key(obj), None)
                    else:
                        self.objects[object_key(obj)] = obj
                    self.on_change(dict(self.objects))
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # our version is too old: start from a fresh list
                    version = ""
                    continue
                self._failed(f"{exc.status} {exc.reason}", backoff)
                version = ""
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                self._failed(str(exc) or type(exc).__name__, backoff)
                version = ""

    def _failed(self, why: str, backoff: Backoff) -> None:
        if self.synced or not self.last_error:
            log.warning("watching %s failed: %s; retrying", self.resource.plural, why)
        self.synced = False
        self.last_error = why
        self._stop.wait(backoff.next())

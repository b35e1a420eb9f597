"""The resource manager as a kopf operator: Nodes + KubeEdge Devices -> FLUIDOS Sensor Flavors.

Handlers only react to watch events and read kopf indexes (never re-list the API); Devices
are never written to, only annotated with Events. Every decision lives in `reconcile`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, cast

import kopf
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import (
    DEVICE,
    DEVICE_MODEL,
    EDGE_WORKER_LABEL,
    FLAVOR,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ROLE_LABEL_VALUE,
)
from fluidos_sensors.flavor import DEVICE_ANNOTATION, ProviderConfig
from fluidos_sensors.kube import kopf_login
from fluidos_sensors.limits import allow_kubernetes_nesting
from fluidos_sensors.sensor import DeviceRef
from resource_manager import discovery
from resource_manager.reconcile import (
    device_binding,
    device_outcome,
    keep_observed,
    plan,
    update_patch,
)

log = logging.getLogger("resource_manager")

_EVENT_MESSAGE_MAX = 1000  # the API server caps Event messages at 1 KiB
_MAX_WARNINGS_PER_DEVICE = 10
_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 60.0


@dataclass
class Settings:
    """What `fluidos-sensors resource-manager run` configures before the operator starts."""

    provider: ProviderConfig
    api: client.ApiClient
    device_namespaces: frozenset[str] = frozenset()  # empty: all namespaces
    edge_label_key: str = EDGE_WORKER_LABEL
    edge_label_value: str = ROLE_LABEL_VALUE
    ready_file: Path | None = None  # touched once the operator has started


@dataclass(frozen=True)
class _Indexes:
    nodes: kopf.Index[str, dict[str, Any]]
    models: kopf.Index[str, dict[str, Any]]
    flavors: kopf.Index[str, dict[str, Any]]
    devices: kopf.Index[str, dict[str, Any]]


@dataclass
class _Runtime:
    settings: Settings
    custom: client.CustomObjectsApi
    node_available: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    reported: dict[str, tuple[str, ...]] = field(default_factory=dict)
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)
    indexes: _Indexes | None = None
    # Device key -> (failed attempts, monotonic time of the next try).
    retry: dict[str, tuple[int, float]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def lock_for(self, key: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(key, threading.Lock())


_runtime: _Runtime | None = None


def configure(settings: Settings) -> None:
    """Set what the handlers use; call once before the operator starts."""
    global _runtime
    _runtime = _Runtime(settings, client.CustomObjectsApi(settings.api))
    # kopf decodes and deep-copies every Device; one nested as deep as the API server
    # allows (its status preserves unknown fields) must not stop the Device watch.
    allow_kubernetes_nesting()


def _rt() -> _Runtime:
    if _runtime is None:
        raise RuntimeError("resource_manager.operator.configure() was not called")
    return _runtime


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of what the reconciler reads; kopf bodies are live views."""
    meta = _dict(body.get("metadata"))
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: meta.get(k)
            for k in ("name", "namespace", "uid", "labels", "annotations", "resourceVersion")
            if meta.get(k) is not None
        }
        # Which version wrote what: tells a pruned v1alpha2 nodeSelector (see why_unbound).
        | (
            {"managedFields": discovery.binding_fields(meta["managedFields"])}
            if meta.get("managedFields")
            else {}
        ),
        "spec": _dict(body.get("spec")),
        "status": _dict(body.get("status")),
    }


def _device_in_scope(namespace: str | None, **_: Any) -> bool:
    scope = _rt().settings.device_namespaces
    return not scope or namespace in scope


# ------------------------------------------------------------------------------- indexes


@kopf.index("", "v1", "nodes")
def nodes_index(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {name: _snapshot(body)}


@kopf.index(DEVICE.group, DEVICE.version, DEVICE.plural, when=_device_in_scope)
def devices_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[str, dict[str, Any]]:
    return {f"{namespace}/{name}": _snapshot(body)}


@kopf.index(DEVICE.group, DEVICE.version, DEVICE.plural, when=_device_in_scope)
def devices_by_node(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[str, str] | None:
    try:
        node = device_binding(body)
    except Exception:  # a bug must cost this Device its binding, not the index
        log.exception("Device %s/%s: cannot tell its node", namespace, name)
        return None
    return {node: f"{namespace}/{name}"} if node else None


@kopf.index(DEVICE_MODEL.group, DEVICE_MODEL.version, DEVICE_MODEL.plural)
def models_index(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[str, dict[str, Any]]:
    return {f"{namespace}/{name}": _snapshot(body)}


@kopf.index(
    FLAVOR.group, FLAVOR.version, FLAVOR.plural, labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE}
)
def flavors_index(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]] | None:
    device = (body.get("metadata", {}).get("annotations") or {}).get(DEVICE_ANNOTATION)
    return {device: _snapshot(body)} if device else None


class _FirstOf(Mapping[str, dict[str, Any]]):
    """An index as a plain mapping key -> object (each key indexes one object)."""

    def __init__(self, index: kopf.Index[str, dict[str, Any]]) -> None:
        self._index = index

    def __getitem__(self, key: str) -> dict[str, Any]:
        for value in self._index[key]:
            return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


# ------------------------------------------------------------------------------- actions


def _post(device: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    # kopf.event takes any object mapping (its annotation names only kopf's own Body).
    kopf.event(dict(device), type=kind, reason=reason, message=message[:_EVENT_MESSAGE_MAX])  # type: ignore[arg-type]


def _apply(
    custom: client.CustomObjectsApi, current: Mapping[str, Any] | None, desired: dict[str, Any]
) -> None:
    namespace = desired["metadata"]["namespace"]
    name = desired["metadata"]["name"]
    args = (FLAVOR.group, FLAVOR.version, namespace, FLAVOR.plural)
    if current is None:
        try:
            custom.create_namespaced_custom_object(*args, desired)
            return
        except ApiException as exc:
            if exc.status != 409:  # exists already: our index had not seen it yet
                raise
            current = cast(dict[str, Any], custom.get_namespaced_custom_object(*args, name))
    custom.patch_namespaced_custom_object(
        *args, name, update_patch(current, desired), _content_type="application/json-patch+json"
    )


def _delete(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    try:
        custom.delete_namespaced_custom_object(
            FLAVOR.group, FLAVOR.version, namespace, FLAVOR.plural, name
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def _current_flavors(
    flavors: kopf.Index[str, dict[str, Any]], device_key: str
) -> dict[str, dict[str, Any]]:
    found: Iterable[dict[str, Any]] = flavors.get(device_key, [])
    return {f["metadata"]["name"]: f for f in found}


def reconcile_device(device: Mapping[str, Any], indexes: _Indexes) -> None:
    """Make the Flavors of one Device match what it declares; report what was wrong.

    API failures that may pass (5xx, 429, connection errors) are retried with capped
    exponential backoff; a 4xx answer to our own request is logged and not retried.
    """
    rt = _rt()
    rt.indexes = indexes
    ref = DeviceRef.of(device)
    key = str(ref)
    with rt.lock_for(key):
        try:
            model_name = discovery.device_model_name(device)
            model = (
                _FirstOf(indexes.models).get(f"{ref.namespace}/{model_name}")
                if model_name
                else None
            )
            outcome = device_outcome(device, _FirstOf(indexes.nodes), model, rt.settings.provider)
            current = _current_flavors(indexes.flavors, key)
            keep_observed(current, outcome.desired)
            changes = plan(current, outcome.desired)
        except Exception:  # a bug must cost this Device, never the handler or other Devices
            log.exception("Device %s: cannot work out its Flavors; left as they are", key)
            return
        try:
            for body in changes.apply:
                _apply(rt.custom, current.get(body["metadata"]["name"]), body)
            for name in changes.delete:
                _delete(rt.custom, current[name]["metadata"]["namespace"], name)
        except ApiException as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                rt.retry.pop(key, None)
                log.error(
                    "Device %s: the API server refused a Flavor (%s %s): %s",
                    key,
                    exc.status,
                    exc.reason,
                    (exc.body or "")[:300],
                )
                return
            _schedule_retry(rt, key, f"{exc.status} {exc.reason}")
            return
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            _schedule_retry(rt, key, str(exc))
            return
        rt.retry.pop(key, None)
        unbound = outcome.unbound
        report = (outcome.summary, *outcome.problems, *(astuple(unbound) if unbound else ()))
        if rt.reported.get(key) != report:  # say it once, not at every resync
            rt.reported[key] = report
            if unbound is not None:
                _post(device, "Warning", unbound.reason, unbound.message)
            for problem in outcome.problems[:_MAX_WARNINGS_PER_DEVICE]:
                _post(device, "Warning", "InvalidSensor", problem)
            _post(
                device,
                "Normal",
                "FlavorsPublished",
                f"{outcome.summary}"
                + (f"; {len(outcome.problems)} problem(s) reported" if outcome.problems else ""),
            )
        if changes.apply or changes.delete:
            log.info(
                "Device %s: %s (%d written, %d deleted)",
                key,
                outcome.summary,
                len(changes.apply),
                len(changes.delete),
            )


def _schedule_retry(rt: _Runtime, key: str, why: str) -> None:
    attempt = rt.retry.get(key, (0, 0.0))[0] + 1
    delay = min(_RETRY_FIRST_S * 2 ** (attempt - 1), _RETRY_MAX_S)
    rt.retry[key] = (attempt, time.monotonic() + delay)
    log.warning("Device %s: API error (%s); retry %d in %.0fs", key, why, attempt, delay)


def _retry_loop(rt: _Runtime, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        if rt.indexes is None:
            continue
        now = time.monotonic()
        for key, (_, due) in list(rt.retry.items()):
            if due > now:
                continue
            device = _FirstOf(rt.indexes.devices).get(key)
            if device is None:  # deleted meanwhile: its own event cleans up
                rt.retry.pop(key, None)
                continue
            try:
                reconcile_device(device, rt.indexes)
            except Exception:  # never let the retry thread die
                log.exception("Device %s: retry failed", key)


def remove_device(device_key: str, flavors: kopf.Index[str, dict[str, Any]]) -> None:
    rt = _rt()
    with rt.lock_for(device_key):
        for name, body in _current_flavors(flavors, device_key).items():
            _delete(rt.custom, body["metadata"]["namespace"], name)
        rt.reported.pop(device_key, None)


# ------------------------------------------------------------------------------ handlers


@kopf.on.login()
def _login(**_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the cluster with the same credentials as our API client."""
    return kopf_login(_rt().settings.api, _rt().settings.provider.namespace)


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING  # handler logs are not Events; we post our own
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 8
    rt = _rt()
    threading.Thread(
        target=_retry_loop, args=(rt, rt.stopping), daemon=True, name="flavor-retry"
    ).start()
    if rt.settings.ready_file is not None:
        rt.settings.ready_file.touch()


@kopf.on.cleanup()
def _cleanup(**_: Any) -> None:
    _rt().stopping.set()


def _indexes(
    nodes_index: kopf.Index,
    models_index: kopf.Index,
    flavors_index: kopf.Index,
    devices_index: kopf.Index,
    **_: Any,
) -> _Indexes:
    return _Indexes(nodes_index, models_index, flavors_index, devices_index)


@kopf.on.event(DEVICE.group, DEVICE.version, DEVICE.plural, when=_device_in_scope)
def device_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, **kwargs: Any
) -> None:
    if event.get("type") == "DELETED":
        remove_device(f"{namespace}/{name}", kwargs["flavors_index"])
        return
    reconcile_device(_snapshot(body), _indexes(**kwargs))


# kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
@kopf.on.event("", "v1", "nodes")  # type: ignore[arg-type]
def node_event(
    event: kopf.RawEvent, name: str, body: kopf.Body, devices_by_node: kopf.Index, **kwargs: Any
) -> None:
    rt = _rt()
    deleted = event.get("type") == "DELETED"
    state = (
        None
        if deleted
        else (
            discovery.node_available(
                body, rt.settings.edge_label_key, rt.settings.edge_label_value
            )[0],
            body.get("metadata", {}).get("uid"),
        )
    )
    with rt.guard:
        if rt.node_available.get(name) == state and not deleted:
            return  # a heartbeat: nothing a Flavor shows has changed
        rt.node_available[name] = state  # type: ignore[assignment]
    indexes = _indexes(**kwargs)
    devices = _FirstOf(indexes.devices)
    for device_key in list(devices_by_node.get(name, [])):
        device = devices.get(device_key)
        if device is not None:
            reconcile_device(device, indexes)


@kopf.on.event(DEVICE_MODEL.group, DEVICE_MODEL.version, DEVICE_MODEL.plural)
def model_event(namespace: str | None, name: str, **kwargs: Any) -> None:
    indexes = _indexes(**kwargs)
    for device in list(_FirstOf(indexes.devices).values()):
        meta = device["metadata"]
        if meta.get("namespace") == namespace and discovery.device_model_name(device) == name:
            reconcile_device(device, indexes)


# kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
@kopf.on.event(  # type: ignore[arg-type]
    FLAVOR.group, FLAVOR.version, FLAVOR.plural, labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE}
)
def flavor_event(
    event: kopf.RawEvent, body: kopf.Body, devices_index: kopf.Index, **_: Any
) -> None:
    """A Flavor whose Device is gone (deleted while the operator was down) is an orphan."""
    if event.get("type") == "DELETED":
        return
    meta = body.get("metadata", {})
    device_key = (meta.get("annotations") or {}).get(DEVICE_ANNOTATION)
    if device_key and device_key not in devices_index:
        namespace = device_key.split("/", 1)[0]
        if _device_in_scope(namespace):
            _delete(_rt().custom, meta["namespace"], meta["name"])
            log.info(
                "deleted orphan Flavor %s/%s of missing Device %s",
                meta["namespace"],
                meta["name"],
                device_key,
            )

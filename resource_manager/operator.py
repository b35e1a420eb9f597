"""The resource manager as a kopf operator: Nodes + KubeEdge Devices -> FLUIDOS Sensor Flavors.

Handlers only react to watch events and read kopf indexes (never re-list the API); Devices
are never written to, only annotated with Events. Every decision lives in `reconcile`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import astuple, dataclass
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
from fluidos_sensors.operators import operator_settings, run_operator
from fluidos_sensors.sensor import DeviceRef
from resource_manager import discovery
from resource_manager.reconcile import (
    DeviceOutcome,
    FlavorPlan,
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
_MAX_WORKERS = 8
_NODES = ("", "v1", "nodes")
_DEVICES = (DEVICE.group, DEVICE.version, DEVICE.plural)
_MODELS = (DEVICE_MODEL.group, DEVICE_MODEL.version, DEVICE_MODEL.plural)
_FLAVORS = (FLAVOR.group, FLAVOR.version, FLAVOR.plural)
_OURS = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}


@dataclass
class Settings:
    """What `fluidos-sensors resource-manager run` configures before the operator starts."""

    provider: ProviderConfig
    api: client.ApiClient
    device_namespaces: frozenset[str] = frozenset()  # empty: all namespaces
    edge_label_key: str = EDGE_WORKER_LABEL
    edge_label_value: str = ROLE_LABEL_VALUE


@dataclass(frozen=True)
class _Indexes:
    nodes: kopf.Index[str, dict[str, Any]]
    models: kopf.Index[str, dict[str, Any]]
    flavors: kopf.Index[str, dict[str, Any]]
    devices: kopf.Index[str, dict[str, Any]]


def _indexes(
    nodes_index: kopf.Index,
    models_index: kopf.Index,
    flavors_index: kopf.Index,
    devices_index: kopf.Index,
    **_: Any,
) -> _Indexes:
    """The indexes among a handler's keyword arguments (kopf passes each by its id)."""
    return _Indexes(nodes_index, models_index, flavors_index, devices_index)


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


def _post(device: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    # kopf.event takes any object mapping (its annotation names only kopf's own Body).
    kopf.event(dict(device), type=kind, reason=reason, message=message[:_EVENT_MESSAGE_MAX])  # type: ignore[arg-type]


def _current_flavors(
    flavors: kopf.Index[str, dict[str, Any]], device_key: str
) -> dict[str, dict[str, Any]]:
    found: Iterable[dict[str, Any]] = flavors.get(device_key, [])
    return {f["metadata"]["name"]: f for f in found}


class FlavorOperator:
    """The handlers, and what they keep between events: per Device a lock, what was last
    reported and its retries; per Node whether it was available."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.custom = client.CustomObjectsApi(settings.api)
        self.node_available: dict[str, tuple[bool, str | None] | None] = {}
        self.reported: dict[str, tuple[str, ...]] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        self.indexes: _Indexes | None = None  # the latest, for the retry thread
        # Device key -> (failed attempts, monotonic time of the next try).
        self.retry: dict[str, tuple[int, float]] = {}
        self.stopping = threading.Event()

    def registry(self) -> kopf.OperatorRegistry:
        """Every handler, bound to this operator; indexes are passed to handlers by id."""
        registry = kopf.OperatorRegistry()
        in_scope = self.device_in_scope
        kopf.on.startup(registry=registry)(self.start_retries)
        kopf.on.cleanup(registry=registry)(self.stop_retries)
        kopf.index(*_NODES, id="nodes_index", registry=registry)(self.nodes_index)
        kopf.index(*_DEVICES, id="devices_index", when=in_scope, registry=registry)(
            self.devices_index
        )
        kopf.index(*_DEVICES, id="devices_by_node", when=in_scope, registry=registry)(
            self.devices_by_node
        )
        kopf.index(*_MODELS, id="models_index", registry=registry)(self.models_index)
        kopf.index(*_FLAVORS, id="flavors_index", labels=_OURS, registry=registry)(
            self.flavors_index
        )
        kopf.on.event(*_DEVICES, when=in_scope, registry=registry)(self.device_event)
        # kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
        kopf.on.event(*_NODES, registry=registry)(self.node_event)  # type: ignore[arg-type]
        kopf.on.event(*_MODELS, registry=registry)(self.model_event)
        kopf.on.event(*_FLAVORS, labels=_OURS, registry=registry)(self.flavor_event)  # type: ignore[arg-type]
        return registry

    async def run(self, ready_file: Path | None = None, liveness: str | None = None) -> None:
        """Serve every namespace's Devices (or those of the settings) until cancelled."""
        await run_operator(
            self.registry(),
            operator_settings(_MAX_WORKERS),
            self.settings.api,
            default_namespace=self.settings.provider.namespace,
            ready_file=ready_file,
            liveness=liveness,
        )

    def device_in_scope(self, namespace: str | None, **_: Any) -> bool:
        scope = self.settings.device_namespaces
        return not scope or namespace in scope

    def lock_for(self, key: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(key, threading.Lock())

    # --------------------------------------------------------------------------- indexes

    def nodes_index(self, name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        return {name: _snapshot(body)}

    def devices_index(
        self, namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[str, dict[str, Any]]:
        return {f"{namespace}/{name}": _snapshot(body)}

    def devices_by_node(
        self, namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[str, str] | None:
        try:
            node = device_binding(body)
        except Exception:  # a bug must cost this Device its binding, not the index
            log.exception("Device %s/%s: cannot tell its node", namespace, name)
            return None
        return {node: f"{namespace}/{name}"} if node else None

    def models_index(
        self, namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[str, dict[str, Any]]:
        return {f"{namespace}/{name}": _snapshot(body)}

    def flavors_index(self, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]] | None:
        device = (body.get("metadata", {}).get("annotations") or {}).get(DEVICE_ANNOTATION)
        return {device: _snapshot(body)} if device else None

    # --------------------------------------------------------------------------- actions

    def _apply(self, current: Mapping[str, Any] | None, desired: dict[str, Any]) -> None:
        namespace = desired["metadata"]["namespace"]
        name = desired["metadata"]["name"]
        args = (FLAVOR.group, FLAVOR.version, namespace, FLAVOR.plural)
        if current is None:
            try:
                self.custom.create_namespaced_custom_object(*args, desired)
                return
            except ApiException as exc:
                if exc.status != 409:  # exists already: our index had not seen it yet
                    raise
                current = cast(
                    dict[str, Any], self.custom.get_namespaced_custom_object(*args, name)
                )
        self.custom.patch_namespaced_custom_object(
            *args,
            name,
            update_patch(current, desired),
            _content_type="application/json-patch+json",
        )

    def _delete(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                FLAVOR.group, FLAVOR.version, namespace, FLAVOR.plural, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def reconcile_device(self, device: Mapping[str, Any], indexes: _Indexes) -> None:
        """Make the Flavors of one Device match what it declares; report what was wrong.

        API failures that may pass (5xx, 429, connection errors) are retried with capped
        exponential backoff; a 4xx answer to our own request is logged and not retried.
        """
        self.indexes = indexes
        ref = DeviceRef.of(device)
        key = str(ref)
        with self.lock_for(key):
            try:
                outcome, current, changes = self._plan(device, ref, indexes)
            except Exception:  # a bug must cost this Device, never the handler or other Devices
                log.exception("Device %s: cannot work out its Flavors; left as they are", key)
                return
            if not self._write(key, current, changes):
                return
            self.retry.pop(key, None)
            self._report(device, key, outcome)
            if changes.apply or changes.delete:
                log.info(
                    "Device %s: %s (%d written, %d deleted)",
                    key,
                    outcome.summary,
                    len(changes.apply),
                    len(changes.delete),
                )

    def _plan(
        self, device: Mapping[str, Any], ref: DeviceRef, indexes: _Indexes
    ) -> tuple[DeviceOutcome, dict[str, dict[str, Any]], FlavorPlan]:
        """What the Device should publish, its Flavors now and the changes between them."""
        model_name = discovery.device_model_name(device)
        models = _FirstOf(indexes.models)
        model = models.get(f"{ref.namespace}/{model_name}") if model_name else None
        outcome = device_outcome(device, _FirstOf(indexes.nodes), model, self.settings.provider)
        current = _current_flavors(indexes.flavors, str(ref))
        keep_observed(current, outcome.desired)
        return outcome, current, plan(current, outcome.desired)

    def _write(self, key: str, current: dict[str, dict[str, Any]], changes: FlavorPlan) -> bool:
        """Apply the changes; False when the API server failed them (retried if it may pass)."""
        try:
            for body in changes.apply:
                self._apply(current.get(body["metadata"]["name"]), body)
            for name in changes.delete:
                self._delete(current[name]["metadata"]["namespace"], name)
        except ApiException as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                self.retry.pop(key, None)
                log.error(
                    "Device %s: the API server refused a Flavor (%s %s): %s",
                    key,
                    exc.status,
                    exc.reason,
                    (exc.body or "")[:300],
                )
                return False
            self._schedule_retry(key, f"{exc.status} {exc.reason}")
            return False
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._schedule_retry(key, str(exc))
            return False
        return True

    def _report(self, device: Mapping[str, Any], key: str, outcome: DeviceOutcome) -> None:
        """Events on the Device saying what it publishes and what is wrong, once per change
        (not at every resync)."""
        unbound = outcome.unbound
        report = (outcome.summary, *outcome.problems, *(astuple(unbound) if unbound else ()))
        if self.reported.get(key) == report:
            return
        self.reported[key] = report
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

    def _schedule_retry(self, key: str, why: str) -> None:
        attempt = self.retry.get(key, (0, 0.0))[0] + 1
        delay = min(_RETRY_FIRST_S * 2 ** (attempt - 1), _RETRY_MAX_S)
        self.retry[key] = (attempt, time.monotonic() + delay)
        log.warning("Device %s: API error (%s); retry %d in %.0fs", key, why, attempt, delay)

    def _retry_loop(self) -> None:
        while not self.stopping.wait(0.5):
            if self.indexes is None:
                continue
            now = time.monotonic()
            for key, (_, due) in list(self.retry.items()):
                if due > now:
                    continue
                device = _FirstOf(self.indexes.devices).get(key)
                if device is None:  # deleted meanwhile: its own event cleans up
                    self.retry.pop(key, None)
                    continue
                try:
                    self.reconcile_device(device, self.indexes)
                except Exception:  # never let the retry thread die
                    log.exception("Device %s: retry failed", key)

    def remove_device(self, device_key: str, flavors: kopf.Index[str, dict[str, Any]]) -> None:
        with self.lock_for(device_key):
            for name, body in _current_flavors(flavors, device_key).items():
                self._delete(body["metadata"]["namespace"], name)
            self.reported.pop(device_key, None)

    # -------------------------------------------------------------------------- handlers

    def start_retries(self, **_: Any) -> None:
        threading.Thread(target=self._retry_loop, daemon=True, name="flavor-retry").start()

    def stop_retries(self, **_: Any) -> None:
        self.stopping.set()

    def device_event(
        self,
        event: kopf.RawEvent,
        body: kopf.Body,
        namespace: str | None,
        name: str,
        **kwargs: Any,
    ) -> None:
        if event.get("type") == "DELETED":
            self.remove_device(f"{namespace}/{name}", kwargs["flavors_index"])
            return
        self.reconcile_device(_snapshot(body), _indexes(**kwargs))

    def node_event(
        self,
        event: kopf.RawEvent,
        name: str,
        body: kopf.Body,
        devices_by_node: kopf.Index,
        **kwargs: Any,
    ) -> None:
        """A Node's availability changed: its Devices' Flavors say so."""
        deleted = event.get("type") == "DELETED"
        state = (
            None
            if deleted
            else (
                discovery.node_available(
                    body, self.settings.edge_label_key, self.settings.edge_label_value
                )[0],
                body.get("metadata", {}).get("uid"),
            )
        )
        with self.guard:
            if self.node_available.get(name) == state and not deleted:
                return  # a heartbeat: nothing a Flavor shows has changed
            self.node_available[name] = state
        indexes = _indexes(**kwargs)
        devices = _FirstOf(indexes.devices)
        for device_key in list(devices_by_node.get(name, [])):
            device = devices.get(device_key)
            if device is not None:
                self.reconcile_device(device, indexes)

    def model_event(self, namespace: str | None, name: str, **kwargs: Any) -> None:
        indexes = _indexes(**kwargs)
        for device in list(_FirstOf(indexes.devices).values()):
            meta = device["metadata"]
            if meta.get("namespace") == namespace and discovery.device_model_name(device) == name:
                self.reconcile_device(device, indexes)

    def flavor_event(
        self, event: kopf.RawEvent, body: kopf.Body, devices_index: kopf.Index, **_: Any
    ) -> None:
        """A Flavor whose Device is gone (deleted while the operator was down) is an orphan."""
        if event.get("type") == "DELETED":
            return
        meta = body.get("metadata", {})
        device_key = (meta.get("annotations") or {}).get(DEVICE_ANNOTATION)
        if device_key and device_key not in devices_index:
            namespace = device_key.split("/", 1)[0]
            if self.device_in_scope(namespace):
                self._delete(meta["namespace"], meta["name"])
                log.info(
                    "deleted orphan Flavor %s/%s of missing Device %s",
                    meta["namespace"],
                    meta["name"],
                    device_key,
                )

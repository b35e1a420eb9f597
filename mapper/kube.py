"""The mapper's Kubernetes I/O: list Devices, register simulated ones, write DeviceStatus,
post Warning Events. Blocking calls (the kubernetes client); callers use worker threads."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import DEVICE, DEVICE_STATUS, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from fluidos_sensors.kube import get_or_none
from mapper.dataplane.twins import DeviceKey, merge_observed_desired
from mapper.devices import DeviceProblem

log = logging.getLogger(__name__)

COMPONENT = "fluidos-sensors-mapper"
# (connect, read) seconds: an API outage must cost a report, not stall the mapper.
REQUEST_TIMEOUT = (3.0, 10.0)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DeviceApi:
    """Devices and their Events."""

    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    def list_devices(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every v1beta1 Device of `namespace` (None: of all namespaces)."""
        r = DEVICE
        if namespace is None:
            answer = cast(
                dict[str, Any],
                self._custom.list_cluster_custom_object(
                    r.group, r.version, r.plural, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        else:
            answer = cast(
                dict[str, Any],
                self._custom.list_namespaced_custom_object(
                    r.group, r.version, namespace, r.plural, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        return list(answer.get("items") or [])

    def apply_device(self, body: dict[str, Any]) -> None:
        """Create the Device, or make the existing one say what `body` says."""
        r = DEVICE
        meta = body["metadata"]
        args = (r.group, r.version, meta["namespace"], r.plural)
        try:
            self._custom.create_namespaced_custom_object(
                *args, body, _request_timeout=REQUEST_TIMEOUT
            )
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
        current = cast(
            dict[str, Any],
            self._custom.get_namespaced_custom_object(
                *args, meta["name"], _request_timeout=REQUEST_TIMEOUT
            ),
        )
        current_meta = current.setdefault("metadata", {})
        current_meta["labels"] = {**(current_meta.get("labels") or {}), **meta.get("labels", {})}
        current_meta["annotations"] = {
            **(current_meta.get("annotations") or {}),
            **meta.get("annotations", {}),
        }
        current["spec"] = body["spec"]
        self._custom.replace_namespaced_custom_object(
            *args, meta["name"], current, _request_timeout=REQUEST_TIMEOUT
        )

    def warn(self, problem: DeviceProblem, *, node: str, reason: str = "InvalidDevice") -> None:
        """A Warning Event on the Device, naming the field that is wrong."""
        now = _now()
        self._core.create_namespaced_event(
            problem.key.namespace,
            # kubernetes takes a dict body too; its annotation names only the model
            {  # type: ignore[arg-type]
                "metadata": {
                    "generateName": f"{problem.key.name}.",
                    "namespace": problem.key.namespace,
                },
                "involvedObject": {
                    "apiVersion": DEVICE.api_version,
                    "kind": DEVICE.kind,
                    "name": problem.key.name,
                    "namespace": problem.key.namespace,
                    "uid": problem.uid,
                    "fieldPath": problem.field,
                },
                "reason": reason,
                "message": f"{problem} (mapper on node {node})",
                "type": "Warning",
                "source": {"component": COMPONENT, "host": node},
                "reportingComponent": COMPONENT,
                "reportingInstance": node,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
            _request_timeout=REQUEST_TIMEOUT,
        )


class DeviceStatusStore:
    """Writes whole DeviceStatus objects (the CRD has no status subresource)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._lock = threading.Lock()
        # What we last wrote or read per device: its resourceVersion and status.
        self._known: dict[DeviceKey, dict[str, Any]] = {}

    def _args(self, key: DeviceKey) -> tuple[str, str, str, str]:
        r = DEVICE_STATUS
        return (r.group, r.version, key.namespace, r.plural)

    def _body(
        self, key: DeviceKey, owner_uid: str | None, status: dict[str, Any], current: Any
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": key.name,
            "namespace": key.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        }
        if owner_uid:
            # Garbage collection removes the DeviceStatus with its Device.
            meta["ownerReferences"] = [
                {
                    "apiVersion": DEVICE.api_version,
                    "kind": DEVICE.kind,
                    "name": key.name,
                    "uid": owner_uid,
                }
            ]
        if current is not None:
            previous_meta = current.get("metadata") or {}
            meta["resourceVersion"] = previous_meta.get("resourceVersion")
            meta["labels"] = {**(previous_meta.get("labels") or {}), **meta["labels"]}
            status = merge_observed_desired(status, current.get("status"))
        return {
            "apiVersion": DEVICE_STATUS.api_version,
            "kind": DEVICE_STATUS.kind,
            "metadata": meta,
            "spec": (current or {}).get("spec") or {},
            "status": status,
        }

    def _get(self, key: DeviceKey) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            get_or_none(
                self._custom.get_namespaced_custom_object,
                *self._args(key),
                key.name,
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    def write(self, key: DeviceKey, owner_uid: str | None, status: dict[str, Any]) -> None:
        with self._lock:
            current = self._known.get(key)
            if current is None:
                current = self._get(key)
            for attempt in range(2):
                try:
                    if current is None:
                        written = cast(
                            dict[str, Any],
                            self._custom.create_namespaced_custom_object(
                                *self._args(key),
                                self._body(key, owner_uid, status, None),
                                _request_timeout=REQUEST_TIMEOUT,
                            ),
                        )
                    else:
                        written = cast(
                            dict[str, Any],
                            self._custom.replace_namespaced_custom_object(
                                *self._args(key),
                                key.name,
                                self._body(key, owner_uid, status, current),
                                _request_timeout=REQUEST_TIMEOUT,
                            ),
                        )
                    self._known[key] = written
                    return
                except ApiException as exc:
                    # Someone else wrote it (409) or deleted it (404): read again, once.
                    if exc.status not in (404, 409) or attempt:
                        self._known.pop(key, None)
                        raise
                    current = self._get(key)

    def forget(self, key: DeviceKey) -> None:
        with self._lock:
            self._known.pop(key, None)

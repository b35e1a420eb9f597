"""FLUIDOS's own Devices on the testbed (issue 20.2): namespace `fluidos`, KubeEdge v1alpha2.

These go through the testbed's own resource manager (run with the shipped RBAC, serving the
namespaces FLUIDOS and KubeEdge use) against the unmodified KubeEdge CRDs: a Device there either
becomes Flavors or carries a Warning Event that says why not. They live in their own file so
that no cluster-wide resource manager of another test module serves them as well.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
import support
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors import api as fs_api
from fluidos_sensors.flavor import DEFAULT_FLAVOR_NAMESPACE, DEVICE_ANNOTATION
from resource_manager.reconcile import NOT_BOUND, UNKNOWN_NODE

pytestmark = pytest.mark.integration

NS = fs_api.FLUIDOS_NAMESPACE
EDGE = "provider-1-edge"  # the testbed provider's edge worker


def sensors_annotation() -> str:
    """One sensor in the FLUIDOS edge format, with no access.resource.node: only the Device
    itself can bind it. A quantity no other test asks for, in case one runs meanwhile."""
    entry = {
        "name": "lux",
        "model": "VD6283TX",
        "manufacturer": "STMicroelectronics",
        "type": {"sensorCategory": "Environmental", "sensorType": ["illuminance"]},
        "samplingRate": "1",
        "latency": "40",
        "properties": {"unit": {"measurement": ["lx"]}},
    }
    return base64.b64encode(json.dumps([entry]).encode()).decode()


class Devices:
    """Devices created in namespace fluidos by one test, deleted after it (with them, the
    Flavors they made: the marketplace tests must not see them)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.made: list[str] = []

    def create(self, version: fs_api.Resource, spec: dict[str, Any]) -> str:
        name = f"fluidos-sample-{uuid.uuid4().hex[:6]}"
        body = {
            "apiVersion": version.api_version,
            "kind": "Device",
            "metadata": {
                "name": name,
                "namespace": NS,
                "annotations": {fs_api.SENSORS_ANNOTATION: sensors_annotation()},
            },
            "spec": {"deviceModelRef": {"name": "bluenrg"}, **spec},
        }
        self.custom.create_namespaced_custom_object(
            fs_api.DEVICE.group, version.version, NS, fs_api.DEVICE.plural, body
        )
        self.made.append(name)
        return name

    def read(self, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(
                fs_api.DEVICE.group, fs_api.DEVICE.version, NS, fs_api.DEVICE.plural, name
            ),
        )

    def flavors(self, name: str) -> list[dict[str, Any]]:
        items = cast(
            dict[str, Any],
            self.custom.list_namespaced_custom_object(
                fs_api.FLAVOR.group, fs_api.FLAVOR.version, DEFAULT_FLAVOR_NAMESPACE, "flavors"
            ),
        )["items"]
        return [
            f
            for f in items
            if (f["metadata"].get("annotations") or {}).get(DEVICE_ANNOTATION) == f"{NS}/{name}"
        ]

    def warnings(self, name: str) -> list[tuple[str | None, str | None]]:
        return [
            (e.reason, e.message)
            for e in self.core.list_namespaced_event(NS).items
            if e.involved_object.name == name and e.type == "Warning"
        ]

    def delete_all(self) -> None:
        for name in self.made:
            try:
                self.custom.delete_namespaced_custom_object(
                    fs_api.DEVICE.group, fs_api.DEVICE.version, NS, fs_api.DEVICE.plural, name
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
        for name in self.made:

            def gone(name: str = name) -> bool:
                return not self.flavors(name)

            support.eventually(gone, f"{name}'s flavors gone")


@pytest.fixture
def devices(provider_api: client.ApiClient) -> Iterator[Devices]:
    made = Devices(provider_api)
    try:
        yield made
    finally:
        made.delete_all()


def test_device_in_fluidos_bound_by_node_name_becomes_flavors(devices: Devices) -> None:
    name = devices.create(fs_api.DEVICE, {"nodeName": EDGE})
    [flavor] = support.eventually(lambda: devices.flavors(name), "a flavor of the fluidos Device")
    chars = flavor["spec"]["flavorType"]["typeData"]["characteristics"]
    assert chars["node"] == EDGE and chars["type"]["sensorType"] == ["illuminance"]
    assert flavor["spec"]["availability"] is True
    assert devices.warnings(name) == []


def test_v1alpha2_device_with_only_a_node_selector_says_why_it_is_unbound(
    devices: Devices,
) -> None:
    """FLUIDOS's sample shape: v1alpha2, bound by a node selector with key "" (In, node name)."""
    selector = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "", "operator": "In", "values": [EDGE]}]}
        ]
    }
    name = devices.create(fs_api.DEVICE_V1ALPHA2, {"nodeSelector": selector})
    # The unmodified KubeEdge CRD keeps no selector: that is why this Device has no node.
    assert "nodeSelector" not in devices.read(name)["spec"]
    [(reason, message)] = support.eventually(
        lambda: devices.warnings(name), "a Warning Event on the Device"
    )
    assert reason == NOT_BOUND, message
    assert f"Device {NS}/{name} is bound to no node" in message
    assert "v1alpha2" in message and "spec.nodeSelector" in message, message
    assert "spec.nodeName" in message  # how to bind it
    assert devices.flavors(name) == []


def test_device_in_fluidos_bound_to_an_unknown_node_says_so(devices: Devices) -> None:
    name = devices.create(fs_api.DEVICE, {"nodeName": "no-such-edge"})
    [(reason, message)] = support.eventually(
        lambda: devices.warnings(name), "a Warning Event on the Device"
    )
    assert reason == UNKNOWN_NODE and '"no-such-edge"' in message, message
    assert devices.flavors(name) == []

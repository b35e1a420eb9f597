"""A Device that cannot be bound to a node says why (issue 20.2): no spec.nodeName, a node that
does not exist, a node selector we cannot read or that the KubeEdge CRD pruned."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fluidos_sensors.api import DEVICE, DEVICE_V1ALPHA2, SENSORS_ANNOTATION
from fluidos_sensors.flavor import Price, ProviderConfig
from resource_manager.discovery import binding_fields, v1alpha2_writes
from resource_manager.reconcile import (
    HOW_TO_BIND,
    NOT_BOUND,
    UNKNOWN_NODE,
    device_outcome,
)

PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="10.0.0.7",
    price=Price(amount="1", currency="EUR", period="hourly"),
)
EDGE = {
    "metadata": {"name": "edge-1", "labels": {"node-role.fluidos.eu/sensors": "true"}},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}


def sensor(node: str = "") -> dict[str, Any]:
    return {
        "name": "hum",
        "model": "HTS221",
        "manufacturer": "STMicroelectronics",
        "type": {"sensorCategory": "Environmental", "sensorType": ["humidity"]},
        "access": {"resource": {"node": node}},
    }


def device(
    spec: dict[str, Any], sensors: list[dict[str, Any]] | None = None, **meta: Any
) -> dict[str, Any]:
    return {
        "apiVersion": DEVICE.api_version,
        "kind": "Device",
        "metadata": {
            "name": "tile",
            "namespace": "fluidos",
            "annotations": {SENSORS_ANNOTATION: json.dumps(sensors or [sensor()])},
            **meta,
        },
        "spec": spec,
    }


# What the API server records when a client creates a Device as v1alpha2 with a node selector
# (the selector itself is pruned from the stored v1beta1 object).
V1ALPHA2_WRITE = {
    "manager": "kubectl-client-side-apply",
    "operation": "Update",
    "apiVersion": DEVICE_V1ALPHA2.api_version,
    "fieldsType": "FieldsV1",
    "fieldsV1": {
        "f:metadata": {"f:annotations": {".": {}, "f:sensors": {}}},
        "f:spec": {".": {}, "f:deviceModelRef": {".": {}, "f:name": {}}, "f:nodeSelector": {}},
    },
}


def unbound(dev: dict[str, Any], nodes: dict[str, Any] | None = None) -> tuple[str, str]:
    outcome = device_outcome(dev, {"edge-1": EDGE} if nodes is None else nodes, None, PROVIDER)
    assert outcome.desired == {}
    assert outcome.unbound is not None
    return outcome.unbound.reason, outcome.unbound.message


def test_pruned_v1alpha2_node_selector_is_named() -> None:
    reason, message = unbound(
        device({"deviceModelRef": {"name": "m"}}, managedFields=[V1ALPHA2_WRITE])
    )
    assert reason == NOT_BOUND
    assert message.startswith("Device fluidos/tile is bound to no node: ")
    assert "devices.kubeedge.io/v1alpha2" in message and "spec.nodeSelector" in message
    assert "dropped" in message and message.endswith(HOW_TO_BIND)


def test_v1alpha2_write_without_selector_is_named() -> None:
    write = json.loads(json.dumps(V1ALPHA2_WRITE))
    del write["fieldsV1"]["f:spec"]["f:nodeSelector"]
    _, message = unbound(device({}, managedFields=[write]))
    assert "has no spec.nodeName" in message and "v1alpha2" in message


def test_no_node_name_is_named() -> None:
    reason, message = unbound(device({}))
    assert reason == NOT_BOUND
    assert "has no spec.nodeName" in message and "access.resource.node" in message
    assert "v1alpha2" not in message


def test_unsupported_selector_is_named() -> None:
    selector = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
        ]
    }
    reason, message = unbound(device({"nodeSelector": selector}))
    assert reason == NOT_BOUND
    assert 'spec.nodeSelector (key "zone" operator "In")' in message
    assert "operator In, binds" in message


def test_sensors_naming_different_nodes_are_named() -> None:
    _, message = unbound(device({}, [sensor("edge-1"), {**sensor("edge-2"), "name": "t"}]))
    assert '"edge-1"' in message and '"edge-2"' in message


@pytest.mark.parametrize(
    ("spec", "sensors", "source"),
    [
        ({"nodeName": "edge-9"}, None, "spec.nodeName"),
        (
            {
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "", "operator": "In", "values": ["edge-9"]}]}
                    ]
                }
            },
            None,
            "spec.nodeSelector",
        ),
        ({}, [sensor("edge-9")], "access.resource.node"),
    ],
)
def test_unknown_node_is_named_with_where_it_came_from(
    spec: dict[str, Any], sensors: list[dict[str, Any]] | None, source: str
) -> None:
    reason, message = unbound(device(spec, sensors))
    assert reason == UNKNOWN_NODE
    assert 'is bound to unknown node "edge-9"' in message and f"({source})" in message


def test_bound_device_has_no_binding_problem() -> None:
    outcome = device_outcome(device({"nodeName": "edge-1"}), {"edge-1": EDGE}, None, PROVIDER)
    assert outcome.unbound is None and len(outcome.desired) == 1


def test_binding_fields_keep_what_tells_a_pruned_selector() -> None:
    kept = binding_fields([V1ALPHA2_WRITE, "junk", {"apiVersion": DEVICE.api_version}])
    assert v1alpha2_writes({"metadata": {"managedFields": kept}}) == "nodeSelector"
    assert "f:metadata" not in json.dumps(kept)  # only the top-level spec fields are kept
    assert v1alpha2_writes({"metadata": {"managedFields": "junk"}}) is None

"""Turn what a Device declares into the Flavor changes that make the cluster agree (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fluidos_sensors.api import MANAGED_BY_LABEL
from fluidos_sensors.flavor import SENSORS_PREFIX, ProviderConfig
from fluidos_sensors.sensor import DeviceRef, SensorSpec
from fluidos_sensors.units import show
from resource_manager import discovery

# Warning Event reasons of a Device that publishes nothing because it has no usable node.
NOT_BOUND = "NotBound"
UNKNOWN_NODE = "UnknownNode"
HOW_TO_BIND = (
    "bind it with spec.nodeName (devices.kubeedge.io/v1beta1), or name the node in every "
    "sensor's access.resource.node"
)


@dataclass(frozen=True)
class Unbound:
    """Why a Device's sensors cannot be published on any node: an Event reason and message."""

    reason: str
    message: str


@dataclass
class DeviceOutcome:
    """Everything the operator must do and say for one Device."""

    device: DeviceRef
    node: str | None
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unbound: Unbound | None = None

    @property
    def summary(self) -> str:
        where = f" on node {self.node}" if self.node else ""
        return f"publishing {len(self.desired)} sensor flavor(s){where}"


def _named_nodes(sensors: list[SensorSpec]) -> set[str]:
    return {s.access.resource.node for s in sensors if s.access.resource.node}


def bound_node(device: Mapping[str, Any], sensors: list[SensorSpec]) -> str | None:
    """`spec.nodeName` (v1beta1) or the v1alpha2 node selector; failing both, the node every
    sensor's `access.resource.node` names. The unmodified KubeEdge CRD stores v1beta1 and
    prunes a v1alpha2 nodeSelector, so the annotation is what binds such Devices."""
    node = discovery.device_node(device)
    if node:
        return node
    named = _named_nodes(sensors)
    return named.pop() if len(named) == 1 else None


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _expressions(selector: object) -> str:
    """A node selector's expressions, short: `key "zone" operator "Exists"`, ..."""
    terms = selector.get("nodeSelectorTerms") if isinstance(selector, Mapping) else None
    shown = [
        f"key {show(expr.get('key'))} operator {show(expr.get('operator'))}"
        for term in (terms if isinstance(terms, list) else [])
        if isinstance(term, Mapping)
        for kind in ("matchExpressions", "matchFields")
        for expr in _as_list(term.get(kind))
        if isinstance(expr, Mapping)
    ]
    more = f", and {len(shown) - 3} more" if len(shown) > 3 else ""
    return (", ".join(shown[:3]) + more) or show(selector)


def why_unbound(device: Mapping[str, Any], sensors: list[SensorSpec]) -> str:
    """Why `bound_node` found no node for a Device, and how to bind it."""
    spec = device.get("spec")
    selector = spec.get("nodeSelector") if isinstance(spec, Mapping) else None
    named = _named_nodes(sensors)
    if selector:
        why = (
            f"its spec.nodeSelector ({_expressions(selector)}) names none: only a term with "
            'key "" or '
            f"{discovery.HOSTNAME_LABEL} (matchExpressions) or metadata.name (matchFields), "
            "operator In, binds a Device, to its first value"
        )
    elif len(named) > 1:
        why = (
            "it has no spec.nodeName and its sensors name different nodes in "
            f"access.resource.node ({', '.join(show(n) for n in sorted(named)[:4])})"
        )
    else:
        why = {
            "nodeSelector": (
                "it was written as devices.kubeedge.io/v1alpha2 with a spec.nodeSelector, which "
                "the installed KubeEdge CRD dropped (it stores v1beta1 and has no conversion "
                "webhook)"
            ),
            "other": (
                "it has no spec.nodeName, and was written as devices.kubeedge.io/v1alpha2, whose "
                "spec.nodeSelector the installed KubeEdge CRD does not keep (it stores v1beta1 "
                "and has no conversion webhook)"
            ),
            None: "it has no spec.nodeName and no sensor names its node in access.resource.node",
        }[discovery.v1alpha2_writes(device)]
    return f"Device {DeviceRef.of(device)} is bound to no node: {why}; {HOW_TO_BIND}"


def why_unknown_node(device: Mapping[str, Any], node: str) -> str:
    """The message for a Device bound to a node that does not exist."""
    spec = device.get("spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("nodeName"), str) and spec["nodeName"]:
        source = "spec.nodeName"
    elif discovery.device_node(device):
        source = "spec.nodeSelector"
    else:
        source = "access.resource.node"
    return (
        f"Device {DeviceRef.of(device)} is bound to unknown node {show(node)} ({source}): no Node "
        "has that name; its Flavors are published once it exists"
    )


def device_binding(device: Mapping[str, Any]) -> str | None:
    """The node a Device is bound to, reading its sensor annotation only when needed."""
    node = discovery.device_node(device)
    if node:
        return node
    sensors, _ = discovery.device_sensors(device, None)
    return bound_node(device, sensors)


def device_outcome(
    device: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]],
    model: Mapping[str, Any] | None,
    provider: ProviderConfig,
) -> DeviceOutcome:
    """The Flavors a Device should have given the known `nodes`, and the problems to report."""
    ref = DeviceRef.of(device)
    sensors, problems = discovery.device_sensors(device, model)
    node_name = bound_node(device, sensors)
    outcome = DeviceOutcome(ref, node_name, problems=[str(p) for p in problems])
    if node_name is None:
        outcome.unbound = Unbound(NOT_BOUND, why_unbound(device, sensors))
        return outcome
    node = nodes.get(node_name)
    if node is None:
        outcome.unbound = Unbound(UNKNOWN_NODE, why_unknown_node(device, node_name))
        return outcome
    outcome.desired = discovery.desired_flavors(device, node, sensors, provider)
    return outcome


def _ours(key: str) -> bool:
    return key.startswith(f"{SENSORS_PREFIX}/") or key == MANAGED_BY_LABEL


def _owned_part(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "labels": {k: v for k, v in (meta.get("labels") or {}).items() if _ours(k)},
        "annotations": {k: v for k, v in (meta.get("annotations") or {}).items() if _ours(k)},
        "spec": body.get("spec"),
    }


def needs_update(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether `current` differs from `desired` in anything the operator owns."""
    return _owned_part(current) != _owned_part(desired)


def update_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch giving `current` the desired spec, labels and annotations: whole values,
    so fields dropped from the spec go too, while labels others set stay."""
    ops: list[dict[str, Any]] = [{"op": "replace", "path": "/spec", "value": desired["spec"]}]
    for part in ("labels", "annotations"):
        have = (current.get("metadata") or {}).get(part) or {}
        want = (desired.get("metadata") or {}).get(part) or {}
        merged = {k: v for k, v in have.items() if not _ours(k)} | dict(want)
        ops.append({"op": "add", "path": f"/metadata/{part}", "value": merged})
    return ops


def keep_observed(
    current: Mapping[str, Mapping[str, Any]], desired: Mapping[str, dict[str, Any]]
) -> None:
    """Carry ``typeData.observed`` (written by the router manager) into the desired bodies,
    so that rewriting a Flavor's spec never erases what the data path measured."""
    for name, body in desired.items():
        type_data = (((current.get(name) or {}).get("spec") or {}).get("flavorType") or {}).get(
            "typeData"
        ) or {}
        observed = type_data.get("observed") if isinstance(type_data, Mapping) else None
        if observed:
            body["spec"]["flavorType"]["typeData"]["observed"] = observed


@dataclass(frozen=True)
class FlavorPlan:
    apply: list[dict[str, Any]]
    delete: list[str]


def plan(
    current: Mapping[str, Mapping[str, Any]], desired: Mapping[str, dict[str, Any]]
) -> FlavorPlan:
    """Create or update what is missing or different; delete what should not exist."""
    apply = [
        body
        for name, body in desired.items()
        if name not in current or needs_update(current[name], body)
    ]
    delete = sorted(name for name in current if name not in desired)
    return FlavorPlan(apply, delete)

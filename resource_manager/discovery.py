"""The resource manager's decisions, without I/O: edge workers, device binding, sensors,
and the exact set of Sensor Flavors that should exist for a Device.

Objects are plain dicts as the API server (and kopf) hands them over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluidos_sensors.api import (
    DEVICE_V1ALPHA2,
    EDGE_WORKER_LABEL,
    ROLE_LABEL_VALUE,
    SENSORS_ANNOTATION,
)
from fluidos_sensors.flavor import (
    SENSORS_PREFIX,
    ObservedPerformance,
    ProviderConfig,
    build_flavor,
)
from fluidos_sensors.sensor import (
    DeviceRef,
    SensorProblem,
    SensorSpec,
    SensorUnits,
    parse_sensors_annotation,
    sensor_key,
    unique_keys,
)

HOSTNAME_LABEL = "kubernetes.io/hostname"
# KubeEdge v1alpha2 binds a Device with a node selector whose key is "" (its own samples and
# FLUIDOS's) or the hostname label, operator In, the node name first among the values.
_NODE_SELECTOR_KEYS = ("", HOSTNAME_LABEL)

# Device labels that describe sensors derived from a DeviceModel (first key found wins).
MANUFACTURER_LABELS = (f"{SENSORS_PREFIX}/manufacturer", "manufacturer")
MODEL_LABELS = (f"{SENSORS_PREFIX}/model", "model")
MARKET_LABELS = (f"{SENSORS_PREFIX}/market", "market")
CATEGORY_LABELS = (f"{SENSORS_PREFIX}/category", "category")

_NUMERIC_TYPES = ("INT", "FLOAT", "DOUBLE")
_CATEGORIES = {
    **dict.fromkeys(("temperature", "humidity", "pressure"), "Environmental"),
    **dict.fromkeys(
        ("acceleration", "accelerometer", "gyroscope", "magnetometer", "inclination"),
        "Inertial",
    ),
}
DEFAULT_CATEGORY = "Generic"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


# ---------------------------------------------------------------------------------------
# Nodes


def is_edge_worker(
    node: Mapping[str, Any],
    label_key: str = EDGE_WORKER_LABEL,
    label_value: str = ROLE_LABEL_VALUE,
) -> bool:
    """Whether a Node carries the edge-worker role label."""
    return _labels(node).get(label_key) == label_value


def node_available(
    node: Mapping[str, Any],
    label_key: str = EDGE_WORKER_LABEL,
    label_value: str = ROLE_LABEL_VALUE,
) -> tuple[bool, str]:
    """Whether an edge worker can serve its sensors now, and why (not)."""
    name = _meta(node).get("name", "?")
    if not is_edge_worker(node, label_key, label_value):
        return False, f"node {name} lacks label {label_key}={label_value}"
    if (node.get("spec") or {}).get("unschedulable"):
        return False, f"node {name} is cordoned (spec.unschedulable)"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return False, f"node {name} reports no Ready condition"
    if ready.get("status") != "True":
        why = ": ".join(str(ready[k]) for k in ("reason", "message") if ready.get(k))
        return False, f"node {name} is not Ready ({why or ready.get('status', 'Unknown')})"
    return True, f"node {name} is Ready"


# ---------------------------------------------------------------------------------------
# Devices


def device_node(device: Mapping[str, Any]) -> str | None:
    """The edge node a Device is bound to: v1beta1 ``spec.nodeName``, else the v1alpha2
    node selector (key "" or kubernetes.io/hostname, operator In, first value)."""
    spec = device.get("spec") or {}
    name = spec.get("nodeName")
    if isinstance(name, str) and name.strip():
        return name.strip()
    for term in (spec.get("nodeSelector") or {}).get("nodeSelectorTerms") or []:
        candidates = [
            expr
            for expr in (term or {}).get("matchExpressions") or []
            if (expr.get("key") or "") in _NODE_SELECTOR_KEYS
        ] + [
            expr
            for expr in (term or {}).get("matchFields") or []
            if expr.get("key") == "metadata.name"
        ]
        for expr in candidates:
            values = expr.get("values") or []
            first = values[0] if values and isinstance(values[0], str) else ""
            if expr.get("operator") == "In" and first.strip():
                return first.strip()
    return None


def device_model_name(device: Mapping[str, Any]) -> str | None:
    """The name of the DeviceModel a Device instantiates (same namespace)."""
    name = ((device.get("spec") or {}).get("deviceModelRef") or {}).get("name")
    return name if isinstance(name, str) and name else None


def device_sensors(
    device: Mapping[str, Any], model: Mapping[str, Any] | None = None
) -> tuple[list[SensorSpec], list[SensorProblem]]:
    """A Device's sensors: its ``sensors`` annotation when present, else its DeviceModel."""
    ref = DeviceRef.of(device)
    raw = (_meta(device).get("annotations") or {}).get(SENSORS_ANNOTATION)
    if raw is not None:
        return parse_sensors_annotation(raw, device=str(ref))
    if model is not None:
        return sensors_from_device_model(device, model)
    return [], [
        SensorProblem(
            str(ref),
            f'has no "{SENSORS_ANNOTATION}" annotation and its DeviceModel '
            f"{device_model_name(device) or '(none)'} was not found",
            source="sensors",
        )
    ]


def _first_label(labels: Mapping[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = labels.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _property_type(prop: Mapping[str, Any]) -> tuple[str, str, str]:
    """(TYPE, unit, accessMode) of a DeviceModel property, v1beta1 or v1alpha2 shape."""
    kind = prop.get("type")
    if isinstance(kind, Mapping):  # v1alpha2: type: {int: {unit, accessMode, ...}}
        for name, detail in kind.items():
            detail = detail if isinstance(detail, Mapping) else {}
            return (
                str(name).upper(),
                str(detail.get("unit") or ""),
                str(detail.get("accessMode") or ""),
            )
        return "", "", ""
    return str(kind or "").upper(), str(prop.get("unit") or ""), str(prop.get("accessMode") or "")


def _collect_rate_hz(device: Mapping[str, Any], prop_name: str) -> float | None:
    # KubeEdge mappers read collectCycle as a Go time.Duration (ns) in v1beta1 properties and
    # v1alpha2 propertyVisitors alike (its samples write 10000000000 for 10 s).
    spec = device.get("spec") or {}
    alpha = device.get("apiVersion") == DEVICE_V1ALPHA2.api_version or (
        "propertyVisitors" in spec and "properties" not in spec
    )
    items, name_key = (
        (spec.get("propertyVisitors"), "propertyName")
        if alpha
        else (spec.get("properties"), "name")
    )
    for item in items or []:
        if item.get(name_key) == prop_name:
            cycle = item.get("collectCycle")
            if isinstance(cycle, int | float) and not isinstance(cycle, bool) and cycle > 0:
                return float(f"{1e9 / cycle:.12g}")
    return None


def sensors_from_device_model(
    device: Mapping[str, Any], model: Mapping[str, Any]
) -> tuple[list[SensorSpec], list[SensorProblem]]:
    """One sensor per numeric, read-only DeviceModel property that has a unit.

    Manufacturer, model, market and category come from the Device labels
    (``sensors.fluidos.eu/<field>`` or plain ``<field>``); the model defaults to the
    DeviceModel's name and the category to one known for the quantity, else "Generic".
    """
    ref = str(DeviceRef.of(device))
    model_meta = _meta(model)
    model_name = str(model_meta.get("name") or "")
    source = f"DeviceModel {model_meta.get('namespace') or 'default'}/{model_name}"
    labels = _labels(device)
    manufacturer = _first_label(labels, MANUFACTURER_LABELS)
    if not manufacturer:
        return [], [
            SensorProblem(
                ref,
                f"no sensors derived: the Device has no manufacturer label "
                f"({' or '.join(MANUFACTURER_LABELS)}); add one or describe the sensors in "
                f'annotation "{SENSORS_ANNOTATION}"',
                source=source,
            )
        ]
    sensor_model = _first_label(labels, MODEL_LABELS) or model_name
    market = _first_label(labels, MARKET_LABELS)
    category_label = _first_label(labels, CATEGORY_LABELS)
    device_uid = _meta(device).get("uid")

    parsed: list[tuple[int, SensorSpec]] = []
    problems: list[SensorProblem] = []
    for index, prop in enumerate((model.get("spec") or {}).get("properties") or []):
        name = str((prop or {}).get("name") or "").strip()

        def skip(message: str, index: int = index, name: str = name) -> None:
            problems.append(
                SensorProblem(
                    ref,
                    f"skipped: {message}",
                    entry=index,
                    sensor=name or None,
                    source=source,
                    item="property",
                )
            )

        kind, unit, access_mode = _property_type(prop or {})
        if not name:
            skip("the property has no name")
        elif kind not in _NUMERIC_TYPES:
            skip(f"type {kind or '(none)'} is not a numeric reading")
        elif access_mode == "ReadWrite":
            skip("it is ReadWrite, a setting rather than a reading")
        elif not unit:
            skip(
                f'it has no unit; set "unit" on the property or describe the sensors in '
                f'annotation "{SENSORS_ANNOTATION}"'
            )
        elif not sensor_key(name):
            skip("its name has no ASCII letter or digit to name a topic by")
        else:
            parsed.append(
                (
                    index,
                    SensorSpec(
                        key=sensor_key(name),
                        uid=f"{device_uid}/{name}" if device_uid else f"{ref}/{name}",
                        name=name,
                        model=sensor_model,
                        manufacturer=manufacturer,
                        market=market,
                        category=category_label or _CATEGORIES.get(name.lower(), DEFAULT_CATEGORY),
                        types=(name,),
                        sampling_rate_hz=_collect_rate_hz(device, name),
                        units=SensorUnits(measurement=(unit,)),
                    ),
                )
            )
    specs, duplicates = unique_keys(parsed, device=ref, source=source, item="property")
    return specs, problems + duplicates


# ---------------------------------------------------------------------------------------
# Flavors


def desired_flavors(
    device: Mapping[str, Any],
    node: Mapping[str, Any] | None,
    sensors: list[SensorSpec],
    provider: ProviderConfig,
    *,
    node_name: str | None = None,
    observed: Mapping[str, ObservedPerformance] | None = None,
) -> dict[str, dict[str, Any]]:
    """Flavor name -> body for every sensor of a Device; none when it is bound to no node.

    ``node`` is the bound Node object (None when it does not exist: the Flavors stay, not
    available). The binding is ``node_name``, else ``device_node(device)``, else ``node``'s
    name. ``observed`` maps sensor keys to measured performance to keep in the body.
    """
    node_name = node_name or device_node(device)
    if node_name is None and node is not None:
        node_name = _meta(node).get("name") or None
    if node_name is None:
        return {}
    available = False
    node_uid = None
    if node is not None:
        if _meta(node).get("name") != node_name:
            raise ValueError(
                f"Device {DeviceRef.of(device)} is bound to node {node_name}, "
                f"not {_meta(node).get('name')}"
            )
        available, _ = node_available(node)
        node_uid = _meta(node).get("uid")
    ref = DeviceRef.of(device)
    bodies = (
        build_flavor(
            ref,
            node_name,
            sensor,
            provider,
            available=available,
            node_uid=node_uid,
            observed=(observed or {}).get(sensor.key),
        )
        for sensor in sensors
    )
    return {body["metadata"]["name"]: body for body in bodies}

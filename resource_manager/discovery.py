"""The resource manager's decisions, without I/O: edge workers, device binding, sensors,
and the exact set of Sensor Flavors that should exist for a Device.

Objects are plain dicts as the API server (and kopf) hands them over.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

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
from fluidos_sensors.limits import (
    SENSORS_PER_DEVICE_MAX,
    TERM_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    as_float,
    clip,
    has_control_characters,
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
from fluidos_sensors.units import show

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


# Objects come from the API server, whose schemas are loose where KubeEdge's are
# (preserve-unknown-fields) and absent from callers' test data: every read checks the shape.


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(obj.get("metadata"))


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_meta(obj).get("labels"))


def _name_text(value: object) -> str:
    """A name as text; "" when it is not a string of usable length (never echo a 1 MB one)."""
    if not isinstance(value, str):
        return ""
    value = value.strip()
    if len(value) > TEXT_MAX_LENGTH or has_control_characters(value):
        return ""
    return value


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
    name = clip(str(_meta(node).get("name") or "?"))
    if not is_edge_worker(node, label_key, label_value):
        return False, f"node {name} lacks label {label_key}={label_value}"
    if _mapping(node.get("spec")).get("unschedulable"):
        return False, f"node {name} is cordoned (spec.unschedulable)"
    conditions = _items(_mapping(node.get("status")).get("conditions"))
    ready = next(
        (c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"), None
    )
    if ready is None:
        return False, f"node {name} reports no Ready condition"
    if ready.get("status") != "True":
        why = ": ".join(
            clip(ready[k], 200)
            for k in ("reason", "message")
            if isinstance(ready.get(k), str) and ready[k]
        )
        return False, f"node {name} is not Ready ({why or clip(str(ready.get('status')))})"
    return True, f"node {name} is Ready"


# ---------------------------------------------------------------------------------------
# Devices


def device_node(device: Mapping[str, Any]) -> str | None:
    """The edge node a Device is bound to: v1beta1 ``spec.nodeName``, else the v1alpha2
    node selector (key "" or kubernetes.io/hostname, operator In, first value)."""
    spec = _mapping(device.get("spec"))
    name = spec.get("nodeName")
    if isinstance(name, str) and name.strip():
        return name.strip()
    for term in _items(_mapping(spec.get("nodeSelector")).get("nodeSelectorTerms")):
        term = _mapping(term)
        candidates = [
            expr
            for expr in _items(term.get("matchExpressions"))
            if isinstance(expr, Mapping) and (expr.get("key") or "") in _NODE_SELECTOR_KEYS
        ] + [
            expr
            for expr in _items(term.get("matchFields"))
            if isinstance(expr, Mapping) and expr.get("key") == "metadata.name"
        ]
        for expr in candidates:
            values = _items(expr.get("values"))
            first = values[0] if values and isinstance(values[0], str) else ""
            if expr.get("operator") == "In" and first.strip():
                return first.strip()
    return None


def v1alpha2_writes(device: Mapping[str, Any]) -> Literal["nodeSelector", "other"] | None:
    """What ``metadata.managedFields`` says a client wrote through v1alpha2: a
    ``spec.nodeSelector`` ("nodeSelector"), other fields only ("other"), or nothing (None).

    The unmodified KubeEdge CRD stores v1beta1 without a conversion webhook, so the API server
    prunes a v1alpha2 nodeSelector; this record is all that is left of it.
    """
    found: Literal["nodeSelector", "other"] | None = None
    for entry in _items(_meta(device).get("managedFields")):
        entry = _mapping(entry)
        if entry.get("apiVersion") != DEVICE_V1ALPHA2.api_version:
            continue
        if "f:nodeSelector" in _mapping(_mapping(entry.get("fieldsV1")).get("f:spec")):
            return "nodeSelector"
        found = "other"
    return found


def binding_fields(managed_fields: object) -> list[dict[str, Any]]:
    """``metadata.managedFields`` cut down to what `v1alpha2_writes` reads (which
    version wrote which top-level spec fields), for keeping in memory per Device."""
    kept: list[dict[str, Any]] = []
    for entry in _items(managed_fields):
        entry = _mapping(entry)
        spec_fields = _mapping(_mapping(entry.get("fieldsV1")).get("f:spec"))
        kept.append(
            {
                "apiVersion": entry.get("apiVersion"),
                "fieldsV1": {"f:spec": {key: {} for key in spec_fields}},
            }
        )
    return kept


def device_model_name(device: Mapping[str, Any]) -> str | None:
    """The name of the DeviceModel a Device instantiates (same namespace)."""
    name = _mapping(_mapping(device.get("spec")).get("deviceModelRef")).get("name")
    return name if isinstance(name, str) and name else None


def device_sensors(
    device: Mapping[str, Any], model: Mapping[str, Any] | None = None
) -> tuple[list[SensorSpec], list[SensorProblem]]:
    """A Device's sensors: its ``sensors`` annotation when present, else its DeviceModel."""
    ref = DeviceRef.of(device)
    raw = _mapping(_meta(device).get("annotations")).get(SENSORS_ANNOTATION)
    if raw is not None:
        return parse_sensors_annotation(raw, device=str(ref))
    if model is not None:
        return sensors_from_device_model(device, model)
    return [], [
        SensorProblem(
            str(ref),
            f'has no "{SENSORS_ANNOTATION}" annotation and its DeviceModel '
            f"{clip(device_model_name(device) or '(none)')} was not found",
            source="sensors",
        )
    ]


def _first_label(labels: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        if value := _name_text(labels.get(key)):
            return value
    return ""


def _text(value: object) -> str:
    # A string field of a DeviceModel, or "" (never str() of an arbitrary value: str() of a
    # 5001-digit int raises, and of a deeply nested list recurses).
    return value if isinstance(value, str) else ""


def _property_type(prop: Mapping[str, Any]) -> tuple[str, str, str]:
    """(TYPE, unit, accessMode) of a DeviceModel property, v1beta1 or v1alpha2 shape."""
    kind = prop.get("type")
    if isinstance(kind, Mapping):  # v1alpha2: type: {int: {unit, accessMode, ...}}
        for name, detail in kind.items():
            detail = _mapping(detail)
            return (
                _text(name).upper(),
                _text(detail.get("unit")).strip(),
                _text(detail.get("accessMode")),
            )
        return "", "", ""
    return _text(kind).upper(), _text(prop.get("unit")).strip(), _text(prop.get("accessMode"))


def _collect_rate_hz(device: Mapping[str, Any], prop_name: str) -> tuple[float | None, str]:
    """The sampling rate a property's collectCycle gives, or None and why not ("" if unset)."""
    # KubeEdge mappers read collectCycle as a Go time.Duration (ns) in v1beta1 properties and
    # v1alpha2 propertyVisitors alike (its samples write 10000000000 for 10 s).
    spec = _mapping(device.get("spec"))
    alpha = device.get("apiVersion") == DEVICE_V1ALPHA2.api_version or (
        "propertyVisitors" in spec and "properties" not in spec
    )
    items, name_key = (
        (spec.get("propertyVisitors"), "propertyName")
        if alpha
        else (spec.get("properties"), "name")
    )
    for item in _items(items):
        if not isinstance(item, Mapping) or item.get(name_key) != prop_name:
            continue
        cycle = item.get("collectCycle")
        if cycle is None:
            return None, ""
        seconds = as_float(cycle)
        # A huge int does not fit a float; a tiny float (1e-320) makes 1e9/cycle infinite.
        rate = 1e9 / seconds if seconds is not None and seconds > 0 else None
        if rate is None or not math.isfinite(rate) or rate == 0:
            return None, (
                f"collectCycle must be a positive number of nanoseconds, got {show(cycle)}; "
                "the sampling rate is left out"
            )
        return float(f"{rate:.12g}"), ""
    return None, ""


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
    model_name = _name_text(model_meta.get("name"))
    source = f"DeviceModel {_name_text(model_meta.get('namespace')) or 'default'}/{model_name}"
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
    device_uid = _name_text(_meta(device).get("uid"))

    parsed: list[tuple[int, SensorSpec]] = []
    problems: list[SensorProblem] = []
    properties = _items(_mapping(model.get("spec")).get("properties"))
    if len(properties) > SENSORS_PER_DEVICE_MAX:
        problems.append(
            SensorProblem(
                ref,
                f"has {len(properties)} properties; only the first {SENSORS_PER_DEVICE_MAX} "
                "are read (a Device may have at most that many sensors)",
                source=source,
            )
        )
    for index, prop in enumerate(properties[:SENSORS_PER_DEVICE_MAX]):
        prop = _mapping(prop)
        name = _text(prop.get("name")).strip()

        def skip(message: str, index: int = index, name: str = name) -> None:
            problems.append(
                SensorProblem(
                    ref,
                    f"skipped: {message}",
                    entry=index,
                    sensor=clip(name) or None,
                    source=source,
                    item="property",
                )
            )

        kind, unit, access_mode = _property_type(prop)
        if not name:
            skip("the property has no name")
        # The name becomes the measured quantity (sensorType) and the unit a measurement
        # unit: both terms, bounded like the annotation's so the Flavor reads back.
        elif len(name) > TERM_MAX_LENGTH or has_control_characters(name):
            skip(
                f"its name is {len(name)} characters long or holds control characters; "
                f"at most {TERM_MAX_LENGTH} printable ones"
            )
        elif len(unit) > TERM_MAX_LENGTH or has_control_characters(unit):
            skip(f"its unit {show(unit)} is longer than {TERM_MAX_LENGTH} or not printable")
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
            rate, rate_problem = _collect_rate_hz(device, name)
            if rate_problem:
                problems.append(
                    SensorProblem(
                        ref,
                        rate_problem,
                        field="collectCycle",
                        entry=index,
                        sensor=name,
                        source=source,
                        item="property",
                    )
                )
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
                        sampling_rate_hz=rate,
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

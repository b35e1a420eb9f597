"""Which KubeEdge Devices this mapper serves, read from their objects (no I/O here).

A v1beta1 Device is ours when `spec.nodeName` is our node and `spec.protocol.protocolName`
is "bluetooth"; its board is `spec.protocol.configData.macAddress`. Report cycles are Go
durations in nanoseconds (`spec.properties[].reportCycle`, `spec.stateReport.reportCycle`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fluidos_sensors.api import DEVICE, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SENSORS_ANNOTATION
from fluidos_sensors.rates import desired_rates, rate_group
from fluidos_sensors.sensor import SensorSpec, encode_sensors_annotation, parse_sensors_annotation
from mapper.dataplane.twins import DeviceKey

PROTOCOL = "bluetooth"
MAC_FIELD = "spec.protocol.configData.macAddress"
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
_NANOSECONDS = 1e9


@dataclass(frozen=True)
class BoundDevice:
    """A Device this mapper serves: its board's MAC and how often to report its twin."""

    key: DeviceKey
    uid: str | None
    mac: str
    report_cycle: float | None
    """Seconds, or None when the Device does not say."""
    rate_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Rate group -> keys of the sensors in it whose rate can be set (`fluidos_sensors.rates`)."""
    rates: Mapping[str, float] = field(default_factory=dict)
    """Rate group -> the rate it should run: desired (set by a Contract), else declared."""


@dataclass(frozen=True)
class DeviceProblem:
    """Why a Device bound to this node cannot be served; names the object and the field."""

    key: DeviceKey
    uid: str | None
    field: str
    message: str

    def __str__(self) -> str:
        return f'Device {self.key}: "{self.field}" {self.message}'


def normalize_mac(text: str) -> str | None:
    """ "AA:BB:CC:DD:EE:FF" from any case, ':' or '-' separated or bare; None if not a MAC."""
    text = text.strip()
    if not _MAC.match(text):
        return None
    digits = re.sub(r"[:-]", "", text).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _cycle_seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value) / _NANOSECONDS


def report_cycle(spec: Mapping[str, Any]) -> float | None:
    """The shortest report cycle a Device asks for, in seconds (None: it asks for none)."""
    cycles = [_cycle_seconds((spec.get("stateReport") or {}).get("reportCycle"))]
    for prop in spec.get("properties") or []:
        if isinstance(prop, Mapping) and prop.get("reportToCloud") is not False:
            cycles.append(_cycle_seconds(prop.get("reportCycle")))
    known = [c for c in cycles if c is not None]
    return min(known) if known else None


def bind(device: Mapping[str, Any], node: str) -> BoundDevice | DeviceProblem | None:
    """What a Device object means to the mapper of `node`: None when it is not ours."""
    meta = device.get("metadata") or {}
    spec = device.get("spec") or {}
    if spec.get("nodeName") != node:
        return None
    protocol = spec.get("protocol") or {}
    if not isinstance(protocol, Mapping) or protocol.get("protocolName") != PROTOCOL:
        return None  # another protocol's mapper serves it
    key = DeviceKey(str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
    uid = meta.get("uid")
    config = protocol.get("configData") or {}
    raw = config.get("macAddress") if isinstance(config, Mapping) else None
    if raw is None or raw == "":
        return DeviceProblem(key, uid, MAC_FIELD, "is required for a bluetooth Device")
    mac = normalize_mac(raw) if isinstance(raw, str) else None
    if mac is None:
        return DeviceProblem(
            key, uid, MAC_FIELD, f"must be a MAC address like AA:BB:CC:DD:EE:FF, got {raw!r}"
        )
    groups, rates = settable_rates(device, key)
    return BoundDevice(key, uid, mac, report_cycle(spec), groups, rates)


def settable_rates(
    device: Mapping[str, Any], key: DeviceKey
) -> tuple[dict[str, tuple[str, ...]], dict[str, float]]:
    """The rate groups of a Device's settable sensors and the rate each should run: the
    desired property when a Contract holds one, else the declared ``samplingRate`` (so a
    board goes back to what its Flavor states when the last holder goes)."""
    raw = ((device.get("metadata") or {}).get("annotations") or {}).get(SENSORS_ANNOTATION)
    if not raw:
        return {}, {}
    sensors, _ = parse_sensors_annotation(raw, device=str(key))  # problems: the RM reports them
    members: dict[str, list[str]] = {}
    declared: dict[str, float] = {}
    for sensor in sensors:
        if not sensor.sampling_rates_hz:
            continue
        group = rate_group(sensor)
        members.setdefault(group, []).append(sensor.key)
        if sensor.sampling_rate_hz is not None:
            declared.setdefault(group, sensor.sampling_rate_hz)
    groups = {group: tuple(keys) for group, keys in members.items()}
    rates = dict(declared)
    rates |= {group: rate for group, rate in desired_rates(device).items() if group in groups}
    return groups, rates


def bind_all(
    devices: Iterable[Mapping[str, Any]], node: str
) -> tuple[dict[str, BoundDevice], list[DeviceProblem]]:
    """Devices of `node` by MAC, and the problems; a MAC claimed twice serves the first."""
    bound: dict[str, BoundDevice] = {}
    problems: list[DeviceProblem] = []
    ordered = sorted(
        devices,
        key=lambda d: (
            str((d.get("metadata") or {}).get("creationTimestamp") or ""),
            str((d.get("metadata") or {}).get("namespace") or ""),
            str((d.get("metadata") or {}).get("name") or ""),
        ),
    )
    for device in ordered:
        result = bind(device, node)
        if result is None:
            continue
        if isinstance(result, DeviceProblem):
            problems.append(result)
        elif result.mac in bound:
            problems.append(
                DeviceProblem(
                    result.key,
                    result.uid,
                    MAC_FIELD,
                    f"names board {result.mac}, already served as Device {bound[result.mac].key}",
                )
            )
        else:
            bound[result.mac] = result
    return bound, problems


def device_body(
    key: DeviceKey,
    *,
    node: str,
    mac: str,
    model: str,
    sensors: list[SensorSpec],
    report_cycle_seconds: float,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A v1beta1 Device for a board, with its FLUIDOS `sensors` annotation."""
    cycle = int(report_cycle_seconds * _NANOSECONDS)
    return {
        "apiVersion": DEVICE.api_version,
        "kind": DEVICE.kind,
        "metadata": {
            "name": key.name,
            "namespace": key.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, **(labels or {})},
            "annotations": {SENSORS_ANNOTATION: encode_sensors_annotation(sensors)},
        },
        "spec": {
            "deviceModelRef": {"name": model},
            "nodeName": node,
            "protocol": {"protocolName": PROTOCOL, "configData": {"macAddress": mac}},
            "properties": [
                {"name": spec.key, "reportCycle": cycle, "reportToCloud": True} for spec in sensors
            ],
            "stateReport": {"reportCycle": cycle, "reportToCloud": True},
        },
    }

"""A device twin as the mapper writes it and the TUI reads it: KubeEdge's `DeviceStatus`.

KubeEdge v1.23 keeps twin state in a `DeviceStatus` (devices.kubeedge.io/v1beta1) named like
its Device: `status.state`, `status.lastOnlineTime`, `status.twins[]{propertyName,
reported{value, metadata}, observedDesired}` and free-form `status.extensions`. Values and
metadata are strings in that schema. A twin's property name is the reading's sensor key.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from fluidos_sensors.reading import Reading

ONLINE = "online"
OFFLINE = "offline"
UNKNOWN = "unknown"
EXTENSIONS_KEY = "fluidosSensors"
"""Our key in `status.extensions` (board, MAC, STM32 UID, counters)."""
BATTERY = "battery"
"""The battery's twin (and sensor key): level, voltage, current and ST's status code."""


def rfc3339(unix_seconds: float) -> str:
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reported_twin(reading: Reading) -> dict[str, Any]:
    """A twin entry for the latest reading of one sensor (all values as strings)."""
    values = dict(reading.values)
    single = list(values) == ["value"]
    metadata = {
        # KubeEdge puts milliseconds since the epoch here.
        "timestamp": str(int(reading.received_at * 1000)),
        "type": "float" if single else "string",
        "unit": reading.unit,
        "quantity": reading.quantity,
        "seq": str(reading.seq),
    }
    if not single:
        metadata["encoding"] = "json"
    if reading.device_time is not None:
        metadata["deviceTime"] = f"{reading.device_time:.2f}"
    value = (
        json.dumps(values["value"])
        if single
        else json.dumps(values, separators=(",", ":"), allow_nan=False)
    )
    return {"propertyName": reading.sensor, "reported": {"value": value, "metadata": metadata}}


def device_status(
    state: str,
    last_online: float | None,
    latest: Mapping[str, Reading],
    extensions: Mapping[str, Any],
    now: float,
) -> dict[str, Any]:
    """The DeviceStatus `status` of a device in `state` at Unix time `now`, with the latest
    reading of each sensor as its twin."""
    status: dict[str, Any] = {"state": state}
    last_online = now if state == ONLINE else last_online
    if last_online is not None:
        status["lastOnlineTime"] = rfc3339(last_online)
    status["twins"] = [reported_twin(latest[name]) for name in sorted(latest)]
    if extensions:
        status["extensions"] = {EXTENSIONS_KEY: dict(extensions)}
    return status

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

from fluidos_sensors.rates import rate_property
from fluidos_sensors.reading import Reading
from fluidos_sensors.units import format_number

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


def rate_twin(group: str, rate_hz: float, at: float) -> dict[str, Any]:
    """The twin of the rate a rate group runs (`fluidos_sensors.rates`)."""
    return {
        "propertyName": rate_property(group),
        "reported": {
            "value": format_number(rate_hz),
            "metadata": {"timestamp": str(int(at * 1000)), "type": "float", "unit": "Hz"},
        },
    }


def device_status(
    state: str,
    last_online: float | None,
    latest: Mapping[str, Reading],
    extensions: Mapping[str, Any],
    now: float,
    rates: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """The DeviceStatus `status` of a device in `state` at Unix time `now`, with the latest
    reading of each sensor as its twin, and the rate each rate group runs (rate group ->
    (Hz, Unix time the board said so)) as twin ``samplingRate.<group>``."""
    status: dict[str, Any] = {"state": state}
    last_online = now if state == ONLINE else last_online
    if last_online is not None:
        status["lastOnlineTime"] = rfc3339(last_online)
    rates = rates or {}
    status["twins"] = [reported_twin(latest[name]) for name in sorted(latest)] + [
        rate_twin(group, *rates[group]) for group in sorted(rates)
    ]
    if extensions:
        status["extensions"] = {EXTENSIONS_KEY: dict(extensions)}
    return status

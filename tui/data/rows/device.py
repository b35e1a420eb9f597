"""Rows of the device table: a KubeEdge Device and the DeviceStatus the mapper writes
(`tui/widgets/device_table.py`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.twins import BATTERY, EXTENSIONS_KEY, OFFLINE, ONLINE
from fluidos_sensors.units import format_number
from tui.data.rows.cells import (
    BAD,
    DIM,
    GOOD,
    Cell,
    ObjectKey,
    as_number,
    cell,
    number_cell,
    object_ref,
    time_cell,
)

DEVICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("node", "Node"),
    ("device", "Device"),
    ("state", "State"),
    ("last_seen", "Last seen"),
    ("board", "Board"),
    ("battery", "Battery"),
    ("rssi", "RSSI"),
    ("values", "Latest values"),
)
LOW_BATTERY_PERCENT = 20.0


@dataclass(frozen=True)
class TwinValue:
    """The latest reported value of one device property."""

    name: str
    value: str
    unit: str
    time: str

    @property
    def fields(self) -> dict[str, Any] | None:
        """Several fields (compact JSON) as a dict; None for a single number."""
        if not self.value.startswith("{"):
            return None
        try:
            parsed = json.loads(self.value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def text(self) -> str:
        fields = self.fields
        if fields is None:
            return f"{self.value} {self.unit}".strip()
        shown = " ".join(f"{k}={_short(v)}" for k, v in fields.items() if v is not None)
        return f"{shown} {self.unit}".strip()


def _short(value: object) -> str:
    number = as_number(value)
    return format_number(round(number, 2)) if number is not None else str(value)


def twin_values(status: Mapping[str, Any] | None) -> list[TwinValue]:
    """The reported twins of a DeviceStatus (`status.twins[]`), by property name."""
    twins = ((status or {}).get("status") or {}).get("twins") or []
    values = []
    for twin in twins:
        if not isinstance(twin, Mapping) or not twin.get("propertyName"):
            continue
        reported = twin.get("reported") or {}
        metadata = reported.get("metadata") or {}
        stamp = as_number(metadata.get("timestamp"))
        when = (
            dt.datetime.fromtimestamp(stamp / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if stamp is not None
            else ""
        )
        values.append(
            TwinValue(
                name=str(twin["propertyName"]),
                value=str(reported.get("value", "")),
                unit=str(metadata.get("unit") or ""),
                time=when,
            )
        )
    return sorted(values, key=lambda v: v.name)


@dataclass(frozen=True)
class DeviceRow:
    """One device: its Device object and the DeviceStatus named like it (either may lack)."""

    key: ObjectKey
    device: Mapping[str, Any] | None
    status: Mapping[str, Any] | None

    @property
    def state(self) -> str:
        return str(((self.status or {}).get("status") or {}).get("state") or "unknown")

    @property
    def extensions(self) -> Mapping[str, Any]:
        status = (self.status or {}).get("status") or {}
        return (status.get("extensions") or {}).get(EXTENSIONS_KEY) or {}

    @property
    def node(self) -> str:
        spec = (self.device or {}).get("spec") or {}
        return str(spec.get("nodeName") or self.extensions.get("node") or "")

    @property
    def battery_percent(self) -> float | None:
        """The battery level the board reports (its battery twin), else the mapper's extension."""
        for twin in twin_values(self.status):
            if twin.name == BATTERY:
                fields = twin.fields
                return as_number(fields.get("level") if fields else twin.value)
        return as_number(self.extensions.get("battery"))

    def cells(self) -> dict[str, Cell]:
        state = self.state
        tone = GOOD if state == ONLINE else BAD if state == OFFLINE else DIM
        battery = self.battery_percent
        values = [t for t in twin_values(self.status) if t.name != BATTERY]
        board = self.extensions.get("board") or self.extensions.get("localName") or ""
        return {
            "cluster": cell(self.key[0]),
            "node": cell(self.node),
            "device": cell(object_ref(self.key)),
            "state": cell(state, tone=tone),
            "last_seen": time_cell(((self.status or {}).get("status") or {}).get("lastOnlineTime")),
            "board": cell(board),
            "battery": number_cell(
                battery,
                "%",
                tone=BAD if battery is not None and battery < LOW_BATTERY_PERCENT else "",
            ),
            "rssi": number_cell(as_number(self.extensions.get("rssi")), "dBm"),
            "values": cell("; ".join(f"{t.name} {t.text()}" for t in values)),
        }

    def facts(self) -> list[tuple[str, str]]:
        status = (self.status or {}).get("status") or {}
        ext = self.extensions
        facts = [
            ("Device", object_ref(self.key)),
            ("Cluster", self.key[0]),
            ("Node", self.node or "-"),
            ("State", self.state),
            ("Last online", str(status.get("lastOnlineTime") or "-")),
        ]
        protocol = ((self.device or {}).get("spec") or {}).get("protocol") or {}
        if protocol.get("protocolName"):
            facts.append(("Protocol", str(protocol["protocolName"])))
        for label, name in (
            ("Board", "board"),
            ("MAC", "mac"),
            ("STM32 UID", "stm32Uid"),
            ("RSSI", "rssi"),
            ("Connects", "connects"),
            ("Last offline reason", "reason"),
        ):
            if ext.get(name) not in (None, ""):
                facts.append((label, str(ext[name])))
        battery = self.battery_percent
        if battery is not None:
            facts.append(("Battery", f"{format_number(round(battery, 1))} %"))
        for twin in twin_values(self.status):
            facts.append((f"  {twin.name}", f"{twin.text()}  @ {twin.time or '?'}"))
        if self.device is None:
            facts.append(("Note", "DeviceStatus without a Device"))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        found: list[tuple[str, Mapping[str, Any]]] = []
        if self.device is not None:
            found.append(("Device", self.device))
        if self.status is not None:
            found.append(("DeviceStatus", self.status))
        return found

"""Rows of the flavor table: one Sensor Flavor each (`tui/widgets/flavor_table.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.flavor import FlavorError, SensorFlavor, sensor_from_flavor
from fluidos_sensors.units import format_number
from tui.data.rows.cells import (
    BAD,
    GOOD,
    Cell,
    ObjectKey,
    cell,
    count_cell,
    join_present,
    number_cell,
    object_ref,
)

FLAVOR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("node", "Node"),
    ("type", "Type"),
    ("unit", "Unit"),
    ("manufacturer", "Manufacturer"),
    ("model", "Model"),
    ("latency", "Latency"),
    ("accuracy", "Accuracy"),
    ("observed_latency", "Obs. latency"),
    ("observed_rate", "Obs. rate"),
    ("available", "Avail."),
    ("consumers", "Consumers"),
    ("name", "Flavor"),
)


def parse_flavor(obj: Mapping[str, Any]) -> SensorFlavor | str:
    """The Sensor flavor of a Flavor object, or why it is not one (the error message)."""
    try:
        return sensor_from_flavor(obj)
    except (FlavorError, ValueError) as exc:
        return str(exc)


@dataclass(frozen=True)
class FlavorRow:
    """One Flavor; `flavor` is None when the object is not a usable Sensor flavor."""

    key: ObjectKey
    obj: Mapping[str, Any]
    flavor: SensorFlavor | None
    error: str | None = None
    consumers: int = 0

    @property
    def flavor_ref(self) -> str:
        return object_ref(self.key)

    def cells(self) -> dict[str, Cell]:
        flavor = self.flavor
        if flavor is None:
            return {
                "cluster": cell(self.key[0]),
                "type": cell("(invalid)", tone=BAD),
                "consumers": count_cell(self.consumers),
                "name": cell(self.key[2]),
            }
        sensor = flavor.sensor
        accuracy = join_present(
            f"±{format_number(a.value)} {a.unit}".strip() for a in sensor.accuracy
        )
        first_accuracy = sensor.accuracy[0].value if sensor.accuracy else None
        return {
            "cluster": cell(self.key[0]),
            "node": cell(flavor.node),
            "type": cell(join_present(sensor.types)),
            "unit": cell(join_present(sensor.units.measurement)),
            "manufacturer": cell(sensor.manufacturer),
            "model": cell(sensor.model),
            "latency": number_cell(sensor.latency_ms, "ms"),
            "accuracy": cell(accuracy, first_accuracy),
            "observed_latency": number_cell(flavor.observed_latency_ms, "ms"),
            "observed_rate": number_cell(flavor.observed_rate_hz, "Hz"),
            "available": cell(
                "yes" if flavor.availability else "no",
                tone=GOOD if flavor.availability else BAD,
            ),
            "consumers": count_cell(self.consumers, GOOD),
            "name": cell(self.key[2]),
        }

    def facts(self) -> list[tuple[str, str]]:
        facts = [("Flavor", self.flavor_ref), ("Cluster", self.key[0])]
        if self.flavor is None:
            return [*facts, ("Problem", self.error or "not a Sensor flavor")]
        flavor, sensor = self.flavor, self.flavor.sensor
        units = sensor.units

        def num(value: float | None, unit: str) -> str:
            return "-" if value is None else f"{format_number(value)} {unit}"

        facts += [
            ("Provider", flavor.provider_id),
            ("Node", flavor.node),
            ("Device", flavor.device or "-"),
            ("Sensor", f"{sensor.name} (key {sensor.key})"),
            ("Category", sensor.category),
            (
                "Measures",
                join_present(f"{t} [{sensor.measurement_unit(t) or '?'}]" for t in sensor.types),
            ),
            ("Manufacturer / model", f"{sensor.manufacturer} / {sensor.model}"),
            ("Market", sensor.market or "-"),
            ("Sampling rate", num(sensor.sampling_rate_hz, "Hz")),
            ("Latency (declared)", num(sensor.latency_ms, "ms")),
            (
                "Accuracy",
                join_present(
                    f"{a.quantity} ±{format_number(a.value)} {a.unit}" for a in sensor.accuracy
                )
                or "-",
            ),
            ("Consumption", num(sensor.consumption, units.consumption)),
            ("Observed latency", num(flavor.observed_latency_ms, "ms")),
            ("Observed rate", num(flavor.observed_rate_hz, "Hz")),
            ("Observed at", (flavor.observed.updated if flavor.observed else None) or "-"),
            ("Available", "yes" if flavor.availability else "no"),
            ("Topic", f"{sensor.access.resource.topic} on {sensor.access.resource.node}"),
            ("Consumers", str(self.consumers)),
        ]
        if flavor.price:
            price = flavor.price
            facts.append(("Price", f"{price.amount} {price.currency} {price.period}"))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("Flavor", self.obj)]


def flavor_row(
    key: ObjectKey, obj: Mapping[str, Any], parsed: SensorFlavor | str, consumers: int
) -> FlavorRow:
    if isinstance(parsed, str):
        return FlavorRow(key, obj, None, parsed, consumers)
    return FlavorRow(key, obj, parsed, None, consumers)

"""Rows of the request table: one SensorRequest each (`tui/widgets/request_table.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.filters import FilterError, describe, from_request_filter
from fluidos_sensors.shaping import describe_shape
from tui.data.rows.cells import (
    BAD,
    DIM,
    GOOD,
    WARN,
    Cell,
    ObjectKey,
    cell,
    count_cell,
    join_present,
    object_ref,
    time_cell,
)

REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("request", "Request"),
    ("phase", "Phase"),
    ("matched", "Matched"),
    ("contracts", "Contracts"),
    ("first_data", "First data"),
    ("count", "Count"),
    ("filter", "Filter"),
    ("endpoint", "Endpoint"),
)
GOOD_PHASES = frozenset({"ready", "active", "delivering", "fulfilled", "bound"})
BAD_PHASES = frozenset({"failed", "error", "rejected"})


def phase_tone(phase: str) -> str:
    folded = phase.casefold()
    if folded in GOOD_PHASES:
        return GOOD
    if folded in BAD_PHASES:
        return BAD
    return WARN if folded else DIM


@dataclass(frozen=True)
class RequestRow:
    key: ObjectKey
    obj: Mapping[str, Any]

    @property
    def filter_text(self) -> str:
        try:
            return describe(
                from_request_filter((self.obj.get("spec") or {}).get("filter"), "SensorRequest")
            )
        except FilterError as exc:
            return f"invalid: {exc}"

    def cells(self) -> dict[str, Cell]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        phase = str(status.get("phase") or "")
        return {
            "cluster": cell(self.key[0]),
            "request": cell(object_ref(self.key)),
            "phase": cell(phase or "(new)", tone=phase_tone(phase)),
            "matched": count_cell(status.get("matched")),
            "contracts": count_cell(status.get("contractCount"), GOOD),
            "first_data": time_cell(status.get("firstData")),
            "count": count_cell(spec.get("count", 1)),
            "filter": cell(self.filter_text),
            "endpoint": cell((spec.get("endpoint") or {}).get("url")),
        }

    def facts(self) -> list[tuple[str, str]]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        endpoint = spec.get("endpoint") or {}
        facts = [
            ("Request", object_ref(self.key)),
            ("Cluster", self.key[0]),
            ("Filter", self.filter_text),
            ("Count", str(spec.get("count", 1))),
            ("Providers", join_present(spec.get("providers") or []) or "all known"),
            ("Endpoint", f"{endpoint.get('url', '-')} ({endpoint.get('format', 'influx')})"),
            ("Shape", describe_shape(endpoint.get("shape"))),
            ("Phase", str(status.get("phase") or "(not handled yet)")),
            ("Message", str(status.get("message") or "-")),
            ("Matched", str(status.get("matched", "-"))),
            ("Contracts", str(status.get("contractCount", "-"))),
            ("First data", str(status.get("firstData") or "-")),
        ]
        for index, candidate in enumerate(status.get("candidates") or []):
            facts.append((f"Candidate {index + 1}", _summary(candidate)))
        for index, contract in enumerate(status.get("contracts") or []):
            facts.append((f"Contract {index + 1}", _summary(contract)))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("SensorRequest", self.obj)]


def _summary(item: object) -> str:
    """A free-form status entry (candidates, contracts) as "key=value" pairs."""
    if not isinstance(item, Mapping):
        return str(item)
    return ", ".join(
        f"{k}={v}" for k, v in item.items() if not isinstance(v, Mapping | list) and v != ""
    )

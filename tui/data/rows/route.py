"""Rows of the route table: one per target of a SensorRoute, with its delivery counts and
rate (`tui/widgets/route_table.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.delivery import FAILING_STATES
from fluidos_sensors.shaping import describe_shape
from tui.data.rows.cells import (
    BAD,
    DIM,
    GOOD,
    WARN,
    Cell,
    ObjectKey,
    as_number,
    cell,
    count_cell,
    number_cell,
    object_ref,
    parse_time,
    sparkline,
)

ROUTE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("node", "Node"),
    ("topic", "Topic"),
    ("target", "Target"),
    ("state", "State"),
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("queued", "Queued"),
    ("dropped", "Dropped"),
    ("rate", "Rate"),
    ("spark", "Rate history"),
    ("last_error", "Last error"),
    ("url", "URL"),
)


def target_failing(status: Mapping[str, Any] | None) -> bool:
    """Whether a target's status says it does not deliver now: its state is one of the
    FAILING_STATES an edge agent reports, or whatever the state says, its last error is newer
    than its last success."""
    if not status:
        return False
    if str(status.get("state") or "") in FAILING_STATES:
        return True
    error_time = parse_time(status.get("lastErrorTime"))
    if error_time is None:
        return False
    success = parse_time(status.get("lastSuccess"))
    return success is None or error_time > success


def route_target_statuses(route: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    targets = ((route.get("status") or {}).get("targets")) or []
    return {str(t["id"]): t for t in targets if isinstance(t, Mapping) and t.get("id")}


@dataclass(frozen=True)
class RouteTargetRow:
    """One target of a SensorRoute (target None: a route without targets)."""

    key: ObjectKey
    route: Mapping[str, Any]
    target: Mapping[str, Any] | None
    status: Mapping[str, Any] | None
    history: tuple[float, ...] = ()

    @property
    def target_id(self) -> str | None:
        return str(self.target["id"]) if self.target else None

    @property
    def failing(self) -> bool:
        return target_failing(self.status)

    def cells(self) -> dict[str, Cell]:
        spec = self.route.get("spec") or {}
        status = self.status or {}
        failing = self.failing
        state = str(status.get("state") or ("" if self.target is None else "pending"))
        bad = BAD if failing else ""
        return {
            "cluster": cell(self.key[0]),
            "node": cell(spec.get("node")),
            "topic": cell(spec.get("topic")),
            "target": cell(self.target_id or "(no targets)", tone="" if self.target else DIM),
            "state": cell(state, tone=BAD if failing else GOOD if status else DIM),
            "delivered": count_cell(status.get("delivered")),
            "failed": count_cell(status.get("failed"), BAD),
            "queued": count_cell(status.get("queued"), WARN),
            "dropped": count_cell(status.get("dropped"), BAD),
            "rate": number_cell(as_number(status.get("rateHz")), "Hz"),
            "spark": cell(sparkline(self.history), self.history[-1] if self.history else None),
            "last_error": cell(status.get("lastError"), tone=bad),
            "url": cell((self.target or {}).get("url")),
        }

    def facts(self) -> list[tuple[str, str]]:
        spec = self.route.get("spec") or {}
        route_status = self.route.get("status") or {}
        facts = [
            ("Route", object_ref(self.key)),
            ("Cluster", self.key[0]),
            ("Node", str(spec.get("node") or "-")),
            ("Topic", str(spec.get("topic") or "-")),
            ("Flavor", str(spec.get("flavor") or "-")),
            ("Agent", str(route_status.get("agent") or "-")),
            ("Subscribed", str(route_status.get("subscribed", "-"))),
            ("Targets", str(len(spec.get("targets") or []))),
        ]
        if self.target is None:
            return facts
        target, status = self.target, self.status or {}
        origin = target.get("origin") or {}
        facts += [
            ("Target", str(target.get("id"))),
            ("URL", str(target.get("url") or "-")),
            ("Format", str(target.get("format") or "influx")),
            ("Shape", describe_shape(target.get("shape"))),
            (
                "Origin",
                f"{origin.get('kind', '?')} {origin.get('namespace', '')}/{origin.get('name', '')}"
                if origin
                else "-",
            ),
            ("Auth", str((target.get("auth") or {}).get("type") or "none")),
            ("State", str(status.get("state") or "-") + ("  (FAILING)" if self.failing else "")),
        ]
        for label, name in (
            ("Delivered", "delivered"),
            ("Failed", "failed"),
            ("Rejected", "rejected"),
            ("Dropped", "dropped"),
            ("Queued", "queued"),
            ("Queued bytes", "queuedBytes"),
            ("Rate (Hz)", "rateHz"),
            ("Latency p50 (ms)", "latencyP50Ms"),
            ("Latency p99 (ms)", "latencyP99Ms"),
            ("Last success", "lastSuccess"),
            ("Last error", "lastError"),
            ("Last error at", "lastErrorTime"),
        ):
            if status.get(name) not in (None, ""):
                facts.append((label, str(status[name])))
        if self.history:
            facts.append(("Rate history", sparkline(self.history, 32)))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("SensorRoute", self.route)]


def route_rows(
    key: ObjectKey, route: Mapping[str, Any], histories: Mapping[str, Sequence[float]]
) -> list[RouteTargetRow]:
    """One row per target of a route, with its status and rate history."""
    statuses = route_target_statuses(route)
    targets = [
        t
        for t in ((route.get("spec") or {}).get("targets") or [])
        if isinstance(t, Mapping) and t.get("id")
    ]
    if not targets:
        return [RouteTargetRow(key, route, None, None)]
    return [
        RouteTargetRow(
            key,
            route,
            target,
            statuses.get(str(target["id"])),
            tuple(histories.get(str(target["id"]), ())),
        )
        for target in targets
    ]

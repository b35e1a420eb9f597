"""What `testbed status` shows: every process, and every route target's recent deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from rich.table import Table

from fluidos_sensors.api import ROUTE_NAMESPACE, SENSOR_ROUTE
from fluidos_sensors.delivery import FAILING_STATES
from fluidos_sensors.kube import REQUEST_TIMEOUT
from testbed import bootstrap
from testbed.state import TestbedState, pid_alive
from testbed.topology import PROVIDER


@dataclass(frozen=True)
class TargetRow:
    cluster: str
    node: str
    topic: str
    target: str
    state: str
    delivered: int
    last_minute: int
    queued: int
    last_error: str

    @property
    def healthy(self) -> bool:
        return self.state not in FAILING_STATES


def processes_table(state: TestbedState) -> tuple[Table, bool]:
    """One row per process; healthy when every process not held on purpose is running."""
    table = Table(title="processes", title_justify="left", expand=False)
    for column in ("", "process", "pid", "restarts", "ports", "log"):
        table.add_column(column)
    healthy = True
    for name, proc in state.status.get("processes", {}).items():
        alive = bool(proc.get("alive")) and pid_alive(proc.get("pid"))
        held = bool(proc.get("held"))
        mark = "[green]up[/]" if alive else ("[yellow]held[/]" if held else "[red]down[/]")
        healthy &= alive or held
        table.add_row(
            mark,
            name,
            str(proc.get("pid") or "-"),
            str(proc.get("restarts", 0)),
            ",".join(str(p) for p in proc.get("ports") or []) or "-",
            str(proc.get("log") or ""),
        )
    return table, healthy


def route_targets(state: TestbedState) -> list[TargetRow]:
    """Every route target of every provider, with what its agent last reported."""
    rows: list[TargetRow] = []
    for cluster in state.clusters.values():
        if cluster.role != PROVIDER:
            continue
        with bootstrap.api_client(Path(cluster.kubeconfig)) as api:
            items = cast(
                dict[str, Any],
                client.CustomObjectsApi(api).list_namespaced_custom_object(
                    SENSOR_ROUTE.group,
                    SENSOR_ROUTE.version,
                    ROUTE_NAMESPACE,
                    SENSOR_ROUTE.plural,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )["items"]
        for item in items:
            rows.extend(_targets(cluster.name, item))
    return rows


def _targets(cluster: str, route: dict[str, Any]) -> list[TargetRow]:
    spec, status = route.get("spec") or {}, route.get("status") or {}
    reported = {t.get("id"): t for t in status.get("targets") or []}
    rows = []
    for target in spec.get("targets") or []:
        seen = reported.get(target.get("id"), {})
        rows.append(
            TargetRow(
                cluster=cluster,
                node=str(spec.get("node", "")),
                topic=str(spec.get("topic", "")),
                target=str(target.get("id", "")),
                state=str(seen.get("state") or "Pending"),
                delivered=int(seen.get("delivered") or 0),
                # The rate is over the last minute, or over the target's life when younger.
                last_minute=min(
                    round(float(seen.get("rateHz") or 0.0) * 60), int(seen.get("delivered") or 0)
                ),
                queued=int(seen.get("queued") or 0),
                last_error=str(seen.get("lastError") or "")[:60],
            )
        )
    return rows


def routes_table(rows: list[TargetRow]) -> Table:
    table = Table(title="route targets", title_justify="left", expand=False)
    for column in ("", "cluster", "topic", "target", "state", "last minute", "delivered"):
        table.add_column(
            column, justify="right" if column in ("last minute", "delivered") else "left"
        )
    table.add_column("queued", justify="right")
    table.add_column("last error")
    for row in sorted(rows, key=lambda r: (r.cluster, r.topic, r.target)):
        mark = "[green]ok[/]" if row.healthy else "[red]failing[/]"
        table.add_row(
            mark,
            row.cluster,
            row.topic,
            row.target,
            row.state,
            str(row.last_minute),
            str(row.delivered),
            str(row.queued),
            row.last_error,
        )
    return table

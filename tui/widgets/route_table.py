"""SensorRoute targets per edge node and topic; a failing target is styled as such."""

from __future__ import annotations

from collections.abc import Mapping

from tui.data.rows import AnyRow
from tui.data.rows.cells import ObjectKey, row_key
from tui.data.rows.route import ROUTE_COLUMNS, RouteTargetRow
from tui.widgets.resource_table import ResourceTable


class RouteTable(ResourceTable):
    """One row per route target (a route without targets shows one placeholder row)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(ROUTE_COLUMNS, sort_column="node", id=id)
        self._members: dict[ObjectKey, set[str]] = {}

    def row_state(self, row: AnyRow) -> str:
        return "failing" if isinstance(row, RouteTargetRow) and row.failing else ""

    def apply(self, routes: Mapping[ObjectKey, list[RouteTargetRow] | None]) -> None:
        self.apply_groups(
            {
                key: None if rows is None else [(row_key(key, r.target_id or ""), r) for r in rows]
                for key, rows in routes.items()
            },
            self._members,
        )

    def failing_keys(self) -> list[str]:
        return [key for key, (_, state) in self._drawn.items() if state == "failing"]

"""Sensor Flavors across providers, narrowed by a typed filter (`tui.data.filter_text`)."""

from __future__ import annotations

from collections.abc import Mapping

from tui.data.filter_text import FlavorQuery
from tui.data.rows import AnyRow
from tui.data.rows.cells import ObjectKey, row_key
from tui.data.rows.flavor import FLAVOR_COLUMNS, FlavorRow
from tui.widgets.resource_table import ResourceTable


class FlavorTable(ResourceTable):
    """One row per Flavor; only the rows the current query matches are shown."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(FLAVOR_COLUMNS, sort_column=None, id=id)
        self.flavor_query = FlavorQuery()

    def accepts(self, row: AnyRow) -> bool:
        return isinstance(row, FlavorRow) and self.flavor_query.matches(row)

    def set_query(self, query: FlavorQuery) -> None:
        """Show the flavors `query` matches (a full rebuild: a user action, not an event)."""
        if query == self.flavor_query:
            return
        self.flavor_query = query
        self.rebuild()

    def apply(self, flavors: Mapping[ObjectKey, FlavorRow | None]) -> None:
        self.upsert_rows({row_key(key): row for key, row in flavors.items()})

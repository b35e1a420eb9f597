"""Consumer side: SensorRequests with phase, matched flavors, contracts and first data."""

from __future__ import annotations

from collections.abc import Mapping

from tui.data.rows.cells import ObjectKey, row_key
from tui.data.rows.request import REQUEST_COLUMNS, RequestRow
from tui.widgets.resource_table import ResourceTable


class RequestTable(ResourceTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(REQUEST_COLUMNS, sort_column="request", id=id)

    def apply(self, requests: Mapping[ObjectKey, RequestRow | None]) -> None:
        self.upsert_rows({row_key(key): row for key, row in requests.items()})

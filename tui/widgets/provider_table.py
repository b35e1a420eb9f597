"""Consumer side: the providers' REAR gateways a consumer knows (SensorProvider)."""

from __future__ import annotations

from collections.abc import Mapping

from tui.data.rows.cells import ObjectKey, row_key
from tui.data.rows.provider import PROVIDER_COLUMNS, ProviderRow
from tui.widgets.resource_table import ResourceTable


class ProviderTable(ResourceTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(PROVIDER_COLUMNS, sort_column="provider", id=id)

    def apply(self, providers: Mapping[ObjectKey, ProviderRow | None]) -> None:
        self.upsert_rows({row_key(key): row for key, row in providers.items()})

"""Boards per edge node: KubeEdge Devices with the twins the mapper reports."""

from __future__ import annotations

from collections.abc import Mapping

from tui.data.rows.cells import ObjectKey, row_key
from tui.data.rows.device import DEVICE_COLUMNS, DeviceRow
from tui.widgets.resource_table import ResourceTable


class DeviceTable(ResourceTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(DEVICE_COLUMNS, sort_column="node", id=id)

    def apply(self, devices: Mapping[ObjectKey, DeviceRow | None]) -> None:
        self.upsert_rows({row_key(key): row for key, row in devices.items()})

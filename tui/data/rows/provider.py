"""Rows of the provider table: one SensorProvider each, as a consumer sees it
(`tui/widgets/provider_table.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tui.data.rows.cells import (
    BAD,
    GOOD,
    Cell,
    ObjectKey,
    cell,
    count_cell,
    object_ref,
    time_cell,
)

PROVIDER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("provider", "Provider"),
    ("url", "URL"),
    ("reachable", "Reachable"),
    ("flavors", "Flavors"),
    ("last_contact", "Last contact"),
    ("message", "Message"),
)


@dataclass(frozen=True)
class ProviderRow:
    key: ObjectKey
    obj: Mapping[str, Any]

    def cells(self) -> dict[str, Cell]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        reachable = status.get("reachable")
        return {
            "cluster": cell(self.key[0]),
            "provider": cell(object_ref(self.key)),
            "url": cell(spec.get("url")),
            "reachable": cell(
                "" if reachable is None else "yes" if reachable else "no",
                tone=GOOD if reachable else BAD,
            ),
            "flavors": count_cell(status.get("flavors")),
            "last_contact": time_cell(status.get("lastContact")),
            "message": cell(status.get("message")),
        }

    def facts(self) -> list[tuple[str, str]]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        return [
            ("Provider", object_ref(self.key)),
            ("Cluster", self.key[0]),
            ("URL", str(spec.get("url") or "-")),
            ("Token secret", str((spec.get("tokenSecret") or {}).get("name") or "-")),
            ("Reachable", str(status.get("reachable", "-"))),
            ("Flavors", str(status.get("flavors", "-"))),
            ("Last contact", str(status.get("lastContact") or "-")),
            ("Message", str(status.get("message") or "-")),
        ]

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("SensorProvider", self.obj)]

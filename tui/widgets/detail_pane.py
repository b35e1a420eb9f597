"""The selected row, readable: its facts, its recent Events, then the full object as YAML."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.data.rows import AnyRow
from tui.data.rows.event import EventRow

EMPTY = "Select a row to see its details."


def readable(obj: Mapping[str, Any]) -> str:
    """An object as YAML without the bookkeeping nobody reads (managedFields)."""
    shown = copy.deepcopy(dict(obj))
    (shown.get("metadata") or {}).pop("managedFields", None)
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, width=100)


def detail_renderable(row: AnyRow | None, events: list[EventRow]) -> RenderableType:
    if row is None:
        return Text(EMPTY, style="dim")
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    for label, value in row.facts():
        facts.add_row(label, value)
    parts: list[RenderableType] = [facts]
    if events:
        parts.append(Text("\nRecent events", style="bold underline"))
        for event in events[-10:]:
            style = "red" if event.type.casefold() == "warning" else ""
            parts.append(Text(f"{event.time} {event.reason}: {event.message}", style=style))
    for kind, obj in row.objects():
        parts.append(Text(f"\n{kind} (full object)", style="bold underline"))
        parts.append(
            Syntax(
                readable(obj), "yaml", theme="ansi_dark", word_wrap=True, background_color="default"
            )
        )
    return Group(*parts)


class DetailPane(VerticalScroll):
    """Shows one row; `show` again when the row changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.row: AnyRow | None = None
        self.events: list[EventRow] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(EMPTY, style="dim"), id="detail-body")

    def show(self, row: AnyRow | None, events: list[EventRow]) -> None:
        self.row, self.events = row, events
        self.query_one("#detail-body", Static).update(detail_renderable(row, events))

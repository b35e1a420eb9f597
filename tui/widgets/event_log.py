"""Recent Events of every cluster, newest at the bottom."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from tui.data.rows.event import EventRow

MAX_LINES = 500


class EventLog(RichLog):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=False, markup=False, highlight=False)
        self.lines_written = 0

    def add(self, events: Iterable[EventRow]) -> None:
        for event in events:
            warning = event.type.casefold() == "warning"
            count = f" (x{event.count})" if event.count > 1 else ""
            self.write(
                Text.assemble(
                    (f"{event.time} ", "dim"),
                    (f"{event.cluster} ", "bold"),
                    (f"{event.type:<7} ", "bold red" if warning else "green"),
                    (f"{event.reason} ", "bold"),
                    (f"{event.involved}: ", "cyan"),
                    event.message.replace("\n", " "),
                    (count, "dim"),
                )
            )
            self.lines_written += 1

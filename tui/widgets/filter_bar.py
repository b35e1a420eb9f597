"""The flavor filter input: says when what was typed is not a filter, and why."""

from __future__ import annotations

from textual.widgets import Input

PLACEHOLDER = "filter: type=humidity manufacturer=STMicroelectronics latency<=16   (? for help)"


class FilterBar(Input):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder=PLACEHOLDER, id=id)

    def show_error(self, message: str | None) -> None:
        self.set_class(message is not None, "-invalid")
        self.border_subtitle = message or ""

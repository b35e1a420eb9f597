"""One line per TUI: every cluster with its role and whether its API server answers."""

from __future__ import annotations

import time

from textual.content import Content
from textual.widgets import Static

from tui.data.store import ClusterState, Phase

_MARKS = {
    Phase.CONNECTED: ("●", "$success"),
    Phase.CONNECTING: ("◌", "$warning"),
    Phase.DEGRADED: ("▲", "$warning"),
    Phase.UNREACHABLE: ("✖", "$error"),
}


class ClusterBar(Static):
    """The clusters' connection states; unreachable ones say why and when they retry."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.states: list[ClusterState] = []

    def on_mount(self) -> None:
        # Only the "retry in Ns" countdown needs a clock; it runs while a cluster is down.
        self._ticker = self.set_interval(1.0, self._redraw, pause=True)

    def show(self, states: list[ClusterState]) -> None:
        self.states = states
        down = any(s.phase is Phase.UNREACHABLE for s in states)
        self.set_class(down, "-unreachable")
        if any(s.retry_at for s in states):
            self._ticker.resume()
        else:
            self._ticker.pause()
        self._redraw()

    def _redraw(self) -> None:
        self.update(self.render_states(time.time()))

    def render_states(self, now: float) -> Content:
        if not self.states:
            return Content("no clusters")
        parts: list[Content] = []
        for state in self.states:
            mark, colour = _MARKS[state.phase]
            role = f" ({state.role})" if state.role else ""
            text = f"{state.name}{role} {state.phase.value}"
            if state.message:
                text += f": {state.message}"
            if state.retry_at and state.phase is not Phase.CONNECTED:
                text += f" (retry in {max(0, round(state.retry_at - now))}s)"
            if state.notes:
                text += f" [{'; '.join(state.notes)}]"
            parts.append(Content.from_markup(f"[{colour}]{mark}[/] $text", text=text))
        return Content("   ").join(parts)

"""The Textual app: composes the main screen over a store, owns the watches, adds commands.

app = SensorsApp(store, watches)   # watches None: a read-only view of a filled store
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from kubernetes import client
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from tui.data.store import Store
from tui.data.watch import Watches
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen


class SensorsApp(App[None]):
    """fluidos-sensors: flavors, routes, requests and devices of several clusters, live."""

    # Absolute: a subclass in another folder (tests) still finds the stylesheet.
    CSS_PATH = Path(__file__).parent / "styles.tcss"
    TITLE = "fluidos-sensors"
    SUB_TITLE = "sensor flavors, routes, requests and devices"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self, store: Store, watches: Watches | None = None, *, batch_interval: float = 0.25
    ) -> None:
        super().__init__()
        self.store = store
        self.watches = watches
        self.batch_interval = batch_interval

    def get_default_screen(self) -> Screen[None]:
        return MainScreen(self.store, batch_interval=self.batch_interval)

    def on_mount(self) -> None:
        if self.watches is not None:
            self.watches.start()

    def on_unmount(self) -> None:
        if self.watches is not None:
            self.watches.stop()

    @property
    def main(self) -> MainScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    def api(self, cluster: str) -> client.ApiClient:
        """The API client of a cluster, for actions."""
        if self.watches is None:
            raise RuntimeError("no cluster connection")
        return self.watches.api(cluster)

    def reconnect(self, cluster: str | None) -> None:
        if self.watches is not None:
            self.watches.reconnect(cluster)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self.main
        for tab in ("flavors", "routes", "requests", "devices"):
            yield SystemCommand(
                f"Show {tab}", f"Switch to the {tab} view", lambda t=tab: main.action_show_tab(t)
            )
        yield SystemCommand("Filter flavors", "Type a flavor filter", main.action_focus_filter)
        yield SystemCommand(
            "Request sensor",
            "Create a SensorRequest like the selected flavor",
            main.action_request_sensor,
        )
        yield SystemCommand(
            "Delete request / remove route target",
            "Delete the selected SensorRequest, or remove the selected route target",
            main.action_remove_selected,
        )
        yield SystemCommand("Help", "Key bindings and the filter syntax", self.action_help)
        for name in self.store.cluster_roles():
            yield SystemCommand(
                f"Reconnect {name}",
                f"Retry the watches of {name} now",
                lambda n=name: self.reconnect(n),
            )

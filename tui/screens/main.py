"""The main screen: cluster bar, the four views in tabs, the detail pane and the Event log.

It reads only from the store (`tui.data`): watch threads fill the store and ping the screen;
the screen drains the changes at most every `batch_interval` seconds and hands each view
exactly the rows that changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Label, TabbedContent, TabPane

from fluidos_sensors.filters import FilterError
from tui.data.actions import (
    ActionError,
    create_sensor_request,
    delete_sensor_request,
    remove_route_target,
)
from tui.data.filter_text import FlavorQuery, parse_flavor_query
from tui.data.rows import AnyRow
from tui.data.rows.device import DeviceRow
from tui.data.rows.flavor import FlavorRow
from tui.data.rows.provider import ProviderRow
from tui.data.rows.request import RequestRow
from tui.data.rows.route import RouteTargetRow
from tui.data.store import Batch, Store
from tui.screens.confirm import ConfirmScreen
from tui.screens.request_sensor import RequestPlan, RequestSensorScreen
from tui.widgets.cluster_bar import ClusterBar
from tui.widgets.detail_pane import DetailPane
from tui.widgets.device_table import DeviceTable
from tui.widgets.event_log import EventLog
from tui.widgets.filter_bar import FilterBar
from tui.widgets.flavor_table import FlavorTable
from tui.widgets.provider_table import ProviderTable
from tui.widgets.request_table import RequestTable
from tui.widgets.resource_table import ResourceTable
from tui.widgets.route_table import RouteTable

TABS = ("flavors", "routes", "requests", "devices")
FILTER_DELAY = 0.2  # seconds of no typing before the filter applies
# The kind Events name as their involved object, per row type (a device row: its Device).
EVENT_KINDS: dict[type, str] = {
    FlavorRow: "Flavor",
    DeviceRow: "Device",
    RouteTargetRow: "SensorRoute",
    RequestRow: "SensorRequest",
    ProviderRow: "SensorProvider",
}


class MainScreen(Screen[None]):
    """Everything on one screen; `apply` takes a batch of changes from the store."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show_tab('flavors')", "Flavors"),
        Binding("2", "show_tab('routes')", "Routes"),
        Binding("3", "show_tab('requests')", "Requests"),
        Binding("4", "show_tab('devices')", "Devices"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("n", "request_sensor", "Request sensor"),
        Binding("x", "remove_selected", "Remove"),
        Binding("d", "toggle_detail", "Detail"),
        Binding("R", "reconnect", "Reconnect", show=False),
        Binding("escape", "leave_filter", "Clear filter", show=False),
    ]

    AUTO_FOCUS = "#flavor-table"

    class ChangesWaiting(Message):
        """The store has changes (posted from a watch thread)."""

    def __init__(self, store: Store, *, batch_interval: float = 0.25) -> None:
        super().__init__()
        self.store = store
        self.batch_interval = batch_interval
        self._last_apply = 0.0
        self._pending: Timer | None = None
        self._filter_timer: Timer | None = None
        self.batches = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield ClusterBar(id="clusters")
        with Horizontal(id="body"):
            with TabbedContent(id="views", initial="flavors"):
                with TabPane("Flavors", id="flavors"):
                    # The table comes first so that it, not the filter, takes the first focus
                    # (a terminal's focus-in event focuses the first focusable widget); the
                    # stylesheet docks the filter above it.
                    yield FlavorTable(id="flavor-table")
                    yield FilterBar(id="filter")
                with TabPane("Routes", id="routes"):
                    yield RouteTable(id="route-table")
                with TabPane("Requests", id="requests"):
                    yield RequestTable(id="request-table")
                    yield Label("Providers (SensorProvider)", classes="section")
                    yield ProviderTable(id="provider-table")
                with TabPane("Devices", id="devices"):
                    yield DeviceTable(id="device-table")
            with Vertical(id="side"):
                yield DetailPane(id="detail")
        yield EventLog(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.apply(self.store.snapshot())
        self.store.on_change(lambda: self.post_message(self.ChangesWaiting()))

    def on_unmount(self) -> None:
        self.store.on_change(None)

    # -------------------------------------------------------------------------------------
    # Widgets

    @property
    def flavor_table(self) -> FlavorTable:
        return self.query_one("#flavor-table", FlavorTable)

    @property
    def route_table(self) -> RouteTable:
        return self.query_one("#route-table", RouteTable)

    @property
    def request_table(self) -> RequestTable:
        return self.query_one("#request-table", RequestTable)

    @property
    def provider_table(self) -> ProviderTable:
        return self.query_one("#provider-table", ProviderTable)

    @property
    def device_table(self) -> DeviceTable:
        return self.query_one("#device-table", DeviceTable)

    @property
    def detail(self) -> DetailPane:
        return self.query_one("#detail", DetailPane)

    @property
    def active_tab(self) -> str:
        return self.query_one("#views", TabbedContent).active

    def _table_of(self, tab: str) -> ResourceTable:
        """The main table of a tab."""
        return {
            "flavors": self.flavor_table,
            "routes": self.route_table,
            "requests": self.request_table,
            "devices": self.device_table,
        }.get(tab, self.flavor_table)

    def _tab_table(self) -> ResourceTable:
        """The table whose selection the detail pane shows."""
        tab = self.active_tab
        if tab == "requests" and isinstance(self.focused, ProviderTable):
            return self.provider_table
        return self._table_of(tab)

    # -------------------------------------------------------------------------------------
    # Changes from the store

    def on_main_screen_changes_waiting(self, _message: ChangesWaiting) -> None:
        if self._pending is not None:
            return
        wait = self._last_apply + self.batch_interval - time.monotonic()
        if wait > 0:
            self._pending = self.set_timer(wait, self._drain)
        else:
            self._drain()

    def _drain(self) -> None:
        self._pending = None
        self._last_apply = time.monotonic()
        self.apply(self.store.drain())

    def apply(self, batch: Batch) -> None:
        """Hand every view the rows that changed."""
        if batch.empty:
            return
        self.batches += 1
        if batch.clusters is not None:
            self.query_one(ClusterBar).show(batch.clusters)
        self.flavor_table.apply(batch.flavors)
        self.route_table.apply(batch.routes)
        self.request_table.apply(batch.requests)
        self.provider_table.apply(batch.providers)
        self.device_table.apply(batch.devices)
        if batch.events:
            self.query_one(EventLog).add(batch.events)
        self._show_selection()

    # -------------------------------------------------------------------------------------
    # Selection and detail

    def _show_selection(self) -> None:
        row = self._tab_table().selected_row
        events = self._events_of(row)
        # Rows are immutable: the same row and Events mean nothing to redraw.
        if row is self.detail.row and events == self.detail.events:
            return
        self.detail.show(row, events)

    def _events_of(self, row: AnyRow | None) -> list[Any]:
        if row is None:
            return []
        cluster, namespace, name = row.key
        return self.store.events_about(cluster, EVENT_KINDS[type(row)], namespace, name)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self._tab_table():
            self._show_selection()

    def on_descendant_focus(self, _event: Any) -> None:
        self._show_selection()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A click on a tab: keys go to that tab's table (unless typing in the filter).
        focused = self.focused
        if focused is None or focused not in event.pane.walk_children():
            self._table_of(self.active_tab).focus()
        self._show_selection()
        self.refresh_bindings()

    def action_toggle_detail(self) -> None:
        """Hide the detail pane (more room for wide tables) or show it again."""
        side = self.query_one("#side")
        side.display = not side.display

    def action_show_tab(self, tab: str) -> None:
        # Focus first: a focused widget that its pane hides hands focus to whatever comes
        # next (and that pane takes over again); focusing into a pane also shows it.
        self._table_of(tab).focus()
        self.query_one("#views", TabbedContent).active = tab

    # -------------------------------------------------------------------------------------
    # Filter

    def action_focus_filter(self) -> None:
        self.action_show_tab("flavors")
        self.query_one(FilterBar).focus()

    def action_leave_filter(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.has_focus:
            bar.value = ""
            self.apply_filter("")
            self.flavor_table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        if self._filter_timer is not None:
            self._filter_timer.stop()
        value = event.value
        self._filter_timer = self.set_timer(FILTER_DELAY, lambda: self.apply_filter(value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self.apply_filter(event.value)
        self.flavor_table.focus()

    def apply_filter(self, text: str) -> None:
        """Narrow the flavors to what `text` selects; a bad filter keeps the last good one."""
        bar = self.query_one(FilterBar)
        try:
            query = parse_flavor_query(text) if text.strip() else FlavorQuery()
        except FilterError as exc:
            bar.show_error(str(exc))
            return
        bar.show_error(None)
        self.flavor_table.set_query(query)
        self.flavor_table.border_title = "" if query.is_empty else query.describe()
        self._show_selection()

    # -------------------------------------------------------------------------------------
    # Actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "request_sensor":
            return self.active_tab == "flavors"
        if action == "remove_selected":
            return self.active_tab in ("routes", "requests")
        return True

    def action_request_sensor(self) -> None:
        row = self.flavor_table.selected_row
        if not isinstance(row, FlavorRow) or row.flavor is None:
            self.notify("Select a Sensor flavor first.", severity="warning")
            return
        if not self._can_write():
            return
        roles = self.store.cluster_roles()
        clusters = list(roles)
        consumers = [name for name, role in roles.items() if role == "consumer"]
        others = [name for name in clusters if name != row.key[0]]
        default = (consumers or others or clusters)[0]

        def created(plan: RequestPlan | None) -> None:
            if plan is None:
                return
            self._run(
                lambda: create_sensor_request(self.app.api(plan.cluster), plan.body),  # type: ignore[attr-defined]
                lambda obj: (
                    f"SensorRequest {obj['metadata']['namespace']}/"
                    f"{obj['metadata']['name']} created in {plan.cluster}"
                ),
            )

        self.app.push_screen(RequestSensorScreen(row, clusters, default), created)

    def action_remove_selected(self) -> None:
        if not self._can_write():
            return
        if self.active_tab == "requests":
            row = self.request_table.selected_row
            if not isinstance(row, RequestRow):
                self.notify("Select a request first.", severity="warning")
                return
            self._confirm_delete_request(row)
        elif self.active_tab == "routes":
            row = self.route_table.selected_row
            if not isinstance(row, RouteTargetRow) or row.target_id is None:
                self.notify("Select a route target first.", severity="warning")
                return
            self._confirm_remove_target(row)

    def _confirm_delete_request(self, row: RequestRow) -> None:
        cluster, namespace, name = row.key

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(
                    lambda: delete_sensor_request(self.app.api(cluster), namespace, name),  # type: ignore[attr-defined]
                    lambda _: f"SensorRequest {namespace}/{name} deleted in {cluster}",
                )

        self.app.push_screen(
            ConfirmScreen(
                "Delete request",
                f"Delete SensorRequest {namespace}/{name} in {cluster}?\n"
                "Its contracts are released and their data stops.",
                "Delete",
            ),
            answered,
        )

    def _confirm_remove_target(self, row: RouteTargetRow) -> None:
        cluster, namespace, name = row.key
        target = row.target_id
        assert target is not None
        url = (row.target or {}).get("url", "")

        def answered(yes: bool | None) -> None:
            if yes:
                self._run(
                    lambda: remove_route_target(
                        self.app.api(cluster),  # type: ignore[attr-defined]
                        namespace,
                        name,
                        target,
                    ),
                    lambda removed: (
                        f"Target {target} removed from {namespace}/{name}"
                        if removed
                        else f"Target {target} was already gone from {namespace}/{name}"
                    ),
                )

        self.app.push_screen(
            ConfirmScreen(
                "Remove route target",
                f"Remove target {target} ({url}) from SensorRoute {namespace}/{name} in "
                f"{cluster}?\nIts consumer stops receiving this topic.",
                "Remove",
            ),
            answered,
        )

    def _can_write(self) -> bool:
        if getattr(self.app, "watches", None) is None:
            self.notify("Read-only: no cluster connection.", severity="warning")
            return False
        return True

    def _run(self, call: Callable[[], Any], done: Callable[[Any], str]) -> None:
        """Run a blocking API call in a worker thread; say how it went."""

        def work() -> None:
            try:
                result = call()
            except ActionError as exc:
                self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
                return
            except Exception as exc:  # connection errors and the like: say so, keep running
                self.app.call_from_thread(
                    self.notify, f"{type(exc).__name__}: {exc}", severity="error", timeout=10
                )
                return
            self.app.call_from_thread(self.notify, done(result))

        self.run_worker(work, thread=True, group="actions")

    def action_reconnect(self) -> None:
        reconnect = getattr(self.app, "reconnect", None)
        if reconnect is not None:
            reconnect(None)
            self.notify("Reconnecting every cluster now.")

"""Request a sensor like the selected flavor: where to deliver, from which consumer cluster.

The dialog shows the SensorRequest it would create (pinned to the flavor's node, types,
model and manufacturer; one sensor; raw readings or a shape; the board's rate or one the
sensor offers) and creates nothing until "Create" is pressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from fluidos_sensors.filters import describe, from_request_filter
from fluidos_sensors.rates import describe_rates
from fluidos_sensors.shaping import describe_shape
from tui.data.actions import ActionError, parse_rate_text, parse_shape_text, sensor_request_body
from tui.data.rows.flavor import FlavorRow

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class RequestPlan:
    """What to create, and where."""

    cluster: str
    body: dict[str, Any]


class RequestSensorScreen(ModalScreen[RequestPlan | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#endpoint"  # focused as the dialog opens: typing goes there at once

    def __init__(self, row: FlavorRow, clusters: list[str], default_cluster: str) -> None:
        super().__init__()
        assert row.flavor is not None
        self.row = row
        self.clusters = clusters
        self.default_cluster = default_cluster

    def compose(self) -> ComposeResult:
        flavor = self.row.flavor
        assert flavor is not None
        sensor = flavor.sensor
        with Vertical(id="dialog", classes="request"):
            yield Label("Request a sensor like this flavor", id="dialog-title")
            yield Static(
                f"{self.row.flavor_ref} in {self.row.key[0]}: {', '.join(sensor.types)} "
                f"({sensor.manufacturer} {sensor.model}) on {flavor.node}",
                id="dialog-message",
            )
            yield Label("Consumer cluster")
            yield Select(
                [(name, name) for name in self.clusters],
                value=self.default_cluster,
                allow_blank=False,
                id="cluster",
                compact=True,
            )
            yield Label("Namespace")
            yield Input(DEFAULT_NAMESPACE, id="namespace", compact=True)
            yield Label("Delivery endpoint URL (where the readings are POSTed)")
            yield Input(
                placeholder="http://telegraf.example:8186/telegraf", id="endpoint", compact=True
            )
            yield Label("Shape at the edge (empty: every reading)")
            yield Input(placeholder="mean,max per 1s  |  every 10", id="shape", compact=True)
            if sensor.sampling_rates_hz:
                offers = describe_rates(sensor.sampling_rates_hz)
                yield Label(f"Sampling rate (empty: as it runs; offers {offers})")
                yield Input(placeholder="e.g. 10Hz", id="rate", compact=True)
            yield Static("", id="dialog-error")
            yield Static("", id="preview")
            with Horizontal(id="dialog-buttons"):
                yield Button("Create", id="create", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self._refresh_preview()

    def _plan(self) -> RequestPlan:
        """The request as typed so far; ActionError says what is wrong with it."""
        assert self.row.flavor is not None
        endpoint = self.query_one("#endpoint", Input).value
        if not endpoint.strip():
            raise ActionError("type the delivery endpoint URL")
        rates = self.query("#rate")
        body = sensor_request_body(
            self.row.flavor,
            "/".join(self.row.key),
            endpoint,
            self.query_one("#namespace", Input).value,
            shape=parse_shape_text(self.query_one("#shape", Input).value),
            rate_hz=parse_rate_text(rates.first(Input).value, self.row.flavor) if rates else None,
        )
        return RequestPlan(str(self.query_one("#cluster", Select).value), body)

    def _refresh_preview(self) -> RequestPlan | None:
        error = self.query_one("#dialog-error", Static)
        preview = self.query_one("#preview", Static)
        try:
            plan = self._plan()
        except ActionError as exc:
            error.update(str(exc))
            preview.update("")
            return None
        error.update("")
        spec = plan.body["spec"]
        wanted = describe(from_request_filter(spec["filter"], "SensorRequest"))
        preview.update(
            f"Creates a SensorRequest in {plan.cluster}, namespace "
            f"{plan.body['metadata']['namespace']}:\n"
            f"  count {spec['count']}, filter {wanted}\n"
            f"  delivered to {spec['endpoint']['url']} ({spec['endpoint']['format']}, "
            f"{describe_shape(spec['endpoint'].get('shape'))})"
            + (f"\n  sampling rate set to {spec['rate']} Hz" if "rate" in spec else "")
        )
        return plan

    def on_input_changed(self, _event: Input.Changed) -> None:
        self._refresh_preview()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._refresh_preview()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._create()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self._create()
        else:
            self.dismiss(None)

    def _create(self) -> None:
        plan = self._refresh_preview()
        if plan is not None:
            self.dismiss(plan)

    def action_cancel(self) -> None:
        self.dismiss(None)

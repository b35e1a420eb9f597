"""Snapshots of the TUI's main screens over the fixed sample deployment (pure UI, no API).

Each screen is compared as plain text (what a user reads) with `snapshots/tui/<name>.txt`,
at a fixed terminal size. Text rather than pytest-textual-snapshot's SVG: that plugin pins
syrupy 4.8, which requires pytest < 9 (the project runs pytest 9), and SVG snapshots change
with every Textual release while the text only changes when what is shown changes. Styles
that carry meaning (a failing route target, an unreachable cluster) are asserted directly.
After an intended change, regenerate with FLUIDOS_SENSORS_UPDATE_SNAPSHOTS=1.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tui import sample
from tui.app import SensorsApp
from tui.capture import screen_text
from tui.data.rows.cells import row_key
from tui.data.store import Store
from tui.screens.confirm import ConfirmScreen
from tui.screens.request_sensor import RequestSensorScreen

SIZE = (160, 44)
SNAPSHOTS = Path(__file__).parent / "snapshots" / "tui"
UPDATE = os.environ.get("FLUIDOS_SENSORS_UPDATE_SNAPSHOTS") == "1"


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no snapshot {path}; create it with FLUIDOS_SENSORS_UPDATE_SNAPSHOTS=1"
    expected = path.read_text()
    diff = "\n".join(
        difflib.unified_diff(
            expected.splitlines(), text.splitlines(), "expected", "shown", lineterm=""
        )
    )
    assert text == expected, f"screen {name} differs from {path}:\n{diff}"


async def settle(pilot: Pilot[None]) -> None:
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def steps_flavors(pilot: Pilot[None]) -> None:
    await pilot.press("1")


async def steps_flavors_filtered(pilot: Pilot[None]) -> None:
    await pilot.press("slash")
    await pilot.press(*"type=humidity latency<=16")
    await pilot.press("enter")


async def steps_flavors_bad_filter(pilot: Pilot[None]) -> None:
    await pilot.press("slash")
    await pilot.press(*"latency<fast")
    await pilot.press("enter")


async def steps_routes(pilot: Pilot[None]) -> None:
    await pilot.press("2", "down")  # the failing target


async def steps_requests(pilot: Pilot[None]) -> None:
    await pilot.press("3")


async def steps_devices(pilot: Pilot[None]) -> None:
    await pilot.press("4")


async def steps_help(pilot: Pilot[None]) -> None:
    await pilot.press("question_mark")


async def steps_request_dialog(pilot: Pilot[None]) -> None:
    await pilot.press("1", "n")  # the first flavor: humidity of sensortile-2
    await settle(pilot)
    await pilot.press(*"http://telegraf.consumer-1:8186/telegraf")


async def steps_remove_target_dialog(pilot: Pilot[None]) -> None:
    await pilot.press("2", "down", "x")


SCREENS: dict[str, Callable[[Pilot[None]], Awaitable[None]]] = {
    "flavors": steps_flavors,
    "flavors_filtered": steps_flavors_filtered,
    "flavors_bad_filter": steps_flavors_bad_filter,
    "routes": steps_routes,
    "requests": steps_requests,
    "devices": steps_devices,
    "help": steps_help,
    "request_dialog": steps_request_dialog,
    "remove_target_dialog": steps_remove_target_dialog,
}


class NoWatches:
    """Stands where the watches would be, so the action dialogs open; no test confirms one."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def reconnect(self, cluster: str | None = None) -> None: ...


class ActionsAllowedApp(SensorsApp):
    def __init__(self, store: Store) -> None:
        super().__init__(store, NoWatches())  # type: ignore[arg-type]
        # The tab underline slides; a capture taken while it moves would differ.
        self.animation_level = "none"


@pytest.mark.parametrize("name", list(SCREENS))
async def test_screen_snapshot(name: str) -> None:
    app = ActionsAllowedApp(sample.fill(Store()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await SCREENS[name](pilot)
        await settle(pilot)
        check_snapshot(name, screen_text(app))


async def test_failing_target_and_unreachable_cluster_stand_out() -> None:
    app = SensorsApp(sample.fill(Store()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.main.route_table
        route = sample.route([1.0], 1)
        key = ("provider-1", route["metadata"]["namespace"], route["metadata"]["name"])
        failing, healthy = row_key(key, "lab-influx"), row_key(key, "consumer-1-telegraf")
        assert table.failing_keys() == [failing]
        failing_style = table.component_style("failing")
        assert failing_style.bgcolor is not None
        style = table.cell_style(failing, "target")
        assert style is not None and style.bgcolor == failing_style.bgcolor
        healthy_style = table.cell_style(healthy, "target")
        assert healthy_style is None or healthy_style.bgcolor != failing_style.bgcolor
        assert app.main.query_one("#clusters").has_class("-unreachable")


async def test_dialogs_create_nothing_without_confirmation() -> None:
    app = ActionsAllowedApp(sample.fill(Store()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2", "down", "x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("1", "n")
        await settle(pilot)
        assert isinstance(app.screen, RequestSensorScreen)
        await pilot.press(*"ftp://nowhere", "enter")
        await settle(pilot)
        # A bad endpoint keeps the dialog open and says why.
        assert isinstance(app.screen, RequestSensorScreen)
        assert "http:// or https://" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, RequestSensorScreen)


async def test_sorting_by_a_column_orders_numbers_as_numbers() -> None:
    app = SensorsApp(sample.fill(Store()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.main.flavor_table
        table.sort_by("latency")
        latencies = [table.cell_texts(k)["latency"] for k in table.shown_keys()]
        assert latencies == ["8 ms", "15 ms", "15 ms", "15 ms", "15 ms", "20 ms"]
        await pilot.press("S")
        await settle(pilot)
        assert table.cell_texts(table.shown_keys()[0])["latency"] == "20 ms"


async def test_command_palette_offers_every_action_and_each_cluster() -> None:
    app = ActionsAllowedApp(sample.fill(Store()))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {
            "Show flavors",
            "Show routes",
            "Show requests",
            "Show devices",
            "Filter flavors",
            "Request sensor",
            "Delete request / remove route target",
            "Help",
            "Reconnect provider-1",
            "Reconnect consumer-1",
            "Reconnect provider-2",
        } <= titles
        show_devices = next(
            c for c in app.get_system_commands(app.screen) if c.title == "Show devices"
        )
        show_devices.callback()
        await settle(pilot)
        assert app.main.active_tab == "devices"

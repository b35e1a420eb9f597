"""One vocabulary for filters (issue 20.3): `request`, `flavors list` and the TUI spell every
filter the same way, from one definition; the old `flavors list` spellings still work, hidden."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from fluidos_sensors.filter_cli import with_filter_options
from fluidos_sensors.filters import (
    FILTER_NAMES,
    FILTER_WORDS,
    LEGACY_OPTIONS,
    NO_FILTERS,
    FilterOptions,
    SensorFilter,
    filter_options,
)
from fluidos_sensors_cli import app
from tui.data.filter_text import filter_name, parse_flavor_query

COMMANDS = (["request"], ["flavors", "list"])
NEW = [option for option, _, _ in filter_options()]


def help_options(command: list[str]) -> set[str]:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", result.output))


def test_every_filter_is_spelled_the_same_in_both_commands_help() -> None:
    shown = {" ".join(command): help_options(command) for command in COMMANDS}
    for command, options in shown.items():
        assert set(NEW) <= options, (command, set(NEW) - options)
        assert not set(LEGACY_OPTIONS) & options, command  # old spellings are hidden
    # Beyond the filters, no option of one command reads like a filter of the other.
    request, flavors = shown.values()
    bounds = re.compile(r"--(min|max)-|-(min|max)$")
    assert {o for o in request if bounds.search(o)} == {o for o in flavors if bounds.search(o)}


def test_the_words_cover_every_rear_filter_once() -> None:
    assert sorted(item.name for item in FILTER_WORDS) == sorted(FILTER_NAMES)
    assert len({item.word for item in FILTER_WORDS}) == len(FILTER_WORDS)
    assert "--max-latency" in NEW and "--min-rate" in NEW and "--max-accuracy" in NEW


@pytest.mark.parametrize("item", FILTER_WORDS, ids=lambda item: item.word)
def test_the_tui_takes_the_same_words(item: object) -> None:
    assert filter_name(item.word) == item.name  # type: ignore[attr-defined]


def test_a_cli_filter_reads_the_same_in_the_tui() -> None:
    cli = FilterOptions(
        (
            ("--type", "sensor_type", "match", "humidity"),
            ("--max-latency", "latency", "max", "16"),
            ("--min-rate", "sampling_rate", "min", "10"),
            ("--max-observed-latency", "observed_latency", "max", "50"),
        )
    ).sensor_filter()
    typed = "type=humidity latency<=16 rate>=10 observed-latency<=50"
    assert parse_flavor_query(typed).sensor_filter == cli


# A command with the shared options, to see what the options hand over.
probe = typer.Typer()
seen: list[FilterOptions] = []


@probe.command()
@with_filter_options
def show(name: str = "x", filters: FilterOptions = NO_FILTERS) -> None:
    seen.append(filters)


def given(*args: str) -> SensorFilter:
    seen.clear()
    result = CliRunner().invoke(probe, list(args))
    assert result.exit_code == 0, result.output
    return seen[0].sensor_filter()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("--latency-max", "--max-latency", SensorFilter.from_options(latency_max=16)),
        ("--sampling-rate-min", "--min-rate", SensorFilter.from_options(sampling_rate_min=16)),
        ("--accuracy-max", "--max-accuracy", SensorFilter.from_options(accuracy_max=16)),
    ],
)
def test_old_spellings_still_work(old: str, new: str, expected: SensorFilter) -> None:
    assert given(old, "16") == given(new, "16") == expected
    assert given(old, "16", new, "16") == expected  # both, agreeing: fine


def test_repeated_match_options_all_hold() -> None:
    wanted = given("--type", "temperature", "--type", "humidity", "--node", "edge-1")
    assert wanted == SensorFilter.from_options(
        sensor_type=["temperature", "humidity"], node="edge-1"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_both_commands_refuse_a_bad_filter_naming_the_option(command: list[str]) -> None:
    extra = ["--endpoint", "http://sink/x"] if command == ["request"] else []
    for option in ("--max-latency", "--latency-max"):
        result = CliRunner().invoke(
            app, [*command, *extra, option, "fast", "--kubeconfig", "/nonexistent"]
        )
        assert result.exit_code == 2, result.output
        assert f'"{option}" must be a number of ms' in result.output
    result = CliRunner().invoke(
        app,
        [*command, *extra, "--latency-max", "10", "--max-latency", "12", "--kubeconfig", "/x"],
    )
    assert result.exit_code == 2
    assert '"--max-latency" and "--latency-max" give different values' in result.output

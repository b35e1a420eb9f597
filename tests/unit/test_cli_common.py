"""What the commands of every part share (`fluidos_sensors.cli`): `fail` and the listings."""

from __future__ import annotations

import json

import pytest
import typer
import yaml

from fluidos_sensors.cli import Output, echo_listing, fail, parse_listen, shape_option, table
from fluidos_sensors.shaping import Shaping

ROWS = [{"NAME": "humidity-1", "RATE": "1 Hz"}, {"NAME": "t", "RATE": "10 Hz"}]
OBJECTS = [{"metadata": {"name": "humidity-1"}}, {"metadata": {"name": "t"}}]


def test_a_table_aligns_its_columns_under_the_first_rows_keys() -> None:
    assert table(ROWS).splitlines() == [
        "NAME        RATE",
        "humidity-1  1 Hz",
        "t           10 Hz",
    ]


def test_a_table_has_no_trailing_blanks() -> None:
    rows = [{"A": "x", "LAST": ""}, {"A": "longer", "LAST": ""}]
    assert all(line == line.rstrip() for line in table(rows).splitlines())


@pytest.mark.parametrize(
    ("output", "parse"),
    [(Output.JSON, json.loads), (Output.YAML, yaml.safe_load)],
)
def test_json_and_yaml_print_the_objects_not_the_rows(
    output: Output, parse: object, capsys: pytest.CaptureFixture[str]
) -> None:
    echo_listing(output, OBJECTS, ROWS, empty="none")
    assert callable(parse)
    assert parse(capsys.readouterr().out) == OBJECTS


def test_the_table_prints_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    echo_listing(Output.TABLE, OBJECTS, ROWS, empty="none")
    assert capsys.readouterr().out == table(ROWS) + "\n"


def test_an_empty_table_says_so_and_empty_json_is_a_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    echo_listing(Output.TABLE, [], [], empty="no routes")
    assert capsys.readouterr().out == "no routes\n"
    echo_listing(Output.JSON, [], [], empty="no routes")
    assert json.loads(capsys.readouterr().out) == []


def test_fail_says_why_on_stderr_and_gives_the_exit(capsys: pytest.CaptureFixture[str]) -> None:
    exit_ = fail("--ip is required")
    assert isinstance(exit_, typer.Exit)
    assert exit_.exit_code == 2
    assert fail("gone", 1).exit_code == 1
    captured = capsys.readouterr()
    assert captured.err == "error: --ip is required\nerror: gone\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.0.0.0:8443", ("0.0.0.0", 8443)), ("[::1]:9100", ("::1", 9100)), ("h:1", ("h", 1))],
)
def test_listen_addresses_parse(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("8443", "must be HOST:PORT"),
        (":8443", "must be HOST:PORT"),
        ("host:http", "port must be a number"),
        ("host:0", "port must be 1..65535"),
        ("host:65536", "port must be 1..65535"),
    ],
)
def test_a_bad_listen_address_names_the_option(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"^--metrics-listen.*{why}"):
        parse_listen(value, "--metrics-listen")


def test_shape_options() -> None:
    assert shape_option(None, None, None) is None
    assert shape_option("max,mean", "1s", None) == Shaping(("mean", "max"), 1000)
    assert shape_option(None, None, 5) == Shaping(every=5)


@pytest.mark.parametrize(
    ("aggregate", "window", "every", "why"),
    [
        ("mean", None, None, "--aggregate and --window go together"),
        (None, "1s", None, "--aggregate and --window go together"),
        ("mean", "1s", 5, "--every goes without"),
        ("median", "1s", None, "--aggregate must be"),
        ("mean", "soon", None, "--window must be"),
        ("mean", "5ms", None, "--window must be an integer 10"),
        (None, None, 1, "--every must be an integer 2"),
    ],
)
def test_bad_shape_options_name_the_option(
    aggregate: str | None,
    window: str | None,
    every: int | None,
    why: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit):
        shape_option(aggregate, window, every)
    assert why in capsys.readouterr().err

"""The CLI's help shows its examples as written (rich markup must not eat brackets)."""

from __future__ import annotations

from typer.testing import CliRunner

from fluidos_sensors_cli import app


def test_flavors_list_query_example_survives_markup() -> None:
    result = CliRunner().invoke(app, ["flavors", "list", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "'filter[latency][range][max]=16'" in result.output

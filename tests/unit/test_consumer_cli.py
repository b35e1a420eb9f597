"""The consumer CLI refuses bad options before it talks to any cluster."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fluidos_sensors_cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "ftp://sink/x"], "--endpoint must be an http:// or https:// URL"),
        (["--endpoint", "http://u:hunter2@sink/x"], "--endpoint must not carry credentials"),
        (["--endpoint", "http://sink/x", "--max-latency", "fast"], '"--max-latency"'),
        (
            ["--endpoint", "http://sink/x", "--min-latency", "20", "--max-latency", "10"],
            "min 20 is greater than max 10",
        ),
        (["--endpoint", "http://sink/x", "--auth-type", "basic"], "go together"),
        (["--endpoint", "http://sink/x", "--rate", "fast"], "--rate"),
    ],
)
def test_bad_request_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["request", *args, "--kubeconfig", "/nonexistent"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "hunter2" not in result.output  # a password in the URL is not echoed


def test_operator_needs_its_identity_and_complete_influx_options() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["consumer", "run", "--kubeconfig", "/nonexistent"])
    assert result.exit_code == 2 and "--node-id and --ip are required" in result.output
    result = runner.invoke(
        app,
        ["consumer", "run", "--node-id", "c", "--ip", "1.2.3.4", "--influx-url", "http://i:8086"],
    )
    assert result.exit_code == 2 and "go together" in result.output

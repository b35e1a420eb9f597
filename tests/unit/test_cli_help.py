"""The CLI as a whole: its help shows its examples as written (rich markup must not eat
brackets), and `tui --testbed` gets the running testbed's clusters from the composition root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fluidos_sensors_cli
from fluidos_sensors_cli import app


def test_flavors_list_query_example_survives_markup() -> None:
    result = CliRunner().invoke(app, ["flavors", "list", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "'filter[latency][range][max]=16'" in result.output


def test_tui_testbed_without_a_running_testbed_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["tui", "--testbed"], env={"FLUIDOS_SENSORS_STATE": str(tmp_path)}
    )
    assert result.exit_code == 2, result.output
    assert f"no running testbed in {tmp_path}" in result.output


def test_tui_testbed_clusters_are_the_testbeds_kubeconfigs_providers_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clusters = {
        name: {
            "role": role,
            "server": "https://127.0.0.1:1",
            "kubeconfig": f"/k/{name}",
            "nodes": [],
        }
        for name, role in (("consumer-1", "consumer"), ("provider-1", "provider"))
    }
    status = {"phase": "ready", "pid": os.getpid(), "clusters": clusters}
    (tmp_path / "status.json").write_text(json.dumps(status))
    monkeypatch.setenv("FLUIDOS_SENSORS_STATE", str(tmp_path))
    found = fluidos_sensors_cli._testbed_clusters()
    assert [(c.name, c.kubeconfig, c.role) for c in found] == [
        ("provider-1", Path("/k/provider-1"), "provider"),
        ("consumer-1", Path("/k/consumer-1"), "consumer"),
    ]

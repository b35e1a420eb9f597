"""The core's small shared helpers: atomic JSON files and reads where 404 means absent."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.files import write_json_atomic
from fluidos_sensors.kube import get_or_none


def test_write_json_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text("old")
    write_json_atomic(path, {"a": [1, 2]}, indent=2)
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert path.read_text() == json.dumps({"a": [1, 2]}, indent=2)
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_write_json_atomic_creates_with_the_mode_given(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    write_json_atomic(path, {"password": "pw"}, mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_body_that_is_no_json_leaves_the_old_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text("{}")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"when": object()})
    assert path.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def _answering(status: int | None) -> Any:
    def read(*args: Any, **kwargs: Any) -> Any:
        if status is None:
            return {"args": args, "kwargs": kwargs}
        raise ApiException(status=status, reason="no")

    return read


def test_get_or_none_passes_arguments_and_maps_404_to_none() -> None:
    assert get_or_none(_answering(None), "ns", "name", _request_timeout=3) == {
        "args": ("ns", "name"),
        "kwargs": {"_request_timeout": 3},
    }
    assert get_or_none(_answering(404), "ns", "name") is None
    for status in (403, 409, 500):
        with pytest.raises(ApiException) as raised:
            get_or_none(_answering(status), "ns", "name")
        assert raised.value.status == status

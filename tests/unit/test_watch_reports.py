"""The shared list + watch's pure parts: what a failure means, short reasons, the sinks.
(The loop itself runs against a real API server: tests/integration/test_watch.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import urllib3

from fluidos_sensors.watch import (
    ApiError,
    Callbacks,
    Report,
    Snapshot,
    Snapshots,
    State,
    connection_problem,
    diagnose,
    status_message,
)


def refused() -> urllib3.exceptions.MaxRetryError:
    cause = urllib3.exceptions.NewConnectionError(
        None,  # type: ignore[arg-type]
        "Failed to establish a new connection: [Errno 111] Connection refused",
    )
    return urllib3.exceptions.MaxRetryError(None, "/apis", cause)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (ApiError(403, 'flavors is forbidden: User "tui"'), State.FORBIDDEN),
        (ApiError(404, "the server could not find the requested resource"), State.ABSENT),
        (ApiError(500, "etcdserver: request timed out"), State.FAILING),
        (refused(), State.UNREACHABLE),
        (urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"), State.UNREACHABLE),
        (ConnectionResetError(104, "Connection reset by peer"), State.UNREACHABLE),
        (ValueError("Expecting value: line 1 column 1"), State.FAILING),
    ],
)
def test_a_failure_is_told_apart_by_what_it_means(failure: Exception, expected: State) -> None:
    assert diagnose(failure)[0] is expected


def test_reasons_are_short_and_name_the_cause() -> None:
    assert diagnose(ApiError(403, "forbidden here")) == (State.FORBIDDEN, "forbidden here")
    assert diagnose(ApiError(500, "boom")) == (State.FAILING, "500: boom")
    assert diagnose(refused()) == (State.UNREACHABLE, "connection refused")
    assert connection_problem(ConnectionResetError(104, "Connection reset by peer")) == (
        "connection reset"
    )
    broken = urllib3.exceptions.ProtocolError("Connection broken: InvalidChunkLength")
    assert connection_problem(broken) == "connection broken"
    odd = connection_problem(OSError("no route\n" + "x" * 500))
    assert odd == "OSError: no route"
    assert len(connection_problem(OSError("y" * 500))) == 160


def test_the_message_of_a_status_body_else_the_http_reason() -> None:
    body = '{"kind": "Status", "message": "flavors is forbidden", "code": 403}'
    assert status_message(body, "Forbidden") == "flavors is forbidden"
    assert status_message("<html>bad gateway</html>", "Bad Gateway") == "Bad Gateway"
    assert status_message(None, "Not Found") == "Not Found"
    assert status_message('"just a string"', None) == ""


def route(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "fluidos"}, "spec": spec or {}}


def test_snapshots_hand_over_every_object_by_namespace_and_name_after_each_change() -> None:
    seen: list[Snapshot] = []
    sink = Snapshots(seen.append)
    sink.replace([route("a"), route("b")])
    sink.upsert(route("a", {"node": "edge-1"}))
    sink.delete(route("b"))
    sink.delete(route("never-there"))
    sink.report(Report(State.UNREACHABLE, "connection refused", 1.0))  # no snapshot for that
    assert [sorted(s) for s in seen] == [
        ["fluidos/a", "fluidos/b"],
        ["fluidos/a", "fluidos/b"],
        ["fluidos/a"],
        ["fluidos/a"],
    ]
    assert seen[0]["fluidos/a"]["spec"] == {}  # a copy: later changes do not reach it
    assert seen[1]["fluidos/a"]["spec"] == {"node": "edge-1"}
    sink.replace([{"metadata": {"name": "cluster-scoped"}}])
    assert list(seen[-1]) == ["cluster-scoped"]


def test_callbacks_are_a_sink_whose_reports_may_go_unheeded() -> None:
    got: list[object] = []
    sink = Callbacks(got.append, got.append, lambda obj: got.append(("gone", obj)))
    sink.replace([route("a")])
    sink.upsert(route("b"))
    sink.delete(route("c"))
    sink.report(Report(State.FAILING, "500: boom", 2.0))
    assert got == [[route("a")], route("b"), ("gone", route("c"))]
    reports: list[Report] = []
    Callbacks(got.append, got.append, got.append, reports.append).report(Report(State.SYNCED))
    assert reports == [Report(State.SYNCED)]

"""The testbed's CloudEvents receiver stores what line protocol delivery would have stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_router_encoding import reading  # the same reading the encoder's tests use

from fluidos_sensors.endpoints import DeliveryFormat
from router_manager.encoding import LineProtocolEncoder, batch_body, json_payload
from testbed.cloudevents_sink import EventError, event_point, read_events, source_tags


def parsed(line: bytes | str) -> tuple[str, dict[str, str], dict[str, str], str]:
    """(measurement, tags, fields, time) of one line (no escaped separators in these)."""
    text = line.decode() if isinstance(line, bytes) else line
    head, fields, time = text.split(" ")
    measurement, *tags = head.split(",")
    return (
        measurement,
        dict(t.split("=", 1) for t in tags),
        dict(f.split("=", 1) for f in fields.split(",")),
        time,
    )


@pytest.mark.parametrize(
    "format_name", [DeliveryFormat.CLOUDEVENTS, DeliveryFormat.CLOUDEVENTS_BATCH]
)
def test_each_event_is_the_point_line_protocol_delivery_writes(format_name: str) -> None:
    readings = [
        reading(),
        reading(
            sensor="temperature",
            quantity="temperature",
            unit="°C",
            values={"value": 21.5},
            seq=7,
            device_time=None,
        ),
    ]
    items = [json_payload(r) for r in readings]
    if format_name == DeliveryFormat.CLOUDEVENTS:
        sent = [batch_body(format_name, [item]) for item in items]
    else:
        sent = [batch_body(format_name, items)]
    events = [e for body, kind in sent for e in read_events(kind, body)]
    lines = [event_point(e).to_line_protocol() for e in events]
    line_protocol = LineProtocolEncoder()
    expected = [line_protocol.encode(r) for r in readings]
    for got, want in zip(lines, expected, strict=True):
        g, w = parsed(got), parsed(want)
        assert g[:2] == w[:2]  # measurement and tags
        assert {k: float(v.rstrip("i")) for k, v in g[2].items()} == pytest.approx(
            {k: float(v.rstrip("i")) for k, v in w[2].items()}
        )
        assert abs(int(g[3]) - int(w[3])) < 1000  # the same µs (the event's time is in µs)


def test_what_cannot_be_stored_is_named() -> None:
    body, kind = batch_body(DeliveryFormat.CLOUDEVENTS, [json_payload(reading())])
    with pytest.raises(EventError, match="Content-Type"):
        read_events("application/json", body)
    with pytest.raises(EventError, match="JSON array"):
        read_events("application/cloudevents-batch+json", b'{"a": 1}')
    with pytest.raises(EventError, match="event 0"):
        read_events("application/cloudevents+json", b'{"specversion": "1.0"}')
    event = json.loads(body)
    for change, words in (
        ({"type": "com.example.other"}, "type must start"),
        ({"source": "/providers/p"}, "source must name the device"),
        ({"data": {"values": {"x": "high"}}}, "holds no number"),
    ):
        (one,) = read_events(kind, json.dumps(event | change).encode())
        with pytest.raises(EventError, match=words):
            event_point(one)
    assert source_tags("/providers/p%201/nodes/n/namespaces/ns/devices/d") == {
        "provider": "p 1",
        "node": "n",
        "device": "d",
    }


class Writer:
    """Stands in for influxdb-client's write API: keeps the points, or fails."""

    def __init__(self) -> None:
        self.points: list[str] = []
        self.down = False

    def write_api(self, **_: Any) -> Writer:
        return self

    def write(self, *, bucket: str, record: list[Any]) -> None:
        if self.down:
            raise ConnectionError("InfluxDB is down")
        assert bucket == "telegraf/autogen"
        self.points += [point.to_line_protocol() for point in record]


def test_the_receiver_over_http_authenticates_stores_and_says_why() -> None:
    from fastapi.testclient import TestClient

    from testbed.cloudevents_sink import PATH, make_app

    writer = Writer()
    app = make_app("fluidos", "s3cret", writer, "telegraf/autogen")  # type: ignore[arg-type]
    body, kind = batch_body(DeliveryFormat.CLOUDEVENTS_BATCH, [json_payload(reading())] * 2)
    with TestClient(app) as http:
        post = lambda **kw: http.post(PATH, content=body, headers={"Content-Type": kind}, **kw)  # noqa: E731
        assert post().status_code == 401
        assert post(auth=("fluidos", "wrong")).status_code == 401
        assert post(auth=("fluidos", "s3cret")).status_code == 204
        assert len(writer.points) == 2 and writer.points[0].startswith("acceleration,")
        odd = http.post(PATH, content=body, auth=("fluidos", "s3cret"))
        assert odd.status_code == 400 and "Content-Type" in odd.json()["detail"]
        writer.down = True
        assert post(auth=("fluidos", "s3cret")).status_code == 503  # the agent sends again

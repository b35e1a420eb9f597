"""Readings as line protocol (identical to influxdb-client's own Point encoding), JSON and
CloudEvents (read back with the CloudEvents SDK's parser)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given
from hypothesis import strategies as st
from influxdb_client import Point

from fluidos_sensors.reading import Reading
from router_manager.encoding import (
    CLOUDEVENT_CONTENT_TYPE,
    CloudEventEncoder,
    LineProtocolEncoder,
    batch_body,
    decode_json_batch,
    readings_per_request,
    stored_encoding,
)

TEXT = st.text(min_size=1, max_size=12)
NUMBER = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-(10**6), 10**6)


def reading(**changes: Any) -> Reading:
    base: dict[str, Any] = dict(
        namespace="default",
        device="stwin-1",
        sensor="acceleration",
        quantity="acceleration",
        unit="mg",
        values={"x": -3.0, "y": 12.0, "z": 1001.5},
        node="provider-1-edge",
        seq=41,
        received_at=1767225600.123456,
        device_time=12.34,
        provider="provider-1",
    )
    base.update(changes)
    return Reading(**base)


def reference(r: Reading) -> str:
    point = Point(r.quantity).tag("device", r.device).tag("sensor", r.sensor)
    if r.node:
        point.tag("node", r.node)
    if r.provider:
        point.tag("provider", r.provider)
    if not r.units and r.unit:
        point.tag("unit", r.unit)
    for name, value in r.values.items():
        if value is not None:
            point.field(name, float(value))
    if r.device_time is not None:
        point.field("device_time", float(r.device_time))
    point.field("seq", r.seq)
    return point.time(round(r.received_at * 1e6) * 1000).to_line_protocol()


def test_a_reading_as_line_protocol() -> None:
    line = LineProtocolEncoder().encode(reading()).decode()
    assert line == (
        "acceleration,device=stwin-1,node=provider-1-edge,provider=provider-1,"
        "sensor=acceleration,unit=mg device_time=12.34,seq=41i,x=-3,y=12,z=1001.5 "
        "1767225600123456000"
    )


def test_unknown_values_and_per_field_units_are_left_out() -> None:
    r = reading(
        sensor="battery",
        quantity="battery",
        unit="%",
        units={"level": "%", "voltage": "mV", "current": "mA"},
        values={"level": 87.0, "voltage": 3900.0, "current": None},
        device_time=None,
    )
    line = LineProtocolEncoder().encode(r).decode()
    assert "current" not in line and "unit=" not in line and "device_time" not in line
    assert line == reference(r)


@given(
    quantity=TEXT,
    device=TEXT,
    sensor=TEXT,
    node=st.text(max_size=8),
    provider=st.text(max_size=8),
    unit=st.text(max_size=4),
    values=st.dictionaries(TEXT, NUMBER | st.none(), min_size=1, max_size=4).filter(
        lambda v: not {"seq", "device_time"} & set(v)
    ),
    seq=st.integers(0, 2**40),
    received_at=st.floats(0, 4e9),
    device_time=st.none() | st.floats(0, 1e6),
)
def test_same_bytes_as_influxdb_client(**fields) -> None:
    r = reading(**fields)
    encoder = LineProtocolEncoder()
    assert encoder.encode(r).decode() == reference(r)
    assert encoder.encode(r).decode() == reference(r)  # again, from the caches


def test_batches() -> None:
    body, kind = batch_body("influx", [b"a 1", b"b 2"])
    assert (body, kind) == (b"a 1\nb 2\n", "text/plain; charset=utf-8")
    r = reading()
    body, kind = batch_body("json", [r.encode(), r.encode()])
    assert kind == "application/json"
    assert decode_json_batch(body) == [r, r]
    assert json.loads(body)[0]["seq"] == 41


# ---------------------------------------------------------------- CloudEvents


def parse_event(body: bytes, content_type: str = CLOUDEVENT_CONTENT_TYPE) -> CloudEvent:
    """As a CloudEvents consumer reads a structured-mode request: the SDK's own parser."""
    event = from_http(HTTPMessage({"content-type": content_type}, body), JSONFormat())
    assert isinstance(event, CloudEvent)
    return event


def test_a_reading_as_a_cloudevent() -> None:
    r = reading()
    body, kind = batch_body("cloudevents", [r.encode()])
    assert kind == "application/cloudevents+json"
    event = parse_event(body)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == "acceleration:41:1767225600123456"
    assert event.get_source() == (
        "/providers/provider-1/nodes/provider-1-edge/namespaces/default/devices/stwin-1"
    )
    assert event.get_type() == "eu.fluidos.sensors.acceleration"
    assert event.get_subject() == "acceleration"
    assert event.get_time() == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == {
        "values": {"x": -3.0, "y": 12.0, "z": 1001.5},
        "unit": "mg",
        "seq": 41,
        "deviceTime": 12.34,
    }


def test_a_cloudevents_id_is_stable_across_retries_and_new_after_a_mapper_restart() -> None:
    stored = reading().encode()
    first, _ = batch_body("cloudevents", [stored])
    again, _ = batch_body("cloudevents", [stored], CloudEventEncoder())
    assert first == again  # a retry sends the very same event
    ids = {
        parse_event(batch_body("cloudevents", [r.encode()])[0]).get_id()
        for r in (reading(), reading(seq=42), reading(received_at=1767225700.5))
    }
    assert len(ids) == 3  # the next reading, and seq 41 again after a restart, differ


def test_cloudevents_leave_out_what_the_reading_does_not_know() -> None:
    r = reading(
        provider="",
        device_time=None,
        values={"level": 80.0, "voltage": None},
        units={"level": "%", "voltage": "V"},
        device="a/b c",
    )
    event = parse_event(batch_body("cloudevents", [r.encode()])[0])
    assert event.get_source() == "/nodes/provider-1-edge/namespaces/default/devices/a%2Fb%20c"
    assert event.get_data() == {
        "values": {"level": 80.0, "voltage": None},
        "unit": "mg",
        "units": {"level": "%", "voltage": "V"},
        "seq": 41,
    }


def test_a_cloudevents_batch_is_an_array_of_structured_events() -> None:
    readings = [reading(seq=n) for n in range(3)]
    body, kind = batch_body("cloudevents-batch", [r.encode() for r in readings])
    assert kind == "application/cloudevents-batch+json"
    events = [parse_event(json.dumps(item).encode()) for item in json.loads(body)]
    datas = [event.get_data() for event in events]
    assert [data["seq"] for data in datas if isinstance(data, dict)] == [0, 1, 2]


def test_structured_cloudevents_carry_one_reading_per_request() -> None:
    assert readings_per_request("cloudevents", 500) == 1
    assert readings_per_request("cloudevents-batch", 500) == 500
    assert readings_per_request("influx", 500) == 500
    with pytest.raises(ValueError, match="one reading"):
        batch_body("cloudevents", [reading().encode()] * 2)
    assert stored_encoding("influx") == "line"
    assert {stored_encoding(f) for f in ("json", "cloudevents", "cloudevents-batch")} == {"json"}


@given(
    device=TEXT,
    sensor=TEXT,
    quantity=TEXT,
    unit=st.text(max_size=8),
    values=st.dictionaries(TEXT, st.none() | NUMBER, min_size=1, max_size=4),
    seq=st.integers(0, 2**63 - 1),
    received_at=st.floats(0, 4e9),
    device_time=st.none() | st.floats(0, 1e6),
)
def test_every_reading_is_an_event_the_sdk_reads_back(**fields: Any) -> None:
    r = Reading.decode(reading(**fields).encode())  # as the agent stores it
    event = parse_event(batch_body("cloudevents", [r.encode()])[0])
    assert event.get_subject() == r.sensor
    assert event.get_type() == "eu.fluidos.sensors." + r.quantity
    assert event.get_source().endswith("/devices/" + quote(r.device, safe=""))
    micros = round(r.received_at * 1e6)
    assert event.get_id() == f"{r.sensor}:{r.seq}:{micros}"
    time = event.get_time()
    assert time is not None and round(time.timestamp() * 1e6) == micros
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["values"] == dict(r.values) and data["seq"] == r.seq and data["unit"] == r.unit

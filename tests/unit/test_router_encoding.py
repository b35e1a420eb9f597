"""Readings as line protocol: identical to influxdb-client's own Point encoding."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client import Point

from fluidos_sensors.reading import Reading
from router_manager.encoding import LineProtocolEncoder, batch_body, decode_json_batch

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

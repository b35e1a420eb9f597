"""The reading format: one definition, round trip, and errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluidos_sensors.limits import READING_TIME_AHEAD_MAX, READING_TIME_MIN, reading_time_problem
from fluidos_sensors.reading import SCHEMA_VERSION, Reading, ReadingError, refusal
from fluidos_sensors.topics import broker_topic, split_broker_topic


def reading(**changes: object) -> Reading:
    fields: dict[str, object] = {
        "namespace": "default",
        "device": "stwin-1",
        "sensor": "acceleration",
        "quantity": "acceleration",
        "unit": "mg",
        "values": {"x": -3.0, "y": 12.0, "z": 1001.0},
        "node": "provider-1-edge",
        "seq": 41,
        "received_at": 1767225600.1234567,
        "device_time": 12.345,
    }
    fields.update(changes)
    return Reading(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field() -> None:
    original = reading(provider="provider-1", units={"level": "%", "voltage": "mV"})
    decoded = Reading.decode(original.encode())
    assert decoded.device == "stwin-1" and decoded.sensor == "acceleration"
    assert dict(decoded.values) == {"x": -3.0, "y": 12.0, "z": 1001.0}
    assert decoded.seq == 41 and decoded.provider == "provider-1"
    assert decoded.received_at == pytest.approx(1767225600.123457, abs=1e-6)
    assert decoded.device_time == pytest.approx(12.345)
    assert decoded.unit_of("voltage") == "mV" and decoded.unit_of("x") == "mg"


def test_payload_is_compact_self_describing_json() -> None:
    payload = reading().encode()
    assert b" " not in payload
    body = json.loads(payload)
    assert body["v"] == SCHEMA_VERSION
    assert {
        "ns",
        "device",
        "sensor",
        "quantity",
        "unit",
        "values",
        "node",
        "seq",
        "deviceTime",
        "receivedAt",
    } <= set(body)
    assert "provider" not in body and "units" not in body  # optional keys only when set
    assert len(payload) < 260


def test_topic_uses_the_shared_scheme() -> None:
    assert reading().topic == "default/fluidos-sensors/stwin-1/acceleration"


def test_unknown_battery_current_is_null() -> None:
    decoded = Reading.decode(reading(values={"level": 87.0, "current": None}).encode())
    assert decoded.values["current"] is None


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    body = json.loads(reading().encode())
    body["rssi"] = -60
    assert Reading.decode(json.dumps(body)).seq == 41


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"v": 99}, "newer"),
        ({"v": "1"}, '"v"'),
        ({"seq": -1}, '"seq"'),
        ({"seq": 1.5}, '"seq"'),
        ({"device": ""}, '"device"'),
        ({"values": {}}, '"values"'),
        ({"values": {"x": "1"}}, '"values.x"'),
        ({"receivedAt": "now"}, '"receivedAt"'),
        ({"deviceTime": "soon"}, '"deviceTime"'),
        ({"units": {"x": 1}}, '"units"'),
    ],
)
def test_bad_payloads_name_the_field(change: dict[str, object], field: str) -> None:
    body = json.loads(reading().encode())
    body.update(change)
    with pytest.raises(ReadingError, match=field):
        Reading.decode(json.dumps(body))


def test_not_json_is_a_reading_error() -> None:
    with pytest.raises(ReadingError):
        Reading.decode(b"\xff not json")
    with pytest.raises(ReadingError):
        Reading.decode(b"[1, 2]")


@pytest.mark.parametrize(
    "changes",
    [
        {"values": {"value": float("nan")}},
        {"values": {"x": 1.0, "y": float("-inf")}},
        {"received_at": float("inf")},
        {"device_time": float("nan")},
    ],
)
def test_nan_or_infinity_cannot_be_encoded(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        reading(**changes).encode()


_text = st.text(min_size=1, max_size=12)
_value = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
)


@given(
    device=_text,
    unit=st.text(max_size=4),
    values=st.dictionaries(_text, _value, min_size=1, max_size=4),
    seq=st.integers(0, 2**53),
    received_at=st.floats(0, 4e9),
    device_time=st.none() | st.floats(-1e12, 1e12),
    units=st.none() | st.dictionaries(_text, _text, max_size=3),
)
def test_the_payload_is_the_json_of_its_fields(**fields: object) -> None:
    """msgspec writes it; it parses to what the standard library's JSON of the same fields
    parses to (any text, any number a reading may hold; msgspec writes exponents shorter)."""
    r = reading(**fields)
    assert json.loads(r.encode()) == json.loads(json.dumps(r.to_json()))
    assert Reading.decode(r.encode()).values == r.values


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "must be a JSON object"),
        ('{"v": 1, "values": ' + "[" * 100_000 + "]" * 100_000 + "}", '"seq"'),
        ('{"v": ' + "1" * 5001 + "}", '"v" must be a schema version'),
        ('{"v": 1, "seq": ' + "1" * 5001 + "}", '"seq" must be an integer'),
        ('{"v": 1, "seq": ' + str(2**63) + "}", '"seq" must be an integer 0..2**63-1'),
        ('{"v": 1, "seq": 1, "receivedAt": ' + str(10**400) + "}", '"receivedAt"'),
        ('{"v": 1, "seq": 1, "receivedAt": 1e999}', '"receivedAt"'),
        ('{"v": 1, "seq": 1, "receivedAt": NaN}', '"receivedAt"'),
        (b"\xff\xfe\x00{", "not UTF-8"),
        (b'{"v": 1, "device": "\xc3\x28"}', "not UTF-8"),
    ],
    ids=[
        "100k-deep",
        "deep-values",
        "5001-digit-v",
        "5001-digit-seq",
        "seq-past-int64",
        "10**400-time",
        "1e999-time",
        "nan-time",
        "utf16-bom",
        "bad-utf8",
    ],
)
def test_hostile_payload_raises_only_a_short_reading_error(
    payload: str | bytes, message: str
) -> None:
    with pytest.raises(ReadingError) as raised:
        Reading.decode(payload)
    assert message in str(raised.value)
    assert len(str(raised.value)) <= 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"values": {"x": 10**400}}, '"values.x"'),
        ({"values": {"x": [[[[[[1]]]]]]}}, '"values.x"'),
        ({"device": "d" * 1_000}, '"device" is 1000 characters long'),
        ({"deviceTime": 10**400}, '"deviceTime"'),
    ],
)
def test_hostile_fields_name_the_field(change: dict[str, object], field: str) -> None:
    body = reading().to_json()
    body.update(change)
    with pytest.raises(ReadingError) as raised:
        Reading.decode(json.dumps(body))
    assert field in str(raised.value)
    assert len(str(raised.value)) <= 200


def test_payload_that_is_not_text_is_a_reading_error() -> None:
    with pytest.raises(ReadingError, match="not text"):
        Reading.decode(12)  # type: ignore[arg-type]


DEEP_PAYLOADS_SCRIPT = """
from fluidos_sensors.limits import allow_kubernetes_nesting
from fluidos_sensors.reading import Reading, ReadingError

allow_kubernetes_nesting()  # as the edge agent does: it watches its routes
deep = "[" * 300_000 + "]" * 300_000
valid = (
    '{"v":1,"ns":"d","device":"b","sensor":"s","quantity":"q","unit":"u",'
    '"values":{"x":1},"node":"n","seq":1,"receivedAt":1.0'
)
for payload in (deep, '{"v":1,"values":{"x":' + deep + "}}", valid + ',"later":' + deep + "}"):
    try:
        print(type(Reading.decode(payload.encode())).__name__)
    except ReadingError:
        print("ReadingError")
"""


def test_deep_payloads_cannot_overflow_the_stack_of_a_kubernetes_reading_process() -> None:
    """Processes that read Kubernetes objects raise Python's recursion limit, which is what
    bounds msgspec's recursion: a deeply nested reading raised RecursionError there, or
    crashed the process (SIGSEGV, in a CI run). Its own process, so that a crash fails this
    test instead of ending the run."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DEEP_PAYLOADS_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Too deep to be a reading; an unknown key however deep is ignored, as any unknown key.
    assert result.stdout.split() == ["ReadingError", "ReadingError", "Reading"]


# ---------------------------------------------------------------------------------------------
# What the edge agent refuses of a well-formed reading (`refusal`), and the time window.

TOPIC = ("default", "stwin-1", "acceleration")
NOW = 1_767_225_600.0  # 2026-01-01


def test_a_genuine_reading_on_its_own_topic_is_admitted() -> None:
    assert refusal(reading(), TOPIC, NOW) is None
    assert refusal(reading(provider="p", units={"level": "%"}), TOPIC, NOW) is None
    # Invisible but not control characters are not this check's business.
    assert refusal(reading(quantity="temp\u00a0", unit="°C"), TOPIC, NOW) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"device": "stwin-2"}, '"device" is "stwin-2", its topic says "stwin-1"'),
        ({"sensor": "pressure"}, '"sensor" is "pressure"'),
        ({"namespace": "other"}, '"ns" is "other"'),
    ],
)
def test_a_reading_naming_another_device_or_sensor_than_its_topic_is_refused(
    change: dict[str, str], field: str
) -> None:
    problem = refusal(reading(**change), TOPIC, NOW)
    assert problem is not None and problem.startswith(field)


def test_a_reading_on_a_topic_of_another_scheme_is_refused() -> None:
    assert "its topic is not" in (refusal(reading(), None, NOW) or "")


@pytest.mark.parametrize(
    ("received_at", "why"),
    [
        (-1.0, "before 2000-01-01"),
        (0.0, "before 2000-01-01"),
        (READING_TIME_MIN - 0.001, "before 2000-01-01"),
        (1e12, "ahead of this node's clock"),
        (NOW + READING_TIME_AHEAD_MAX + 1, "ahead of this node's clock"),
    ],
)
def test_a_reading_outside_the_time_window_is_refused(received_at: float, why: str) -> None:
    problem = refusal(reading(received_at=received_at), TOPIC, NOW)
    assert problem is not None and problem.startswith('"receivedAt" ') and why in problem
    assert reading_time_problem(received_at, NOW) is not None


def test_the_time_window_ends_are_inside() -> None:
    assert reading_time_problem(READING_TIME_MIN, NOW) is None
    assert reading_time_problem(NOW + READING_TIME_AHEAD_MAX, NOW) is None
    assert reading_time_problem(NOW - 10 * 365 * 86400, NOW) is None  # a backlog is fine


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quantity": "acc\neleration"}, '"quantity" holds control characters: "acc\\neleration"'),
        ({"unit": "m\x00g"}, '"unit" holds control characters: "m\\u0000g"'),
        ({"node": "edge\r"}, '"node" holds control characters'),
        ({"provider": "p\x85"}, '"provider" holds control characters: "p\\u0085"'),
        ({"provider": "p\ud800"}, '"provider" holds control characters'),
        ({"values": {"x\n": 1.0}}, 'a key of "values" holds control characters: "x\\n"'),
        ({"units": {"x\t": "mg"}}, 'a key of "units" holds control characters'),
        ({"units": {"x": "m\x1b[31mg"}}, '"units" of "x" holds control characters'),
    ],
)
def test_names_with_control_characters_are_refused_naming_the_field(
    change: dict[str, object], message: str
) -> None:
    problem = refusal(reading(**change), TOPIC, NOW)
    assert problem is not None and problem.startswith(message)
    assert "\n" not in problem and "\x00" not in problem  # never echoed raw


def test_names_of_the_topic_cannot_end_in_a_newline() -> None:
    # "$" would match before a final newline: a device "stwin-1\n" must not make a topic.
    with pytest.raises(ValueError, match="cannot be a topic segment"):
        broker_topic("default", "stwin-1\n", "acceleration")
    assert split_broker_topic("default/fluidos-sensors/stwin-1\n/acceleration") is None
    assert split_broker_topic("default/fluidos-sensors/stwin-1/acceleration") == TOPIC
    assert split_broker_topic("fluidos-sensors/stwin-1/acceleration") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Line protocol reads a line starting with "#" as a comment: Telegraf would answer 204
        # and drop the reading without a word.
        ({"quantity": "#temperature"}, '"quantity" starts with "#"'),
        # An empty field key makes the target refuse the batch (400).
        ({"values": {"": 1.0}}, 'a key of "values" is empty'),
    ],
)
def test_names_line_protocol_cannot_carry_are_refused(
    change: dict[str, object], message: str
) -> None:
    problem = refusal(reading(**change), TOPIC, NOW)
    assert problem is not None and problem.startswith(message)


def test_a_hash_inside_a_quantity_is_admitted() -> None:
    assert refusal(reading(quantity="temp#2"), TOPIC, NOW) is None

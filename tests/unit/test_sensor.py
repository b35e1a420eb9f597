"""The Sensor model and the FLUIDOS edge ``sensors`` annotation codec."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fluidos_sensors.sensor import (
    Accuracy,
    SensorProblem,
    encode_sensors_annotation,
    parse_sensors_annotation,
    sensor_entry,
    sensor_key,
)
from fluidos_sensors.units import QuantityError, parse_consumption, parse_latency_ms, parse_rate_hz

DEVICE = "fluidos/stwin-01"


def entry(**overrides: Any) -> dict[str, Any]:
    """A sensor in the FLUIDOS edge format, numbers as strings the way FLUIDOS writes them."""
    base: dict[str, Any] = {
        "uid": "7d0c1e52-0000-4000-8000-000000000001",
        "node": "",
        "name": "STTS22H",
        "model": "stts22h",
        "manufacturer": "STMicroelectronics",
        "market": "Industrial",
        "type": {"sensorCategory": "Environmental", "sensorType": ["Temperature"]},
        "samplingRate": "1",
        "accuracy": ["0.5"],
        "consumption": "0.002",
        "latency": "100",
        "properties": {
            "unit": {
                "measurement": ["°C"],
                "consumption": "mW",
                "samplingRate": "Hz",
                "latency": "ms",
            }
        },
        "access": {
            "type": "MQTT",
            "source": "eventbus-fluidos",
            "resource": {"topic": "sensors/AABB/0014/stts22h", "node": ""},
        },
    }
    base.update(overrides)
    return base


def annotation(entries: list[Any]) -> str:
    return base64.b64encode(json.dumps(entries).encode()).decode()


def parse(entries: list[Any]) -> tuple[list[Any], list[SensorProblem]]:
    return parse_sensors_annotation(annotation(entries), device=DEVICE)


def messages(problems: list[SensorProblem]) -> list[str]:
    return [str(problem) for problem in problems]


# ---------------------------------------------------------------------------------------
# Whole-annotation decoding


def test_fluidos_format_parses_with_strings_as_numbers() -> None:
    specs, problems = parse([entry()])
    assert problems == []
    [spec] = specs
    assert spec.key == "stts22h"
    assert spec.uid == "7d0c1e52-0000-4000-8000-000000000001"
    assert (spec.name, spec.model, spec.manufacturer, spec.market) == (
        "STTS22H",
        "stts22h",
        "STMicroelectronics",
        "Industrial",
    )
    assert (spec.category, spec.types) == ("Environmental", ("Temperature",))
    assert spec.sampling_rate_hz == 1.0
    assert spec.latency_ms == 100.0
    assert spec.consumption == 0.002
    assert spec.units.consumption == "mW"
    assert spec.units.measurement == ("°C",)
    assert spec.accuracy == (Accuracy(quantity="Temperature", value=0.5, unit="°C"),)
    assert spec.access.type == "MQTT"
    assert spec.access.source == "eventbus-fluidos"
    assert spec.access.resource.topic == "sensors/AABB/0014/stts22h"


def test_json_numbers_are_accepted_too() -> None:
    specs, problems = parse([entry(samplingRate=20, latency=15.5, accuracy=[0.5], consumption=1)])
    assert problems == []
    assert (specs[0].sampling_rate_hz, specs[0].latency_ms, specs[0].consumption) == (20, 15.5, 1)
    assert specs[0].accuracy[0].value == 0.5


def test_invalid_base64_is_one_problem_and_no_sensors() -> None:
    specs, problems = parse_sensors_annotation("not base64 at all!", device=DEVICE)
    assert specs == []
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": '
        "is not valid base64 (expected base64 of a JSON array of sensors)"
    ]


def test_invalid_json_is_one_problem_and_no_sensors() -> None:
    raw = base64.b64encode(b'[{"name": "x",]').decode()
    specs, problems = parse_sensors_annotation(raw, device=DEVICE)
    assert specs == []
    assert len(problems) == 1
    assert str(problems[0]).startswith(f'Device {DEVICE}: annotation "sensors": is not valid JSON')
    assert "line 1 column" in str(problems[0])


def test_non_utf8_payload_is_one_problem() -> None:
    specs, problems = parse_sensors_annotation(
        base64.b64encode(b"\xff\xfe[").decode(), device=DEVICE
    )
    assert specs == []
    assert len(problems) == 1
    assert "UTF-8" in problems[0].message


@pytest.mark.parametrize(
    ("payload", "kind"),
    [({"name": "x"}, "an object"), ("sensors", "a string"), (3, "a number"), (None, "null")],
)
def test_non_array_is_one_problem_and_no_sensors(payload: object, kind: str) -> None:
    raw = base64.b64encode(json.dumps(payload).encode()).decode()
    specs, problems = parse_sensors_annotation(raw, device=DEVICE)
    assert specs == []
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": must be a JSON array of sensors, got {kind}'
    ]


def test_empty_annotation_is_a_problem() -> None:
    specs, problems = parse_sensors_annotation("  ", device=DEVICE)
    assert specs == []
    assert "is empty" in problems[0].message


def test_plain_json_array_and_wrapped_base64_are_accepted() -> None:
    assert parse_sensors_annotation(json.dumps([entry()]), device=DEVICE)[0][0].key == "stts22h"
    encoded = annotation([entry()])
    wrapped = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60))
    specs, problems = parse_sensors_annotation(wrapped, device=DEVICE)
    assert problems == []
    assert len(specs) == 1


def test_empty_array_means_no_sensors_and_no_problems() -> None:
    assert parse([]) == ([], [])


# ---------------------------------------------------------------------------------------
# Bad entries


def test_bad_entry_is_skipped_and_named_while_others_parse() -> None:
    entries = [
        entry(name="STTS22H"),
        entry(name="ILPS22QS", model="ilps22qs"),
        entry(name="HTS221", model="hts221", latency="fast"),
        entry(name="IIS2MDC", model="iis2mdc"),
    ]
    specs, problems = parse(entries)
    assert [spec.key for spec in specs] == ["stts22h", "ilps22qs", "iis2mdc"]
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": entry 2 (HTS221): '
        '"latency" must be a number of ms, got "fast"'
    ]
    assert (problems[0].entry, problems[0].sensor, problems[0].field) == (2, "HTS221", "latency")


def test_missing_required_fields_are_each_reported() -> None:
    specs, problems = parse([{"name": "lonely"}])
    assert specs == []
    assert {p.field for p in problems} == {"model", "manufacturer", "type"}
    assert all(p.message.startswith("is required") for p in problems)
    assert all(p.entry == 0 and p.sensor == "lonely" for p in problems)


def test_type_needs_category_and_at_least_one_sensor_type() -> None:
    _, problems = parse([entry(type={})])
    assert {p.field for p in problems} == {"type.sensorCategory", "type.sensorType"}
    _, problems = parse([entry(type={"sensorCategory": "Environmental", "sensorType": []})])
    assert messages(problems)[0].endswith(
        '"type.sensorType" must name at least one measured quantity'
    )
    _, problems = parse([entry(type="Temperature")])
    assert problems[0].field == "type"


def test_name_or_uid_is_required() -> None:
    bare = entry()
    del bare["name"], bare["uid"]
    specs, problems = parse([bare])
    assert specs == []
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": entry 0: "name" is required (or "uid")'
    ]


def test_uid_alone_is_enough_and_names_the_key() -> None:
    only_uid = entry(uid="ABC-123")
    del only_uid["name"]
    specs, problems = parse([only_uid])
    assert problems == []
    assert (specs[0].key, specs[0].name) == ("abc-123", "ABC-123")


def test_capitalised_keys_of_the_old_format_get_a_hint() -> None:
    old = {"Name": "HTS221", "Model": "hts221", "Manufacturer": "ST", "Type": {}}
    _, problems = parse([old])
    by_field = {p.field: p.message for p in problems}
    assert by_field["model"] == 'is required (keys are case-sensitive; found "Model")'
    assert by_field["manufacturer"] == 'is required (keys are case-sensitive; found "Manufacturer")'


def test_entry_that_is_not_an_object() -> None:
    specs, problems = parse([entry(), "HTS221"])
    assert len(specs) == 1
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": entry 1: must be a JSON object, got a string'
    ]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"model": 221}, "model", "must be a string, got 221"),
        ({"manufacturer": "  "}, "manufacturer", "must not be empty"),
        ({"samplingRate": "0"}, "samplingRate", 'must be greater than zero, got "0"'),
        ({"samplingRate": "quick"}, "samplingRate", 'must be a number of Hz, got "quick"'),
        ({"latency": -3}, "latency", "must be zero or more, got -3"),
        ({"latency": True}, "latency", "must be a number of ms, got true"),
        ({"latency": [15]}, "latency", "must be a number of ms, got [15]"),
        (
            {"latency": "15 parsec"},
            "latency",
            'must be a number of ms, got "15 parsec" (unknown unit "parsec"; use ns, us, ms, s)',
        ),
        ({"accuracy": ["about 1"]}, "accuracy[0]", None),
        ({"accuracy": ["0.1", "0.2"]}, "accuracy", None),
        ({"consumption": "lots"}, "consumption", 'must be a number of mW, got "lots"'),
    ],
)
def test_bad_field_values(overrides: dict[str, Any], field: str, message: str | None) -> None:
    specs, problems = parse([entry(**overrides)])
    assert specs == []
    assert [p.field for p in problems] == [field]
    if message is not None:
        assert problems[0].message == message


def test_unknown_unit_in_properties_is_reported() -> None:
    bad = entry()
    bad["properties"]["unit"]["latency"] = "fortnights"
    _, problems = parse([bad])
    assert [(p.field, p.message) for p in problems] == [
        ("properties.unit.latency", 'must be one of ns, us, ms, s, got "fortnights"')
    ]


def test_measurement_units_must_pair_with_types() -> None:
    bad = entry(type={"sensorCategory": "Environmental", "sensorType": ["Temperature", "Humidity"]})
    bad["accuracy"] = ["0.5", "3.5"]
    _, problems = parse([bad])
    assert [p.field for p in problems] == ["properties.unit.measurement"]
    assert "1 unit(s) for 2 sensor type(s) (Temperature, Humidity)" in problems[0].message


def test_problem_string_without_entry() -> None:
    assert (
        str(SensorProblem("ns/dev", "is broken"))
        == 'Device ns/dev: annotation "sensors": is broken'
    )


# ---------------------------------------------------------------------------------------
# Units


@pytest.mark.parametrize(
    ("value", "default_unit", "expected"),
    [
        ("15", "ms", 15.0),
        ("15.5", "ms", 15.5),
        (15, "ms", 15.0),
        ("15 ms", "ms", 15.0),
        ("15ms", "ms", 15.0),
        ("0.1 s", "ms", 100.0),
        ("1.1s", "ms", 1100.0),
        ("200 us", "ms", 0.2),
        ("200 \u00b5s", "ms", 0.2),  # MICRO SIGN
        ("200 \u03bcs", "ms", 0.2),  # GREEK SMALL LETTER MU, what many keyboards type
        ("2", "s", 2000.0),
        ("2 ms", "s", 2.0),
        ("1e3", "ms", 1000.0),
    ],
)
def test_latency_normalised_to_ms(value: object, default_unit: str, expected: float) -> None:
    assert parse_latency_ms(value, default_unit) == expected


@pytest.mark.parametrize(
    ("value", "default_unit", "expected"),
    [
        ("20", "Hz", 20.0),
        ("20 Hz", "Hz", 20.0),
        ("1 kHz", "Hz", 1000.0),
        ("1kHz", "Hz", 1000.0),
        ("500 mHz", "Hz", 0.5),
        ("2", "kHz", 2000.0),
        (6.66, "Hz", 6.66),
    ],
)
def test_sampling_rate_normalised_to_hz(value: object, default_unit: str, expected: float) -> None:
    assert parse_rate_hz(value, default_unit) == expected


@pytest.mark.parametrize("value", ["fast", "", "Hz", "1 2", "nan", "inf", "--1", "1 ms"])
def test_rate_rejects_non_numbers(value: str) -> None:
    with pytest.raises(QuantityError):
        parse_rate_hz(value)


def test_consumption_keeps_power_and_current_apart() -> None:
    assert parse_consumption("0.06") == (0.06, "mW")
    assert parse_consumption("2 W") == (2000.0, "mW")
    assert parse_consumption("80 µA") == (0.08, "mA")
    assert parse_consumption("3", "uA") == (0.003, "mA")


def test_units_from_properties_apply_to_bare_numbers() -> None:
    spec_entry = entry(samplingRate="2", latency="0.5", consumption="80")
    spec_entry["properties"]["unit"].update(samplingRate="kHz", latency="s", consumption="µA")
    [spec], problems = parse([spec_entry])
    assert problems == []
    assert (spec.sampling_rate_hz, spec.latency_ms) == (2000.0, 500.0)
    assert (spec.consumption, spec.units.consumption) == (0.08, "mA")
    assert (spec.units.sampling_rate, spec.units.latency) == ("Hz", "ms")


def test_value_with_unit_wins_over_declared_unit() -> None:
    spec_entry = entry(latency="15 ms")
    spec_entry["properties"]["unit"]["latency"] = "s"
    assert parse([spec_entry])[0][0].latency_ms == 15.0


def test_optional_numbers_may_be_absent_or_empty() -> None:
    sparse = entry(latency="")
    for key in ("samplingRate", "accuracy", "consumption", "properties", "access", "market"):
        del sparse[key]
    [spec], problems = parse([sparse])
    assert problems == []
    assert (spec.sampling_rate_hz, spec.latency_ms, spec.consumption) == (None, None, None)
    assert spec.accuracy == ()
    assert spec.market == ""
    assert spec.access.type == "MQTT"


def test_accuracy_with_plus_minus_and_units() -> None:
    two = entry(
        type={"sensorCategory": "Environmental", "sensorType": ["Temperature", "Humidity"]},
        accuracy=["±0.5 °C", "±3.5 %RH"],
    )
    two["properties"]["unit"]["measurement"] = ["°C", "%"]
    [spec], problems = parse([two])
    assert problems == []
    assert spec.accuracy == (
        Accuracy("Temperature", 0.5, "°C"),
        Accuracy("Humidity", 3.5, "%RH"),
    )


# ---------------------------------------------------------------------------------------
# Keys


@pytest.mark.parametrize(
    ("name", "uid", "key"),
    [
        ("HTS221", "x", "hts221"),
        ("Temperature & Humidity", "", "temperature-humidity"),
        ("--ILPS22QS--", "", "ilps22qs"),
        ("温度", "31BA-cf17", "31ba-cf17"),
        ("", "", ""),
        ("A" * 80, "", "a" * 63),
    ],
)
def test_sensor_key(name: str, uid: str, key: str) -> None:
    assert sensor_key(name, uid) == key


def test_duplicate_keys_keep_the_first_and_report_the_rest() -> None:
    entries = [
        entry(name="HTS221", model="hts221"),
        entry(name="STTS22H"),
        entry(name="hts-221", model="x"),  # different name, different key: fine
        entry(name="hts221", model="hts221-b"),  # same key as entry 0
    ]
    specs, problems = parse(entries)
    assert [spec.key for spec in specs] == ["hts221", "stts22h", "hts-221"]
    assert specs[0].model == "hts221"
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": entry 3 (hts221): "name" gives sensor key '
        '"hts221", already used by entry 0; each sensor of a device needs a distinct name'
    ]


def test_name_without_ascii_and_no_uid_is_a_problem() -> None:
    _, problems = parse([entry(name="温度", uid="")])
    assert [p.field for p in problems] == ["name"]


# ---------------------------------------------------------------------------------------
# Writing


def test_sensor_entry_writes_numbers_as_strings_like_fluidos() -> None:
    [spec], _ = parse([entry(samplingRate=20, latency="0.1 s", accuracy=[0.5], consumption=2)])
    written = sensor_entry(spec, node="edge-1", topic="fluidos-sensors/stwin-01/stts22h")
    assert written["samplingRate"] == "20"
    assert written["latency"] == "100"
    assert written["accuracy"] == ["0.5"]
    assert written["consumption"] == "2"
    assert written["properties"]["unit"] == {
        "measurement": ["°C"],
        "consumption": "mW",
        "samplingRate": "Hz",
        "latency": "ms",
    }
    assert written["node"] == "edge-1"
    assert written["access"]["resource"] == {
        "topic": "fluidos-sensors/stwin-01/stts22h",
        "node": "edge-1",
    }
    assert written["type"] == {"sensorCategory": "Environmental", "sensorType": ["Temperature"]}


def test_accuracy_in_another_unit_keeps_its_unit_when_written() -> None:
    [spec], _ = parse([entry(accuracy=["±1 %FS"])])
    assert sensor_entry(spec)["accuracy"] == ["1 %FS"]


def test_encode_then_parse_round_trips() -> None:
    specs, _ = parse([entry(), entry(name="HTS221", accuracy=["0.1"], samplingRate="12.5")])
    again, problems = parse_sensors_annotation(encode_sensors_annotation(specs), device=DEVICE)
    assert problems == []
    assert again == specs


# ---------------------------------------------------------------------------------------
# Hostile input: every one is a problem naming the entry and the field, and stays short

# An Event message is capped at 1 KiB; a problem must fit with room to spare.
SHORT = 400


def with_raw_field(field: str, raw_json: str) -> str:
    """A plain-JSON annotation whose entry 1 has ``field`` written as ``raw_json`` verbatim
    (json.dumps cannot write 5001-digit numbers or 100k-deep nesting with Python's limits)."""
    good = json.dumps(entry())
    bad = json.dumps(entry(name="HOSTILE"))[:-1] + f', "{field}": {raw_json}}}'
    return f"[{good}, {bad}]"


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("field", "raw_json", "shown"),
    [
        ("latency", str(10**400), "out of range"),  # float(10**400): OverflowError
        ("latency", "1" * 5001, "out of range"),  # int("1" * 5001): ValueError (4300 digits)
        ("latency", "1e999", "out of range"),  # float: inf
        ("latency", "-1e999", "out of range"),
        ("latency", '"1e999"', "out of range"),
        ("latency", '"1e308 min"', "out of range"),  # finite, but not once made ms
        ("latency", json.dumps("1" * 5001), "longer than 64 characters"),
        ("latency", '"\u0661\u0662"', "must be a number of ms"),  # Arabic-Indic digits
        ("latency", "NaN", "must be a number of ms, got NaN"),
        ("latency", "Infinity", "out of range"),
        ("latency", DEEP, "must be a number of ms, got [[[["),  # json.loads: RecursionError
        ("samplingRate", str(10**400), "out of range"),
        ("samplingRate", '"1e-400 Hz"', "greater than zero"),
        ("consumption", "9" * 400, "out of range"),
        ("accuracy", f"[{10**400}]", "out of range"),
        ("accuracy", json.dumps(["±" + "1" * 5001]), "longer than 64 characters"),
        ("model", DEEP, "must be a string, got [[[["),
        ("model", json.dumps("m" * 1_000), "is 1000 characters long; at most 253"),
        ("model", json.dumps("red\x1b[31m"), "must not contain control characters"),
        ("manufacturer", "1" * 5001, "must be a string, got 1111"),
        ("access", DEEP, "must be an object, got [[[["),
        ("properties", json.dumps({"unit": {"latency": "s" * 5000}}), "at most 63"),
    ],
    ids=lambda value: value[:24] if isinstance(value, str) else str(value),
)
def test_hostile_field_is_a_short_problem_naming_entry_and_field(
    field: str, raw_json: str, shown: str
) -> None:
    specs, problems = parse_sensors_annotation(with_raw_field(field, raw_json), device=DEVICE)
    assert [spec.name for spec in specs] == ["STTS22H"]  # the good entry is unaffected
    assert len(problems) == 1, messages(problems)
    [problem] = problems
    assert (problem.entry, problem.sensor) == (1, "HOSTILE")
    assert problem.field is not None and problem.field.startswith(field)
    text = str(problem)
    assert f'entry 1 (HOSTILE): "{problem.field}"' in text
    assert shown in text
    assert len(text) <= SHORT


def test_hostile_base64_form_is_treated_like_plain_json() -> None:
    raw = base64.b64encode(with_raw_field("latency", "1" * 5001).encode()).decode()
    specs, problems = parse_sensors_annotation(raw, device=DEVICE)
    assert len(specs) == 1
    assert [(p.entry, p.field) for p in problems] == [(1, "latency")]


def test_over_long_name_is_refused_and_never_echoed_whole() -> None:
    specs, problems = parse([entry(), entry(name="n" * 150_000)])
    assert [spec.name for spec in specs] == ["STTS22H"]
    [problem] = problems
    assert (problem.entry, problem.field) == (1, "name")
    assert "is 150000 characters long; at most 253" in str(problem)
    assert len(str(problem)) <= SHORT


@pytest.mark.parametrize(
    ("types", "field", "message"),
    [
        (["t"] * 17, "type.sensorType", "has 17 items; at most 16"),
        (["t" * 64], "type.sensorType[0]", "is 64 characters long; at most 63"),
        (["ok", "bad\x00"], "type.sensorType[1]", "must not contain control characters"),
    ],
)
def test_sensor_types_are_bounded(types: list[str], field: str, message: str) -> None:
    _, problems = parse([entry(type={"sensorCategory": "Environmental", "sensorType": types})])
    assert [(p.field, p.message.split(",")[0]) for p in problems] == [(field, message)]


def test_long_type_lists_are_clipped_in_messages() -> None:
    types = [f"quantity-{i}-" + "q" * 50 for i in range(16)]
    bad = entry(type={"sensorCategory": "Environmental", "sensorType": types})
    _, problems = parse([bad])
    assert [p.field for p in problems] == ["properties.unit.measurement", "accuracy"]
    assert all(len(str(p)) <= SHORT for p in problems)


def test_deep_annotation_names_the_entry() -> None:
    specs, problems = parse_sensors_annotation("[" + DEEP + "]", device=DEVICE)
    assert specs == []
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": entry 0: must be a JSON object, got an array'
    ]


def test_annotation_larger_than_kubernetes_allows_is_one_problem() -> None:
    raw = annotation([entry(name="n" * 300_000)])
    specs, problems = parse_sensors_annotation(raw, device=DEVICE)
    assert specs == []
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": is {len(raw)} bytes long; at most 262144 '
        "(256 KiB, what Kubernetes allows for all annotations of an object together)"
    ]


def test_too_many_sensors_is_one_problem() -> None:
    specs, problems = parse([entry(name=f"s{i}") for i in range(129)])
    assert specs == []
    assert messages(problems) == [
        f'Device {DEVICE}: annotation "sensors": describes 129 sensors; '
        "a Device may have at most 128"
    ]
    assert len(parse([entry(name=f"s{i}") for i in range(128)])[0]) == 128


def test_text_fields_at_their_limit_are_accepted() -> None:
    at_limit = entry(name="n" * 253, model="m" * 253, manufacturer="x" * 253)
    at_limit["type"] = {"sensorCategory": "c" * 63, "sensorType": ["t" * 63]}
    at_limit["properties"]["unit"]["measurement"] = ["u" * 63]
    [spec], problems = parse([at_limit])
    assert problems == []
    assert (len(spec.name), len(spec.key), spec.types) == (253, 63, ("t" * 63,))

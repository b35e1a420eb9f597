"""Sensor filters: REAR deepObject parsing, AND semantics, case, units and range bounds."""

from __future__ import annotations

from typing import Any

import pytest

from fluidos_sensors.filters import (
    FilterError,
    NumberRange,
    SensorFilter,
    describe,
    matches,
)
from fluidos_sensors.flavor import ObservedPerformance, SensorFlavor
from fluidos_sensors.sensor import parse_sensor_entry


def flavor(
    node: str = "edge-1", observed_latency: float | None = None, **fields: Any
) -> SensorFlavor:
    raw: dict[str, Any] = {
        "name": "HTS221",
        "model": "HTS221",
        "manufacturer": "STMicroelectronics",
        "market": "Consumer",
        "type": {"sensorCategory": "Environmental", "sensorType": ["Temperature", "Humidity"]},
        "samplingRate": "1",
        "accuracy": ["0.5", "3.5"],
        "consumption": "0.002",
        "latency": "15",
        "properties": {"unit": {"measurement": ["°C", "%"]}},
    }
    raw.update(fields)
    raw = {key: value for key, value in raw.items() if value is not None}
    sensor, errors = parse_sensor_entry(raw)
    assert sensor is not None, errors
    observed = (
        None if observed_latency is None else ObservedPerformance(latency_ms=observed_latency)
    )
    return SensorFlavor(
        name="f", provider_id="p", node=node, availability=True, sensor=sensor, observed=observed
    )


HTS221 = flavor()
ILPS22QS = flavor(
    name="ILPS22QS",
    model="ILPS22QS",
    market="Industrial",
    type={"sensorCategory": "Environmental", "sensorType": ["Pressure"]},
    accuracy=["0.5"],
    properties={"unit": {"measurement": ["hPa"]}},
    latency="20",
    samplingRate="10",
    node="edge-2",
)
BOSCH = flavor(name="BME280", model="BME280", manufacturer="Bosch Sensortec", latency="10")


def q(query: str) -> SensorFilter:
    return SensorFilter.from_query_string(query)


# ---------------------------------------------------------------------------------------
# Parsing


def test_parses_the_documented_example() -> None:
    parsed = q(
        "filter[sensor_type][match]=humidity"
        "&filter[sensor_manufacturer][match]=STMicroelectronics"
        "&filter[latency][range][max]=16"
    )
    assert parsed == SensorFilter(
        sensor_type=("humidity",),
        sensor_manufacturer=("STMicroelectronics",),
        latency=NumberRange(max=16.0, unit="ms"),
    )


def test_exact_forms_and_range_forms() -> None:
    for query in (
        "filter[sampling_rate]=10",
        "filter[sampling_rate][exact]=10",
        "filter[sampling_rate][match]=10",
    ):
        assert q(query).sampling_rate == NumberRange(exact=10.0, unit="Hz")
    assert q("filter[sampling_rate][range][min]=1&filter[sampling_rate][range][max]=1 kHz") == (
        SensorFilter(sampling_rate=NumberRange(min=1.0, max=1000.0, unit="Hz"))
    )


def test_percent_encoded_keys_and_mapping_input() -> None:
    assert q("filter%5Bnode%5D%5Bmatch%5D=edge-1").node == ("edge-1",)
    as_mapping = SensorFilter.from_query(
        {"filter[sensor_type][match]": ["humidity", "temperature"], "filter[latency]": "5"}
    )
    assert as_mapping.sensor_type == ("humidity", "temperature")
    assert as_mapping.latency == NumberRange(exact=5.0, unit="ms")


def test_other_query_parameters_are_ignored() -> None:
    assert q("page=2&limit=10").is_empty


def test_units_in_filter_values() -> None:
    assert q("filter[latency][range][max]=0.1 s").latency.max == 100.0
    assert q("filter[observed_latency][range][max]=500us").observed_latency.max == 0.5
    assert q("filter[consumption][range][max]=5 mA").consumption == NumberRange(max=5.0, unit="mA")
    assert q("filter[consumption][range][max]=1 W").consumption == NumberRange(max=1000, unit="mW")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("filter[colour][match]=red", 'unknown filter "colour" in "filter[colour][match]"'),
        ("filter[latency][range][max]=fast", 'must be a number of ms, got "fast"'),
        ("filter[sampling_rate][range][min]=often", 'must be a number of Hz, got "often"'),
        ("filter[accuracy][range][max]=good", 'must be a number, got "good"'),
        ("filter[accuracy][range][max]=1 %", 'must be a number, got "1 %"'),
        ("filter[latency][range][max]=-1", "must be zero or more"),
        ("filter[sensor_type][range][min]=1", "sensor_type is matched by text"),
        ("filter[latency][between]=1", "latency takes a number"),
        ("filter[latency][range][max]=", "must not be empty"),
        ("filter[node]=", "must not be empty"),
        ("filterx=1", "is not a filter"),
        ("filter[latency][range][min]=20&filter[latency][range][max]=10", "min 20 is greater"),
        ("filter[latency]=1&filter[latency]=2", "given twice with different values (1, 2)"),
        ("filter[consumption][range][min]=1 mA&filter[consumption][range][max]=5", "mixes units"),
    ],
)
def test_bad_filters_raise_clear_errors(query: str, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        q(query)
    assert message in str(raised.value)


def test_error_names_the_parameter() -> None:
    with pytest.raises(FilterError) as raised:
        q("filter[latency][range][max]=fast")
    assert str(raised.value) == '"filter[latency][range][max]" must be a number of ms, got "fast"'


def test_repeating_the_same_bound_is_harmless() -> None:
    assert q("filter[latency]=1&filter[latency]=1.0").latency.exact == 1.0


def test_from_options_equals_query_form() -> None:
    from_cli = SensorFilter.from_options(
        sensor_type="humidity",
        sensor_manufacturer=["STMicroelectronics"],
        node="edge-1",
        latency_max=16,
        sampling_rate_min="1 Hz",
        accuracy_max=3.5,
        consumption_max="5 mA",
        observed_latency_max=40,
    )
    assert from_cli == q(
        "filter[sensor_type][match]=humidity&filter[sensor_manufacturer][match]=STMicroelectronics"
        "&filter[node][match]=edge-1&filter[latency][range][max]=16"
        "&filter[sampling_rate][range][min]=1&filter[accuracy][range][max]=3.5"
        "&filter[consumption][range][max]=5 mA&filter[observed_latency][range][max]=40"
    )
    with pytest.raises(FilterError, match='"--latency-max" must be a number of ms'):
        SensorFilter.from_options(latency_max="soon")


def test_to_query_round_trips() -> None:
    original = q(
        "filter[sensor_type][match]=humidity&filter[sensor_type][match]=temperature"
        "&filter[sampling_rate]=10&filter[latency][range][min]=1&filter[latency][range][max]=16"
        "&filter[consumption][range][max]=5 mA&filter[accuracy][range][max]=0.5"
    )
    again = SensorFilter.from_query(original.to_query())
    assert again == original
    assert ("filter[sampling_rate][exact]", "10") in original.to_query()
    assert ("filter[consumption][range][max]", "5 mA") in original.to_query()


def test_describe() -> None:
    assert describe(SensorFilter()) == "any sensor"
    assert describe(q("filter[sensor_type][match]=humidity&filter[latency][range][max]=16")) == (
        "sensor_type=humidity, latency<=16ms"
    )


# ---------------------------------------------------------------------------------------
# Matching


def test_empty_filter_matches_everything() -> None:
    assert all(matches(SensorFilter(), f) for f in (HTS221, ILPS22QS, BOSCH))


def test_all_filters_combine_with_and() -> None:
    wanted = q(
        "filter[sensor_type][match]=humidity"
        "&filter[sensor_manufacturer][match]=STMicroelectronics"
        "&filter[latency][range][max]=16"
    )
    assert matches(wanted, HTS221)
    assert not matches(wanted, ILPS22QS)  # no humidity
    assert not matches(wanted, BOSCH)  # other manufacturer
    assert not matches(wanted, flavor(latency="17"))  # too slow
    assert wanted.matches(HTS221)


def test_match_is_case_insensitive() -> None:
    assert matches(q("filter[sensor_type][match]=HUMIDITY"), HTS221)
    assert matches(q("filter[sensor_manufacturer][match]=stmicroelectronics"), HTS221)
    assert matches(q("filter[sensor_category][match]=environmental"), HTS221)
    assert matches(q("filter[sensor_model][match]=hts221"), HTS221)
    assert matches(q("filter[sensor_market][match]=consumer"), HTS221)
    assert matches(q("filter[node][match]=EDGE-1"), HTS221)
    assert not matches(q("filter[node][match]=edge-1"), ILPS22QS)


def test_match_is_equality_not_substring() -> None:
    assert not matches(q("filter[sensor_manufacturer][match]=STMicro"), HTS221)
    assert not matches(q("filter[sensor_type][match]=humid"), HTS221)


def test_sensor_type_matches_any_type_and_repeats_require_each() -> None:
    assert matches(q("filter[sensor_type][match]=temperature"), HTS221)
    assert matches(q("filter[sensor_type][match]=humidity"), HTS221)
    both = q("filter[sensor_type][match]=temperature&filter[sensor_type][match]=humidity")
    assert matches(both, HTS221)
    assert not matches(
        q("filter[sensor_type][match]=temperature&filter[sensor_type]=pressure"), HTS221
    )


@pytest.mark.parametrize(
    ("query", "latency", "expected"),
    [
        ("filter[latency][range][max]=16", "16", True),  # bounds are inclusive
        ("filter[latency][range][max]=16", "16.01", False),
        ("filter[latency][range][min]=16", "16", True),
        ("filter[latency][range][min]=16", "15.99", False),
        ("filter[latency][range][min]=10&filter[latency][range][max]=20", "15", True),
        ("filter[latency][range][min]=10&filter[latency][range][max]=20", "25", False),
        ("filter[latency]=15", "15", True),
        ("filter[latency]=15", "0.015 s", True),
        ("filter[latency]=15", "15.5", False),
        ("filter[latency][range][max]=0.1 s", "100 ms", True),
    ],
)
def test_range_bounds(query: str, latency: str, expected: bool) -> None:
    assert matches(q(query), flavor(latency=latency)) is expected


def test_sampling_rate_exact_and_range() -> None:
    assert matches(q("filter[sampling_rate]=1"), HTS221)
    assert not matches(q("filter[sampling_rate]=1"), ILPS22QS)
    assert matches(q("filter[sampling_rate][range][min]=5"), ILPS22QS)
    assert not matches(q("filter[sampling_rate][range][min]=5"), HTS221)
    assert matches(q("filter[sampling_rate][range][max]=0.01 kHz"), ILPS22QS)


def test_unknown_numbers_never_satisfy_a_bound() -> None:
    no_latency = flavor(latency=None)
    assert matches(SensorFilter(), no_latency)
    assert not matches(q("filter[latency][range][max]=1000"), no_latency)
    assert not matches(q("filter[accuracy][range][max]=100"), flavor(accuracy=None))
    assert not matches(q("filter[consumption][range][max]=100"), flavor(consumption=None))


def test_observed_latency_comes_from_the_data_path() -> None:
    wanted = q("filter[observed_latency][range][max]=40")
    assert matches(wanted, flavor(observed_latency=35.0))
    assert not matches(wanted, flavor(observed_latency=41.0))
    assert not matches(wanted, flavor())  # never observed


def test_consumption_compares_power_with_power_only() -> None:
    milliwatt = flavor(consumption="0.5")
    current = flavor(consumption="80 µA")
    assert matches(q("filter[consumption][range][max]=1"), milliwatt)
    assert not matches(q("filter[consumption][range][max]=0.1"), milliwatt)
    assert not matches(q("filter[consumption][range][max]=1"), current)
    assert matches(q("filter[consumption][range][max]=0.1 mA"), current)


def test_accuracy_applies_to_the_wanted_type() -> None:
    # HTS221: temperature ±0.5 °C, humidity ±3.5 %
    assert matches(q("filter[accuracy][range][max]=1"), HTS221)  # some quantity qualifies
    assert not matches(
        q("filter[sensor_type][match]=humidity&filter[accuracy][range][max]=1"), HTS221
    )
    assert matches(
        q("filter[sensor_type][match]=temperature&filter[accuracy][range][max]=1"), HTS221
    )
    assert not matches(q("filter[accuracy][range][max]=0.1"), HTS221)


# ---------------------------------------------------------------------------------------
# Hostile filters: only FilterError, naming the parameter, short


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("filter[latency][range][max]", "1e999", "(out of range)"),
        ("filter[latency][range][max]", "1" * 5001, "is 5001 characters long; at most 253"),
        ("filter[latency][range][max]", "1" * 200, "(longer than 64 characters)"),
        ("filter[latency][range][max]", "NaN", 'must be a number of ms, got "NaN"'),
        ("filter[latency][range][max]", "inf", 'must be a number of ms, got "inf"'),
        ("filter[latency][range][max]", "\u0661\u0666", "must be a number of ms"),  # ١٦
        ("filter[latency][range][max]", "1\x00", "must be a number of ms"),
        ("filter[latency][range][max]", "1e308 min", "(out of range)"),
        ("filter[sampling_rate][exact]", "1e-400", "must be greater than zero"),
        ("filter[accuracy][range][min]", "1" * 60 + "e999", "(out of range)"),
        ("filter[consumption][range][min]", "-1e-300", "must be zero or more"),
        ("filter[node][match]", "n" * 1_000_000, "at most 253"),
        ("filter[" + "x" * 1_000_000 + "][match]", "1", 'unknown filter "xxxx'),
        ("filter[[" + "x" * 1_000_000, "1", "is not a filter"),
    ],
    ids=lambda v: v[:24],
)
def test_hostile_query_raises_only_a_short_filter_error(key: str, value: str, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        SensorFilter.from_query([(key, value)])
    assert message in str(raised.value)
    assert len(str(raised.value)) <= 300


def test_hostile_query_string_is_a_filter_error() -> None:
    with pytest.raises(FilterError, match="out of range"):
        q("filter[latency][range][max]=1e400")


@pytest.mark.parametrize(
    "params",
    [
        [("filter[node][match]", 5)],
        [(5, "x")],
        [("filter[node][match]",)],
        ["filter[node][match]=x"],
        {"filter[node][match]": [None]},
        {"filter[latency]": 10**5000},
    ],
    ids=["int-value", "int-key", "one-tuple", "string-pair", "none-in-list", "huge-int-value"],
)
def test_odd_query_shapes_raise_only_filter_error(params: Any) -> None:
    with pytest.raises(FilterError):
        SensorFilter.from_query(params)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"latency_max": 10**5000}, '"--latency-max" must be a finite number'),
        ({"latency_max": 10**400}, '"--latency-max" must be a finite number'),
        ({"latency_max": float("nan")}, '"--latency-max" must be a finite number, got NaN'),
        ({"latency_max": float("inf")}, '"--latency-max" must be a finite number'),
        ({"sampling_rate_min": [1]}, '"--sampling-rate-min" must be a finite number'),
        ({"node": 5}, '"--node" must be text, got 5'),
        ({"node": [5]}, '"--node" must be text, got 5'),
        ({"sensor_type": "t" * 10_000}, "at most 253"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else v[:20],
)
def test_hostile_options_raise_only_filter_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError) as raised:
        SensorFilter.from_options(**options)
    assert message in str(raised.value)
    assert len(str(raised.value)) <= 300


def test_large_but_finite_numbers_still_filter() -> None:
    assert SensorFilter.from_options(latency_max=10**300).latency.max == 1e300
    assert q("filter[latency][range][max]=1e300").latency.max == 1e300


# The same filters in a SensorRequest's spec.filter


def test_request_filter_round_trip_and_camel_case() -> None:
    from fluidos_sensors.filters import from_request_filter, to_request_filter

    wanted = SensorFilter.from_options(
        sensor_type=["humidity"],
        sensor_manufacturer="STMicroelectronics",
        node="edge-1",
        latency_max="0.1 s",
        sampling_rate_min="1 kHz",
        consumption_max="5 mA",
        observed_latency_max=20,
    )
    body = to_request_filter(wanted)
    assert body == {
        "sensorType": ["humidity"],
        "sensorManufacturer": ["STMicroelectronics"],
        "node": ["edge-1"],
        "samplingRate": {"min": "1000"},
        "latency": {"max": "100"},
        "consumption": {"max": "5 mA"},
        "observedLatency": {"max": "20"},
    }
    assert from_request_filter(body, "SensorRequest ns/r") == wanted
    assert from_request_filter(None, "SensorRequest ns/r").is_empty


@pytest.mark.parametrize(
    ("spec_filter", "message"),
    [
        ({"sensorType": "humidity"}, "spec.filter.sensorType must be a list of strings"),
        ({"latency": {"below": "3"}}, "spec.filter.latency must be an object with min"),
        ({"latency": {"max": "fast"}}, 'must be a number of ms, got "fast"'),
    ],
)
def test_request_filter_errors_name_the_request_and_field(
    spec_filter: dict[str, Any], message: str
) -> None:
    from fluidos_sensors.filters import from_request_filter

    with pytest.raises(FilterError, match="SensorRequest ns/r") as caught:
        from_request_filter(spec_filter, "SensorRequest ns/r")
    assert message in str(caught.value)

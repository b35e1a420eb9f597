"""Sampling rates a buyer sets: the configuration, the offer, the desired twin, the Contract."""

from __future__ import annotations

from typing import Any

import pytest

from fluidos_sensors.flavor import Price, ProviderConfig, build_flavor
from fluidos_sensors.rates import (
    RATE_FIELD,
    HeldRate,
    RateError,
    desired_rates,
    held_rate,
    offer_problem,
    property_group,
    rate_configuration,
    rate_group,
    rate_property,
    rate_scope,
    requested_rate,
    with_desired_rate,
)
from fluidos_sensors.sensor import DeviceRef, SensorSpec, parse_sensor_entry, sensor_entry

PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="127.0.0.1",
    price=Price(amount="1", currency="EUR", period="hourly"),
)


def spec(**overrides: Any) -> SensorSpec:
    values: dict[str, Any] = {
        "key": "temperature",
        "uid": "u-1",
        "name": "temperature",
        "model": "STTS22H",
        "manufacturer": "STMicroelectronics",
        "category": "Environmental",
        "types": ("temperature",),
        "sampling_rate_hz": 1.0,
        "sampling_rates_hz": (1.0, 10.0, 20.0),
        "rate_group": "environmental",
    }
    return SensorSpec(**(values | overrides))


def test_the_configuration_round_trips_with_units() -> None:
    assert rate_configuration(20) == {"type": "Sensor", "data": {"samplingRate": "20"}}
    assert requested_rate(rate_configuration(0.5)) == 0.5
    assert requested_rate({"type": "Sensor", "data": {"samplingRate": "1 kHz"}}) == 1000.0
    assert requested_rate(None) is None
    assert requested_rate({"type": "Sensor", "data": {}}) is None


@pytest.mark.parametrize(
    ("configuration", "field", "words"),
    [
        ({"type": "K8Slice", "data": {}}, "configuration.type", '"Sensor"'),
        ({"type": "Sensor", "data": "20"}, "configuration.data", "object"),
        ({"type": "Sensor", "data": {"cpu": "1"}}, "configuration.data", "cpu"),
        ({"type": "Sensor", "data": {"samplingRate": "fast"}}, RATE_FIELD, "fast"),
        ({"type": "Sensor", "data": {"samplingRate": "0"}}, RATE_FIELD, "greater than zero"),
        ({"type": "Sensor", "data": {"samplingRate": "10 s"}}, RATE_FIELD, "s"),
    ],
)
def test_a_bad_configuration_names_its_field(
    configuration: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RateError) as error:
        requested_rate(configuration)
    assert error.value.field == field and words in str(error.value)


def test_what_a_sensor_offers() -> None:
    assert offer_problem(spec(), 10.0) is None
    assert offer_problem(spec(), 30.0) == "runs at 1, 10, 20 Hz only, not 30 Hz"
    fixed = offer_problem(spec(sampling_rates_hz=()), 1.0)
    assert fixed == "runs at a fixed rate (1 Hz); its rate cannot be set"
    assert rate_group(spec()) == "environmental"
    assert rate_group(spec(rate_group="")) == "temperature"  # the sensor alone


def test_the_annotation_carries_rates_and_group_and_rejects_bad_ones() -> None:
    entry = sensor_entry(spec())
    assert entry["samplingRates"] == ["1", "10", "20"]
    assert entry["samplingRateGroup"] == "environmental"
    parsed, errors = parse_sensor_entry(entry)
    assert not errors and parsed is not None
    assert parsed.sampling_rates_hz == (1.0, 10.0, 20.0)
    assert parsed.rate_group == "environmental"
    # In the entry's rate unit, sorted, each once.
    entry |= {"samplingRates": ["0.02", "0.01", "0.01"], "samplingRateGroup": "Inertial Unit"}
    entry["properties"]["unit"]["samplingRate"] = "kHz"
    parsed, errors = parse_sensor_entry(entry)
    assert not errors and parsed is not None
    assert parsed.sampling_rates_hz == (10.0, 20.0)
    assert parsed.rate_group == "inertial-unit"
    for rates, field in ((["fast"], "samplingRates[0]"), (["-1"], "samplingRates[0]")):
        _, errors = parse_sensor_entry(sensor_entry(spec()) | {"samplingRates": rates})
        assert [e.field for e in errors] == [field]
    _, errors = parse_sensor_entry(sensor_entry(spec()) | {"samplingRates": "10"})
    assert [e.field for e in errors] == ["samplingRates"]
    _, errors = parse_sensor_entry(sensor_entry(spec()) | {"samplingRateGroup": "--"})
    assert [e.field for e in errors] == ["samplingRateGroup"]


def test_the_desired_rate_property_of_a_device() -> None:
    properties: list[dict[str, Any]] = [{"name": "temperature", "reportCycle": 10}]
    with_rate = with_desired_rate(properties, "environmental", 20, {"contracts": "c-1"})
    assert with_rate == [
        {"name": "temperature", "reportCycle": 10},
        {
            "name": "samplingRate.environmental",
            "desired": {"value": "20", "metadata": {"contracts": "c-1"}},
        },
    ]
    assert properties == [{"name": "temperature", "reportCycle": 10}]  # not changed in place
    device = {"spec": {"properties": with_rate}}
    assert desired_rates(device) == {"environmental": 20.0}
    changed = with_desired_rate(with_rate, "environmental", 10)
    assert desired_rates({"spec": {"properties": changed}}) == {"environmental": 10.0}
    assert with_desired_rate(changed, "environmental", None) == properties
    unreadable = [{"name": "samplingRate.x", "desired": {"value": "fast"}}, "junk"]
    assert desired_rates({"spec": {"properties": unreadable}}) == {}
    assert property_group(rate_property("inertial")) == "inertial"
    assert property_group("temperature") is None and property_group("samplingRate.") is None


def test_a_contract_holds_the_rate_of_its_group() -> None:
    flavor = build_flavor(
        DeviceRef("default", "stwin-1"), "edge-1", spec(), PROVIDER, available=True
    )
    contract: dict[str, Any] = {"spec": {"flavor": flavor}}
    assert held_rate(contract) is None
    contract["spec"]["configuration"] = rate_configuration(10)
    assert held_rate(contract) == HeldRate("default/stwin-1", "environmental", 10.0)
    contract["spec"]["flavor"] = {"spec": "junk"}
    with pytest.raises(RateError) as error:
        held_rate(contract)
    assert error.value.field == "spec.flavor"


def test_a_rate_scope_is_a_label_value_per_device_and_group() -> None:
    one = rate_scope("default/stwin-1", "environmental")
    assert one != rate_scope("default/stwin-1", "inertial")
    assert one != rate_scope("other/stwin-1", "environmental")
    long = rate_scope("n/" + "d" * 200, "g" * 60)
    assert len(long) <= 63 and long[0].isalnum() and long[-1].isalnum()

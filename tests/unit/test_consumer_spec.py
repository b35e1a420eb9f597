"""A SensorRequest's spec and a SensorProvider as the consumer operator reads them, and the
request filter mapping (spec.filter -> the same SensorFilter the gateway applies)."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.spec import (
    SpecError,
    parse_provider,
    parse_request,
    provider_order,
    request_intent,
)
from fluidos_sensors.endpoints import AuthType, DeliveryFormat
from fluidos_sensors.filters import FilterError, SensorFilter
from fluidos_sensors.shaping import Shaping


def request(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "r1", "namespace": "fluidos"}, "spec": spec}


ENDPOINT = {"url": "http://telegraf.example:8186/telegraf"}


# ------------------------------------------------------------------------------ filter mapping


def test_request_filter_equals_the_query_form() -> None:
    from_spec = SensorFilter.from_request_spec(
        {
            "sensorType": ["humidity"],
            "sensorManufacturer": ["STMicroelectronics"],
            "sensorModel": ["HTS221"],
            "sensorCategory": ["Environmental"],
            "sensorMarket": ["industrial"],
            "node": ["edge-1"],
            "latency": {"max": "16 ms"},
            "samplingRate": {"min": "1 Hz", "max": "1 kHz"},
            "accuracy": {"max": "5"},
            "consumption": {"exact": "2 mW"},
            "observedLatency": {"max": "0.1 s"},
        }
    )
    from_query = SensorFilter.from_query_string(
        "filter[sensor_type][match]=humidity&filter[sensor_manufacturer][match]=STMicroelectronics"
        "&filter[sensor_model][match]=HTS221&filter[sensor_category][match]=Environmental"
        "&filter[sensor_market][match]=industrial&filter[node][match]=edge-1"
        "&filter[latency][range][max]=16&filter[sampling_rate][range][min]=1"
        "&filter[sampling_rate][range][max]=1000&filter[accuracy][range][max]=5"
        "&filter[consumption][exact]=2&filter[observed_latency][range][max]=100"
    )
    assert from_spec == from_query


def test_request_filter_empty_or_absent_matches_everything() -> None:
    assert SensorFilter.from_request_spec(None).is_empty
    assert SensorFilter.from_request_spec({}).is_empty
    assert SensorFilter.from_request_spec({"latency": {"max": None}, "node": None}).is_empty


def test_request_filter_numbers_are_accepted() -> None:
    assert SensorFilter.from_request_spec(
        {"latency": {"max": 16}, "sensorType": ["humidity"]}
    ) == SensorFilter.from_options(latency_max=16, sensor_type="humidity")


@pytest.mark.parametrize(
    ("spec_filter", "message"),
    [
        ({"latency": {"max": "fast"}}, '"spec.filter.latency.max" must be a number of ms'),
        ({"color": ["red"]}, "spec.filter.color is not a filter"),
        ({"latency": {"below": "5"}}, "spec.filter.latency must be an object with min, max"),
        ({"latency": "16"}, "spec.filter.latency must be an object with min, max and/or exact"),
        ({"sensorType": [3]}, '"spec.filter.sensorType[0]" must be text'),
        ({"sensorType": "humidity"}, "spec.filter.sensorType must be a list of strings"),
        ({"latency": {"min": "20", "max": "10"}}, "min 20 is greater than max 10"),
        ("humidity", "spec.filter must be an object"),
    ],
)
def test_request_filter_errors_name_the_field(spec_filter: Any, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        SensorFilter.from_request_spec(spec_filter)
    assert message in str(caught.value)


# ------------------------------------------------------------------------------ request


def test_a_full_request_is_read() -> None:
    spec = parse_request(
        request(
            {
                "filter": {"sensorType": ["humidity"], "latency": {"max": "16ms"}},
                "count": 2,
                "providers": ["provider-2", "provider-1", "provider-2"],
                "endpoint": {
                    **ENDPOINT,
                    "format": "json",
                    "auth": {"type": "basic", "secretName": "telegraf"},
                },
            }
        )
    )
    assert spec.filter == SensorFilter.from_options(sensor_type="humidity", latency_max=16)
    assert spec.count == 2
    assert spec.providers == ("provider-2", "provider-1")  # order kept, repeats dropped
    assert spec.endpoint == ENDPOINT["url"]
    assert spec.format is DeliveryFormat.JSON
    assert spec.auth is not None and spec.auth.type is AuthType.BASIC
    assert spec.auth.secret_name == "telegraf"


def test_a_shape_is_read_and_a_bad_one_names_its_field() -> None:
    spec = parse_request(request({"endpoint": {**ENDPOINT, "shape": {"every": 10}}}))
    assert spec.shape == Shaping(every=10)
    assert parse_request(request({"endpoint": ENDPOINT})).shape is None
    with pytest.raises(SpecError) as refused:
        parse_request(
            request({"endpoint": {**ENDPOINT, "shape": {"aggregate": ["mean"], "windowMs": 1}}})
        )
    assert refused.value.field == "spec.endpoint.shape.windowMs"


def test_a_rate_is_read_with_its_unit_and_a_bad_one_names_its_field() -> None:
    assert parse_request(request({"endpoint": ENDPOINT, "rate": "1 kHz"})).rate_hz == 1000.0
    assert parse_request(request({"endpoint": ENDPOINT, "rate": 20})).rate_hz == 20.0
    assert parse_request(request({"endpoint": ENDPOINT})).rate_hz is None
    for bad in ("fast", "-1", "10 ms"):
        with pytest.raises(SpecError) as refused:
            parse_request(request({"endpoint": ENDPOINT, "rate": bad}))
        assert refused.value.field == "spec.rate"


def test_defaults() -> None:
    spec = parse_request(request({"endpoint": ENDPOINT}))
    assert spec.filter.is_empty and spec.count == 1 and spec.providers == ()
    assert spec.format is DeliveryFormat.INFLUX and spec.auth is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"endpoint": ENDPOINT, "filter": {"latency": {"max": "fast"}}},
            'SensorRequest fluidos/r1: "spec.filter.latency.max" must be a number of ms',
        ),
        ({"endpoint": ENDPOINT, "count": 0}, "spec.count must be a whole number 1..100"),
        ({"endpoint": ENDPOINT, "count": True}, "spec.count must be a whole number"),
        ({"endpoint": ENDPOINT, "providers": "p1"}, "spec.providers must be a list"),
        ({"endpoint": ENDPOINT, "providers": [""]}, "spec.providers[0] must be non-empty"),
        ({}, "spec.endpoint is missing"),
        ({"endpoint": {"url": "ftp://x/y"}}, "spec.endpoint.url must be an http:// or https://"),
        (
            {"endpoint": {"url": "http://user:secret@host/x"}},
            "spec.endpoint.url must not carry credentials",
        ),
        ({"endpoint": {**ENDPOINT, "format": "xml"}}, "spec.endpoint.format must be one of"),
        (
            {"endpoint": {**ENDPOINT, "auth": {"type": "kerberos", "secretName": "s"}}},
            "spec.endpoint.auth.type must be one of",
        ),
        (
            {"endpoint": {**ENDPOINT, "auth": {"type": "basic"}}},
            "spec.endpoint.auth.secretName must be non-empty text",
        ),
    ],
)
def test_bad_requests_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_request(request(spec))
    assert message in str(caught.value)


def test_a_credential_in_the_url_is_not_echoed() -> None:
    with pytest.raises(SpecError) as caught:
        parse_request(request({"endpoint": {"url": "http://user:hunter2@host/x"}}))
    assert "hunter2" not in str(caught.value)


def test_intent_names_the_request() -> None:
    intent = request_intent("fluidos", "r1", "uid-1")
    assert intent == "sensorrequests.sensors.fluidos.eu/fluidos/r1/uid-1"
    assert intent != request_intent("fluidos", "r1", "uid-2")  # a re-created request is another


# ------------------------------------------------------------------------------ providers


def provider(spec: dict[str, Any], name: str = "provider-1") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "fluidos"}, "spec": spec}


def test_provider_with_defaults() -> None:
    found = parse_provider(
        provider({"url": "https://gw.example:8443/", "tokenSecret": {"name": "rear-p1"}})
    )
    assert found.url == "https://gw.example:8443"
    assert (found.token.name, found.token.key) == ("rear-p1", "token")
    assert found.ca is None
    with_ca = parse_provider(
        provider(
            {
                "url": "https://gw.example:8443",
                "tokenSecret": {"name": "t", "key": "k"},
                "caSecret": {"name": "c"},
            }
        )
    )
    assert (with_ca.token.key, with_ca.ca and with_ca.ca.key) == ("k", "ca.crt")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tokenSecret": {"name": "t"}}, "spec.url must be an http(s) URL"),
        ({"url": "https://gw", "tokenSecret": "t"}, "spec.tokenSecret must be an object"),
        ({"url": "https://gw", "tokenSecret": {}}, "spec.tokenSecret.name must be non-empty"),
        (
            {"url": "https://gw", "tokenSecret": {"name": "t"}, "caSecret": {"key": "ca"}},
            "spec.caSecret.name must be non-empty",
        ),
    ],
)
def test_bad_providers_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_provider(provider(spec))
    assert "SensorProvider fluidos/provider-1" in str(caught.value)
    assert message in str(caught.value)


def test_provider_order() -> None:
    known = ["p3", "p1", "p2"]
    assert provider_order([], known) == (["p1", "p2", "p3"], [])
    assert provider_order(["p2", "p9", "p1"], known) == (["p2", "p1"], ["p9"])

"""Sensor Flavor bodies: valid against the unmodified FLUIDOS CRD, stable names, and back."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from fluidos_sensors.api import FLAVOR, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from fluidos_sensors.flavor import (
    DEVICE_ANNOTATION,
    DEVICE_NAME_LABEL,
    DEVICE_NAMESPACE_LABEL,
    NODE_LABEL,
    SENSOR_KEY_LABEL,
    TYPE_LABEL_PREFIX,
    FlavorError,
    Location,
    ObservedPerformance,
    Price,
    ProviderConfig,
    build_flavor,
    flavor_name,
    is_sensor_flavor,
    sensor_from_flavor,
)
from fluidos_sensors.sensor import DeviceRef, SensorSpec, SensorUnits, parse_sensor_entry
from fluidos_sensors.topics import source_topic
from testbed import upstream

CRD_FILE = "fluidos/nodecore.fluidos.eu_flavors.yaml"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEVICE = DeviceRef("fluidos", "stwin-01")
PROVIDER = ProviderConfig(
    node_id="provider-node-1",
    domain="fluidos.eu",
    ip="10.0.0.7",
    price=Price(amount="0.5", currency="EUR", period="hourly"),
    location=Location(city="Heraklion", country="Greece", latitude="35.33", longitude="25.13"),
)


def hts221(**overrides: Any) -> SensorSpec:
    raw: dict[str, Any] = {
        "uid": "31bacf17-0000-4000-8000-000000000002",
        "name": "HTS221",
        "model": "hts221",
        "manufacturer": "STMicroelectronics",
        "market": "Consumer",
        "type": {"sensorCategory": "Environmental", "sensorType": ["Temperature", "Humidity"]},
        "samplingRate": "1",
        "accuracy": ["0.5", "3.5"],
        "consumption": "0.002",
        "latency": "15",
        "properties": {"unit": {"measurement": ["°C", "%"]}},
        "access": {"type": "MQTT", "source": "eventbus", "resource": {"topic": "x/y", "node": ""}},
    }
    raw.update(overrides)
    spec, errors = parse_sensor_entry(raw)
    assert spec is not None, errors
    return spec


# ---------------------------------------------------------------------------------------
# A small structural-schema checker: type, required, properties, and what the API server
# would prune (fields a schema does not declare, unless it preserves unknown fields).


@pytest.fixture(scope="module")
def flavor_schema() -> dict[str, Any]:
    # The pinned, checksum-verified upstream CRD (local mirror, cache or its origin): no skip.
    [file] = [f for f in upstream.CRDS if f.mirror_path.endswith(CRD_FILE)]
    crd = yaml.safe_load(upstream.read(file))
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == FLAVOR.version]
    return version["schema"]["openAPIV3Schema"]


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    errors: list[str] = []
    expected = schema.get("type")
    if expected:
        ok = isinstance(value, _TYPES[expected])
        if expected in ("integer", "number") and isinstance(value, bool):
            ok = False
        if not ok:
            return [f"{path or '.'}: expected {expected}, got {type(value).__name__}"]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], f"{path}.{name}")
            elif path == ".metadata":
                continue  # ObjectMeta is validated by the API server itself
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{name}: not in the schema (would be pruned)")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
    return errors


def test_the_checker_can_fail(flavor_schema: dict[str, Any]) -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    broken = copy.deepcopy(body)
    del broken["spec"]["price"]
    broken["spec"]["owner"]["ip"] = 10
    broken["spec"]["availability"] = "yes"
    broken["spec"]["colour"] = "blue"
    assert sorted(schema_errors(broken, flavor_schema)) == [
        ".spec.availability: expected boolean, got str",
        ".spec.colour: not in the schema (would be pruned)",
        ".spec.owner.ip: expected string, got int",
        ".spec.price: required",
    ]


@pytest.mark.parametrize("available", [True, False])
@pytest.mark.parametrize(
    "provider",
    [PROVIDER, ProviderConfig(node_id="n", domain="d", ip="1.2.3.4", price=PROVIDER.price)],
)
def test_built_flavor_is_valid_against_the_crd(
    flavor_schema: dict[str, Any], available: bool, provider: ProviderConfig
) -> None:
    observed = ObservedPerformance(latency_ms=12.5, rate_hz=0.98, updated="2026-01-01T00:00:00Z")
    body = build_flavor(
        DEVICE, "edge-1", hts221(), provider, available=available, node_uid="u", observed=observed
    )
    assert schema_errors(body, flavor_schema) == []
    # what a kubectl/kopf client sends is JSON: survive that too
    assert schema_errors(json.loads(json.dumps(body)), flavor_schema) == []


# ---------------------------------------------------------------------------------------
# The body


def test_body_carries_fluidos_fields() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    assert body["apiVersion"] == "nodecore.fluidos.eu/v1alpha1" == FLAVOR.api_version
    assert body["kind"] == "Flavor"
    assert body["metadata"]["namespace"] == "fluidos"
    spec = body["spec"]
    assert spec["availability"] is True
    assert spec["flavorType"]["typeIdentifier"] == "Sensor"
    assert spec["owner"] == {"domain": "fluidos.eu", "ip": "10.0.0.7", "nodeID": "provider-node-1"}
    assert spec["providerID"] == "provider-node-1"
    assert spec["price"] == {"amount": "0.5", "currency": "EUR", "period": "hourly"}
    assert spec["location"] == {
        "city": "Heraklion",
        "country": "Greece",
        "latitude": "35.33",
        "longitude": "25.13",
    }


def test_characteristics_are_the_fluidos_edge_fields_with_strings() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    characteristics = body["spec"]["flavorType"]["typeData"]["characteristics"]
    assert list(characteristics) == [
        "uid",
        "node",
        "name",
        "model",
        "manufacturer",
        "market",
        "type",
        "samplingRate",
        "accuracy",
        "consumption",
        "latency",
        "properties",
        "access",
    ]
    assert characteristics["node"] == "edge-1"
    assert characteristics["name"] == "HTS221"
    # FLUIDOS's Go types declare these as string / []string: numbers would not unmarshal.
    assert characteristics["samplingRate"] == "1"
    assert characteristics["latency"] == "15"
    assert characteristics["consumption"] == "0.002"
    assert characteristics["accuracy"] == ["0.5", "3.5"]
    assert characteristics["properties"]["unit"] == {
        "measurement": ["°C", "%"],
        "consumption": "mW",
        "samplingRate": "Hz",
        "latency": "ms",
    }
    assert characteristics["access"] == {
        "type": "MQTT",
        "source": "eventbus",
        "resource": {"topic": source_topic("stwin-01", "hts221"), "node": "edge-1"},
    }


def test_unavailable_and_unlocated_provider() -> None:
    provider = ProviderConfig(
        node_id="n", domain="d", ip="1.2.3.4", provider_id="super-node", price=PROVIDER.price
    )
    body = build_flavor(DEVICE, "edge-1", hts221(), provider, available=False)
    assert body["spec"]["availability"] is False
    assert body["spec"]["providerID"] == "super-node"
    assert "location" not in body["spec"]
    assert "ownerReferences" not in body["metadata"]
    assert "observed" not in body["spec"]["flavorType"]["typeData"]


def test_node_owns_the_flavor_when_its_uid_is_known() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True, node_uid="uid-1")
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "edge-1", "uid": "uid-1"}
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [("node_id", ""), ("domain", " "), ("ip", ""), ("namespace", "")],
)
def test_provider_config_rejects_empty_identity(field: str, value: str) -> None:
    fields: dict[str, Any] = {"node_id": "n", "domain": "d", "ip": "1.2.3.4", field: value}
    with pytest.raises(ValueError, match=field):
        ProviderConfig(price=PROVIDER.price, **fields)


def test_provider_config_rejects_non_string_price() -> None:
    with pytest.raises(ValueError, match=r"price\.amount"):
        ProviderConfig(
            node_id="n",
            domain="d",
            ip="1.2.3.4",
            price=Price(amount=1, currency="EUR", period="h"),  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------------------------------
# Names and labels


def test_name_is_stable_dns_label_and_readable() -> None:
    name = flavor_name(DEVICE, "hts221")
    assert name == flavor_name(DeviceRef("fluidos", "stwin-01"), "hts221")
    assert name.startswith("sensor-stwin-01-hts221-")
    assert DNS_LABEL.match(name) and len(name) <= 63


def test_name_differs_by_namespace_and_by_split() -> None:
    names = {
        flavor_name(DeviceRef("fluidos", "stwin-01"), "hts221"),
        flavor_name(DeviceRef("lab", "stwin-01"), "hts221"),
        flavor_name(DeviceRef("fluidos", "a-b"), "c"),
        flavor_name(DeviceRef("fluidos", "a"), "b-c"),
    }
    assert len(names) == 4


def test_long_names_are_truncated_and_stay_unique() -> None:
    long_device = DeviceRef("fluidos", "stwin." + "x" * 240)
    first = flavor_name(long_device, "temperature-humidity-sensor")
    second = flavor_name(long_device, "temperature-humidity-sensor-2")
    for name in (first, second):
        assert len(name) <= 63 and DNS_LABEL.match(name), name
    assert first != second


def test_labels_are_selectable_and_only_label_safe() -> None:
    labels = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)["metadata"][
        "labels"
    ]
    assert labels[MANAGED_BY_LABEL] == MANAGED_BY_VALUE
    assert labels[DEVICE_NAMESPACE_LABEL] == "fluidos"
    assert labels[DEVICE_NAME_LABEL] == "stwin-01"
    assert labels[NODE_LABEL] == "edge-1"
    assert labels[SENSOR_KEY_LABEL] == "hts221"
    assert labels[f"{TYPE_LABEL_PREFIX}temperature"] == "true"
    assert labels[f"{TYPE_LABEL_PREFIX}humidity"] == "true"

    long_device = DeviceRef("fluidos", "d" * 70)
    body = build_flavor(long_device, "edge-1", hts221(), PROVIDER, available=True)
    assert DEVICE_NAME_LABEL not in body["metadata"]["labels"]
    assert body["metadata"]["annotations"][DEVICE_ANNOTATION] == f"fluidos/{'d' * 70}"
    for key, value in body["metadata"]["labels"].items():
        assert len(value) <= 63 and re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", value)
        assert len(key.split("/")[-1]) <= 63


# ---------------------------------------------------------------------------------------
# Reading back


def test_sensor_from_flavor_round_trips() -> None:
    spec = hts221()
    observed = ObservedPerformance(latency_ms=12.5, rate_hz=0.98, updated="2026-01-01T00:00:00Z")
    body = build_flavor(DEVICE, "edge-1", spec, PROVIDER, available=True, observed=observed)
    view = sensor_from_flavor(json.loads(json.dumps(body)))
    assert view.name == body["metadata"]["name"]
    assert view.namespace == "fluidos"
    assert view.provider_id == "provider-node-1"
    assert view.node == "edge-1"
    assert view.device == "fluidos/stwin-01"
    assert view.availability is True
    assert view.price == PROVIDER.price
    assert view.observed == observed
    assert view.observed_latency_ms == 12.5
    # Everything but the access resource (rewritten to our topic scheme) comes back.
    assert view.sensor.access.resource.topic == source_topic("stwin-01", "hts221")
    assert view.sensor.access.resource.node == "edge-1"
    assert view.sensor == spec.__class__(**{**spec.__dict__, "access": view.sensor.access})


def test_key_from_metadata_wins_over_derivation() -> None:
    spec = SensorSpec(
        key="temp",
        uid="u",
        name="Temperature probe",
        model="m",
        manufacturer="x",
        category="Environmental",
        types=("Temperature",),
        units=SensorUnits(measurement=("°C",)),
    )
    view = sensor_from_flavor(build_flavor(DEVICE, "edge-1", spec, PROVIDER, available=True))
    assert view.sensor.key == "temp"


def test_sensor_from_rear_flavor_item() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    item = {
        "flavorID": body["metadata"]["name"],
        "providerID": "provider-node-1",
        "type": {"name": "Sensor", "data": body["spec"]["flavorType"]["typeData"]},
        "owner": body["spec"]["owner"],
        "price": body["spec"]["price"],
        "availability": True,
        "timestamp": "2026-01-01T00:00:00Z",
    }
    assert is_sensor_flavor(item)
    view = sensor_from_flavor(item)
    assert (view.name, view.node, view.device, view.availability) == (
        body["metadata"]["name"],
        "edge-1",
        None,
        True,
    )
    assert view.sensor.types == ("Temperature", "Humidity")
    assert view.observed is None


def test_not_a_sensor_flavor() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    body["spec"]["flavorType"]["typeIdentifier"] = "K8Slice"
    assert not is_sensor_flavor(body)
    with pytest.raises(FlavorError, match="typeIdentifier is 'K8Slice', not 'Sensor'"):
        sensor_from_flavor(body)
    with pytest.raises(FlavorError, match="not a Flavor"):
        sensor_from_flavor({"kind": "Node"})


def test_broken_characteristics_name_flavor_and_field() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    body["spec"]["flavorType"]["typeData"]["characteristics"]["latency"] = "fast"
    name = body["metadata"]["name"]
    with pytest.raises(FlavorError) as raised:
        sensor_from_flavor(body)
    assert str(raised.value) == (
        f"Flavor fluidos/{name}: spec.flavorType.typeData.characteristics: "
        '"latency" must be a number of ms, got "fast"'
    )
    del body["spec"]["flavorType"]["typeData"]["characteristics"]
    with pytest.raises(FlavorError, match="characteristics is missing"):
        sensor_from_flavor(body)


# ---------------------------------------------------------------------------------------
# Other people's Flavors: only FlavorError comes out, short and naming the field


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def rear_item(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "flavorID": body["metadata"]["name"],
        "providerID": "p",
        "type": {"name": "Sensor", "data": body["spec"]["flavorType"]["typeData"]},
        "price": body["spec"]["price"],
        "availability": True,
    }


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        body = body[key]
    body[leaf] = value


CHARS = "spec.flavorType.typeData.characteristics"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("metadata.name", "n" * 1_000_000, "metadata.name is 1000000 characters"),
        ("metadata.name", 10**5000, "metadata.name must be a string"),
        ("metadata.namespace", deep(100_000), "metadata.namespace must be a string"),
        ("spec.providerID", "p" * 1_000, "spec.providerID is 1000 characters"),
        ("spec.providerID", ["p"], "spec.providerID must be a string"),
        ("spec.price", {"amount": 10**5000}, "spec.price.amount must be a string"),
        ("spec.price", {"amount": "1", "currency": "€" * 64}, "spec.price.currency is 64"),
        ("spec.flavorType.typeIdentifier", "S" * 1_000_000, "typeIdentifier is 'SSSS"),
        ("spec.flavorType.typeIdentifier", deep(100_000), "typeIdentifier is [[[["),
        ("spec.flavorType.typeData", deep(100_000), "characteristics is missing"),
        (f"{CHARS}.latency", 10**400, '"latency" must be a number of ms, got 1000'),
        (f"{CHARS}.latency", 10**5000, "got <a number of about 5001 digits> (out of range)"),
        (f"{CHARS}.latency", deep(100_000), '"latency" must be a number of ms, got [[[['),
        (f"{CHARS}.accuracy", [10**400, 1], '"accuracy[0]"'),
        (f"{CHARS}.name", "n" * 1_000_000, '"name" is 1000000 characters long; at most 253'),
        (f"{CHARS}.node", "n" * 1_000, "characteristics.node is 1000 characters long"),
        (f"{CHARS}.node", {"a": 1}, "characteristics.node must be a string"),
        (f"{CHARS}.type", {"sensorCategory": "c", "sensorType": ["t"] * 10_000}, "at most 16"),
        ("metadata.annotations", {"sensors.fluidos.eu/sensor": "k" * 64}, "at most 63"),
        ("metadata.annotations", {"sensors.fluidos.eu/device": 1}, "must be a string"),
    ],
    ids=lambda v: v[:30] if isinstance(v, str) else type(v).__name__,
)
def test_hostile_flavor_raises_only_a_short_flavor_error(path: str, value: Any, field: str) -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    set_path(body, path, value)
    with pytest.raises(FlavorError) as raised:
        sensor_from_flavor(body)
    message = str(raised.value)
    assert field in message
    assert message.startswith("Flavor")
    assert len(message) <= 600


def test_many_broken_characteristics_are_summarised() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    chars = body["spec"]["flavorType"]["typeData"]["characteristics"]
    for key in ("name", "uid", "model", "manufacturer", "market", "latency", "samplingRate"):
        chars[key] = deep(50)
    with pytest.raises(FlavorError) as raised:
        sensor_from_flavor(body)
    assert "more problem(s)" in str(raised.value)
    assert len(str(raised.value)) <= 600


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"flavorID": "f" * 1_000_000}, "flavorID is 1000000 characters"),
        ({"flavorID": deep(100_000)}, "flavorID must be a string"),
        ({"type": "sensor"}, "type must be an object"),
        ({"type": {"name": 10**5000}}, "type.name is <a number of about 5001 digits>"),
        ({"type": {"name": "Sensor", "data": deep(100_000)}}, "type.data.characteristics"),
        ({"providerID": 10**5000}, "providerID must be a string"),
        ({"price": {"period": "p\x1b[2J"}}, "price.period must not contain control"),
    ],
)
def test_hostile_rear_item_raises_only_a_flavor_error(change: dict[str, Any], field: str) -> None:
    item = rear_item(build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True))
    item.update(change)
    assert isinstance(is_sensor_flavor(item), bool)
    with pytest.raises(FlavorError) as raised:
        sensor_from_flavor(item)
    assert field in str(raised.value)
    assert len(str(raised.value)) <= 600


@pytest.mark.parametrize(
    "obj",
    [None, [], "flavor", 10**5000, deep(100_000), {"spec": []}],
    ids=["null", "array", "string", "5001-digits", "100k-deep", "spec-array"],
)
def test_not_a_flavor_at_all(obj: Any) -> None:
    assert is_sensor_flavor(obj) is False
    with pytest.raises(FlavorError, match="not a Flavor"):
        sensor_from_flavor(obj)


def test_numeric_price_and_odd_observed_values_are_tolerated() -> None:
    body = build_flavor(DEVICE, "edge-1", hts221(), PROVIDER, available=True)
    body["spec"]["price"]["amount"] = 2
    body["spec"]["flavorType"]["typeData"]["observed"] = {
        "latencyMs": 10**400,
        "samplingRateHz": "1" * 5001,
        "updated": "u" * 1_000,
    }
    view = sensor_from_flavor(body)
    assert view.price is not None and view.price.amount == "2"
    assert view.observed == ObservedPerformance()

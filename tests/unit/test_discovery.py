"""Resource-manager decisions over plain Node, Device and DeviceModel dicts."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fluidos_sensors.api import EDGE_WORKER_LABEL, SENSORS_ANNOTATION
from fluidos_sensors.flavor import (
    ObservedPerformance,
    Price,
    ProviderConfig,
    flavor_name,
    sensor_from_flavor,
)
from fluidos_sensors.sensor import DeviceRef
from resource_manager.discovery import (
    desired_flavors,
    device_model_name,
    device_node,
    device_sensors,
    is_edge_worker,
    node_available,
    sensors_from_device_model,
)

PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="10.0.0.7",
    price=Price(amount="1", currency="EUR", period="hourly"),
)


def node(
    name: str = "edge-1",
    *,
    labelled: bool = True,
    ready: str | None = "True",
    cordoned: bool = False,
    reason: str = "KubeletNotReady",
) -> dict[str, Any]:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append(
            {"type": "Ready", "status": ready, "reason": reason, "message": "edgecore gone"}
        )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {EDGE_WORKER_LABEL: "true"} if labelled else {"other": "x"},
        },
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {"conditions": conditions},
    }


SENSORS = [
    {
        "uid": "a1",
        "name": "HTS221",
        "model": "hts221",
        "manufacturer": "STMicroelectronics",
        "type": {"sensorCategory": "Environmental", "sensorType": ["Temperature", "Humidity"]},
        "samplingRate": "1",
        "latency": "15",
        "properties": {"unit": {"measurement": ["°C", "%"]}},
    },
    {
        "uid": "a2",
        "name": "ILPS22QS",
        "model": "ilps22qs",
        "manufacturer": "STMicroelectronics",
        "type": {"sensorCategory": "Environmental", "sensorType": ["Pressure"]},
        "properties": {"unit": {"measurement": ["hPa"]}},
    },
]


def device(
    *,
    api_version: str = "devices.kubeedge.io/v1beta1",
    spec: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    sensors: list[Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": "stwin-01",
        "namespace": "fluidos",
        "uid": "dev-uid",
        "labels": labels or {},
    }
    if sensors is not None:
        metadata["annotations"] = {
            SENSORS_ANNOTATION: base64.b64encode(json.dumps(sensors).encode()).decode()
        }
    return {
        "apiVersion": api_version,
        "kind": "Device",
        "metadata": metadata,
        "spec": {"deviceModelRef": {"name": "stwin-box"}, "nodeName": "edge-1"}
        if spec is None
        else spec,
    }


def selector(*expressions: dict[str, Any], fields: list[Any] | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"matchExpressions": list(expressions)}
    if fields:
        term["matchFields"] = fields
    return {"nodeSelector": {"nodeSelectorTerms": [term]}}


# ---------------------------------------------------------------------------------------
# Nodes


def test_is_edge_worker() -> None:
    assert is_edge_worker(node())
    assert not is_edge_worker(node(labelled=False))
    assert not is_edge_worker({"metadata": {}})
    assert is_edge_worker(
        {"metadata": {"labels": {"role": "edge"}}}, label_key="role", label_value="edge"
    )
    assert not is_edge_worker({"metadata": {"labels": {EDGE_WORKER_LABEL: "false"}}})


def test_node_available_when_ready_labelled_and_schedulable() -> None:
    assert node_available(node()) == (True, "node edge-1 is Ready")


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (node(ready="False"), "node edge-1 is not Ready (KubeletNotReady: edgecore gone)"),
        (node(ready="Unknown", reason=""), "node edge-1 is not Ready (edgecore gone)"),
        (node(ready=None), "node edge-1 reports no Ready condition"),
        (node(cordoned=True), "node edge-1 is cordoned (spec.unschedulable)"),
        (node(labelled=False), f"node edge-1 lacks label {EDGE_WORKER_LABEL}=true"),
    ],
)
def test_node_unavailable_says_why(obj: dict[str, Any], reason: str) -> None:
    assert node_available(obj) == (False, reason)


# ---------------------------------------------------------------------------------------
# Device binding


def test_v1beta1_node_name() -> None:
    assert device_node(device()) == "edge-1"


@pytest.mark.parametrize("key", ["", "kubernetes.io/hostname"])
def test_v1alpha2_node_selector(key: str) -> None:
    spec = selector({"key": key, "operator": "In", "values": ["edge-2", "edge-3"]})
    assert device_node(device(api_version="devices.kubeedge.io/v1alpha2", spec=spec)) == "edge-2"


def test_node_selector_skips_other_keys_and_operators() -> None:
    spec = selector(
        {"key": "zone", "operator": "In", "values": ["north"]},
        {"key": "", "operator": "NotIn", "values": ["edge-9"]},
        {"key": "", "operator": "In", "values": []},
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["edge-4"]},
    )
    assert device_node(device(spec=spec)) == "edge-4"


def test_node_selector_match_fields_by_name() -> None:
    spec = selector(fields=[{"key": "metadata.name", "operator": "In", "values": ["edge-5"]}])
    assert device_node(device(spec=spec)) == "edge-5"


def test_node_name_wins_and_unbound_is_none() -> None:
    spec = {
        "nodeName": "edge-1",
        **selector({"key": "", "operator": "In", "values": ["edge-2"]}),
    }
    assert device_node(device(spec=spec)) == "edge-1"
    assert device_node(device(spec={})) is None
    assert device_node(device(spec={"nodeName": ""})) is None
    zone_only = selector({"key": "zone", "operator": "In", "values": ["a"]})
    assert device_node(device(spec=zone_only)) is None
    assert device_node(device(spec={"nodeSelector": {"nodeSelectorTerms": []}})) is None


def test_device_model_name() -> None:
    assert device_model_name(device()) == "stwin-box"
    assert device_model_name(device(spec={})) is None


# ---------------------------------------------------------------------------------------
# Sensors from a DeviceModel


def model_v1beta1() -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "stwin-box", "namespace": "fluidos"},
        "spec": {
            "protocol": "bluest",
            "properties": [
                {"name": "temperature", "type": "FLOAT", "unit": "°C", "accessMode": "ReadOnly"},
                {"name": "humidity", "type": "INT", "unit": "%"},
                {"name": "firmware", "type": "STRING", "accessMode": "ReadOnly"},
                {"name": "odr", "type": "INT", "unit": "Hz", "accessMode": "ReadWrite"},
                {"name": "environmental", "type": "INT", "accessMode": "ReadOnly"},
                {"name": "Humidity", "type": "DOUBLE", "unit": "%"},
            ],
        },
    }


def test_sensors_from_v1beta1_model_with_labels() -> None:
    dev = device(
        labels={"manufacturer": "STMicroelectronics", "model": "STEVAL-STWINBX1", "market": "x"},
        spec={
            "nodeName": "edge-1",
            "properties": [{"name": "temperature", "collectCycle": 500_000_000}],
        },
    )
    sensors, problems = sensors_from_device_model(dev, model_v1beta1())
    assert [s.key for s in sensors] == ["temperature", "humidity"]
    temperature, humidity = sensors
    assert temperature.manufacturer == "STMicroelectronics"
    assert temperature.model == "STEVAL-STWINBX1"
    assert temperature.market == "x"
    assert temperature.category == "Environmental"
    assert temperature.types == ("temperature",)
    assert temperature.units.measurement == ("°C",)
    assert temperature.sampling_rate_hz == 2.0  # collectCycle 500 ms, in ns
    assert temperature.uid == "dev-uid/temperature"
    assert humidity.sampling_rate_hz is None
    assert [str(p) for p in problems] == [
        "Device fluidos/stwin-01: DeviceModel fluidos/stwin-box: property 2 (firmware): "
        "skipped: type STRING is not a numeric reading",
        "Device fluidos/stwin-01: DeviceModel fluidos/stwin-box: property 3 (odr): "
        "skipped: it is ReadWrite, a setting rather than a reading",
        "Device fluidos/stwin-01: DeviceModel fluidos/stwin-box: property 4 (environmental): "
        'skipped: it has no unit; set "unit" on the property or describe the sensors in '
        'annotation "sensors"',
        "Device fluidos/stwin-01: DeviceModel fluidos/stwin-box: property 5 (Humidity): "
        '"name" gives sensor key "humidity", already used by property 1; '
        "each sensor of a device needs a distinct name",
    ]


def test_sensors_from_v1alpha2_model() -> None:
    model = {
        "apiVersion": "devices.kubeedge.io/v1alpha2",
        "metadata": {"name": "bluenrg", "namespace": "fluidos"},
        "spec": {
            "properties": [
                {"name": "pressure", "type": {"float": {"accessMode": "ReadOnly", "unit": "hPa"}}},
                {"name": "config", "type": {"string": {"accessMode": "ReadWrite"}}},
            ]
        },
    }
    dev = device(
        api_version="devices.kubeedge.io/v1alpha2",
        labels={"sensors.fluidos.eu/manufacturer": "ST", "manufacturer": "ignored"},
        spec={
            **selector({"key": "", "operator": "In", "values": ["edge-1"]}),
            "propertyVisitors": [{"propertyName": "pressure", "collectCycle": 100_000_000}],
        },
    )
    sensors, problems = sensors_from_device_model(dev, model)
    [pressure] = sensors
    assert pressure.manufacturer == "ST"
    assert pressure.model == "bluenrg"  # no model label: the DeviceModel's name
    assert pressure.sampling_rate_hz == 10.0  # 100 ms in ns
    assert pressure.units.measurement == ("hPa",)
    assert [p.sensor for p in problems] == ["config"]


def test_no_manufacturer_label_is_one_problem() -> None:
    sensors, problems = sensors_from_device_model(device(), model_v1beta1())
    assert sensors == []
    assert len(problems) == 1
    assert "no manufacturer label" in str(problems[0])
    assert str(problems[0]).startswith("Device fluidos/stwin-01: DeviceModel fluidos/stwin-box:")


def test_category_label_and_unknown_quantity() -> None:
    model = {
        "metadata": {"name": "m"},
        "spec": {"properties": [{"name": "co2", "type": "INT", "unit": "ppm"}]},
    }
    [co2], _ = sensors_from_device_model(device(labels={"manufacturer": "S"}), model)
    assert co2.category == "Generic"
    labelled = device(labels={"manufacturer": "S", "category": "AirQuality"})
    [co2], _ = sensors_from_device_model(labelled, model)
    assert co2.category == "AirQuality"


def test_device_sensors_prefers_the_annotation() -> None:
    dev = device(sensors=SENSORS, labels={"manufacturer": "S"})
    sensors, problems = device_sensors(dev, model_v1beta1())
    assert [s.key for s in sensors] == ["hts221", "ilps22qs"]
    assert problems == []
    sensors, _ = device_sensors(device(labels={"manufacturer": "S"}), model_v1beta1())
    assert [s.key for s in sensors] == ["temperature", "humidity"]
    sensors, problems = device_sensors(device())
    assert sensors == []
    assert 'no "sensors" annotation and its DeviceModel stwin-box was not found' in str(problems[0])


def test_device_sensors_reports_a_broken_annotation() -> None:
    dev = device(sensors=[])
    dev["metadata"]["annotations"][SENSORS_ANNOTATION] = "%%%"
    sensors, problems = device_sensors(dev, model_v1beta1())
    assert sensors == []
    assert "is not valid base64" in str(problems[0])


# ---------------------------------------------------------------------------------------
# Desired Flavors


def test_desired_flavors_one_per_sensor_available_on_ready_node() -> None:
    dev = device(sensors=SENSORS)
    sensors, _ = device_sensors(dev)
    flavors = desired_flavors(dev, node(), sensors, PROVIDER)
    ref = DeviceRef("fluidos", "stwin-01")
    assert set(flavors) == {flavor_name(ref, "hts221"), flavor_name(ref, "ilps22qs")}
    for name, body in flavors.items():
        assert body["metadata"]["name"] == name
        assert body["spec"]["availability"] is True
        assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-edge-1"
        view = sensor_from_flavor(body)
        assert (view.node, view.device) == ("edge-1", "fluidos/stwin-01")
    assert desired_flavors(dev, node(), sensors, PROVIDER) == flavors  # deterministic


@pytest.mark.parametrize(
    "bound_node",
    [None, node(ready="False"), node(cordoned=True), node(labelled=False)],
)
def test_desired_flavors_unavailable_when_node_is(bound_node: dict[str, Any] | None) -> None:
    dev = device(sensors=SENSORS)
    sensors, _ = device_sensors(dev)
    flavors = desired_flavors(dev, bound_node, sensors, PROVIDER)
    assert len(flavors) == 2
    assert all(body["spec"]["availability"] is False for body in flavors.values())


def test_desired_flavors_none_for_unbound_device_or_no_sensors() -> None:
    dev = device(sensors=SENSORS, spec={})
    sensors, _ = device_sensors(dev)
    assert desired_flavors(dev, None, sensors, PROVIDER) == {}
    assert desired_flavors(device(), node(), [], PROVIDER) == {}


def test_desired_flavors_binding_given_by_the_caller() -> None:
    # A v1alpha2 nodeSelector does not survive v1beta1 storage: callers may know better.
    dev = device(sensors=SENSORS, spec={})
    sensors, _ = device_sensors(dev)
    by_name = desired_flavors(dev, None, sensors, PROVIDER, node_name="edge-7")
    assert {sensor_from_flavor(b).node for b in by_name.values()} == {"edge-7"}
    assert all(b["spec"]["availability"] is False for b in by_name.values())
    by_node = desired_flavors(dev, node("edge-7"), sensors, PROVIDER)
    assert all(b["spec"]["availability"] is True for b in by_node.values())
    assert set(by_node) == set(by_name)


def test_desired_flavors_reject_the_wrong_node() -> None:
    dev = device(sensors=SENSORS)
    sensors, _ = device_sensors(dev)
    with pytest.raises(ValueError, match="bound to node edge-1, not edge-2"):
        desired_flavors(dev, node("edge-2"), sensors, PROVIDER)
    with pytest.raises(ValueError, match="bound to node edge-3, not edge-1"):
        desired_flavors(dev, node("edge-1"), sensors, PROVIDER, node_name="edge-3")


def test_desired_flavors_keep_observed_performance() -> None:
    dev = device(sensors=SENSORS)
    sensors, _ = device_sensors(dev)
    seen = ObservedPerformance(latency_ms=22.0, rate_hz=1.0)
    flavors = desired_flavors(dev, node(), sensors, PROVIDER, observed={"hts221": seen})
    views = {v.sensor.key: v for v in map(sensor_from_flavor, flavors.values())}
    assert views["hts221"].observed == seen
    assert views["ilps22qs"].observed is None

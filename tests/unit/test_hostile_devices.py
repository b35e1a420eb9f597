"""Hostile Devices and DeviceModels: the resource manager's decisions never raise and every
problem names the entry and the field, in a message that fits an Event."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fluidos_sensors.api import SENSORS_ANNOTATION
from fluidos_sensors.flavor import Price, ProviderConfig, sensor_from_flavor
from resource_manager.discovery import device_node, sensors_from_device_model
from resource_manager.reconcile import device_binding, device_outcome

PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="10.0.0.7",
    price=Price(amount="1", currency="EUR", period="hourly"),
)
EDGE = {
    "metadata": {"name": "edge-1", "uid": "u1", "labels": {"node-role.fluidos.eu/sensors": "true"}},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}
EVENT_MESSAGE_MAX = 1000  # what the operator posts; the API server allows 1 KiB
GOOD_SENSOR = {
    "name": "temp",
    "model": "STTS22H",
    "manufacturer": "STMicroelectronics",
    "type": {"sensorCategory": "Environmental", "sensorType": ["temperature"]},
    "latency": "15",
}


def device(annotation: str | None = None, spec: Any = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "board", "namespace": "ns", "uid": "dev-uid", **meta}
    if annotation is not None:
        metadata["annotations"] = {SENSORS_ANNOTATION: annotation}
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": metadata,
        "spec": {"nodeName": "edge-1"} if spec is None else spec,
    }


def hostile(field: str, raw_json: str) -> str:
    """A plain-JSON annotation: a good sensor, then one whose ``field`` is ``raw_json``."""
    bad = json.dumps({**GOOD_SENSOR, "name": "evil"})[:-1] + f', "{field}": {raw_json}}}'
    return f"[{json.dumps(GOOD_SENSOR)}, {bad}]"


@pytest.mark.parametrize(
    ("field", "raw_json"),
    [
        ("latency", str(10**400)),
        ("accuracy", f"[{10**400}]"),
        ("latency", "1" * 5001),
        # 90k levels: in base64, 100k would pass the 256 KiB bound (a problem of its own).
        ("latency", "[" * 90_000 + "]" * 90_000),
        ("model", json.dumps("m" * 100_000)),
    ],
    ids=["10**400-latency", "10**400-accuracy", "5001-digits", "90k-deep", "100k-model"],
)
@pytest.mark.parametrize("encoding", ["json", "base64"])
def test_hostile_entry_costs_only_itself(field: str, raw_json: str, encoding: str) -> None:
    raw = hostile(field, raw_json)
    if encoding == "base64":
        raw = base64.b64encode(raw.encode()).decode()
    dev = device(raw)
    assert device_binding(dev) == "edge-1"
    outcome = device_outcome(dev, {"edge-1": EDGE}, None, PROVIDER)
    [flavor] = outcome.desired.values()
    assert sensor_from_flavor(flavor).sensor.name == "temp"
    [problem] = outcome.problems
    assert f'entry 1 (evil): "{field}' in problem
    assert len(problem) <= EVENT_MESSAGE_MAX


def test_device_bound_only_through_a_hostile_annotation_is_unbound() -> None:
    raw = "[" * 100_000 + "]" * 100_000
    dev = device(raw, spec={})
    assert device_binding(dev) is None
    outcome = device_outcome(dev, {"edge-1": EDGE}, None, PROVIDER)
    assert outcome.desired == {}
    assert outcome.problems == [
        'Device ns/board: annotation "sensors": entry 0: must be a JSON object, got an array'
    ]


def test_unknown_node_of_a_megabyte_is_not_echoed_whole() -> None:
    dev = device(json.dumps([GOOD_SENSOR]), spec={"nodeName": "n" * 1_000_000})
    outcome = device_outcome(dev, {"edge-1": EDGE}, None, PROVIDER)
    assert outcome.desired == {} and outcome.problems == []
    assert outcome.unbound is not None
    assert "is bound to unknown node" in outcome.unbound.message
    assert len(outcome.unbound.message) <= 200


@pytest.mark.parametrize(
    "spec",
    [
        [],
        "edge-1",
        {"nodeName": 5},
        {"nodeName": ["edge-1"]},
        {"nodeSelector": []},
        {"nodeSelector": {"nodeSelectorTerms": "edge-1"}},
        {"nodeSelector": {"nodeSelectorTerms": ["edge-1", 3, None, []]}},
        {"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": "x"}]}},
        {"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": ["x", None, 1]}]}},
        {"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": ""}]}]}},
        {
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "", "operator": "In", "values": "edge-1"}]}
                ]
            }
        },
        {
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "", "operator": "In", "values": [10**5000]}]}
                ]
            }
        },
        {"nodeSelector": {"nodeSelectorTerms": [{"matchFields": [["metadata.name"]]}]}},
    ],
)
def test_node_selector_of_odd_shape_binds_nothing(spec: Any) -> None:
    assert device_node(device(spec=spec)) is None


def test_selector_after_odd_terms_still_binds() -> None:
    term = {"matchExpressions": [{"key": "", "operator": "In", "values": ["edge-2"]}]}
    spec = {"nodeSelector": {"nodeSelectorTerms": ["junk", {"matchExpressions": [7]}, term]}}
    assert device_node(device(spec=spec)) == "edge-2"


def test_odd_metadata_does_not_raise() -> None:
    dev = {"metadata": ["x"], "spec": {"nodeName": "edge-1"}}
    outcome = device_outcome(dev, {"edge-1": EDGE}, None, PROVIDER)
    assert outcome.desired == {}
    assert "annotation" in outcome.problems[0] and "DeviceModel" in outcome.problems[0]
    dev = device(annotations=["sensors"])
    assert device_outcome(dev, {"edge-1": EDGE}, None, PROVIDER).desired == {}


# ---------------------------------------------------------------------------------------
# Sensors derived from a DeviceModel


def model(*properties: Any) -> dict[str, Any]:
    return {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"properties": list(properties)}}


def with_cycle(cycle: Any, *, alpha: bool = False) -> dict[str, Any]:
    items = [{"propertyName" if alpha else "name": "temperature", "collectCycle": cycle}]
    return device(
        spec={"nodeName": "edge-1", ("propertyVisitors" if alpha else "properties"): items},
        labels={"manufacturer": "Acme"},
    )


TEMPERATURE = {"name": "temperature", "type": "FLOAT", "unit": "°C"}


@pytest.mark.parametrize("alpha", [False, True])
@pytest.mark.parametrize(
    "cycle",
    [10**400, 1e-320, 5e-324, 0, -1, float("inf"), float("nan"), "10s", [1], True],
    ids=str,
)
def test_unusable_collect_cycle_leaves_the_rate_out_and_says_so(cycle: Any, alpha: bool) -> None:
    [sensor], problems = sensors_from_device_model(
        with_cycle(cycle, alpha=alpha), model(TEMPERATURE)
    )
    assert sensor.sampling_rate_hz is None
    [problem] = problems
    assert (problem.entry, problem.field) == (0, "collectCycle")
    text = str(problem)
    assert "property 0 (temperature)" in text and "positive number of nanoseconds" in text
    assert len(text) <= 300


def test_collect_cycle_still_gives_a_rate() -> None:
    [sensor], problems = sensors_from_device_model(with_cycle(10**8), model(TEMPERATURE))
    assert (sensor.sampling_rate_hz, problems) == (10.0, [])


@pytest.mark.parametrize(
    "visitors", [{"name": "temperature"}, "temperature", [None, "x", 3, ["temperature"]]]
)
def test_odd_property_visitors_are_ignored(visitors: Any) -> None:
    dev = device(
        spec={"nodeName": "edge-1", "properties": visitors}, labels={"manufacturer": "Acme"}
    )
    [sensor], problems = sensors_from_device_model(dev, model(TEMPERATURE))
    assert (sensor.sampling_rate_hz, problems) == (None, [])


@pytest.mark.parametrize(
    ("prop", "why"),
    [
        (None, "has no name"),
        ("temperature", "has no name"),
        ({"name": 10**5000, "type": "FLOAT", "unit": "C"}, "has no name"),
        ({"name": "t" * 100_000, "type": "FLOAT", "unit": "C"}, "100000 characters"),
        ({"name": "t\x1b[2J", "type": "FLOAT", "unit": "C"}, "control characters"),
        ({"name": "t", "type": 10**5000, "unit": "C"}, "type (none)"),
        ({"name": "t", "type": {"float": [1]}}, "has no unit"),
        ({"name": "t", "type": "FLOAT", "unit": "u" * 100_000}, "longer than 63"),
        ({"name": "t", "type": "FLOAT", "unit": ["C"]}, "has no unit"),
    ],
)
def test_odd_model_properties_are_skipped_with_a_reason(prop: Any, why: str) -> None:
    dev = device(labels={"manufacturer": "Acme"})
    sensors, problems = sensors_from_device_model(dev, model(prop, TEMPERATURE))
    assert [s.key for s in sensors] == ["temperature"]
    [problem] = problems
    assert problem.entry == 0 and why in problem.message
    assert len(str(problem)) <= 300


def test_too_many_model_properties_are_cut_with_a_problem() -> None:
    props = [{"name": f"p{i}", "type": "INT", "unit": "u"} for i in range(200)]
    sensors, problems = sensors_from_device_model(
        device(labels={"manufacturer": "A"}), model(*props)
    )
    assert len(sensors) == 128
    assert [p.message for p in problems] == [
        "has 200 properties; only the first 128 are read (a Device may have at most that many "
        "sensors)"
    ]


@pytest.mark.parametrize("spec", [None, [], "x", {"properties": "x"}, {"properties": {"a": 1}}])
def test_odd_model_spec_gives_no_sensors(spec: Any) -> None:
    odd = {"metadata": {"name": "m"}, "spec": spec}
    assert sensors_from_device_model(device(labels={"manufacturer": "A"}), odd) == ([], [])


def test_derived_sensors_read_back_from_their_flavor() -> None:
    prop = {"name": "t" * 63, "type": "FLOAT", "unit": "u" * 63}
    dev = device(labels={"manufacturer": "m" * 63, "model": "x" * 63})
    outcome = device_outcome(dev, {"edge-1": EDGE}, model(prop), PROVIDER)
    [flavor] = outcome.desired.values()
    assert sensor_from_flavor(flavor).sensor.types == ("t" * 63,)

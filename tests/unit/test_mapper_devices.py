"""Which Devices a mapper serves, and the Devices it registers for simulated boards."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fluidos_sensors.api import SENSORS_ANNOTATION
from fluidos_sensors.sensor import parse_sensors_annotation
from fluidos_sensors.topics import source_topic
from mapper.dataplane.twins import DeviceKey
from mapper.devices import (
    MAC_FIELD,
    BoundDevice,
    DeviceProblem,
    bind,
    bind_all,
    normalize_mac,
    report_cycle,
)
from mapper.naming import quantity_of, sensor_segment
from mapper.simulated import board_mac, simulated_boards, simulated_devices

NODE = "provider-1-edge"


def device(
    name: str,
    mac: Any = "c0:8a:31:0e:00:01",
    *,
    node: str = NODE,
    protocol: str = "bluetooth",
    created: str = "2026-01-01T00:00:00Z",
    **spec: Any,
) -> dict[str, Any]:
    config = {} if mac is None else {"macAddress": mac}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": {
            "nodeName": node,
            "protocol": {"protocolName": protocol, "configData": config},
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("text", "mac"),
    [
        ("c0:8a:31:0e:00:01", "C0:8A:31:0E:00:01"),
        ("C0-8A-31-0E-00-01", "C0:8A:31:0E:00:01"),
        ("c08a310e0001", "C0:8A:31:0E:00:01"),
        (" C0:8A:31:0E:00:01 ", "C0:8A:31:0E:00:01"),
        ("C0:8A:31-0E:00:01", None),
        ("C0:8A:31:0E:00", None),
        ("zz:8a:31:0e:00:01", None),
        ("", None),
    ],
)
def test_normalize_mac(text: str, mac: str | None) -> None:
    assert normalize_mac(text) == mac


def test_a_bluetooth_device_of_this_node_is_served() -> None:
    bound = bind(device("stwin", properties=[{"name": "t", "reportCycle": 2_000_000_000}]), NODE)
    assert bound == BoundDevice(DeviceKey("ns", "stwin"), "uid-stwin", "C0:8A:31:0E:00:01", 2.0)


@pytest.mark.parametrize(
    "other",
    [
        device("x", node="provider-1-worker"),
        device("x", protocol="modbus"),
        {"metadata": {"name": "x"}, "spec": {"nodeName": NODE}},
    ],
)
def test_other_nodes_and_protocols_are_not_ours(other: dict[str, Any]) -> None:
    assert bind(other, NODE) is None


@pytest.mark.parametrize(
    ("mac", "says"),
    [(None, "is required"), ("", "is required"), ("not-a-mac", "not-a-mac"), (42, "42")],
)
def test_missing_or_invalid_mac_is_a_problem_naming_device_and_field(mac: Any, says: str) -> None:
    problem = bind(device("broken", mac), NODE)
    assert isinstance(problem, DeviceProblem)
    assert problem.field == MAC_FIELD == "spec.protocol.configData.macAddress"
    assert str(problem).startswith(f'Device ns/broken: "{MAC_FIELD}"')
    assert says in str(problem)


def test_bind_all_keeps_good_devices_beside_bad_ones_and_refuses_a_second_claim() -> None:
    bound, problems = bind_all(
        [
            device("late", created="2026-01-02T00:00:00Z"),
            device("first"),
            device("bad", "xx"),
            device("other", "C0:8A:31:0E:00:02"),
        ],
        NODE,
    )
    assert {mac: b.key.name for mac, b in bound.items()} == {
        "C0:8A:31:0E:00:01": "first",
        "C0:8A:31:0E:00:02": "other",
    }
    assert sorted(p.key.name for p in problems) == ["bad", "late"]
    assert "already served as Device ns/first" in str(
        next(p for p in problems if p.key.name == "late")
    )


def test_report_cycle_is_the_shortest_in_nanoseconds() -> None:
    spec = {
        "stateReport": {"reportCycle": 5_000_000_000},
        "properties": [
            {"name": "a", "reportCycle": 3_000_000_000},
            {"name": "b", "reportCycle": 1_000_000_000, "reportToCloud": False},
            {"name": "c", "reportCycle": "fast"},
        ],
    }
    assert report_cycle(spec) == 3.0
    assert report_cycle({}) is None


def test_sensor_names_follow_the_shared_key() -> None:
    assert sensor_segment("angular_velocity") == "angular-velocity"
    assert sensor_segment("temperature2") == "temperature2"
    assert quantity_of("temperature2") == "temperature"


def test_simulated_boards_are_deterministic_and_alternate() -> None:
    first = simulated_boards(NODE, 3)
    again = simulated_boards(NODE, 3)
    assert [m for m, _ in first] == ["stwin-box", "sensortile", "stwin-box"]
    assert [b.mac for _, b in first] == [b.mac for _, b in again]
    assert len({b.mac for _, b in first}) == 3
    assert board_mac(NODE, 1) != board_mac("provider-2-edge", 1)


def test_simulated_devices_carry_a_sensors_annotation_the_resource_manager_reads() -> None:
    boards = simulated_boards(NODE, 2, inertial_hz=30, environmental_hz=20)
    bodies = simulated_devices(NODE, "default", boards, report_cycle_seconds=10)
    stwin, tile = bodies
    assert stwin["metadata"]["name"] == f"{NODE}-stwin-box-1"
    assert stwin["spec"]["nodeName"] == NODE
    assert stwin["spec"]["protocol"] == {
        "protocolName": "bluetooth",
        "configData": {"macAddress": boards[0][1].mac},
    }
    assert bind(stwin, NODE).mac == boards[0][1].mac  # type: ignore[union-attr]
    specs, problems = parse_sensors_annotation(
        stwin["metadata"]["annotations"][SENSORS_ANNOTATION], device="default/x"
    )
    assert problems == []
    by_key = {s.key: s for s in specs}
    assert set(by_key) == {
        "pressure",
        "temperature",
        "acceleration",
        "angular-velocity",
        "magnetic-field",
    }
    assert by_key["temperature"].model == "STTS22H"
    assert by_key["temperature"].manufacturer == "STMicroelectronics"
    assert by_key["temperature"].sampling_rate_hz == 20
    assert by_key["acceleration"].sampling_rate_hz == 30
    assert by_key["pressure"].accuracy[0].value == 0.5
    assert by_key["angular-velocity"].access.resource.topic == source_topic(
        stwin["metadata"]["name"], "angular-velocity"
    )
    tile_entries = json.loads(base64.b64decode(tile["metadata"]["annotations"][SENSORS_ANNOTATION]))
    assert "humidity" in {entry["name"] for entry in tile_entries}
    assert {p["name"] for p in stwin["spec"]["properties"]} == set(by_key)
    assert stwin["spec"]["stateReport"]["reportCycle"] == 10_000_000_000

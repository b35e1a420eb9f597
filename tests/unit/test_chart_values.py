"""Facts the chart states in YAML that the Python side also defines: they must agree."""

from __future__ import annotations

from typing import Any

import yaml

from fluidos_sensors import broker, shaping
from fluidos_sensors.endpoints import DeliveryFormat
from testbed import paths


def test_the_charts_broker_queues_as_much_as_the_testbeds() -> None:
    config = yaml.safe_load((paths.CHART_DIR / "values.yaml").read_text())["edge"]["mosquitto"]
    assert config["config"]["maxQueuedMessages"] == broker.QUEUED_MESSAGES_MAX
    assert config["config"]["maxInflightMessages"] == broker.INFLIGHT_MESSAGES_MAX


def _properties(node: object, name: str) -> list[dict[str, Any]]:
    """Every schema of a property `name` in a CRD schema, outermost first."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        schema = node.get("properties", {}).get(name)
        if isinstance(schema, dict):
            found.append(schema)
        for value in node.values():
            found += _properties(value, name)
    elif isinstance(node, list):
        for value in node:
            found += _properties(value, name)
    return found


def _crd(name: str) -> object:
    return yaml.safe_load((paths.CHART_DIR / "files/crds" / name).read_text())


def test_the_crds_take_every_delivery_format_and_no_other() -> None:
    for crd in ("sensorrequests.yaml", "sensorroutes.yaml"):
        enums = [p["enum"] for p in _properties(_crd(crd), "format") if "enum" in p]
        assert enums == [list(DeliveryFormat)], crd


def test_the_crds_take_the_shapes_the_agent_takes() -> None:
    for crd in ("sensorrequests.yaml", "sensorroutes.yaml"):
        # (the route status's `shape` is a string)
        found = [p for p in _properties(_crd(crd), "shape") if p.get("type") == "object"]
        assert len(found) == 1, crd
        shape = found[0]["properties"]
        assert shape["aggregate"]["items"]["enum"] == list(shaping.AGGREGATES)
        assert (shape["windowMs"]["minimum"], shape["windowMs"]["maximum"]) == (
            shaping.WINDOW_MS_MIN,
            shaping.WINDOW_MS_MAX,
        )
        assert shape["every"]["maximum"] == shaping.EVERY_MAX

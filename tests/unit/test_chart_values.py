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


def _format_enums(node: object) -> list[list[str]]:
    """Every `format` property's enum in a CRD schema."""
    found: list[list[str]] = []
    if isinstance(node, dict):
        fmt = node.get("properties", {}).get("format")
        if isinstance(fmt, dict) and "enum" in fmt:
            found.append(fmt["enum"])
        for value in node.values():
            found += _format_enums(value)
    elif isinstance(node, list):
        for value in node:
            found += _format_enums(value)
    return found


def test_the_crds_take_every_delivery_format_and_no_other() -> None:
    for crd in ("sensorrequests.yaml", "sensorroutes.yaml"):
        enums = _format_enums(yaml.safe_load((paths.CHART_DIR / "files/crds" / crd).read_text()))
        assert enums == [list(DeliveryFormat)], crd


def _shape_schemas(node: object) -> list[dict[str, Any]]:
    """Every `shape` property's schema in a CRD schema."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        shape = node.get("properties", {}).get("shape")
        if isinstance(shape, dict) and shape.get("type") == "object":  # (status: a string)
            found.append(shape["properties"])
        for value in node.values():
            found += _shape_schemas(value)
    elif isinstance(node, list):
        for value in node:
            found += _shape_schemas(value)
    return found


def test_the_crds_take_the_shapes_the_agent_takes() -> None:
    for crd in ("sensorrequests.yaml", "sensorroutes.yaml"):
        found = _shape_schemas(yaml.safe_load((paths.CHART_DIR / "files/crds" / crd).read_text()))
        assert len(found) == 1, crd
        shape = found[0]
        assert shape["aggregate"]["items"]["enum"] == list(shaping.AGGREGATES)
        assert (shape["windowMs"]["minimum"], shape["windowMs"]["maximum"]) == (
            shaping.WINDOW_MS_MIN,
            shaping.WINDOW_MS_MAX,
        )
        assert shape["every"]["maximum"] == shaping.EVERY_MAX

"""Facts the chart states in YAML that the Python side also defines: they must agree."""

from __future__ import annotations

import yaml

from fluidos_sensors import broker
from testbed import paths


def test_the_charts_broker_queues_as_much_as_the_testbeds() -> None:
    config = yaml.safe_load((paths.CHART_DIR / "values.yaml").read_text())["edge"]["mosquitto"]
    assert config["config"]["maxQueuedMessages"] == broker.QUEUED_MESSAGES_MAX
    assert config["config"]["maxInflightMessages"] == broker.INFLIGHT_MESSAGES_MAX

"""Which rate a rate group runs, from the rates its Contracts hold."""

from __future__ import annotations

import logging

import pytest

from fluidos_sensors.rates import HeldRate
from router_manager.device_rates import group_rate


def test_a_group_runs_the_rate_its_contracts_hold() -> None:
    holds = {
        "c-2": HeldRate("ns/board-1", "environmental", 20.0),
        "c-1": HeldRate("ns/board-1", "environmental", 20.0),
        "c-3": HeldRate("ns/board-1", "inertial", 30.0),
        "c-4": HeldRate("ns/board-2", "environmental", 10.0),
    }
    assert group_rate(holds, "ns/board-1", "environmental") == (20.0, ["c-1", "c-2"])
    assert group_rate(holds, "ns/board-2", "environmental") == (10.0, ["c-4"])
    assert group_rate(holds, "ns/board-2", "inertial") == (None, [])


def test_disagreeing_contracts_give_the_first_ones_rate_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Only Contracts made outside the gateway can disagree; every router manager picks alike.
    holds = {
        "b": HeldRate("ns/d", "g", 10.0),
        "a": HeldRate("ns/d", "g", 20.0),
    }
    with caplog.at_level(logging.WARNING):
        assert group_rate(holds, "ns/d", "g") == (20.0, ["a", "b"])
    assert "Contracts b hold other rates" in caplog.text

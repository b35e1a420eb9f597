"""Ranking: lowest declared latency, then best accuracy of the wanted quantity, then provider
order, then flavor id; candidates read from REAR items as the gateways answer them."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from consumer.ranking import Candidate, candidate, rank, rank_key, readable_candidates
from fluidos_sensors.flavor import FlavorError, Price, ProviderConfig, build_flavor
from fluidos_sensors.rear.wire import flavor_item
from fluidos_sensors.sensor import DeviceRef, parse_sensor_entry

PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="127.0.0.1",
    price=Price(amount="1", currency="EUR", period="hourly"),
)


def item(
    device: str = "board-1",
    *,
    name: str = "HTS221",
    types: tuple[str, ...] = ("temperature", "humidity"),
    accuracy: tuple[str, ...] | None = ("0.5", "3.5"),
    latency: str | None = "15",
    node: str = "edge-1",
) -> dict[str, Any]:
    """A REAR flavor item, built the way the provider builds and lists it."""
    raw: dict[str, Any] = {
        "name": name,
        "model": name,
        "manufacturer": "STMicroelectronics",
        "type": {"sensorCategory": "Environmental", "sensorType": list(types)},
    }
    if accuracy is not None:
        raw["accuracy"] = list(accuracy)
    if latency is not None:
        raw["latency"] = latency
    sensor, errors = parse_sensor_entry(raw)
    assert sensor is not None, errors
    body = build_flavor(DeviceRef("default", device), node, sensor, PROVIDER, available=True)
    return flavor_item(body)


def cand(
    flavor: str, latency: float | None, accuracy: float | None, rank: int = 0, provider: str = "p"
) -> Candidate:
    return Candidate(
        provider=provider,
        provider_rank=rank,
        flavor_id=flavor,
        node="n",
        sensor_types=("humidity",),
        latency_ms=latency,
        accuracy=accuracy,
    )


def test_candidate_from_a_rear_item() -> None:
    found = candidate("provider-1", 2, item(latency="0.02 s"), ["Humidity"])
    assert found.provider == "provider-1" and found.provider_rank == 2
    assert found.flavor_id.startswith("sensor-board-1-hts221-")
    assert found.node == "edge-1"
    assert found.sensor_types == ("temperature", "humidity")
    assert found.latency_ms == 20
    assert found.accuracy == 3.5  # the humidity accuracy, not the temperature one
    # The tags its readings carry, from the flavor's topic (router_manager.encoding).
    assert (found.device, found.sensor) == ("board-1", "hts221")


def test_accuracy_without_a_type_filter_is_the_best_of_any_quantity() -> None:
    assert candidate("p", 0, item(), []).accuracy == 0.5


def test_unknown_numbers_stay_unknown() -> None:
    found = candidate("p", 0, item(accuracy=None, latency=None), ["humidity"])
    assert found.latency_ms is None and found.accuracy is None


def test_unreadable_items_are_left_out_with_the_reason() -> None:
    broken = item()
    broken["type"] = {"name": "sensor", "data": {}}
    found, problems = readable_candidates("p", 0, [item(), broken], [])
    assert len(found) == 1
    assert len(problems) == 1 and problems[0].startswith("p: Flavor ")
    with pytest.raises(FlavorError):
        candidate("p", 0, broken, [])


def test_lowest_latency_first() -> None:
    ranked = rank([cand("slow", 20, 0.1), cand("fast", 15, 9.0), cand("none", None, 0.01)])
    assert [c.flavor_id for c in ranked] == ["fast", "slow", "none"]


def test_then_best_accuracy() -> None:
    ranked = rank([cand("rough", 15, 3.5), cand("fine", 15, 0.5), cand("unknown", 15, None)])
    assert [c.flavor_id for c in ranked] == ["fine", "rough", "unknown"]


def test_then_provider_order_then_flavor_id() -> None:
    ranked = rank(
        [
            cand("b", 15, 1, rank=1, provider="second"),
            cand("z", 15, 1, rank=0, provider="first"),
            cand("a", 15, 1, rank=0, provider="first"),
        ]
    )
    assert [(c.provider, c.flavor_id) for c in ranked] == [
        ("first", "a"),
        ("first", "z"),
        ("second", "b"),
    ]


def test_the_order_is_total_and_independent_of_input_order() -> None:
    pool = [
        cand(f"f{i}", random.choice([None, 10, 15, 20]), random.choice([None, 0.5, 1]), i % 3)
        for i in range(40)
    ]
    expected = rank(pool)
    for _ in range(5):
        random.shuffle(pool)
        assert rank(pool) == expected
    keys = [rank_key(c) for c in expected]
    assert keys == sorted(keys)
    assert rank_key(cand("x", None, None)) == (math.inf, math.inf, 0, "x")


def test_one_entry_per_provider_and_flavor() -> None:
    assert len(rank([cand("a", 15, 1), cand("a", 15, 1), cand("a", 15, 1, provider="q")])) == 2


def test_the_seed_scenario_ranks_the_15_ms_sensor_first() -> None:
    """SensorTile humidity (15 ms) and an extra HTS221 (20 ms): "< 25 ms" takes both, 15 first."""
    sensortile = candidate("provider-1", 0, item("sensortile", latency="15"), ["humidity"])
    extra = candidate("provider-1", 0, item("hts221-extra", latency="20"), ["humidity"])
    assert rank([extra, sensortile]) == [sensortile, extra]

"""Which of the offered sensors a request takes first (no I/O).

The providers' gateways decide what matches a request's filter; the consumer only orders what
they answered. The order, best first:

1. lowest declared latency (a sensor that declares none comes after every one that does);
2. best accuracy: the smallest ± of the wanted quantity (of any quantity when the filter names
   no sensor type; none declared comes last);
3. provider order: the request's `spec.providers` order, else provider names alphabetically;
4. flavor id, so the order is total and the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.flavor import FlavorError, SensorFlavor, sensor_from_flavor
from fluidos_sensors.rates import same_rate
from fluidos_sensors.topics import split_source_topic


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One offered sensor flavor, as far as ranking and the request's status need it."""

    provider: str
    provider_rank: int  # position of the provider in the request's order
    flavor_id: str
    node: str
    sensor_types: tuple[str, ...]
    latency_ms: float | None
    accuracy: float | None  # ± of the wanted quantity, in its unit
    device: str | None = None  # topic segments: the device/sensor tags of its readings
    sensor: str | None = None
    sampling_rates_hz: tuple[float, ...] = ()  # rates a buyer may set; empty: fixed

    def offers_rate(self, rate_hz: float) -> bool:
        return any(same_rate(rate_hz, offered) for offered in self.sampling_rates_hz)

    @property
    def key(self) -> tuple[str, str]:
        """(provider, flavor id): a sensor as this consumer can buy it."""
        return self.provider, self.flavor_id


def wanted_accuracy(flavor: SensorFlavor, wanted_types: Sequence[str]) -> float | None:
    """The smallest ± among the quantities the request wants (all of them if it names none)."""
    wanted = {kind.strip().casefold() for kind in wanted_types}
    values = [
        item.value
        for item in flavor.sensor.accuracy
        if not wanted or item.quantity.strip().casefold() in wanted
    ]
    return min(values) if values else None


def candidate(
    provider: str, provider_rank: int, item: Mapping[str, Any], wanted_types: Sequence[str]
) -> Candidate:
    """The candidate a REAR flavor item offers; FlavorError when it is no readable sensor."""
    flavor = sensor_from_flavor(item)
    topic = split_source_topic(flavor.sensor.access.resource.topic)
    return Candidate(
        provider=provider,
        provider_rank=provider_rank,
        flavor_id=flavor.name,
        node=flavor.node,
        sensor_types=flavor.sensor.types,
        latency_ms=flavor.sensor.latency_ms,
        accuracy=wanted_accuracy(flavor, wanted_types),
        device=topic[0] if topic else None,
        sensor=topic[1] if topic else None,
        sampling_rates_hz=flavor.sensor.sampling_rates_hz,
    )


def readable_candidates(
    provider: str,
    provider_rank: int,
    items: Iterable[Mapping[str, Any]],
    wanted_types: Sequence[str],
) -> tuple[list[Candidate], list[str]]:
    """The candidates among a provider's items, and why the unreadable ones were left out."""
    found: list[Candidate] = []
    problems: list[str] = []
    for item in items:
        try:
            found.append(candidate(provider, provider_rank, item, wanted_types))
        except FlavorError as exc:
            problems.append(f"{provider}: {exc}")
    return found, problems


def rank_key(item: Candidate) -> tuple[float, float, int, str]:
    """The sort key of the documented order (smaller is better)."""
    return (
        item.latency_ms if item.latency_ms is not None else math.inf,
        item.accuracy if item.accuracy is not None else math.inf,
        item.provider_rank,
        item.flavor_id,
    )


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates best first; one entry per (provider, flavor id)."""
    unique = {item.key: item for item in candidates}
    return sorted(unique.values(), key=rank_key)

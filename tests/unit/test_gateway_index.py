"""The gateway's flavor index answers exactly what a linear scan with filters.matches does."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluidos_sensors.filters import FILTER_NAMES, NumberRange, SensorFilter, matches
from fluidos_sensors.flavor import (
    ObservedPerformance,
    Price,
    ProviderConfig,
    build_flavor,
    sensor_from_flavor,
)
from fluidos_sensors.rear.wire import FlavorItem
from fluidos_sensors.sensor import Accuracy, DeviceRef, SensorSpec, SensorUnits
from resource_manager.gateway.index import FlavorIndex

PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="10.0.0.5",
    price=Price(amount="1", currency="EUR", period="hourly"),
)

# Small pools with case and whitespace variants, so random filters often match something.
TYPES = ["temperature", "Temperature", "humidity", "pressure", "acceleration", " HUMIDITY "]
MANUFACTURERS = ["STMicroelectronics", "stmicroelectronics", "Bosch Sensortec", "Acme"]
MODELS = ["HTS221", "hts221", "STTS22H", "ILPS22QS", "BME280"]
CATEGORIES = ["Environmental", "environmental", "Inertial"]
MARKETS = ["", "industrial", "Industrial", "consumer"]
NODES = ["edge-1", "EDGE-1", "edge-2", "edge-3"]
NUMBERS = [0.0, 0.5, 1.0, 2.0, 10.0, 12.5, 15.0, 16.0, 20.0, 100.0, 1000.0]

numbers = st.one_of(
    st.sampled_from(NUMBERS), st.floats(0, 2000, allow_nan=False).map(lambda x: round(x, 3))
)
maybe_number = st.one_of(st.none(), numbers)


@st.composite
def sensors(draw: st.DrawFn, key: str) -> tuple[SensorSpec, str, bool, float | None]:
    types = tuple(
        draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique_by=str.casefold))
    )
    with_accuracy = draw(st.booleans())
    accuracy = (
        tuple(Accuracy(quantity=kind, value=draw(numbers), unit="u") for kind in types)
        if with_accuracy
        else ()
    )
    rate = draw(maybe_number)
    spec = SensorSpec(
        key=key,
        uid=f"uid-{key}",
        name=key,
        model=draw(st.sampled_from(MODELS)),
        manufacturer=draw(st.sampled_from(MANUFACTURERS)),
        category=draw(st.sampled_from(CATEGORIES)),
        types=types,
        market=draw(st.sampled_from(MARKETS)),
        sampling_rate_hz=rate if rate else None,  # a rate is > 0
        accuracy=accuracy,
        consumption=draw(maybe_number),
        latency_ms=draw(maybe_number),
        units=SensorUnits(
            measurement=("u",) * len(types) if with_accuracy else (),
            consumption=draw(st.sampled_from(["mW", "mA"])),
        ),
    )
    return spec, draw(st.sampled_from(NODES)), draw(st.booleans()), draw(maybe_number)


def flavor_object(slot: int, drawn: tuple[SensorSpec, str, bool, float | None]) -> dict[str, Any]:
    spec, node, available, observed = drawn
    body = build_flavor(
        DeviceRef("devices", f"board-{slot}"),
        node,
        spec,
        PROVIDER,
        available=available,
        observed=None if observed is None else ObservedPerformance(latency_ms=observed),
    )
    body["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    return body


POOLS = {
    "sensor_type": TYPES,
    "sensor_model": MODELS,
    "sensor_manufacturer": MANUFACTURERS,
    "sensor_category": CATEGORIES,
    "sensor_market": [m for m in MARKETS if m],
    "node": NODES,
}


@st.composite
def number_ranges(draw: st.DrawFn, unit: str = "") -> NumberRange:
    """Mostly one bound; sometimes two, or an exact value the sensors also use."""
    form = draw(st.sampled_from(["min", "max", "min+max", "exact"]))
    low, high = draw(numbers), draw(numbers)
    if form == "exact":
        return NumberRange(exact=draw(st.sampled_from(NUMBERS)), unit=unit)
    return NumberRange(
        min=low if "min" in form else None, max=high if "max" in form else None, unit=unit
    )


@st.composite
def filters(draw: st.DrawFn) -> SensorFilter:
    """Up to three conditions (more would rarely match anything), names in any case."""
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]))
    chosen = draw(st.permutations(FILTER_NAMES))[:count]
    if "accuracy" in chosen and "sensor_type" not in chosen and draw(st.booleans()):
        chosen.append("sensor_type")  # accuracy then counts for the wanted types only
    conditions: dict[str, Any] = {}
    for name in chosen:
        if name in POOLS:
            pool = [*POOLS[name], "unknown"]
            conditions[name] = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2)))
        elif name == "consumption":
            conditions[name] = draw(number_ranges(draw(st.sampled_from(["mW", "mA"]))))
        else:
            conditions[name] = draw(number_ranges())
    return SensorFilter(**conditions)


# A history of writes: a dozen flavors or fewer, then edits: (slot, sensor) upserts a flavor
# (replacing the one in that slot), (slot, None) deletes it.
writes = sensors("s")
histories = st.builds(
    lambda first, edits: [*enumerate(first), *edits],
    st.lists(writes, min_size=3, max_size=12),
    st.lists(st.tuples(st.integers(0, 11), st.one_of(st.none(), writes)), max_size=20),
)


def scan(objects: dict[int, dict[str, Any]], wanted: SensorFilter) -> list[str]:
    """The reference: a plain linear scan of the available flavors with filters.matches."""
    views = [sensor_from_flavor(obj) for obj in objects.values()]
    return sorted(v.name for v in views if v.availability and matches(wanted, v))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, queries=st.lists(filters(), min_size=1, max_size=8))
def test_index_query_equals_linear_scan(history: list[Any], queries: list[SensorFilter]) -> None:
    index = FlavorIndex()
    current: dict[int, dict[str, Any]] = {}
    for slot, drawn in history:
        if drawn is None:
            if slot in current:
                index.delete(current.pop(slot)["metadata"]["name"])
        else:
            current[slot] = flavor_object(slot, drawn)
            index.upsert(current[slot])
    for wanted in queries:
        assert index.query(wanted) == scan(current, wanted), wanted
    assert index.query(SensorFilter()) == scan(current, SensorFilter())


@settings(max_examples=100, deadline=None)
@given(
    first=st.lists(st.tuples(st.integers(0, 11), sensors("a")), max_size=12),
    second=st.lists(st.tuples(st.integers(0, 11), sensors("a")), max_size=12),
    wanted=filters(),
)
def test_relist_replaces_everything(
    first: list[Any], second: list[Any], wanted: SensorFilter
) -> None:
    index = FlavorIndex()
    index.replace(flavor_object(slot, drawn) for slot, drawn in first)
    later = {slot: flavor_object(slot, drawn) for slot, drawn in second}
    index.replace(later.values())
    assert index.query(wanted) == scan(later, wanted)
    assert len(index) == len(later)


def _flavor(slot: int, **changes: Any) -> dict[str, Any]:
    spec = SensorSpec(
        key="hum",
        uid="u",
        name="hum",
        model="HTS221",
        manufacturer="STMicroelectronics",
        category="Environmental",
        types=("humidity",),
        latency_ms=12.0,
    )
    drawn = (spec, "edge-1", True, None)
    body = flavor_object(slot, drawn)
    body["spec"].update(changes)
    return body


def test_items_are_rear_items_that_read_back() -> None:
    index = FlavorIndex()
    index.upsert(_flavor(1))
    [raw] = index.query_items(SensorFilter(sensor_type=("HUMIDITY",)))
    item = json.loads(raw)
    FlavorItem.model_validate(item)
    assert item["type"]["name"] == "sensor"
    view = sensor_from_flavor(item)
    assert view.sensor.model == "HTS221" and view.node == "edge-1"


def test_unavailable_and_other_types_are_not_sensor_results() -> None:
    index = FlavorIndex()
    index.upsert(_flavor(1, availability=False))
    k8s = _flavor(2)
    k8s["spec"]["flavorType"] = {
        "typeIdentifier": "K8Slice",
        "typeData": {"characteristics": {"cpu": "2"}},
    }
    index.upsert(k8s)
    assert index.query(SensorFilter()) == []
    listed = [json.loads(raw) for raw in index.available_items()]
    assert [item["type"]["name"] for item in listed] == ["k8slice"]
    assert index.get(k8s["metadata"]["name"]).sensor is False  # type: ignore[union-attr]


def test_malformed_sensor_flavor_is_dropped_not_fatal() -> None:
    index = FlavorIndex()
    good = _flavor(1)
    index.upsert(good)
    broken = _flavor(1)
    del broken["spec"]["flavorType"]["typeData"]["characteristics"]["model"]
    index.upsert(broken)  # the same Flavor, now unreadable: no longer offered
    assert index.get(good["metadata"]["name"]) is None
    index.upsert({"metadata": {}})  # no name: ignored
    assert len(index) == 0


def test_wide_sensors_grow_the_columns() -> None:
    index = FlavorIndex()
    many = [f"q{i}" for i in range(7)]
    spec = SensorSpec(
        key="imu",
        uid="u",
        name="imu",
        model="ISM330DHCX",
        manufacturer="STMicroelectronics",
        category="Inertial",
        types=tuple(many),
        accuracy=tuple(Accuracy(quantity=q, value=float(i), unit="") for i, q in enumerate(many)),
    )
    for slot in range(200):  # also past the first capacity
        index.upsert(flavor_object(slot, (spec, "edge-1", True, None)))
    assert (
        len(index.query(SensorFilter(sensor_type=("Q6",), accuracy=NumberRange(min=6, max=6))))
        == 200
    )
    assert index.query(SensorFilter(sensor_type=("q5",), accuracy=NumberRange(min=6))) == []

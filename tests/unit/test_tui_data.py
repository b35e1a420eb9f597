"""The TUI's data layer without I/O: rows, filter words, request bodies, the store's batches."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from fluidos_sensors.filters import FilterError, SensorFilter, from_request_filter
from fluidos_sensors.flavor import sensor_from_flavor
from fluidos_sensors.shaping import Shaping
from fluidos_sensors.watch import Report, State
from tui import sample
from tui.data.actions import (
    REQUESTED_FLAVOR_ANNOTATION,
    ActionError,
    check_endpoint,
    parse_rate_text,
    parse_shape_text,
    pinned_filter,
    removal_patch,
    sensor_request_body,
)
from tui.data.filter_text import parse_flavor_query
from tui.data.rows.cells import object_key, sparkline
from tui.data.rows.device import DeviceRow
from tui.data.rows.event import event_row
from tui.data.rows.flavor import FlavorRow, flavor_row, parse_flavor
from tui.data.rows.route import route_rows, target_failing
from tui.data.store import Health, Kind, Phase, Store
from tui.data.watch import StoreSink


def sample_flavor(device: Any, sensor: str) -> tuple[str, dict[str, Any]]:
    ref = sample.flavor_ref(device, sensor)
    return next((c, f) for c, f in sample.flavors() if f["metadata"]["name"] == ref.split("/")[1])


def flavor_rows() -> list[FlavorRow]:
    return [
        flavor_row(object_key(cluster, obj), obj, parse_flavor(obj), 0)
        for cluster, obj in sample.flavors()
    ]


# ---------------------------------------------------------------------------------------
# Rows


def test_flavor_row_cells_show_declared_and_observed_numbers() -> None:
    cluster, obj = sample_flavor(sample.TILE, "humidity")
    row = flavor_row(object_key(cluster, obj), obj, parse_flavor(obj), 2)
    cells = {key: cell.text for key, cell in row.cells().items()}
    assert cells["type"] == "humidity"
    assert cells["unit"] == "%RH"
    assert cells["latency"] == "15 ms"
    assert cells["accuracy"] == "±3.5 %RH"
    assert cells["observed_latency"] == "14.2 ms"
    assert cells["observed_rate"] == "1 Hz"
    assert cells["available"] == "yes"
    assert cells["consumers"] == "2"
    # Numbers sort as numbers: 8 ms before 15 ms.
    fast = next(r for r in flavor_rows() if r.flavor and r.flavor.sensor.latency_ms == 8)
    assert fast.cells()["latency"].sort < row.cells()["latency"].sort


def test_an_unusable_flavor_is_a_row_that_says_why() -> None:
    _, obj = sample_flavor(sample.STWIN, "pressure")
    broken = copy.deepcopy(obj)
    del broken["spec"]["flavorType"]["typeData"]["characteristics"]["model"]
    row = flavor_row(object_key("p", broken), broken, parse_flavor(broken), 0)
    assert row.flavor is None
    assert "model" in (row.error or "")
    assert row.cells()["type"].text == "(invalid)"
    assert ("Problem", row.error) in row.facts()


def test_device_row_merges_device_and_status_battery_from_the_twin() -> None:
    (_, device, status), (_, _, offline_status) = sample.devices()
    row = DeviceRow(object_key("p", device), device, status)
    cells = row.cells()
    assert cells["state"].text == "online" and cells["state"].tone == "good"
    assert cells["battery"].text == "87 %"
    assert cells["node"].text == sample.EDGE
    assert "temperature 23.4 °C" in cells["values"].text
    assert "battery" not in cells["values"].text  # battery has its own column
    low = DeviceRow(object_key("p", device), None, offline_status)
    assert low.cells()["battery"].tone == "bad"  # 12.5 % is low
    assert low.cells()["state"].tone == "bad"
    assert ("Note", "DeviceStatus without a Device") in low.facts()


def test_route_rows_one_per_target_and_failing_target() -> None:
    route = sample.route([1.0, 0.5], 100)
    key = object_key("p", route)
    rows = route_rows(key, route, {"consumer-1-telegraf": (1.0, 0.5)})
    assert [r.target_id for r in rows] == ["consumer-1-telegraf", "lab-influx"]
    healthy, failing = rows
    assert not healthy.failing and failing.failing
    assert healthy.cells()["spark"].text == sparkline([1.0, 0.5])
    assert failing.cells()["last_error"].text == "503 Service Unavailable"
    assert failing.cells()["queued"].text == "188"
    empty = route_rows(key, sample.empty_route(), {})
    assert len(empty) == 1 and empty[0].target_id is None


@pytest.mark.parametrize(
    ("status", "failing"),
    [
        (None, False),
        ({"state": "Delivering", "lastSuccess": "2025-01-01T00:00:05Z"}, False),
        ({"state": "Retrying"}, True),
        ({"state": "Rejecting"}, True),
        ({"state": "WaitingForCredentials"}, True),
        ({"state": "Invalid"}, True),
        ({"lastError": "x", "lastErrorTime": "2025-01-01T00:00:05Z"}, True),
        (
            {"lastErrorTime": "2025-01-01T00:00:05Z", "lastSuccess": "2025-01-01T00:00:06Z"},
            False,
        ),
        (
            {"lastErrorTime": "2025-01-01T00:00:07Z", "lastSuccess": "2025-01-01T00:00:06Z"},
            True,
        ),
    ],
)
def test_target_failing(status: dict[str, Any] | None, failing: bool) -> None:
    assert target_failing(status) is failing


def test_sparkline_scales_to_the_maximum() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert len(sparkline(list(range(100)), width=16)) == 16


def test_event_row_prefers_the_last_timestamp() -> None:
    _, obj = sample.events()[3]
    row = event_row("p", obj)
    assert (row.type, row.reason, row.kind) == ("Warning", "TargetFailing", "SensorRoute")
    assert row.time == "03-01 12:00:04"


# ---------------------------------------------------------------------------------------
# Filter words (the same SensorFilter as the CLI)


def test_filter_words_mean_the_same_as_cli_options() -> None:
    typed = parse_flavor_query("type=humidity manufacturer=STMicroelectronics latency<=16")
    assert typed.sensor_filter == SensorFilter.from_options(
        sensor_type="humidity", sensor_manufacturer="STMicroelectronics", latency_max=16
    )
    query = parse_flavor_query("filter[sensor_type][match]=humidity&filter[latency][range][max]=16")
    assert query.sensor_filter == SensorFilter.from_options(sensor_type="humidity", latency_max=16)
    rows = flavor_rows()
    humid = [r.key[0] for r in rows if typed.matches(r)]
    assert humid == ["provider-1"]  # provider-2's humidity sensor declares 20 ms
    assert len([r for r in rows if parse_flavor_query("type=humidity").matches(r)]) == 2
    facets = parse_flavor_query("type=humidity available=no cluster=provider-2")
    assert [r.key[0] for r in rows if facets.matches(r)] == ["provider-2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour=red", 'unknown filter "colour"'),
        ("latency<16", "bounds are inclusive"),
        ("latency<=fast", '"latency<=fast": "filter[latency][range][max]" must be a number'),
        ("type>=3", "matched by text"),
        ("available=maybe", "available is yes or no"),
        ("humidity", "use name=value"),
        ('type="humid', "filter: No closing quotation"),
    ],
)
def test_bad_filter_words_are_named(text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_flavor_query(text)
    assert message in str(caught.value)


# ---------------------------------------------------------------------------------------
# Actions without I/O


def test_request_body_is_pinned_to_the_flavor() -> None:
    cluster, obj = sample_flavor(sample.TILE, "humidity")
    flavor = sensor_from_flavor(obj)
    body = sensor_request_body(flavor, f"{cluster}/fluidos/x", " http://sink:8186/t ", "team-a")
    assert body["metadata"]["namespace"] == "team-a"
    assert body["metadata"]["generateName"] == "humidity-"
    assert body["metadata"]["annotations"][REQUESTED_FLAVOR_ANNOTATION] == f"{cluster}/fluidos/x"
    assert body["spec"]["count"] == 1
    assert body["spec"]["endpoint"] == {"url": "http://sink:8186/t", "format": "influx"}
    assert body["spec"]["filter"] == {
        "sensorType": ["humidity"],
        "sensorModel": ["HTS221"],
        "sensorManufacturer": ["STMicroelectronics"],
        "node": [sample.EDGE],
    }
    pinned = from_request_filter(body["spec"]["filter"], "SensorRequest")
    assert pinned == pinned_filter(flavor)
    others = [r for r in flavor_rows() if r.flavor and pinned.matches(r.flavor)]
    assert [r.key[2] for r in others] == [obj["metadata"]["name"]]


def test_the_dialog_shape_and_rate_fields() -> None:
    assert parse_shape_text("  ") is None
    assert parse_shape_text("every 10") == Shaping(every=10)
    assert parse_shape_text("max, mean per 1s") == Shaping(
        aggregates=("mean", "max"), window_ms=1000
    )
    for text, words in (
        ("every ten", "whole number"),
        ("mean,max", "'every N' or aggregates per a window"),
        ("median per 1s", "comma-separated list of mean"),
        ("mean per 1 fortnight", "fortnight"),
    ):
        with pytest.raises(ActionError, match=words):
            parse_shape_text(text)
    _, obj = sample_flavor(sample.TILE, "humidity")
    fixed = sensor_from_flavor(obj)
    assert parse_rate_text("", fixed) is None
    with pytest.raises(ActionError, match="fixed rate"):
        parse_rate_text("10", fixed)
    settable = replace(fixed, sensor=replace(fixed.sensor, sampling_rates_hz=(1.0, 10.0)))
    assert parse_rate_text("10 Hz", settable) == 10.0
    with pytest.raises(ActionError, match="1, 10 Hz only"):
        parse_rate_text("20", settable)
    with pytest.raises(ActionError, match="rate:"):
        parse_rate_text("fast", settable)
    body = sensor_request_body(
        settable, "x", "http://sink/t", "team-a", shape=Shaping(every=10), rate_hz=10.0
    )
    assert body["spec"]["endpoint"]["shape"] == {"every": 10}
    assert body["spec"]["rate"] == "10"


@pytest.mark.parametrize(
    "url",
    ["ftp://sink/x", "http://", "sink:8186", "http://user:pw@sink/x", "http://a/" + "x" * 2050],
)
def test_bad_endpoints_are_refused(url: str) -> None:
    with pytest.raises(ActionError, match="endpoint URL"):
        check_endpoint(url)


def test_bad_namespace_is_refused() -> None:
    _, obj = sample_flavor(sample.TILE, "humidity")
    with pytest.raises(ActionError, match="namespace 'Team A'"):
        sensor_request_body(sensor_from_flavor(obj), "x", "http://sink/t", "Team A")


def test_removal_patch_is_guarded_by_version_and_position() -> None:
    route = sample.route([1.0], 10)
    route["metadata"]["resourceVersion"] = "42"
    assert removal_patch(route, "lab-influx") == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "test", "path": "/spec/targets/1/id", "value": "lab-influx"},
        {"op": "remove", "path": "/spec/targets/1"},
    ]
    assert removal_patch(route, "nobody") is None


# ---------------------------------------------------------------------------------------
# The store


def test_store_batches_only_what_changed_and_counts_consumers() -> None:
    store = Store()
    notified: list[int] = []
    store.on_change(lambda: notified.append(1))
    cluster, humidity = sample_flavor(sample.TILE, "humidity")
    key = object_key(cluster, humidity)
    for c, obj in sample.flavors():
        store.upsert(c, Kind.FLAVORS, obj)
    assert len(notified) == 1  # once until drained, however many changes
    first = store.drain()
    assert len(first.flavors) == len(sample.flavors())
    row = first.flavors[key]
    assert row is not None and row.consumers == 0
    assert store.drain().empty
    # A route naming the flavor changes its consumer count: the flavor is in the next batch.
    store.upsert(cluster, Kind.ROUTES, sample.route([1.0], 1))
    assert len(notified) == 2
    batch = store.drain()
    assert list(batch.flavors) == [key]
    row = batch.flavors[key]
    assert row is not None and row.consumers == 2
    assert [
        r.target_id for r in batch.routes[object_key(cluster, sample.route([1.0], 1))] or []
    ] == [
        "consumer-1-telegraf",
        "lab-influx",
    ]
    store.delete(cluster, Kind.ROUTES, sample.route([1.0], 1))
    batch = store.drain()
    row = batch.flavors[key]
    assert row is not None and row.consumers == 0
    assert list(batch.routes.values()) == [None]


def test_store_replace_deletes_what_the_list_no_longer_has() -> None:
    store = Store()
    flavors = sample.flavors()
    provider_one = [obj for c, obj in flavors if c == sample.PROVIDER]
    store.replace(sample.PROVIDER, Kind.FLAVORS, provider_one)
    store.replace(
        sample.PROVIDER_2, Kind.FLAVORS, [obj for c, obj in flavors if c != sample.PROVIDER]
    )
    store.drain()
    store.replace(sample.PROVIDER, Kind.FLAVORS, provider_one[1:])
    batch = store.drain()
    assert batch.flavors == {object_key(sample.PROVIDER, provider_one[0]): None}
    assert store.count(Kind.FLAVORS, sample.PROVIDER_2) == 1  # other clusters untouched


def test_store_devices_join_device_and_status() -> None:
    store = Store()
    cluster, device, status = sample.devices()[0]
    store.upsert(cluster, Kind.DEVICE_STATUSES, status)
    row = store.drain().devices[object_key(cluster, device)]
    assert row is not None and row.device is None and row.status is status
    store.upsert(cluster, Kind.DEVICES, device)
    row = store.drain().devices[object_key(cluster, device)]
    assert row is not None and row.device is device and row.status is status
    store.delete(cluster, Kind.DEVICES, device)
    store.delete(cluster, Kind.DEVICE_STATUSES, status)
    assert store.drain().devices == {object_key(cluster, device): None}


def test_store_rate_history_grows_per_status_report() -> None:
    store = Store(history=3)
    key = object_key("p", sample.route([1.0], 1))
    for step in range(5):
        store.upsert("p", Kind.ROUTES, sample.route([float(i) for i in range(step + 1)], step))
    store.upsert("p", Kind.ROUTES, sample.route([float(i) for i in range(5)], 4))  # no new report
    rows = store.drain().routes[key]
    assert rows is not None and rows[0].history == (2.0, 3.0, 4.0)


def test_store_events_dedupe_on_relist_and_are_capped() -> None:
    store = Store(event_limit=3)
    objs = [obj for _, obj in sample.events()]
    store.replace("p", Kind.EVENTS, objs)
    assert [e.reason for e in store.drain().events] == [
        "FlavorsPublished",
        "Contracted",
        "TargetFailing",
    ]
    store.replace("p", Kind.EVENTS, objs)  # a relist repeats them: nothing new
    assert store.drain().events == []
    assert [e.reason for e in store.events_about("p", "Device", "default", "sensortile-2")] == [
        "FlavorsPublished"
    ]


def test_cluster_phase_follows_the_worst_watch() -> None:
    store = Store()
    store.add_cluster("a", "provider")
    assert store.clusters()[0].phase is Phase.CONNECTING
    for kind in Kind:
        store.report("a", kind, Health.SYNCED)
    store.report("a", Kind.PROVIDERS, Health.ABSENT, "not found")
    state = store.clusters()[0]
    assert state.phase is Phase.CONNECTED and state.notes == ("providers: absent",)
    store.report("a", Kind.FLAVORS, Health.FAILING, "500: boom", retry_in=2)
    assert store.clusters()[0].phase is Phase.DEGRADED
    store.report("a", Kind.EVENTS, Health.UNREACHABLE, "connection refused", retry_in=1)
    state = store.clusters()[0]
    assert (state.phase, state.message) == (Phase.UNREACHABLE, "connection refused")
    assert state.retry_at is not None
    assert store.drain().clusters is not None


def test_a_watch_reports_into_the_store_as_the_health_of_its_kind() -> None:
    store = Store()
    store.add_cluster("a", "consumer")
    sinks = {kind: StoreSink(store, "a", kind) for kind in Kind}
    for state in State:  # every state the watch can report has its health in the store
        sinks[Kind.EVENTS].report(Report(state, "why", 1.0))
    for sink in sinks.values():
        sink.report(Report(State.SYNCED))
    assert store.clusters()[0].phase is Phase.CONNECTED
    sinks[Kind.FLAVORS].report(Report(State.UNREACHABLE, "connection refused", 4.0))
    cluster = store.clusters()[0]
    assert (cluster.phase, cluster.message) == (Phase.UNREACHABLE, "connection refused")
    assert cluster.retry_at is not None


def test_event_row_reads_the_events_k8s_io_shape_too() -> None:
    row = event_row(
        "p",
        {
            "metadata": {"name": "e", "namespace": "ns", "uid": "u1"},
            "regarding": {"kind": "Device", "name": "board", "namespace": "ns"},
            "type": "Warning",
            "reason": "InvalidSensor",
            "note": "entry 2: latency must be a number",
            "deprecatedLastTimestamp": "2025-03-01T12:00:09Z",
            "deprecatedCount": 3,
        },
    )
    assert (row.kind, row.namespace, row.name) == ("Device", "ns", "board")
    assert row.message == "entry 2: latency must be a number"
    assert (row.time, row.count) == ("03-01 12:00:09", 3)

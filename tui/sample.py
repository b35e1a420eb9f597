"""Fixed objects of a small deployment: `tui --demo`, snapshot tests and README captures.

Everything is built with the project's own builders (`build_flavor`, `device_status` that
the mapper writes with), so the sample has exactly the shapes the real parts write; times are
fixed, so what the TUI shows of it never changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fluidos_sensors.api import (
    DEVICE,
    DEVICE_STATUS,
    FLUIDOS_NAMESPACE,
    ROUTE_NAMESPACE,
    SENSOR_PROVIDER,
    SENSOR_REQUEST,
    SENSOR_ROUTE,
)
from fluidos_sensors.flavor import ObservedPerformance, Price, ProviderConfig, build_flavor
from fluidos_sensors.reading import Reading
from fluidos_sensors.sensor import DeviceRef, SensorSpec, parse_sensor_entry
from fluidos_sensors.topics import broker_topic
from fluidos_sensors.twins import OFFLINE, ONLINE, device_status
from tui.data.store import Health, Kind, Store

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
PROVIDER, PROVIDER_2, CONSUMER = "provider-1", "provider-2", "consumer-1"
EDGE, EDGE_2 = "provider-1-edge", "provider-2-edge"


def at(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sensor(
    name: str,
    types: list[str],
    units: list[str],
    model: str,
    *,
    category: str = "Environmental",
    rate: str = "1",
    latency: str = "15",
    accuracy: list[str] | None = None,
) -> SensorSpec:
    entry = {
        "name": name,
        "model": model,
        "manufacturer": "STMicroelectronics",
        "market": "industrial",
        "type": {"sensorCategory": category, "sensorType": types},
        "samplingRate": rate,
        "latency": latency,
        "accuracy": accuracy or [],
        "properties": {"unit": {"measurement": units}},
    }
    spec, errors = parse_sensor_entry(entry)
    assert spec is not None, errors
    return spec


STWIN = DeviceRef("default", "stwin-box-1")
TILE = DeviceRef("default", "sensortile-2")
TILE_B = DeviceRef("default", "sensortile-7")

SENSORS: list[tuple[DeviceRef, str, SensorSpec, bool, ObservedPerformance | None]] = [
    (
        STWIN,
        EDGE,
        _sensor("temperature", ["temperature"], ["°C"], "STTS22H", accuracy=["0.5"]),
        True,
        ObservedPerformance(latency_ms=12.4, rate_hz=1.0, updated=at(0)),
    ),
    (
        STWIN,
        EDGE,
        _sensor("pressure", ["pressure"], ["hPa"], "ILPS22QS", accuracy=["0.5"]),
        True,
        None,
    ),
    (
        STWIN,
        EDGE,
        _sensor(
            "acceleration",
            ["acceleration"],
            ["mg"],
            "ISM330DHCX",
            category="Inertial",
            rate="10",
            latency="8",
        ),
        True,
        ObservedPerformance(latency_ms=9.1, rate_hz=9.8, updated=at(0)),
    ),
    (
        TILE,
        EDGE,
        _sensor("humidity", ["humidity"], ["%RH"], "HTS221", accuracy=["3.5"]),
        True,
        ObservedPerformance(latency_ms=14.2, rate_hz=1.0, updated=at(0)),
    ),
    (
        TILE,
        EDGE,
        _sensor("temperature", ["temperature"], ["°C"], "HTS221", accuracy=["0.5"]),
        True,
        None,
    ),
    (
        TILE_B,
        EDGE_2,
        _sensor("humidity", ["humidity"], ["%RH"], "HTS221", latency="20", accuracy=["3.5"]),
        False,
        None,
    ),
]


def _provider(node_id: str) -> ProviderConfig:
    return ProviderConfig(
        node_id=node_id,
        domain="fluidos.eu",
        ip="10.0.0.5",
        price=Price(amount="1", currency="EUR", period="hourly"),
    )


def flavors() -> list[tuple[str, dict[str, Any]]]:
    """(cluster, Flavor) pairs."""
    found = []
    for device, node, spec, available, observed in SENSORS:
        cluster = PROVIDER if node == EDGE else PROVIDER_2
        flavor = build_flavor(
            device, node, spec, _provider(cluster), available=available, observed=observed
        )
        flavor["metadata"]["resourceVersion"] = "1"
        found.append((cluster, flavor))
    return found


def flavor_ref(device: DeviceRef, sensor: str) -> str:
    for cluster_flavor in flavors():
        meta = cluster_flavor[1]["metadata"]
        if meta["name"].startswith(f"sensor-{device.name}-{sensor}-"):
            return f"{meta['namespace']}/{meta['name']}"
    raise KeyError(sensor)


def route(rates: list[float], delivered: int) -> dict[str, Any]:
    """The humidity route of sensortile-2 with one healthy and one failing target."""
    return {
        "apiVersion": SENSOR_ROUTE.api_version,
        "kind": SENSOR_ROUTE.kind,
        "metadata": {"name": "provider-1-edge-sensortile-2-humidity", "namespace": ROUTE_NAMESPACE},
        "spec": {
            "node": EDGE,
            "topic": broker_topic(TILE.namespace, TILE.name, "humidity"),
            "flavor": flavor_ref(TILE, "humidity"),
            "targets": [
                {
                    "id": "consumer-1-telegraf",
                    "url": "http://telegraf.consumer-1:8186/telegraf",
                    "format": "influx",
                    "origin": {
                        "kind": "Contract",
                        "name": "contract-7f3a",
                        "namespace": FLUIDOS_NAMESPACE,
                    },
                },
                {
                    "id": "lab-influx",
                    "url": "https://influx.lab.example:8086/api/v2/write",
                    "format": "influx",
                    "origin": {"kind": "Manual", "name": "lab"},
                    "auth": {"type": "token", "secretName": "lab-influx"},
                },
            ],
        },
        "status": {
            "agent": EDGE,
            "subscribed": True,
            "updated": at(len(rates)),
            "targetCount": 2,
            "delivered": delivered,
            "failing": 1,
            "targets": [
                {
                    "id": "consumer-1-telegraf",
                    "state": "Delivering",
                    "delivered": delivered,
                    "failed": 0,
                    "rejected": 0,
                    "dropped": 0,
                    "queued": 0,
                    "lastSuccess": at(len(rates)),
                    "latencyP50Ms": 14.0,
                    "latencyP99Ms": 31.0,
                    "rateHz": rates[-1],
                },
                {
                    "id": "lab-influx",
                    "state": "Retrying",
                    "delivered": 310,
                    "failed": 42,
                    "rejected": 0,
                    "dropped": 0,
                    "queued": 188,
                    "lastSuccess": at(-300),
                    "lastError": "503 Service Unavailable",
                    "lastErrorTime": at(len(rates) - 1),
                    "rateHz": 0.0,
                },
            ],
        },
    }


def empty_route() -> dict[str, Any]:
    return {
        "apiVersion": SENSOR_ROUTE.api_version,
        "kind": SENSOR_ROUTE.kind,
        "metadata": {
            "name": "provider-1-edge-stwin-box-1-temperature",
            "namespace": ROUTE_NAMESPACE,
        },
        "spec": {
            "node": EDGE,
            "topic": broker_topic(STWIN.namespace, STWIN.name, "temperature"),
            "flavor": flavor_ref(STWIN, "temperature"),
            "targets": [],
        },
    }


def requests() -> list[dict[str, Any]]:
    def request(name: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": SENSOR_REQUEST.api_version,
            "kind": SENSOR_REQUEST.kind,
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
            "status": status,
        }

    return [
        request(
            "humidity-lab",
            {
                "filter": {
                    "sensorType": ["humidity"],
                    "sensorManufacturer": ["STMicroelectronics"],
                    "latency": {"max": "16"},
                },
                "count": 1,
                "endpoint": {"url": "http://telegraf.consumer-1:8186/telegraf", "format": "influx"},
            },
            {
                "phase": "Ready",
                "matched": 2,
                "contractCount": 1,
                "firstData": at(4),
                "candidates": [
                    {"provider": PROVIDER, "flavorID": flavor_ref(TILE, "humidity").split("/")[1]},
                    {"provider": PROVIDER_2, "flavorID": "sensor-sensortile-7-humidity"},
                ],
                "contracts": [
                    {"name": "contract-7f3a", "provider": PROVIDER, "transactionID": "tx-91c2"}
                ],
            },
        ),
        request(
            "vibration",
            {
                "filter": {"sensorType": ["acceleration"], "samplingRate": {"min": "1 kHz"}},
                "count": 2,
                "endpoint": {"url": "http://telegraf.consumer-1:8186/telegraf"},
            },
            {
                "phase": "Searching",
                "matched": 0,
                "contractCount": 0,
                "message": "no provider offers a match yet",
            },
        ),
    ]


def providers() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": SENSOR_PROVIDER.api_version,
            "kind": SENSOR_PROVIDER.kind,
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"url": url, "tokenSecret": {"name": f"{name}-token"}},
            "status": status,
        }
        for name, url, status in (
            (
                PROVIDER,
                "https://rear.provider-1.example:8443",
                {"reachable": True, "flavors": 5, "lastContact": at(10)},
            ),
            (
                PROVIDER_2,
                "https://rear.provider-2.example:8443",
                {
                    "reachable": False,
                    "flavors": 1,
                    "lastContact": at(-600),
                    "message": "connection refused",
                },
            ),
        )
    ]


def _reading(
    device: DeviceRef, sensor: str, quantity: str, unit: str, values: dict[str, Any], seq: int
) -> Reading:
    return Reading(
        namespace=device.namespace,
        device=device.name,
        sensor=sensor,
        quantity=quantity,
        unit=unit,
        values=values,
        node=EDGE,
        seq=seq,
        received_at=(T0 + dt.timedelta(seconds=seq)).timestamp(),
        provider=PROVIDER,
    )


def devices() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(cluster, Device, DeviceStatus) triples, the status built as the mapper builds it."""
    found = []
    for device, node, board, mac, state, readings, extra in (
        (
            STWIN,
            EDGE,
            "STWIN.box (STEVAL-STWINBX1)",
            "C0:8A:80:BF:C0:01",
            ONLINE,
            [
                ("temperature", "temperature", "°C", {"value": 23.4}),
                ("pressure", "pressure", "hPa", {"value": 1013.2}),
                (
                    "battery",
                    "battery",
                    "%",
                    {"level": 87.0, "voltage": 4012.0, "current": -21.0, "status": 1},
                ),
            ],
            {"rssi": -58, "connects": 1},
        ),
        (
            TILE,
            EDGE,
            "SensorTile (STEVAL-STLKT01V1)",
            "C0:8A:80:BF:C0:02",
            OFFLINE,
            [
                ("humidity", "humidity", "%RH", {"value": 47.5}),
                (
                    "battery",
                    "battery",
                    "%",
                    {"level": 12.5, "voltage": 3610.0, "current": -30.0, "status": 0},
                ),
            ],
            {"rssi": -81, "connects": 3, "reason": "disconnected: link supervision timeout"},
        ),
    ):
        latest = {
            sensor: _reading(device, sensor, quantity, unit, values, seq)
            for seq, (sensor, quantity, unit, values) in enumerate(readings)
        }
        status = device_status(
            state,
            (T0 + dt.timedelta(seconds=5)).timestamp(),
            latest,
            {"node": node, "mac": mac, "board": board, **extra},
            T0.timestamp() + 5,
        )
        meta = {"name": device.name, "namespace": device.namespace}
        found.append(
            (
                PROVIDER,
                {
                    "apiVersion": DEVICE.api_version,
                    "kind": DEVICE.kind,
                    "metadata": dict(meta),
                    "spec": {
                        "nodeName": node,
                        "protocol": {
                            "protocolName": "bluetooth",
                            "configData": {"macAddress": mac},
                        },
                    },
                },
                {
                    "apiVersion": DEVICE_STATUS.api_version,
                    "kind": DEVICE_STATUS.kind,
                    "metadata": dict(meta),
                    "status": status,
                },
            )
        )
    return found


def events() -> list[tuple[str, dict[str, Any]]]:
    def event(
        n: int, kind: str, name: str, namespace: str, type_: str, reason: str, message: str
    ) -> dict[str, Any]:
        return {
            "metadata": {"name": f"e{n}", "namespace": namespace, "uid": f"uid-{n}"},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
            "type": type_,
            "reason": reason,
            "message": message,
            "lastTimestamp": at(n),
            "count": 1,
        }

    return [
        (
            PROVIDER,
            event(
                1,
                "Device",
                STWIN.name,
                "default",
                "Normal",
                "FlavorsPublished",
                "3 Sensor flavors published",
            ),
        ),
        (
            PROVIDER,
            event(
                2,
                "Device",
                TILE.name,
                "default",
                "Normal",
                "FlavorsPublished",
                "2 Sensor flavors published",
            ),
        ),
        (
            CONSUMER,
            event(
                3,
                "SensorRequest",
                "humidity-lab",
                "default",
                "Normal",
                "Contracted",
                "contract-7f3a with provider-1",
            ),
        ),
        (
            PROVIDER,
            event(
                4,
                "SensorRoute",
                "provider-1-edge-sensortile-2-humidity",
                ROUTE_NAMESPACE,
                "Warning",
                "TargetFailing",
                "lab-influx: 503 Service Unavailable",
            ),
        ),
    ]


def fill(store: Store) -> Store:
    """Put the whole sample into `store` (clusters, objects, Events, one unreachable cluster)."""
    store.add_cluster(PROVIDER, "provider")
    store.add_cluster(CONSUMER, "consumer")
    store.add_cluster(PROVIDER_2, "provider")
    for cluster in (PROVIDER, CONSUMER):
        for kind in Kind:
            store.report(cluster, kind, Health.SYNCED)
    for kind in Kind:
        store.report(PROVIDER_2, kind, Health.UNREACHABLE, "connection refused")
    for cluster, flavor in flavors():
        store.upsert(cluster, Kind.FLAVORS, flavor)
    # Three status reports of the agent: the sparkline of the healthy target has three points.
    for step, delivered in enumerate((1180, 1190, 1201)):
        store.upsert(PROVIDER, Kind.ROUTES, route([1.0, 0.9, 1.1][: step + 1], delivered))
    store.upsert(PROVIDER, Kind.ROUTES, empty_route())
    for request in requests():
        store.upsert(CONSUMER, Kind.REQUESTS, request)
    for provider in providers():
        store.upsert(CONSUMER, Kind.PROVIDERS, provider)
    for cluster, device, status in devices():
        store.upsert(cluster, Kind.DEVICES, device)
        store.upsert(cluster, Kind.DEVICE_STATUSES, status)
    for cluster, obj in events():
        store.upsert(cluster, Kind.EVENTS, obj)
    return store

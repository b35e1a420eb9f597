"""Interoperating with an unmodified FLUIDOS node (issue 20): valid item timestamps, and the
read-only FLUIDOS-compatibility listener over the gateway's index (in process)."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any

import httpx
import pytest
from test_gateway_http import sensor_flavor

from fluidos_sensors.rear.wire import UNKNOWN_TIMESTAMP, flavor_item
from resource_manager.gateway.compat import create_compat_app
from resource_manager.gateway.index import FlavorIndex
from resource_manager.gateway.objects import contract_answer
from testbed import upstream


def k8slice_flavor(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "nodecore.fluidos.eu/v1alpha1",
        "kind": "Flavor",
        "metadata": {"name": name, "namespace": "fluidos"},
        "spec": {
            "availability": True,
            "flavorType": {"typeIdentifier": "K8Slice", "typeData": {"characteristics": {}}},
            "owner": {"domain": "fluidos.eu", "ip": "127.0.0.1", "nodeID": "p"},
            "price": {"amount": "1", "currency": "EUR", "period": "hourly"},
            "providerID": "p",
        },
    }


def rfc3339(value: str) -> bool:
    return value.endswith("Z") and datetime.fromisoformat(value).year >= 1


@pytest.mark.parametrize("created", [None, "", "not a time"])
def test_an_item_never_has_an_empty_or_malformed_timestamp(created: str | None) -> None:
    flavor = sensor_flavor("hum", "humidity", 12)
    if created is not None:
        flavor["metadata"]["creationTimestamp"] = created
    item = flavor_item(flavor)
    assert item["timestamp"] == UNKNOWN_TIMESTAMP and rfc3339(item["timestamp"])


def test_a_contracts_flavor_takes_the_contracts_time() -> None:
    flavor = sensor_flavor("hum", "humidity", 12)
    contract = {
        "metadata": {"name": "contract-1", "creationTimestamp": "2025-01-01T00:00:01Z"},
        "spec": {
            "flavor": {"metadata": {"name": "hum"}, "spec": flavor["spec"]},
            "transactionID": "tx-1",
            "buyer": {"nodeID": "c", "ip": "1.2.3.4", "domain": "d"},
            "seller": {"nodeID": "p", "ip": "1.2.3.5", "domain": "d"},
            "ingressTelemetryEndpoint": {"endpoint": "http://127.0.0.1/t"},
        },
    }
    assert contract_answer(contract).flavor.timestamp == "2025-01-01T00:00:01Z"


def upstream_item_fields() -> set[str]:
    sample = upstream.mirrored("fluidos-rear-wire/upstream-main/flavors_k8slice.json")
    items = json.loads(sample.read_text())
    return set(items[0]) - {"location"}  # a pointer upstream: optional


def test_every_item_has_upstreams_required_fields() -> None:
    for flavor in (sensor_flavor("hum", "humidity", 12), k8slice_flavor("slice")):
        item = flavor_item(flavor)
        assert upstream_item_fields() <= set(item)
        assert rfc3339(item["timestamp"])


@pytest.fixture
def compat() -> tuple[httpx.AsyncClient, threading.Event]:
    index = FlavorIndex()
    index.replace([sensor_flavor("hum", "humidity", 12), k8slice_flavor("slice")])
    ready = threading.Event()
    app = create_compat_app(index, index_ready=ready.is_set)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    return http, ready


async def test_the_compat_listener_lists_without_sensors_and_without_a_token(
    compat: tuple[httpx.AsyncClient, threading.Event],
) -> None:
    http, ready = compat
    async with http:
        assert (await http.get("/api/v2/flavors")).status_code == 503  # index loading
        ready.set()
        listed = (await http.get("/api/v2/flavors")).json()
        assert [i["flavorID"] for i in listed] == ["slice"]
        for path in ("k8slice", "k8slices"):
            assert [i["flavorID"] for i in (await http.get(f"/api/v2/flavors/{path}")).json()] == [
                "slice"
            ]
        for path in ("service", "vm"):
            answer = await http.get(f"/api/v2/flavors/{path}")
            assert answer.status_code == 200 and answer.json() == []
        for path in ("/api/v2/flavors/sensors", "/api/v2/contracts", "/openapi.json", "/docs"):
            assert (await http.get(path)).status_code == 404, path
        reserve = await http.post("/api/v2/reservations", json={})
        assert reserve.status_code == 404 and "read-only" in reserve.json()["error"]
        write = await http.post("/api/v2/flavors", json={})
        assert write.status_code == 405 and write.headers["allow"] == "GET"

"""Each operator's registry holds its handlers, bound to it, on the kinds they serve; a handler
reading an index names one the registry builds (kopf passes indexes by id)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import FlagSetter
from kubernetes import client

from consumer.operator import ConsumerOperator
from consumer.resolver import ConsumerSettings
from fluidos_sensors.flavor import Price, ProviderConfig
from fluidos_sensors.rear.wire import NodeIdentity
from resource_manager.operator import FlavorOperator
from resource_manager.operator import Settings as FlavorSettings
from router_manager.operator import RouteOperator
from router_manager.operator import Settings as RouteSettings


@pytest.fixture
def api() -> Iterator[client.ApiClient]:
    with client.ApiClient() as api:  # never connects: no handler runs here
        yield api


def _handlers(registry: kopf.OperatorRegistry, part: str) -> dict[str, tuple[str, Any]]:
    """id -> (plural, handler function) of one part of the registry."""
    # kopf exposes a registry's parts only as these attributes.
    found = getattr(registry, f"_{part}").get_all_handlers()
    return {str(h.id): (_plural(h), h.fn) for h in found}


def _plural(handler: Any) -> str:
    selector = getattr(handler, "selector", None)  # activities serve no resource
    return selector.any_name if selector else ""


def _index_parameters(fn: Any) -> set[str]:
    return {
        name
        for name, parameter in inspect.signature(fn).parameters.items()
        if "Index" in str(parameter.annotation)
    }


def _check_index_names(registry: kopf.OperatorRegistry) -> None:
    indexes = set(_handlers(registry, "indexing"))
    for part in ("watching", "spawning", "changing"):
        for _, fn in _handlers(registry, part).values():
            assert _index_parameters(fn) <= indexes, fn


def test_the_resource_manager_registry(api: client.ApiClient) -> None:
    price = Price(amount="1", currency="EUR", period="hourly")
    provider = ProviderConfig(
        node_id="provider-1", domain="fluidos.eu", ip="127.0.0.1", price=price
    )
    operator = FlavorOperator(FlavorSettings(provider=provider, api=api))
    registry = operator.registry()
    indexes = _handlers(registry, "indexing")
    assert {name: plural for name, (plural, _) in indexes.items()} == {
        "nodes_index": "nodes",
        "devices_index": "devices",
        "devices_by_node": "devices",
        "models_index": "devicemodels",
        "flavors_index": "flavors",
    }
    events = {fn for _, fn in _handlers(registry, "watching").values()}
    assert events == {
        operator.device_event,
        operator.node_event,
        operator.model_event,
        operator.flavor_event,
    }
    activities = {fn for _, fn in _handlers(registry, "activities").values()}
    assert activities == {operator.start_retries, operator.stop_retries}
    _check_index_names(registry)


@pytest.mark.parametrize("kubeedge_rules", [True, False])
def test_the_router_manager_registry_watches_rules_only_when_it_keeps_them(
    api: client.ApiClient, kubeedge_rules: bool
) -> None:
    operator = RouteOperator(RouteSettings(api=api, kubeedge_rules=kubeedge_rules))
    registry = operator.registry()
    assert set(_handlers(registry, "indexing")) == {"routes_index", "contracts_index"}
    events = {plural: fn for plural, fn in _handlers(registry, "watching").values()}
    expected = {"sensorroutes": operator.route_event, "contracts": operator.contract_event}
    if kubeedge_rules:
        expected["rules"] = operator.rule_event
    assert events == expected
    _check_index_names(registry)


def test_the_consumer_registry_keeps_the_handler_ids_kopf_persisted(
    api: client.ApiClient,
) -> None:
    settings = ConsumerSettings(
        namespace="fluidos",
        buyer=NodeIdentity(node_id="consumer-1", ip="127.0.0.1", domain="fluidos.eu"),
    )
    operator = ConsumerOperator(settings, api)
    registry = operator.registry()
    assert _handlers(registry, "indexing") == {
        "sensor_providers": ("sensorproviders", operator.sensor_providers)
    }
    assert _handlers(registry, "watching") == {
        "provider_event": ("sensorproviders", operator.provider_event)
    }
    assert _handlers(registry, "spawning") == {
        "resolve": ("sensorrequests", operator.request_daemon)
    }
    assert _handlers(registry, "changing") == {
        "release": ("sensorrequests", operator.release_contracts)
    }
    _check_index_names(registry)


async def test_a_request_whose_passes_fail_waits_resync_between_them(
    api: client.ApiClient,
) -> None:
    """A pass that fails before writing observedGeneration (an API outage, a bug) is tried
    again after `resync`, not at once in a tight loop; a new spec generation still gets its
    pass at once, and only one."""
    settings = ConsumerSettings(
        namespace="fluidos",
        buyer=NodeIdentity(node_id="consumer-1", ip="127.0.0.1", domain="fluidos.eu"),
        resync=3600.0,
    )
    operator = ConsumerOperator(settings, api)
    passes: list[object] = []

    class FailingResolver:
        async def resolve(self, request: dict[str, Any], *_: Any, **__: Any) -> None:
            passes.append(request["metadata"]["generation"])
            await asyncio.sleep(0)  # as a call to the API would
            raise RuntimeError("the API server is away")

    operator.resolver = FailingResolver()  # type: ignore[assignment]
    body: dict[str, Any] = {
        "metadata": {"name": "r", "namespace": "fluidos", "uid": "u1", "generation": 1},
        "spec": {},
    }
    stopping = FlagSetter[Any]()  # what kopf hands a daemon as `stopped`, and sets on deletion
    stopped = stopping.async_waiter
    daemon = asyncio.create_task(
        operator.request_daemon(body, "r", "u1", stopped, {})  # type: ignore[arg-type]
    )
    try:
        for _ in range(40):  # the daemon's ticks are 1 s; a tight loop would pass every turn
            await asyncio.sleep(0.05)
        assert passes == [1]
        body["metadata"]["generation"] = 2  # a new spec: one pass at once
        operator._wakeup("u1").set()
        for _ in range(40):
            await asyncio.sleep(0.05)
        assert passes == [1, 2]
    finally:
        stopping.set()
        await asyncio.wait_for(daemon, 5)

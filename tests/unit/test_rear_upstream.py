"""Our REAR client against what a real FLUIDOS node sends and answers (issue 20, interop).

The bodies are upstream's own (tests/fixtures/fluidos-rear-wire/README.md says where from):
each parses with the model this project reads it with, and the client copes with what
upstream's gateway leaves out (``startTime``, ``ingressTelemetryEndpoint``), gives what it needs
(``buyerID.additionalInformation.liqoID``) and takes a 503 as "not ready, ask again".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from consumer import status as st
from consumer.market import discover
from consumer.resolver import NOT_READY_FIRST_S, not_ready_delay
from fluidos_sensors.endpoints import AuthType
from fluidos_sensors.filters import SensorFilter
from fluidos_sensors.rear.client import AsyncRearClient, RearClient, RearError
from fluidos_sensors.rear.wire import (
    ContractAnswer,
    DeliveryAuthorization,
    FlavorItem,
    NodeIdentity,
    PurchaseRequest,
    ReservationRequest,
    TelemetryEndpoint,
    TransactionAnswer,
)

WIRE = Path(__file__).resolve().parents[1] / "fixtures" / "fluidos-rear-wire"
UPSTREAMS = ["upstream-main", "upstream-edge"]
BUYER = NodeIdentity(node_id="consumer-1", ip="10.0.0.2:30000", domain="fluidos.eu")


def wire(upstream: str, name: str) -> Any:
    return json.loads((WIRE / upstream / f"{name}.json").read_text())


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_reservation_parses(upstream: str) -> None:
    request = ReservationRequest.model_validate(wire(upstream, "reserve_request"))
    assert request.flavor_id == "sensor-sensortile-hum-8f6b36aa"
    assert request.buyer.node_id == "consumer-1"
    assert request.buyer.additional_information is not None
    assert request.buyer.additional_information.liqo_id == "liqo-cluster-id"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_sensor_purchase_parses(upstream: str) -> None:
    request = PurchaseRequest.model_validate(wire(upstream, "purchase_request_telemetry"))
    endpoint = request.ingress_telemetry_endpoint
    assert endpoint.endpoint == "http://telegraf.example:8186/telegraf"
    assert endpoint.intents == ["i"]


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_k8slice_purchase_is_refused_naming_the_missing_endpoint(upstream: str) -> None:
    """Upstream's K8Slice purchase carries Liqo credentials only: a sensor purchase without
    the endpoint its readings go to cannot be served, and the error says which field."""
    with pytest.raises(ValidationError) as refused:
        PurchaseRequest.model_validate(wire(upstream, "purchase_request"))
    [error] = refused.value.errors()
    assert error["loc"] == ("ingressTelemetryEndpoint",) and error["type"] == "missing"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_transaction_parses_without_a_start_time(upstream: str) -> None:
    answer = TransactionAnswer.model_validate(wire(upstream, "transaction"))
    assert answer.transaction_id == "tx-1" and answer.cluster_id == "liqo-cluster-id"
    assert answer.expiration_time == "2026-12-07T10:10:58Z"
    assert answer.start_time is None


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_contract_parses_without_a_telemetry_endpoint(upstream: str) -> None:
    answer = ContractAnswer.model_validate(wire(upstream, "contract"))
    assert answer.contract_id == "contract-1" and answer.transaction_id == "tx-1"
    assert answer.flavor.type.name == "k8slice" and answer.seller.node_id == "provider-1"
    assert answer.peering_target_credentials.cluster_id == "provider-liqo"
    assert answer.ingress_telemetry_endpoint is None and answer.intents == []


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_k8slice_flavors_parse(upstream: str) -> None:
    [item] = TypeAdapter(list[FlavorItem]).validate_python(wire(upstream, "flavors_k8slice"))
    assert item.flavor_id == "k8slice-abc" and item.type.name == "k8slice"
    assert item.owner.node_id == "provider-1" and item.availability is True
    assert item.timestamp.startswith("2026-12-07T09:10:58.")


def upstream_gateway(upstream: str, seen: list[dict[str, Any]]) -> httpx.MockTransport:
    """A FLUIDOS gateway as its own code answers: a transaction without startTime, a contract
    without ingressTelemetryEndpoint."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if request.url.path == "/api/v2/reservations":
            return httpx.Response(200, json=wire(upstream, "transaction"))
        return httpx.Response(200, json=wire(upstream, "contract"))

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_client_buys_from_an_upstream_gateway(upstream: str) -> None:
    seen: list[dict[str, Any]] = []
    sent = TelemetryEndpoint(
        endpoint="http://telegraf:8186/telegraf",
        intents=["fluidos/req-1/uid"],
        authorization=DeliveryAuthorization(type=AuthType.BEARER, token="s3cret"),
    )
    with RearClient("http://gw", "tok", transport=upstream_gateway(upstream, seen)) as rear:
        transaction = rear.reserve("sensor-sensortile-hum-8f6b36aa", BUYER)
        contract = rear.purchase(transaction.transaction_id, sent)
    # Upstream's reservation handler takes the buyer's cluster from liqoID: we send our node id.
    assert seen[0]["buyerID"]["additionalInformation"] == {"liqoID": "consumer-1"}
    assert transaction.start_time is None
    # Not echoed by upstream: the contract delivers where we asked, for the request we asked.
    endpoint = contract.ingress_telemetry_endpoint
    assert endpoint is not None and endpoint.endpoint == "http://telegraf:8186/telegraf"
    assert contract.intents == ["fluidos/req-1/uid"]
    assert endpoint.authorization is not None and endpoint.authorization.type is AuthType.BEARER
    assert "s3cret" not in contract.model_dump_json()


def test_a_buyer_liqo_id_given_is_kept() -> None:
    seen: list[dict[str, Any]] = []
    buyer = NodeIdentity.model_validate(wire("upstream-main", "reserve_request")["buyerID"])
    with RearClient("http://gw", "tok", transport=upstream_gateway("upstream-main", seen)) as rear:
        rear.reserve("f", buyer)
    assert seen[0]["buyerID"]["additionalInformation"] == {"liqoID": "liqo-cluster-id"}


# ------------------------------------------------------------------------------ 503: not ready


def not_ready_gateway(retry_after: str | None) -> httpx.MockTransport:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": "the gateway is starting; try again in a moment"}
    return httpx.MockTransport(lambda _: httpx.Response(503, json=body, headers=headers))


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), (None, None), ("soon", None)])
def test_503_is_not_ready_with_its_retry_after(header: str | None, seconds: float | None) -> None:
    rear = RearClient("http://gw", "tok", transport=not_ready_gateway(header))
    with rear, pytest.raises(RearError) as caught:
        rear.list_flavors()
    assert caught.value.not_ready and caught.value.status == 503
    assert caught.value.retry_after == seconds
    assert "starting" in str(caught.value)


def test_other_errors_are_not_not_ready() -> None:
    assert not RearError("unknown token", status=401).not_ready
    assert not RearError("unreachable", status=None).not_ready


async def test_discovery_names_a_provider_that_is_not_ready() -> None:
    ready = AsyncRearClient(
        "http://ok", "tok", transport=httpx.MockTransport(lambda _: httpx.Response(200, json=[]))
    )
    starting = AsyncRearClient("http://gw", "tok", transport=not_ready_gateway("4"))
    found = await discover(
        {"p1": ready, "p2": starting}, ["p1", "p2"], SensorFilter(), "intent", retry_in=2.0
    )
    await ready.aclose()
    await starting.aclose()
    assert found.not_ready == {"p2"} and found.listed == {"p1"} and found.retry_hint == 4.0
    [problem] = found.problems
    assert problem == (
        "provider p2 is not ready, asking again in 2s "
        "(HTTP 503: the gateway is starting; try again in a moment)"
    )


def test_not_ready_backs_off_up_to_the_resync_period() -> None:
    delays = [not_ready_delay(attempt, resync=20.0) for attempt in range(8)]
    assert NOT_READY_FIRST_S * 0.9 <= delays[0] <= NOT_READY_FIRST_S * 1.1
    assert 1.8 <= delays[1] <= 2.2 and 3.6 <= delays[2] <= 4.4
    assert all(delay <= 20.0 for delay in delays) and delays[-1] >= 18.0
    assert not_ready_delay(0, resync=20.0, hint=5.0) == 5.0  # Retry-After, within resync
    assert not_ready_delay(0, resync=20.0, hint=600.0) == 20.0


def test_a_request_waiting_for_a_provider_that_is_not_ready_says_so() -> None:
    waiting = st.outcome(
        count=1,
        held=0,
        matched=0,
        wanted="sensor_type=humidity",
        asked=["p1"],
        problems=["provider p1 is not ready, asking again in 1s (HTTP 503: starting)"],
        not_ready=["p1"],
    )
    assert waiting.phase == st.SEARCHING  # not settled: `request --wait` keeps waiting
    assert waiting.message.startswith("waiting for provider(s) p1, not ready yet (")
    assert "asking again in 1s" in waiting.message
    partly = st.outcome(
        count=2,
        held=1,
        matched=1,
        wanted="any sensor",
        asked=["p1", "p2"],
        problems=[],
        not_ready=["p2"],
    )
    assert partly.phase == st.PARTIALLY_FULFILLED and "p2" in partly.message

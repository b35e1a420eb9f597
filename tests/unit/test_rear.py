"""REAR wire models, endpoint URL validation, Contract delivery annotations, query parsing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from fluidos_sensors.contract import (
    AUTH_NONE,
    DELIVERY_AUTH_ANNOTATION,
    DELIVERY_POLICY_ANNOTATION,
    DELIVERY_SECRET_ANNOTATION,
    DELIVERY_SHAPE_ANNOTATION,
    ContractError,
    delivery_target,
)
from fluidos_sensors.endpoints import (
    AuthType,
    DeliveryFormat,
    DeliveryPolicy,
    check_endpoint_url,
)
from fluidos_sensors.filters import SensorFilter
from fluidos_sensors.flavor import Price, ProviderConfig, build_flavor, sensor_from_flavor
from fluidos_sensors.rear.client import RearClient, RearError
from fluidos_sensors.rear.wire import (
    FlavorItem,
    NodeIdentity,
    PurchaseRequest,
    ReservationRequest,
    TelemetryEndpoint,
    flavor_item,
)
from fluidos_sensors.sensor import DeviceRef, SensorSpec
from fluidos_sensors.shaping import Shaping
from resource_manager.gateway import objects
from resource_manager.gateway.app import sensor_filter
from resource_manager.gateway.errors import GatewayError
from router_manager.route import target_for_contract

PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="10.0.0.5",
    price=Price(amount="1", currency="EUR", period="hourly"),
)
SPEC = SensorSpec(
    key="hum",
    uid="u-1",
    name="hum",
    model="HTS221",
    manufacturer="STMicroelectronics",
    category="Environmental",
    types=("humidity",),
    latency_ms=12.0,
    sampling_rate_hz=1.0,
)


def flavor() -> dict[str, Any]:
    body = build_flavor(DeviceRef("boards", "tile-1"), "edge-1", SPEC, PROVIDER, available=True)
    body["metadata"]["creationTimestamp"] = "2025-03-01T10:00:00Z"
    return body


# ---------------------------------------------------------------------------- wire models


def test_flavor_item_reads_back_as_the_same_sensor() -> None:
    item = flavor_item(flavor())
    parsed = FlavorItem.model_validate(item)
    assert parsed.type.name == "sensor" and parsed.flavor_id == flavor()["metadata"]["name"]
    assert parsed.owner.node_id == "provider-1" and parsed.timestamp == "2025-03-01T10:00:00Z"
    assert item["owner"] == {"ID": "provider-1", "IP": "10.0.0.5", "domain": "fluidos.eu"}
    view = sensor_from_flavor(item)
    assert view.sensor == sensor_from_flavor(flavor()).sensor


def test_flavor_item_names_the_missing_field() -> None:
    broken = flavor()
    del broken["spec"]["owner"]
    with pytest.raises(ValueError, match=r"spec\.owner"):
        flavor_item(broken)


def test_reservation_body_is_fluidos_camel_case() -> None:
    body = {
        "flavorID": "f-1",
        "buyerID": {"ID": "consumer-1", "IP": "10.0.0.9", "domain": "fluidos.eu"},
        "unknown": "ignored, as FLUIDOS does",
    }
    request = ReservationRequest.model_validate(body)
    assert request.buyer.node_id == "consumer-1"
    assert request.wire() == {k: v for k, v in body.items() if k != "unknown"}
    with pytest.raises(ValidationError) as missing:
        ReservationRequest.model_validate({"buyerID": body["buyerID"]})
    assert missing.value.errors()[0]["loc"] == ("flavorID",)


def test_purchase_authorization_is_masked_and_never_echoed() -> None:
    request = PurchaseRequest.model_validate(
        {
            "ingressTelemetryEndpoint": {
                "endpoint": "https://influx.example:8086/api/v2/write?bucket=b",
                "intents": ["telemetry"],
                "format": "influx",
                "authorization": {"type": "token", "token": "s3cr3t-token"},
            }
        }
    )
    telemetry = request.ingress_telemetry_endpoint
    assert "s3cr3t-token" not in repr(request) and "s3cr3t-token" not in str(request)
    assert request.wire()["ingressTelemetryEndpoint"]["authorization"]["token"] == "s3cr3t-token"
    assert telemetry.format is DeliveryFormat.INFLUX
    secret = objects.secret_body(name="c-1", consumer="a", authorization=telemetry.authorization)  # type: ignore[arg-type]
    assert secret["stringData"] == {"token": "s3cr3t-token"}


@pytest.mark.parametrize(
    ("authorization", "problem"),
    [
        ({"type": "bearer"}, "token"),
        ({"type": "basic", "username": "u"}, "password"),
        ({"type": "basic", "username": "a:b", "password": "p"}, '":"'),
        ({"type": "token", "token": "t", "password": "p"}, "not username"),
        ({"type": "digest", "token": "t"}, "bearer"),
    ],
)
def test_incomplete_authorization_is_refused(authorization: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        TelemetryEndpoint.model_validate({"endpoint": "http://a/b", "authorization": authorization})


# ---------------------------------------------------------------------------- endpoint URLs


@pytest.mark.parametrize(
    "url",
    [
        "http://telegraf:8186/telegraf",
        "https://10.0.0.7/write?db=sensors",
        "http://[::1]:8086/api/v2/write",
        "http://influx.consumer-1.svc.cluster.local:8086/write",
    ],
)
def test_deliverable_endpoints(url: str) -> None:
    assert check_endpoint_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://host/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http:///path", "host"),
        ("http://user:pass@host/x", "credentials"),
        ("http://host:99999/x", "valid URL"),
        ("http://host:0/x", "port 0"),
        ("http://ho st/x", "whitespace"),
        ("http://host/x#frag", "fragment"),
        ("http://-bad-.example/", "invalid host"),
        ("http://h/" + "a" * 3000, "at most"),
        ("", "empty"),
    ],
)
def test_undeliverable_endpoints(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_endpoint_url(url)
    with pytest.raises(ValidationError) as refused:
        PurchaseRequest.model_validate({"ingressTelemetryEndpoint": {"endpoint": url}})
    assert refused.value.errors()[0]["loc"][:2] == ("ingressTelemetryEndpoint", "endpoint")


def test_credentials_in_a_url_are_not_echoed_in_the_error() -> None:
    with pytest.raises(ValueError) as refused:
        check_endpoint_url("http://admin:hunter2@host/x")
    assert "hunter2" not in str(refused.value)


# ---------------------------------------------------------------------------- contracts


def _contract(**purchase: Any) -> dict[str, Any]:
    request = ReservationRequest(
        flavor_id=flavor()["metadata"]["name"],
        buyer=NodeIdentity(node_id="consumer-1", ip="10.0.0.9", domain="fluidos.eu"),
    )
    from datetime import UTC, datetime

    transaction = objects.transaction_body(
        transaction_id="tx-1",
        consumer="consumer-a",
        request=request,
        namespace="fluidos",
        now=datetime(2025, 1, 1, tzinfo=UTC),
        ttl_seconds=300,
    )
    telemetry = TelemetryEndpoint.model_validate(
        {"endpoint": "http://telegraf:8186/telegraf", **purchase}
    )
    name = objects.contract_name("tx-1")
    return objects.contract_body(
        name=name,
        namespace="fluidos",
        transaction=transaction,
        flavor=flavor(),
        source=objects.delivery_source(flavor()),
        seller=objects.Seller(node_id="provider-1", domain="fluidos.eu", ip="10.0.0.5"),
        telemetry=telemetry,
        consumer="consumer-a",
        secret_name=name if telemetry.authorization else None,
        policy=DeliveryPolicy(("telegraf",)),
    )


def test_contract_annotations_round_trip_to_a_route_target() -> None:
    contract = _contract(format="json", authorization={"type": "bearer", "token": "t0ken"})
    target = delivery_target(contract)
    assert target.contract == contract["metadata"]["name"] and target.namespace == "fluidos"
    assert target.broker_topic == "boards/fluidos-sensors/tile-1/hum"
    assert target.node == "edge-1" and target.consumer == "consumer-a"
    assert target.flavor == flavor()["metadata"]["name"]
    assert target.format is DeliveryFormat.JSON and target.auth_type is AuthType.BEARER
    assert target.secret_name == contract["metadata"]["name"]
    assert target.endpoint == "http://telegraf:8186/telegraf"
    assert target.policy == DeliveryPolicy(("telegraf",))
    assert "t0ken" not in json.dumps(contract)  # credentials live in the Secret only

    plain = delivery_target(_contract())
    assert plain.auth_type is None and plain.secret_name is None
    assert plain.format is DeliveryFormat.INFLUX
    assert plain.secret_namespace == "fluidos-routes"


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda c: c["metadata"]["annotations"].pop(DELIVERY_SECRET_ANNOTATION), "delivery-secret"),
        (lambda c: c["metadata"]["annotations"].update({DELIVERY_AUTH_ANNOTATION: "x"}), "one of"),
        (lambda c: c["spec"]["ingressTelemetryEndpoint"].update(endpoint="gopher://h"), "endpoint"),
        (lambda c: c["spec"].pop("ingressTelemetryEndpoint"), "ingressTelemetryEndpoint"),
        (lambda c: c["spec"]["flavor"].pop("metadata"), "spec.flavor.metadata.name"),
        (lambda c: c["metadata"]["annotations"].pop(DELIVERY_POLICY_ANNOTATION), "allowed"),
        (
            lambda c: c["metadata"]["annotations"].update({DELIVERY_POLICY_ANNOTATION: "x.org"}),
            "delivery policy",
        ),
    ],
)
def test_a_damaged_contract_names_itself_and_the_field(damage: Any, field: str) -> None:
    contract = _contract(authorization={"type": "bearer", "token": "t0ken"})
    damage(contract)
    with pytest.raises(ContractError) as refused:
        delivery_target(contract)
    assert contract["metadata"]["name"] in str(refused.value) and field in str(refused.value)


def test_no_authorization_is_spelled_none() -> None:
    assert _contract()["metadata"]["annotations"][DELIVERY_AUTH_ANNOTATION] == AUTH_NONE


def test_contract_answer_keeps_the_fluidos_shape() -> None:
    contract = _contract(authorization={"type": "basic", "username": "u", "password": "pw"})
    contract["metadata"]["creationTimestamp"] = "2025-01-01T00:00:01Z"
    answer = objects.contract_answer(contract).wire()
    assert answer["contractID"] == contract["metadata"]["name"]
    # The token's consumer, whatever the reservation body said (issue 24.3).
    assert answer["buyerID"]["ID"] == "consumer-a" and answer["seller"]["ID"] == "provider-1"
    assert answer["ingressTelemetryEndpoint"]["authorization"] == {"type": "basic"}
    assert answer["flavor"]["type"]["name"] == "sensor"
    assert answer["flavor"]["timestamp"] == "2025-01-01T00:00:01Z"


def test_transaction_expiry_is_rounded_up_to_whole_seconds() -> None:
    from datetime import UTC, datetime

    request = ReservationRequest(
        flavor_id="f",
        buyer=NodeIdentity(node_id="c", ip="1.2.3.4", domain="d"),
    )
    now = datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    body = objects.transaction_body(
        transaction_id="tx-2",
        consumer="a",
        request=request,
        namespace="fluidos",
        now=now,
        ttl_seconds=0.2,
    )
    assert body["spec"]["expirationTime"] == "2025-01-01T00:00:01Z"
    assert body["spec"]["clusterID"] == "a"  # the token's consumer, not the body's "c"
    assert body["spec"]["buyer"]["nodeID"] == "a"
    assert not objects.expired(body, now) and objects.expired(
        body, datetime(2025, 1, 2, tzinfo=UTC)
    )


# ---------------------------------------------------------------------------- query parsing


def test_query_filters_parse_and_bad_ones_name_the_parameter() -> None:
    wanted = sensor_filter(
        [
            ("filter[sensor_type][match]", "humidity"),
            ("filter[latency][range][max]", "16"),
        ]
    )
    assert wanted == SensorFilter.from_options(sensor_type="humidity", latency_max=16)
    for pairs, field in [
        ([("filter[latency][range][max]", "fast")], "filter[latency][range][max]"),
        ([("filter[colour][match]", "red")], "filter[colour][match]"),
        ([("filter[node][range][min]", "1")], "filter[node][range][min]"),
        ([("filter[[", "1")], "filter[["),
        ([("sensor_type", "humidity")], "sensor_type"),  # a typo must not widen the query
        (
            [("filter[latency][range][min]", "20"), ("filter[latency][range][max]", "10")],
            "filter[latency]",
        ),
    ]:
        with pytest.raises(GatewayError) as refused:
            sensor_filter(pairs)
        assert refused.value.status == 400 and refused.value.field == field, refused.value.message


# ---------------------------------------------------------------------------- client errors


def test_client_raises_the_gateways_message_and_field() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer tok-123"
        assert request.url.params.get_list("filter[sensor_type][match]") == ["humidity"]
        return httpx.Response(400, json={"error": "bad latency", "field": "filter[latency]"})

    client = RearClient("http://gw", "tok-123", transport=httpx.MockTransport(answer))
    with pytest.raises(RearError) as failed:
        client.list_flavors(SensorFilter(sensor_type=("humidity",)))
    assert failed.value.status == 400 and failed.value.field == "filter[latency]"
    assert "bad latency" in str(failed.value) and "tok-123" not in repr(client)


def test_client_reports_an_unreachable_gateway() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = RearClient("http://gw", "tok", transport=httpx.MockTransport(refuse))
    with pytest.raises(RearError) as failed:
        client.list_contracts()
    assert failed.value.status is None and "unreachable" in str(failed.value)


async def test_async_client_speaks_the_same_protocol() -> None:
    from fluidos_sensors.rear.client import AsyncRearClient

    seen: list[tuple[str, str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body: Any = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.raw_path.decode(), body))
        if request.url.path == "/api/v2/flavors/sensors":
            return httpx.Response(200, json=[flavor_item(flavor())])
        if request.url.path == "/api/v2/reservations":
            return httpx.Response(
                200,
                json={
                    "transactionID": "tx-1",
                    "flavorID": body["flavorID"],
                    "buyer": body["buyerID"],
                    "clusterID": "consumer-1",
                    "expirationTime": "2025-01-01T00:05:00Z",
                    "startTime": "2025-01-01T00:00:00Z",
                },
            )
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(410, json={"error": "reservation expired"})

    async with AsyncRearClient("http://gw/", "tok", transport=httpx.MockTransport(answer)) as rear:
        [item] = await rear.list_flavors(sensors_only=True)
        assert item.type.name == "sensor"
        tx = await rear.reserve(item.flavor_id, NodeIdentity(node_id="c", ip="1.2.3.4", domain="d"))
        assert tx.transaction_id == "tx-1"
        with pytest.raises(RearError) as late:
            await rear.purchase("tx-1", "http://telegraf:8186/telegraf")
        assert late.value.status == 410
        await rear.release("contract-x/y")
    assert seen[1][2]["buyerID"] == {  # FLUIDOS's gateway needs a liqoID: the node id
        "ID": "c",
        "IP": "1.2.3.4",
        "domain": "d",
        "additionalInformation": {"liqoID": "c"},
    }
    assert seen[2][2] == {
        "ingressTelemetryEndpoint": {
            "endpoint": "http://telegraf:8186/telegraf",
            "intents": [],
            "format": "influx",
        }
    }
    assert seen[3][:2] == ("DELETE", "/api/v2/contracts/contract-x%2Fy")


def test_a_purchase_shape_travels_through_the_contract_to_the_route_target() -> None:
    shape = {"aggregate": ["max", "mean"], "windowMs": 1000}
    contract = _contract(format="cloudevents", shape=shape)
    assert contract["metadata"]["annotations"][DELIVERY_SHAPE_ANNOTATION] == (
        '{"aggregate":["mean","max"],"windowMs":1000}'
    )
    delivery = delivery_target(contract)
    assert delivery.shape == Shaping(aggregates=("mean", "max"), window_ms=1000)
    assert delivery.format is DeliveryFormat.CLOUDEVENTS
    target = target_for_contract(delivery)
    assert target.shape == delivery.shape and target.format == "cloudevents"
    answer = objects.contract_answer(contract).ingress_telemetry_endpoint
    assert answer is not None and answer.shape is not None
    assert answer.shape.wire() == {
        "aggregate": ["mean", "max"],
        "windowMs": 1000,
    }
    assert delivery_target(_contract()).shape is None
    assert delivery_target(_contract(shape={"every": 10})).shape == Shaping(every=10)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ({"aggregate": ["median"], "windowMs": 1000}, "aggregate"),
        ({"aggregate": ["mean"]}, "windowMs"),
        ({"aggregate": ["mean"], "windowMs": 1}, "windowMs"),
        ({"every": 1}, "every"),
        ({"every": 10, "windowMs": 1000}, "every"),
    ],
)
def test_a_purchase_with_an_unusable_shape_is_refused(shape: Any, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        TelemetryEndpoint.model_validate({"endpoint": "http://telegraf:8186/x", "shape": shape})


def test_a_damaged_shape_annotation_names_the_contract_and_annotation() -> None:
    contract = _contract()
    contract["metadata"]["annotations"][DELIVERY_SHAPE_ANNOTATION] = '{"every": "often"}'
    with pytest.raises(ContractError, match=r"delivery-shape.*every"):
        delivery_target(contract)

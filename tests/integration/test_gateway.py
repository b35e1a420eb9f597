"""The REAR gateway against the real testbed: a subprocess with its own ServiceAccount and RBAC,
Flavors, Transactions, Contracts, Allocations and Secrets in the provider's API server."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import socket
import ssl
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
import support
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from schemathesis.core import NotSet
from schemathesis.core.result import Err, Ok

from fluidos_sensors import api as fs_api
from fluidos_sensors.contract import (
    CONSUMER_LABEL,
    DELIVERY_POLICY_ANNOTATION,
    FLAVOR_LABEL,
    AuthType,
    DeliveryFormat,
    delivery_target,
)
from fluidos_sensors.endpoints import DeliveryPolicy
from fluidos_sensors.filters import SensorFilter
from fluidos_sensors.flavor import Price, ProviderConfig, build_flavor, sensor_from_flavor
from fluidos_sensors.kube import get_or_none
from fluidos_sensors.rates import (
    RATE_FIELD,
    RATE_SCOPE_LABEL,
    HeldRate,
    held_rate,
    rate_configuration,
    rate_scope,
)
from fluidos_sensors.rear.client import RearClient, RearError
from fluidos_sensors.rear.wire import (
    REAR_CONSUMER_LABEL,
    ContractAnswer,
    FlavorItem,
    NodeIdentity,
    PurchaseRequest,
    ReservationRequest,
    SensorConfiguration,
    TelemetryEndpoint,
)
from fluidos_sensors.sensor import DeviceRef, SensorSpec
from resource_manager.gateway import objects
from resource_manager.gateway.app import MAX_BODY_BYTES
from resource_manager.gateway.errors import GatewayError
from resource_manager.gateway.index import FlavorIndex
from resource_manager.gateway.market import Marketplace, MarketSettings
from resource_manager.gateway.store import MarketStore
from testbed import bootstrap, credentials, paths, upstream
from testbed.pki import CertPair, ClusterPKI
from testbed.processes import ManagedProcess, ProcessSpec
from testbed.state import ClusterAccess

pytestmark = pytest.mark.integration

WAIT = 30.0
NS = fs_api.FLUIDOS_NAMESPACE
RBAC = paths.rbac_manifest("gateway")
ACCOUNT = "fluidos-sensors-gateway"
PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="127.0.0.1",
    price=Price(amount="1", currency="EUR", period="hourly"),
)
ENDPOINT = "http://127.0.0.1:8186/telegraf"
POLICY = "127.0.0.1, telegraf.consumer.example"
RFC3339 = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
)  # the delivery policy of the tests' consumers


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    return support.eventually(check, what, timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------ the parts


class Gateway:
    """`fluidos-sensors resource-manager gateway` as a subprocess."""

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        *extra: str,
        tls: CertPair | None = None,
        ca: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=str(ca)) if ca else True
        )
        if tls:
            extra = (*extra, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
        self.log = log
        self.args = [
            sys.executable,
            "-m",
            "fluidos_sensors_cli",
            "resource-manager",
            "gateway",
            "--kubeconfig",
            str(kubeconfig),
            "--node-id",
            "provider-1",
            "--listen",
            f"127.0.0.1:{self.port}",
            *extra,
        ]
        self.process = ManagedProcess(ProcessSpec("gateway", self.args, log))

    def start(self, token: str) -> None:
        self.process.start()

        def ready() -> bool:
            self.assert_alive()
            try:
                answer = httpx.get(
                    f"{self.url}/api/v2/flavors", headers=bearer(token), verify=self.verify
                )
                return answer.is_success
            except httpx.HTTPError:
                return False

        eventually(ready, "the gateway to serve", timeout=90)

    def stop(self) -> None:
        self.process.stop(20)

    def assert_alive(self) -> None:
        assert self.process.alive, f"gateway exited:\n{self.log.read_text()[-3000:]}"

    def http(self, token: str | None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers=bearer(token) if token else {},
            timeout=20,
            verify=self.verify,
        )

    def rear(self, token: str) -> RearClient:
        return RearClient(self.url, token, timeout=20, verify=self.verify)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Consumers:
    """REAR consumers of the provider: Secrets labeled with their id, holding their token."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        run = uuid.uuid4().hex[:6]
        self.ids = {name: f"{name}-{run}" for name in ("a", "b", "c")}
        self.tokens = {name: secrets.token_urlsafe(24) for name in self.ids}
        for name, consumer in self.ids.items():
            core.create_namespaced_secret(
                NS,
                # kubernetes takes a dict body too; its annotation names only the model
                {  # type: ignore[arg-type]
                    "metadata": {
                        "name": f"rear-{consumer}",
                        "labels": {REAR_CONSUMER_LABEL: consumer},
                        "annotations": {DELIVERY_POLICY_ANNOTATION: POLICY},
                    },
                    "stringData": {"token": self.tokens[name]},
                },
            )

    def buyer(self, name: str) -> NodeIdentity:
        """The identity `name` buys as: the gateway takes only the token's own consumer."""
        return NodeIdentity(node_id=self.ids[name], ip="10.0.0.9", domain="fluidos.eu")

    def remove(self) -> None:
        for consumer in self.ids.values():
            self.core.delete_namespaced_secret(f"rear-{consumer}", NS)


class Provider:
    """The admin's view of the provider cluster, for arranging and checking."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def get(self, resource: fs_api.Resource, name: str) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            get_or_none(
                self.custom.get_namespaced_custom_object,
                resource.group,
                resource.version,
                NS,
                resource.plural,
                name,
            ),
        )

    def secret(self, name: str) -> client.V1Secret | None:
        return get_or_none(self.core.read_namespaced_secret, name, fs_api.ROUTE_NAMESPACE)

    def list(self, resource: fs_api.Resource, selector: str) -> list[dict[str, Any]]:
        return cast(
            dict[str, Any],
            self.custom.list_namespaced_custom_object(
                resource.group, resource.version, NS, resource.plural, label_selector=selector
            ),
        )["items"]

    def delete(self, resource: fs_api.Resource, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                resource.group, resource.version, NS, resource.plural, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


class Offer:
    """Sensor Flavors of one test, tagged so its queries see only them; deleted afterwards."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.tag = uuid.uuid4().hex[:8]
        self.manufacturer = f"STMicro-{self.tag}"
        self.names: list[str] = []

    def add(
        self,
        key: str,
        kind: str = "humidity",
        *,
        latency: float = 12.0,
        manufacturer: str | None = None,
        node: str = "provider-1-edge",
        available: bool = True,
        rates: tuple[float, ...] = (),
        rate_group: str = "",
    ) -> dict[str, Any]:
        spec = SensorSpec(
            key=key,
            uid=f"uid-{key}",
            name=key,
            model=f"HTS221-{self.tag}",
            manufacturer=manufacturer or self.manufacturer,
            category="Environmental",
            types=(kind,),
            latency_ms=float(latency),
            sampling_rate_hz=1.0,
            sampling_rates_hz=rates,
            rate_group=rate_group,
        )
        body = build_flavor(
            DeviceRef(f"dev-{self.tag}", "tile"), node, spec, PROVIDER, available=available
        )
        created = cast(
            dict[str, Any],
            self.provider.custom.create_namespaced_custom_object(
                fs_api.FLAVOR.group, fs_api.FLAVOR.version, NS, fs_api.FLAVOR.plural, body
            ),
        )
        self.names.append(body["metadata"]["name"])
        return created

    def query(self, **conditions: str) -> dict[str, str]:
        """Query parameters selecting this offer, plus the conditions given."""
        return {"filter[sensor_model][match]": f"hts221-{self.tag}", **conditions}

    def clean(self) -> None:
        for name in self.names:
            self.provider.delete(fs_api.FLAVOR, name)


def names(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {item["flavorID"] for item in answer.json()}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def gateway_kubeconfig(
    provider: ClusterAccess,
    provider_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The gateway runs as its own ServiceAccount with the shipped least-privilege RBAC."""
    credentials.apply_manifest(provider_api, RBAC)
    return credentials.service_account_kubeconfig(
        provider.kubeconfig, NS, ACCOUNT, tmp_path_factory.mktemp("gw") / "kubeconfig"
    )


@pytest.fixture(scope="module")
def admin(provider_api: client.ApiClient) -> Provider:
    return Provider(provider_api)


@pytest.fixture(scope="module")
def consumers(admin: Provider) -> Iterator[Consumers]:
    made = Consumers(admin.core)
    try:
        yield made
    finally:
        # What the tests' consumers left behind (a failed test may leave a sale half-way).
        for consumer in made.ids.values():
            selector = f"{CONSUMER_LABEL}={consumer}"
            for resource in (fs_api.TRANSACTION, fs_api.CONTRACT, fs_api.ALLOCATION):
                for obj in admin.list(resource, selector):
                    admin.delete(resource, obj["metadata"]["name"])
            admin.core.delete_collection_namespaced_secret(
                fs_api.ROUTE_NAMESPACE, label_selector=selector
            )
        made.remove()


def _gateway(
    kubeconfig: Path, consumers: Consumers, factory: pytest.TempPathFactory, *extra: str
) -> Iterator[Gateway]:
    gateway = Gateway(kubeconfig, factory.mktemp("gateway") / "gateway.log", *extra)
    gateway.start(consumers.tokens["a"])
    try:
        yield gateway
    finally:
        gateway.stop()
    log = gateway.log.read_text()
    for token in consumers.tokens.values():
        assert token not in log, "a consumer token was logged"
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def gateway(
    gateway_kubeconfig: Path, consumers: Consumers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    yield from _gateway(
        gateway_kubeconfig,
        consumers,
        tmp_path_factory,
        "--max-consumers-per-sensor",
        "2",
        "--reservation-ttl",
        "300",
    )


@pytest.fixture
def offer(admin: Provider) -> Iterator[Offer]:
    made = Offer(admin)
    try:
        yield made
    finally:
        made.clean()


def visible(gateway: Gateway, token: str, offer: Offer, count: int) -> None:
    """Wait until the gateway's index (fed by its watch) holds the offer's flavors."""
    with gateway.http(token) as http:
        eventually(
            lambda: len(names(http.get("/api/v2/flavors/sensors", params=offer.query()))) == count,
            f"{count} flavor(s) of the offer in the gateway's index",
        )


# ------------------------------------------------------------------------------ discovery


def test_filters_combine_ignore_case_and_follow_the_watch(
    gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    hum12 = offer.add("hum12", latency=12)["metadata"]["name"]
    hum20 = offer.add("hum20", latency=20)["metadata"]["name"]
    offer.add("tmp12", "temperature", latency=12)
    offer.add("bosch12", latency=12, manufacturer=f"Bosch-{offer.tag}")
    off = offer.add("off", latency=5, available=False)["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 4)
    wanted = offer.query(
        **{
            "filter[sensor_type][match]": "HUMIDITY",
            "filter[sensor_manufacturer][match]": offer.manufacturer.lower(),
        }
    )
    with gateway.http(consumers.tokens["a"]) as http:

        def sensors(**more: str) -> set[str]:
            return names(http.get("/api/v2/flavors/sensors", params={**wanted, **more}))

        assert sensors() == {hum12, hum20}  # the unavailable one is not offered
        assert sensors(**{"filter[latency][range][max]": "16"}) == {hum12}
        assert sensors(**{"filter[latency][range][max]": "0.016 s"}) == {hum12}
        both = {"filter[latency][range][min]": "12", "filter[latency][range][max]": "20"}
        assert sensors(**both) == {hum12, hum20}  # bounds are inclusive
        assert sensors(**{"filter[node][match]": "PROVIDER-1-EDGE"}) == {hum12, hum20}
        assert sensors(**{"filter[node][match]": "nowhere"}) == set()  # unsatisfiable: empty

        bad = http.get("/api/v2/flavors/sensors", params={"filter[latency][range][max]": "fast"})
        assert bad.status_code == 400
        assert bad.json()["field"] == "filter[latency][range][max]"
        assert "fast" in bad.json()["error"]
        unknown = http.get("/api/v2/flavors/sensors", params={"filter[colour][match]": "red"})
        assert unknown.status_code == 400 and unknown.json()["field"] == "filter[colour][match]"

        everything = http.get("/api/v2/flavors").json()
        mine = [i for i in everything if i["flavorID"] in offer.names]
        assert len(mine) == 4 and off not in {i["flavorID"] for i in mine}
        for item in mine:  # REAR items that read back as the same sensors
            FlavorItem.model_validate(item)
            assert sensor_from_flavor(item).sensor.model == f"HTS221-{offer.tag}"

        # No restart: a new Flavor, an availability change and a deletion show up.
        hum15 = offer.add("hum15", latency=15)["metadata"]["name"]
        eventually(lambda: sensors() == {hum12, hum20, hum15}, "the new flavor listed")
        admin.custom.patch_namespaced_custom_object(
            fs_api.FLAVOR.group,
            fs_api.FLAVOR.version,
            NS,
            fs_api.FLAVOR.plural,
            off,
            {"spec": {"availability": True}},
        )
        eventually(lambda: off in sensors(), "the flavor made available listed")
        admin.delete(fs_api.FLAVOR, hum12)
        eventually(lambda: hum12 not in sensors(), "the deleted flavor gone")

    with gateway.rear(consumers.tokens["b"]) as rear:  # the client sends the same filters
        found = rear.list_flavors(
            SensorFilter.from_query(offer.query(**{"filter[latency][range][min]": "19"}))
        )
        assert {f.flavor_id for f in found} == {hum20}


# ------------------------------------------------------------------------------ the sale


def test_reserve_purchase_release(
    gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    flavor_name = offer.add("sold")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 1)
    consumer = consumers.ids["a"]
    password = secrets.token_urlsafe(16)
    with gateway.rear(consumers.tokens["a"]) as rear, gateway.http(consumers.tokens["a"]) as http:
        tx = rear.reserve(flavor_name, consumers.buyer("a"))
        transaction = admin.get(fs_api.TRANSACTION, tx.transaction_id)
        assert transaction is not None
        assert transaction["spec"]["flavorID"] == flavor_name
        assert transaction["spec"]["buyer"] == {
            "nodeID": consumer,
            "ip": "10.0.0.9",
            "domain": "fluidos.eu",
            # The REAR client names the buyer's liqoID (its node id), as FLUIDOS's gateway needs.
            "additionalInformation": {"liqoID": consumer},
        }
        assert transaction["spec"]["expirationTime"] == tx.expiration_time
        assert transaction["metadata"]["labels"][CONSUMER_LABEL] == consumer
        flavor = admin.get(fs_api.FLAVOR, flavor_name)
        assert flavor is not None

        telemetry = TelemetryEndpoint.model_validate(
            {
                "endpoint": ENDPOINT,
                "intents": ["telemetry"],
                "format": "json",
                "authorization": {"type": "basic", "username": "telegraf", "password": password},
            }
        )
        body = PurchaseRequest(ingress_telemetry_endpoint=telemetry).wire()
        bought = http.post(f"/api/v2/transactions/{tx.transaction_id}/purchase", json=body)
        assert bought.status_code == 200, bought.text
        assert password not in bought.text  # credentials are never echoed
        answer = ContractAnswer.model_validate(bought.json())
        assert answer.ingress_telemetry_endpoint is not None
        assert answer.ingress_telemetry_endpoint.authorization is not None
        assert answer.flavor.flavor_id == flavor_name and answer.transaction_id == tx.transaction_id

        # What the gateway wrote reads back unchanged (nothing pruned by the upstream CRDs).
        contract = admin.get(fs_api.CONTRACT, answer.contract_id)
        assert contract is not None
        expected = objects.contract_body(
            name=answer.contract_id,
            namespace=NS,
            transaction=transaction,
            flavor=flavor,
            source=objects.delivery_source(flavor),
            seller=objects.Seller(node_id="provider-1", domain="fluidos.eu", ip="127.0.0.1"),
            telemetry=telemetry,
            consumer=consumer,
            secret_name=answer.contract_id,
            policy=DeliveryPolicy.parse(POLICY)[0],
        )
        assert contract["spec"] == expected["spec"]
        assert expected["metadata"]["labels"].items() <= contract["metadata"]["labels"].items()
        assert contract["metadata"]["annotations"] == expected["metadata"]["annotations"]
        assert password not in str(contract)

        target = delivery_target(contract)
        assert target.broker_topic == f"dev-{offer.tag}/fluidos-sensors/tile/sold"
        assert target.node == "provider-1-edge" and target.endpoint == ENDPOINT
        assert target.format is DeliveryFormat.JSON and target.auth_type is AuthType.BASIC
        assert target.consumer == consumer and target.flavor == flavor_name

        allocation = admin.get(fs_api.ALLOCATION, objects.allocation_name(answer.contract_id))
        assert allocation is not None
        assert allocation["spec"] == objects.allocation_body(contract)["spec"]
        secret = admin.secret(answer.contract_id)
        assert secret is not None and secret.data is not None
        decoded = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        assert decoded == {"username": "telegraf", "password": password}
        assert admin.get(fs_api.TRANSACTION, tx.transaction_id) is None

        assert rear.get_contract(answer.contract_id) == answer
        assert [c.contract_id for c in rear.list_contracts()] == [answer.contract_id]
        again = rear.purchase(tx.transaction_id, telemetry)  # a retry gets the same contract
        assert again.contract_id == answer.contract_id

        rear.release(answer)
        assert admin.get(fs_api.CONTRACT, answer.contract_id) is None
        assert admin.get(fs_api.ALLOCATION, objects.allocation_name(answer.contract_id)) is None
        assert admin.secret(answer.contract_id) is None
        rear.release(answer)  # idempotent
        assert rear.list_contracts() == []


def test_wrong_token_is_refused(gateway: Gateway, consumers: Consumers) -> None:
    for token in (None, "not-a-consumer-token-0123456789", consumers.tokens["a"] + "x"):
        with gateway.http(token) as http:
            for method, path in [
                ("GET", "/api/v2/flavors"),
                ("GET", "/openapi.json"),
                ("POST", "/api/v2/reservations"),
                ("POST", "/api/v2/transactions/tx-1/purchase"),
                ("GET", "/api/v2/contracts"),
            ]:
                answer = http.request(method, path)
                assert answer.status_code == 401, (token is None, path, answer.text)
    basic = httpx.get(
        f"{gateway.url}/api/v2/flavors",
        headers={"Authorization": f"Basic {consumers.tokens['a']}"},
    )
    assert basic.status_code == 401


def test_consumers_see_and_change_only_their_own(
    gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    flavor_name = offer.add("private")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 1)
    with gateway.rear(consumers.tokens["a"]) as a, gateway.rear(consumers.tokens["b"]) as b:
        tx = a.reserve(flavor_name, consumers.buyer("a"))
        with pytest.raises(RearError) as denied:
            b.purchase(tx.transaction_id, ENDPOINT)
        assert denied.value.status == 404
        assert admin.get(fs_api.TRANSACTION, tx.transaction_id) is not None

        contract = a.purchase(tx.transaction_id, ENDPOINT)
        for attempt in (
            lambda: b.get_contract(contract.contract_id),
            lambda: b.release(contract.contract_id),
            lambda: b.purchase(tx.transaction_id, ENDPOINT),  # not B's retry to make
        ):
            with pytest.raises(RearError) as denied:
                attempt()
            assert denied.value.status == 404
        assert contract.contract_id not in {c.contract_id for c in b.list_contracts()}
        assert admin.get(fs_api.CONTRACT, contract.contract_id) is not None
        assert a.get_contract(contract.contract_id).contract_id == contract.contract_id
        a.release(contract)


def test_a_reservation_asked_again_is_the_same_one_until_bought(
    gateway: Gateway, consumers: Consumers, offer: Offer
) -> None:
    """A consumer whose client lost the answer asks again: it gets its open reservation (one
    place held, not two; not a 409 that would strand it until it expires). Once bought, asking
    again is refused: the consumer holds that sensor."""
    flavor_name = offer.add("retried")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 1)
    with gateway.rear(consumers.tokens["a"]) as a:
        first = a.reserve(flavor_name, consumers.buyer("a"))
        again = a.reserve(flavor_name, consumers.buyer("a"))
        assert again.transaction_id == first.transaction_id
        contract = a.purchase(again.transaction_id, ENDPOINT)
        with pytest.raises(RearError) as held:
            a.reserve(flavor_name, consumers.buyer("a"))
        assert held.value.status == 409 and "already holds" in held.value.message
        a.release(contract)


def test_sold_to_several_consumers_up_to_the_limit(
    gateway: Gateway, consumers: Consumers, offer: Offer
) -> None:
    flavor_name = offer.add("shared")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 1)
    a, b, c = (gateway.rear(consumers.tokens[name]) for name in "abc")
    with a, b, c:
        first = a.purchase(a.reserve(flavor_name, consumers.buyer("a")).transaction_id, ENDPOINT)
        b.reserve(flavor_name, consumers.buyer("b"))
        with pytest.raises(RearError) as full:  # --max-consumers-per-sensor 2
            c.reserve(flavor_name, consumers.buyer("c"))
        assert full.value.status == 409 and "sold out" in full.value.message
        with pytest.raises(RearError) as twice:
            a.reserve(flavor_name, consumers.buyer("a"))
        assert twice.value.status == 409 and "already holds" in twice.value.message
        a.release(first)
        c.reserve(flavor_name, consumers.buyer("c"))  # the released place is free again


def test_bad_input_gets_a_clear_error_and_changes_nothing(
    gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    flavor_name = offer.add("strict")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 1)
    consumer = consumers.ids["a"]
    before = len(admin.list(fs_api.TRANSACTION, f"{CONSUMER_LABEL}={consumer}"))
    with gateway.http(consumers.tokens["a"]) as http:
        buyer = consumers.buyer("a").wire()
        unknown = http.post("/api/v2/reservations", json={"flavorID": "nope", "buyerID": buyer})
        assert unknown.status_code == 404 and unknown.json()["field"] == "flavorID"
        no_buyer = http.post("/api/v2/reservations", json={"flavorID": flavor_name})
        assert no_buyer.status_code == 400 and no_buyer.json()["field"] == "buyerID"
        huge = http.post(
            "/api/v2/reservations",
            json={"flavorID": flavor_name, "buyerID": buyer, "pad": "x" * 70_000},
        )
        assert huge.status_code == 413
        assert len(admin.list(fs_api.TRANSACTION, f"{CONSUMER_LABEL}={consumer}")) == before

        tx = http.post("/api/v2/reservations", json={"flavorID": flavor_name, "buyerID": buyer})
        assert tx.status_code == 200, tx.text
        tx_id = tx.json()["transactionID"]
        for endpoint in ("ftp://host/x", "http://user:pw@host/x", "http:///nohost"):
            refused = http.post(
                f"/api/v2/transactions/{tx_id}/purchase",
                json={"ingressTelemetryEndpoint": {"endpoint": endpoint}},
            )
            assert refused.status_code == 400, refused.text
            assert refused.json()["field"] == "ingressTelemetryEndpoint.endpoint"
            assert "pw" not in refused.text
        unknown_tx = http.post(
            "/api/v2/transactions/tx-doesnotexist/purchase",
            json={"ingressTelemetryEndpoint": {"endpoint": ENDPOINT}},
        )
        assert unknown_tx.status_code == 404
        assert admin.get(fs_api.TRANSACTION, tx_id) is not None  # still reserved, no contract
        assert admin.list(fs_api.CONTRACT, f"{CONSUMER_LABEL}={consumer}") == []


def test_a_rate_is_granted_only_where_the_sensor_runs_it_and_no_other_hold_differs(
    gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    """Temperature and pressure share one rate (one BlueST characteristic): a rate held on one
    holds the other. A rate the sensor does not run, or on a fixed-rate sensor, is refused with
    the reason; a malformed one is a 400 naming the field."""
    rates, group = (1.0, 10.0, 20.0), "environmental"
    temperature = offer.add("temp", "temperature", rates=rates, rate_group=group)
    pressure = offer.add("press", "pressure", rates=rates, rate_group=group)["metadata"]["name"]
    temperature = temperature["metadata"]["name"]
    fixed = offer.add("fixed")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 3)

    def at(rate: str) -> SensorConfiguration:
        return SensorConfiguration.model_validate(
            {"type": "Sensor", "data": {"samplingRate": rate}}
        )

    def transactions_of_c() -> int:  # the consumers are the module's: c may hold others
        return len(admin.list(fs_api.TRANSACTION, f"{CONSUMER_LABEL}={consumers.ids['c']}"))

    before = transactions_of_c()
    a, b, c = (gateway.rear(consumers.tokens[name]) for name in "abc")
    with a, b, c, gateway.http(consumers.tokens["c"]) as http:
        tx = a.reserve(temperature, consumers.buyer("a"), at("20 Hz"))
        transaction = admin.get(fs_api.TRANSACTION, tx.transaction_id)
        assert transaction is not None
        assert transaction["spec"]["configuration"] == rate_configuration(20)
        scope = transaction["metadata"]["labels"][RATE_SCOPE_LABEL]
        assert scope == rate_scope(f"dev-{offer.tag}/tile", "environmental")

        with pytest.raises(RearError) as other:  # same group, another rate
            b.reserve(pressure, consumers.buyer("b"), at("10"))
        assert other.value.status == 409 and other.value.field == RATE_FIELD
        assert "20 Hz" in other.value.message and '"environmental"' in other.value.message
        b.reserve(pressure, consumers.buyer("b"), at("20"))  # the same rate: granted
        b.reserve(fixed, consumers.buyer("b"))  # no rate asked: whatever the board runs

        with pytest.raises(RearError) as unsupported:
            c.reserve(temperature, consumers.buyer("c"), at("30"))
        assert unsupported.value.status == 409
        assert "1, 10, 20 Hz only, not 30 Hz" in unsupported.value.message
        with pytest.raises(RearError) as settled:
            c.reserve(fixed, consumers.buyer("c"), at("1"))
        assert settled.value.status == 409 and "cannot be set" in settled.value.message
        buyer = consumers.buyer("c").wire()
        for configuration, field in (
            ({"type": "K8Slice", "data": {}}, "configuration.type"),
            ({"type": "Sensor", "data": {"samplingRate": "fast"}}, RATE_FIELD),
            ({"type": "Sensor", "data": {"samplingRate": "-5"}}, RATE_FIELD),
            ({"type": "Sensor", "data": {"cpu": "2"}}, "configuration.data.cpu"),
        ):
            bad = http.post(
                "/api/v2/reservations",
                json={"flavorID": temperature, "buyerID": buyer, "configuration": configuration},
            )
            assert bad.status_code == 400, bad.text
            assert bad.json()["field"] == field
        assert transactions_of_c() == before  # nothing refused was reserved

        contract = a.purchase(tx.transaction_id, ENDPOINT)
        made = admin.get(fs_api.CONTRACT, contract.contract_id)
        assert made is not None
        assert made["metadata"]["labels"][RATE_SCOPE_LABEL] == scope
        assert held_rate(made) == HeldRate(f"dev-{offer.tag}/tile", "environmental", 20.0)
        with pytest.raises(RearError):  # the contract holds the rate as the reservation did
            c.reserve(temperature, consumers.buyer("c"), at("1"))
        a.release(contract)


def test_the_buyer_is_the_tokens_consumer(
    gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    """Issue 24.3: a body naming another consumer is refused (403, the field named) and leaves
    nothing; the Contract names the token's consumer."""
    flavor_name = offer.add("posed")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 1)
    mine, other = consumers.ids["a"], consumers.ids["b"]
    with gateway.http(consumers.tokens["a"]) as http:
        posing = http.post(
            "/api/v2/reservations",
            json={"flavorID": flavor_name, "buyerID": consumers.buyer("b").wire()},
        )
    assert posing.status_code == 403, posing.text
    assert posing.json()["field"] == "buyerID.ID" and other in posing.json()["error"]
    assert admin.list(fs_api.TRANSACTION, f"{FLAVOR_LABEL}={flavor_name}") == []
    with gateway.rear(consumers.tokens["a"]) as rear:
        tx = rear.reserve(flavor_name, consumers.buyer("a"))
        contract = rear.purchase(tx.transaction_id, ENDPOINT)
        try:
            assert tx.buyer.node_id == mine and contract.buyer.node_id == mine
            stored = admin.get(fs_api.CONTRACT, contract.contract_id)
            assert stored is not None
            assert stored["spec"]["buyer"]["nodeID"] == mine
            assert stored["spec"]["buyerClusterID"] == mine
            assert stored["metadata"]["labels"][CONSUMER_LABEL] == mine
        finally:
            rear.release(contract.contract_id)


def test_the_purchase_endpoint_must_meet_the_consumers_delivery_policy(
    gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    """Issue 24.4: the provider's per-consumer policy (annotation on the consumer's Secret) is
    enforced at purchase: 400 naming the rule and the field, nothing else spent; an allowed
    endpoint is sold with the policy recorded on the Contract for the router and the agent."""
    flavor_name = offer.add("policed")["metadata"]["name"]
    visible(gateway, consumers.tokens["a"], offer, 1)
    field = "ingressTelemetryEndpoint.endpoint"
    with gateway.rear(consumers.tokens["a"]) as rear, gateway.http(consumers.tokens["a"]) as http:
        tx = rear.reserve(flavor_name, consumers.buyer("a")).transaction_id
        purchase = f"/api/v2/transactions/{tx}/purchase"
        for endpoint, rule in (
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://127.0.0.2:8186/telegraf", "loopback"),
            ("http://10.1.2.3:8186/telegraf", "private"),
            ("http://evil.example/telegraf", "is not in it"),
            ("http://localhost:8186/telegraf", "never resolved"),
            ("http://127.1:8186/telegraf", "numeric host"),
        ):
            refused = http.post(purchase, json={"ingressTelemetryEndpoint": {"endpoint": endpoint}})
            assert refused.status_code == 400, (endpoint, refused.text)
            assert refused.json()["field"] == field
            assert "delivery policy" in refused.json()["error"] and rule in refused.json()["error"]
        assert admin.get(fs_api.TRANSACTION, tx) is not None  # the reservation still holds
        assert admin.get(fs_api.CONTRACT, objects.contract_name(tx)) is None

        contract = rear.purchase(tx, "http://telegraf.consumer.example:8186/telegraf")
        try:
            stored = admin.get(fs_api.CONTRACT, contract.contract_id)
            assert stored is not None
            recorded = stored["metadata"]["annotations"][DELIVERY_POLICY_ANNOTATION]
            assert DeliveryPolicy.parse(recorded)[0] == DeliveryPolicy.parse(POLICY)[0]
            assert delivery_target(stored).policy == DeliveryPolicy.parse(POLICY)[0]
        finally:
            rear.release(contract.contract_id)

    # The policy follows the Secret, no restart: without the annotation, nowhere is allowed.
    secret = f"rear-{consumers.ids['b']}"
    admin.core.patch_namespaced_secret(
        secret, NS, {"metadata": {"annotations": {DELIVERY_POLICY_ANNOTATION: None}}}
    )
    try:
        with gateway.rear(consumers.tokens["b"]) as rear:

            def refusal(transaction_id: str) -> str:
                try:
                    rear.purchase(transaction_id, ENDPOINT)
                except RearError as exc:
                    return exc.message if exc.status == 400 and exc.field == field else ""
                raise AssertionError("sold although the consumer's policy is gone")

            # The policy is checked first: an unknown transaction is 404 until the gateway's
            # watch has the change, then 400 (nothing is bought while waiting).
            eventually(
                lambda: "allows this consumer no delivery endpoint" in refusal("tx-unknown"),
                "the removed policy enforced",
            )
            tx = rear.reserve(flavor_name, consumers.buyer("b")).transaction_id
            assert "allows this consumer no delivery endpoint" in refusal(tx)
    finally:
        admin.core.patch_namespaced_secret(
            secret, NS, {"metadata": {"annotations": {DELIVERY_POLICY_ANNOTATION: POLICY}}}
        )


def test_non_sensor_flavors_are_listed_but_not_sold(
    gateway: Gateway, consumers: Consumers, admin: Provider
) -> None:
    name = f"k8slice-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": fs_api.FLAVOR.api_version,
        "kind": "Flavor",
        "metadata": {"name": name},
        "spec": {
            "availability": True,
            "flavorType": {"typeIdentifier": "K8Slice", "typeData": {"characteristics": {}}},
            "owner": {"domain": "fluidos.eu", "ip": "127.0.0.1", "nodeID": "provider-1"},
            "price": {"amount": "1", "currency": "EUR", "period": "hourly"},
            "providerID": "provider-1",
        },
    }
    admin.custom.create_namespaced_custom_object(
        fs_api.FLAVOR.group, fs_api.FLAVOR.version, NS, fs_api.FLAVOR.plural, body
    )
    try:
        with gateway.http(consumers.tokens["a"]) as http:
            listed = eventually(
                lambda: [i for i in http.get("/api/v2/flavors").json() if i["flavorID"] == name],
                "the K8Slice flavor listed",
            )
            assert listed[0]["type"]["name"] == "k8slice"
            sensors = http.get("/api/v2/flavors/sensors").json()
            assert name not in {i["flavorID"] for i in sensors}
            refused = http.post(
                "/api/v2/reservations",
                json={"flavorID": name, "buyerID": consumers.buyer("a").wire()},
            )
            assert refused.status_code == 400 and refused.json()["field"] == "flavorID"
    finally:
        admin.delete(fs_api.FLAVOR, name)


# ------------------------------------------------------------------------------ expiry


@pytest.fixture(scope="module")
def hasty_gateway(
    gateway_kubeconfig: Path, consumers: Consumers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose reservations hold one second."""
    yield from _gateway(gateway_kubeconfig, consumers, tmp_path_factory, "--reservation-ttl", "1")


def test_an_expired_reservation_is_released(
    hasty_gateway: Gateway, consumers: Consumers, offer: Offer, admin: Provider
) -> None:
    flavor_name = offer.add("brief")["metadata"]["name"]
    visible(hasty_gateway, consumers.tokens["a"], offer, 1)
    with hasty_gateway.rear(consumers.tokens["a"]) as rear:
        tx = rear.reserve(flavor_name, consumers.buyer("a"))
        eventually(
            lambda: admin.get(fs_api.TRANSACTION, tx.transaction_id) is None,
            "the expired reservation released",
        )
        with pytest.raises(RearError) as late:
            rear.purchase(tx.transaction_id, ENDPOINT)
        assert late.value.status == 410 and "expired" in late.value.message
        assert admin.list(fs_api.CONTRACT, f"{CONSUMER_LABEL}={consumers.ids['a']}") == []
        rear.reserve(flavor_name, consumers.buyer("a"))  # its place is free again


def test_a_purchase_racing_the_reaper_is_told_expired(
    gateway_kubeconfig: Path, consumers: Consumers, offer: Offer
) -> None:
    """Issue 20.4, made deterministic: a purchase that runs the moment the reaper's delete of
    the expired Transaction has landed (from inside that call, before the reaper goes on) is
    told 410 "expired", never 404. The gateway's own code over the real API server, as the
    gateway's ServiceAccount; the clock is the market's, moved past the expiry."""
    flavor = offer.add("raced")
    consumer = consumers.ids["a"]
    policy = DeliveryPolicy.parse(POLICY)[0]
    body = PurchaseRequest.model_validate({"ingressTelemetryEndpoint": {"endpoint": ENDPOINT}})
    raced: list[int] = []
    now = [datetime.now(UTC)]

    class RacedStore(MarketStore):
        def delete_transaction(self, name: str) -> bool:
            deleted = super().delete_transaction(name)
            if name == tx:
                try:
                    market.purchase(consumer, name, body, policy)
                    raced.append(200)
                except GatewayError as exc:
                    raced.append(exc.status)
            return deleted

    with bootstrap.api_client(gateway_kubeconfig) as api:
        index = FlavorIndex()
        index.upsert(flavor)
        market = Marketplace(
            MarketSettings(
                seller=objects.Seller(node_id="provider-1", domain="fluidos.eu", ip="127.0.0.1"),
                reservation_ttl=60,
            ),
            RacedStore(api, NS),
            index,
            clock=lambda: now[0],
        )
        request = ReservationRequest(
            flavor_id=flavor["metadata"]["name"], buyer=consumers.buyer("a")
        )
        tx = market.reserve(consumer, request).transaction_id
        now[0] += timedelta(seconds=61)
        market.expire_reservations()
        assert raced == [410]
        with pytest.raises(GatewayError) as late:  # and afterwards, too
            market.purchase(consumer, tx, body, policy)
        assert late.value.status == 410 and "expired" in late.value.message


# ------------------------------------------------------------------------------ outage


class Proxy:
    """A TCP relay to the API server that can be cut, to take the API server away."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                inbound, _ = listener.accept()
            except OSError:
                return
            try:
                outbound = socket.create_connection(self.target)
            except OSError:
                inbound.close()
                continue
            with self._lock:
                self._sockets += [inbound, outbound]
            for src, dst in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown first: a bare close() does not wake the thread blocked in accept(),
            # which would go on accepting on the closed socket.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_api_server_outage_is_503_and_the_watch_recovers(
    gateway_kubeconfig: Path,
    consumers: Consumers,
    offer: Offer,
    admin: Provider,
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(gateway_kubeconfig.read_text())
    server = httpx.URL(config["clusters"][0]["cluster"]["server"])
    proxy = Proxy((server.host, server.port or 443))
    proxy.start()
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    relayed = tmp_path / "kubeconfig"
    relayed.write_text(yaml.safe_dump(config))
    before = offer.add("before")["metadata"]["name"]
    gateway = Gateway(relayed, tmp_path / "gateway.log")
    token = consumers.tokens["a"]
    try:
        gateway.start(token)
        visible(gateway, token, offer, 1)
        proxy.cut()
        with gateway.http(token) as http:
            reserve = {"flavorID": before, "buyerID": consumers.buyer("a").wire()}
            down = http.post("/api/v2/reservations", json=reserve)
            assert down.status_code == 503, down.text
            assert "Kubernetes API server is unavailable" in down.json()["error"]
            listed = http.get("/api/v2/flavors/sensors", params=offer.query())
            assert names(listed) == {before}  # the index still answers from memory
            during = offer.add("during")["metadata"]["name"]  # straight to the API server
            proxy.start()
            eventually(
                lambda: (
                    names(http.get("/api/v2/flavors/sensors", params=offer.query()))
                    == {before, during}
                ),
                "the flavor created during the outage, after the watch reconnected",
                timeout=90,
            )
            assert http.post("/api/v2/reservations", json=reserve).status_code == 200
        gateway.assert_alive()
    finally:
        gateway.stop()
        proxy.cut()
    assert token not in gateway.log.read_text()


# ------------------------------------------------------------------------------ FLUIDOS peers

UPSTREAM_ITEMS = "fluidos-rear-wire/upstream-main/flavors_k8slice.json"


def upstream_item() -> dict[str, Any]:
    """A flavor item as an unmodified FLUIDOS node's gateway answers it (recorded)."""
    return json.loads(upstream.mirrored(UPSTREAM_ITEMS).read_text())[0]


def has_upstreams_fields(item: dict[str, Any]) -> bool:
    """Every field upstream's item has (location is optional there), and a timestamp Go's
    time.Time decodes: RFC 3339, never empty."""
    required = set(upstream_item()) - {"location"}
    stamp = item.get("timestamp")
    return (
        required <= set(item)
        and set(upstream_item()["owner"]) <= set(item["owner"])
        and set(upstream_item()["price"]) <= set(item["price"])
        and isinstance(stamp, str)
        and RFC3339.match(stamp) is not None
        and datetime.fromisoformat(stamp).tzinfo is not None
    )


def test_every_listed_item_has_upstreams_fields_and_a_valid_timestamp(
    gateway: Gateway, consumers: Consumers, offer: Offer
) -> None:
    offer.add("listed")
    visible(gateway, consumers.tokens["a"], offer, 1)
    with gateway.http(consumers.tokens["a"]) as http:
        for path in ("/api/v2/flavors", "/api/v2/flavors/sensors"):
            items = http.get(path).json()
            assert items and all(has_upstreams_fields(i) for i in items), path
        assert all(has_upstreams_fields(c["flavor"]) for c in http.get("/api/v2/contracts").json())


def test_the_fluidos_compatibility_listener(
    gateway_kubeconfig: Path, consumers: Consumers, offer: Offer, admin: Provider, tmp_path: Path
) -> None:
    """Issue 20: opt-in, plain HTTP on its own port, no token; read-only listings for an
    unmodified FLUIDOS consumer: no Sensor items, 200 [] for the types this provider lacks."""
    port = free_port()
    gateway = Gateway(
        gateway_kubeconfig, tmp_path / "gateway.log", "--fluidos-compat-listen", f"127.0.0.1:{port}"
    )
    sensor = offer.add("compat")["metadata"]["name"]
    sample = upstream_item()
    k8slice = f"k8slice-{offer.tag}"
    body = {
        "apiVersion": fs_api.FLAVOR.api_version,
        "kind": fs_api.FLAVOR.kind,
        "metadata": {"name": k8slice, "namespace": NS},
        "spec": {
            "availability": True,
            "flavorType": {"typeIdentifier": "K8Slice", "typeData": sample["type"]["data"]},
            "owner": {"nodeID": "provider-1", "ip": "127.0.0.1", "domain": "fluidos.eu"},
            "price": sample["price"],
            "providerID": "provider-1",
        },
    }
    try:
        gateway.start(consumers.tokens["a"])
        visible(gateway, consumers.tokens["a"], offer, 1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as plain:
            for path in ("/api/v2/flavors/k8slice", "/api/v2/flavors/service"):
                empty = plain.get(path)  # no token
                assert empty.status_code == 200 and empty.json() == [], (path, empty.text)
            listed = plain.get("/api/v2/flavors")
            assert listed.status_code == 200
            assert all(i["type"]["name"] != "sensor" for i in listed.json())
            assert sensor not in {i["flavorID"] for i in listed.json()}

            admin.custom.create_namespaced_custom_object(
                fs_api.FLAVOR.group, fs_api.FLAVOR.version, NS, fs_api.FLAVOR.plural, body
            )
            items = eventually(
                lambda: [
                    i for i in plain.get("/api/v2/flavors").json() if i["flavorID"] == k8slice
                ],
                "the K8Slice flavor listed to FLUIDOS peers",
            )
            assert has_upstreams_fields(items[0]) and items[0]["type"]["name"] == "k8slice"
            typed = plain.get("/api/v2/flavors/k8slice").json()
            assert [i["flavorID"] for i in typed] == [k8slice]
            assert plain.get("/api/v2/flavors/service").json() == []

            # Read-only, listings only: nothing to buy, nothing about sensors or contracts.
            for method, path in (
                ("POST", "/api/v2/reservations"),
                ("POST", "/api/v2/transactions/tx-1/purchase"),
                ("GET", "/api/v2/flavors/sensors"),
                ("GET", "/api/v2/contracts"),
                ("GET", "/openapi.json"),
            ):
                assert plain.request(method, path).status_code == 404, path
            wrong = plain.post("/api/v2/flavors", json={})
            assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        # The REAR listener still needs a token.
        assert httpx.get(f"{gateway.url}/api/v2/flavors").status_code == 401
    finally:
        gateway.stop()
        admin.delete(fs_api.FLAVOR, k8slice)
    assert "Traceback" not in gateway.log.read_text()


# ------------------------------------------------------------------------------ RBAC, fuzz


def test_gateway_account_is_least_privilege(gateway_kubeconfig: Path, offer: Offer) -> None:
    flavor_name = offer.add("guarded")["metadata"]["name"]
    with bootstrap.api_client(gateway_kubeconfig) as api:
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        denied = [
            lambda: custom.patch_namespaced_custom_object(
                fs_api.FLAVOR.group,
                fs_api.FLAVOR.version,
                NS,
                fs_api.FLAVOR.plural,
                flavor_name,
                {"spec": {"availability": False}},
            ),
            lambda: core.read_namespaced_secret("anything", fs_api.ROUTE_NAMESPACE),
            lambda: core.list_namespaced_secret(fs_api.ROUTE_NAMESPACE),
            lambda: core.list_namespaced_secret("default"),
            lambda: custom.list_namespaced_custom_object(
                fs_api.CONTRACT.group,
                fs_api.CONTRACT.version,
                "default",
                fs_api.CONTRACT.plural,
            ),
            lambda: core.patch_node("provider-1-edge", {"metadata": {"labels": {"x": "y"}}}),
        ]
        for attempt in denied:
            with pytest.raises(ApiException) as refused:
                attempt()
            assert refused.value.status == 403


# Everything: the fuzzer's endpoints are hosts and addresses of every kind.
FUZZ_POLICY = "*, 0.0.0.0/0, ::/0"


@pytest.fixture
def throwaway(admin: Provider, gateway: Gateway) -> Iterator[tuple[str, str]]:
    """A consumer (id, token) made for one test and removed with all it bought: a fuzzer that
    releases contracts cannot reach another consumer's."""
    consumer = f"fuzz-{uuid.uuid4().hex[:8]}"
    token = secrets.token_urlsafe(24)
    name = f"rear-{consumer}"
    admin.core.create_namespaced_secret(
        NS,
        # kubernetes takes a dict body too; its annotation names only the model
        {  # type: ignore[arg-type]
            "metadata": {
                "name": name,
                "labels": {REAR_CONSUMER_LABEL: consumer},
                "annotations": {DELIVERY_POLICY_ANNOTATION: FUZZ_POLICY},
            },
            "stringData": {"token": token},
        },
    )
    try:
        with gateway.http(token) as http:
            eventually(lambda: http.get("/api/v2/flavors").status_code == 200, "the new consumer")
        yield consumer, token
    finally:
        selector = f"{CONSUMER_LABEL}={consumer}"
        for resource in (fs_api.TRANSACTION, fs_api.CONTRACT, fs_api.ALLOCATION):
            for obj in admin.list(resource, selector):
                admin.delete(resource, obj["metadata"]["name"])
        admin.core.delete_collection_namespaced_secret(
            fs_api.ROUTE_NAMESPACE, label_selector=selector
        )
        admin.core.delete_namespaced_secret(name, NS)


def documented_refusal(case: schemathesis.Case) -> bool:
    """Whether a schema-valid case breaks a rule the OpenAPI states in words because JSON Schema
    cannot: a range whose min exceeds its max, consumption bounds mixing power and current,
    (per consumer) a delivery endpoint the URL rules or the delivery policy refuse, and a body
    over the gateway's size limit (requests writes JSON as `json.dumps` does)."""
    query = case.query or {}
    try:  # a positive case's values each match their pattern: what is left is cross-field
        SensorFilter.from_query([(k, v) for k, v in query.items() if isinstance(v, str)])
    except ValueError:
        return True
    if not isinstance(case.body, NotSet) and len(json.dumps(case.body)) > MAX_BODY_BYTES:
        return True  # 413, stated in the responses (the bytes JSON Schema cannot bound)
    body = case.body if isinstance(case.body, dict) else {}
    telemetry = body.get("ingressTelemetryEndpoint")
    if isinstance(telemetry, dict) and "endpoint" in telemetry:
        try:
            DeliveryPolicy.parse(FUZZ_POLICY)[0].check(telemetry["endpoint"])
        except ValueError:
            return True
    return False


def test_fuzz_the_gateway_against_its_own_openapi(
    gateway: Gateway, throwaway: tuple[str, str], offer: Offer
) -> None:
    """Schemathesis with every check, positive and negative data on every operation: never a
    5xx, answers that follow the gateway's own OpenAPI, schema-valid requests accepted and
    schema-invalid ones refused. Only the rules the OpenAPI states in words are kept out of
    positive generation (documented_refusal). As a throw-away consumer."""
    consumer, token = throwaway
    flavor_name = offer.add("fuzzed")["metadata"]["name"]
    visible(gateway, token, offer, 1)
    auth = bearer(token)
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json", headers=auth)
    # The token goes into every call: a case must not count as invalid for lacking it.
    schema.config.generation.update(with_security_parameters=False)
    with gateway.rear(token) as rear:  # something real for path parameters
        buyer = NodeIdentity(node_id=consumer, ip="10.0.0.9", domain="fluidos.eu")
        tx = rear.reserve(flavor_name, buyer).transaction_id
        real = {"transaction_id": tx, "contract_id": objects.contract_name(tx)}
    statuses: Counter[int] = Counter()
    results = list(schema.get_all_operations())
    assert not [r.err() for r in results if isinstance(r, Err)]  # the schema is sound
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == 7
    for operation in operations:
        for mode in schemathesis.GenerationMode:
            strategies = [operation.as_strategy(generation_mode=mode)]
            wanted = {k: v for k, v in real.items() if f"{{{k}}}" in operation.path}
            if wanted:
                strategies.append(
                    operation.as_strategy(generation_mode=mode, path_parameters=wanted)
                )
            for strategy in strategies:
                if mode is schemathesis.GenerationMode.POSITIVE:
                    strategy = strategy.filter(lambda case: not documented_refusal(case))

                @given(case=strategy)
                @settings(
                    max_examples=25,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def check(case: schemathesis.Case) -> None:
                    answer = case.call_and_validate(base_url=gateway.url, headers=auth, timeout=20)
                    statuses[answer.status_code] += 1

                try:
                    check()
                except Unsatisfiable:
                    # No parameter of this operation can be invalid once the token is set.
                    assert mode is schemathesis.GenerationMode.NEGATIVE, operation.path
    gateway.assert_alive()
    assert not [code for code in statuses if code >= 500], statuses
    assert statuses[200] and statuses[400] and statuses[404], statuses  # it reached the logic


def test_405_names_the_allowed_methods(gateway: Gateway, consumers: Consumers) -> None:
    with gateway.http(consumers.tokens["a"]) as http:
        wrong = http.put("/api/v2/flavors")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        assert wrong.json()["error"]
        both = http.patch("/api/v2/contracts/contract-x")
        assert both.status_code == 405
        assert set(both.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}


def test_the_openapi_states_what_the_server_enforces(
    gateway: Gateway, consumers: Consumers
) -> None:
    """Issue 24.5: requests valid under the served schema are not refused for a rule the schema
    could state: a sampling rate of 0, an authorization without its token or password."""
    with gateway.http(consumers.tokens["a"]) as http:
        schema = http.get("/openapi.json").json()
    params = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/api/v2/flavors/sensors"]["get"]["parameters"]
    }
    for form in ("[exact]", "[range][min]", "[range][max]"):
        pattern = params[f"filter[sampling_rate]{form}"]["pattern"]
        assert not re.fullmatch(pattern.strip("^$"), "0") and re.fullmatch(pattern[1:-1], "0.5")
    authorization = schema["components"]["schemas"]["DeliveryAuthorization"]
    bearer_form, basic_form = authorization["oneOf"]
    assert "token" in bearer_form["required"]
    assert {"username", "password"} <= set(basic_form["required"])
    with gateway.http(consumers.tokens["a"]) as http:  # and the server agrees
        zero = http.get("/api/v2/flavors/sensors", params={"filter[sampling_rate][exact]": "0"})
        assert zero.status_code == 400 and zero.json()["field"] == "filter[sampling_rate][exact]"
        half = http.get("/api/v2/flavors/sensors", params={"filter[sampling_rate][exact]": "0.5"})
        assert half.status_code == 200


def test_gateway_serves_https(
    gateway_kubeconfig: Path, consumers: Consumers, offer: Offer, tmp_path: Path
) -> None:
    pki = ClusterPKI(tmp_path / "pki", "gateway")
    serving = pki.apiserver_serving()  # a serving certificate for the loopback names
    gateway = Gateway(gateway_kubeconfig, tmp_path / "gateway.log", tls=serving, ca=pki.ca.cert)
    token = consumers.tokens["b"]
    try:
        gateway.start(token)
        name = offer.add("secure")["metadata"]["name"]
        with gateway.rear(token) as rear:
            eventually(
                lambda: (
                    [f.flavor_id for f in rear.list_flavors(SensorFilter.from_query(offer.query()))]
                    == [name]
                ),
                "the flavor listed over HTTPS",
            )
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{gateway.port}/api/v2/flavors", headers=bearer(token))
        with pytest.raises(httpx.HTTPError):  # nor to a client that does not trust the CA
            httpx.get(f"{gateway.url}/api/v2/flavors", headers=bearer(token))
    finally:
        gateway.stop()

"""The gateway's HTTP layer over a real index and token table (no Kubernetes: listing only)."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import httpx
import pytest

from fluidos_sensors.flavor import Price, ProviderConfig, build_flavor, sensor_from_flavor
from fluidos_sensors.rear.wire import REAR_CONSUMER_LABEL
from fluidos_sensors.sensor import DeviceRef, SensorSpec
from resource_manager.gateway.app import create_app
from resource_manager.gateway.auth import ConsumerTokens
from resource_manager.gateway.index import FlavorIndex
from resource_manager.gateway.market import Marketplace, MarketSettings
from resource_manager.gateway.objects import Seller

TOKEN = "consumer-a-token-0123456789"
PROVIDER = ProviderConfig(
    node_id="p", domain="d", ip="1.2.3.4", price=Price(amount="1", currency="EUR", period="h")
)


def secret(name: str, consumer: str | None, token: str) -> dict[str, Any]:
    labels = {REAR_CONSUMER_LABEL: consumer} if consumer else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def sensor_flavor(name: str, kind: str, latency: float) -> dict[str, Any]:
    spec = SensorSpec(
        key=name,
        uid=name,
        name=name,
        model="HTS221",
        manufacturer="STMicroelectronics",
        category="Environmental",
        types=(kind,),
        latency_ms=float(latency),
    )
    return build_flavor(DeviceRef("boards", "tile"), "edge-1", spec, PROVIDER, available=True)


class Setup:
    def __init__(self) -> None:
        self.index = FlavorIndex()
        self.tokens = ConsumerTokens()
        self.index_ready = threading.Event()
        self.tokens_ready = threading.Event()
        market = Marketplace(
            MarketSettings(seller=Seller(node_id="p", domain="d", ip="1.2.3.4")),
            store=None,  # type: ignore[arg-type]  # listing never touches the store
            index=self.index,
        )
        self.app = create_app(
            market,
            self.tokens,
            index_ready=self.index_ready.is_set,
            tokens_ready=self.tokens_ready.is_set,
            max_body_bytes=1024,
        )

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gw", headers=headers
        )


@pytest.fixture
def setup() -> Setup:
    s = Setup()
    s.tokens.replace([secret("a", "consumer-a", TOKEN)])
    s.tokens_ready.set()
    s.index.replace([sensor_flavor("hum", "humidity", 12), sensor_flavor("tmp", "temperature", 20)])
    s.index_ready.set()
    return s


async def test_every_path_needs_a_known_token(setup: Setup) -> None:
    for token in (None, "wrong-token-0123456789", ""):
        async with setup.client(token) as http:
            for method, path in [
                ("GET", "/api/v2/flavors"),
                ("GET", "/openapi.json"),
                ("GET", "/docs"),
                ("POST", "/api/v2/reservations"),
                ("DELETE", "/api/v2/contracts/x"),
                ("GET", "/no/such/path"),
            ]:
                answer = await http.request(method, path)
                assert answer.status_code == 401, (token, path)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert "error" in answer.json()
    async with setup.client() as http:
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/no/such/path")).json() == {"error": "Not Found"}


async def test_consumers_come_and_go_with_their_secrets(setup: Setup) -> None:
    other = "consumer-b-token-0123456789"
    async with setup.client(other) as http:
        assert (await http.get("/api/v2/flavors")).status_code == 401
        setup.tokens.upsert(secret("b", "consumer-b", other))
        assert (await http.get("/api/v2/flavors")).status_code == 200
        setup.tokens.delete({"metadata": {"name": "b"}})
        assert (await http.get("/api/v2/flavors")).status_code == 401
    setup.tokens.upsert(secret("short", "consumer-c", "short"))  # too short to be a token
    async with setup.client("short") as http:
        assert (await http.get("/api/v2/flavors")).status_code == 401
    setup.tokens.upsert(secret("unlabeled", None, "x" * 32))
    assert setup.tokens.consumers() == {"consumer-a"}


async def test_sensor_query_and_listing(setup: Setup) -> None:
    async with setup.client() as http:
        found = await http.get(
            "/api/v2/flavors/sensors",
            params={"filter[sensor_type][match]": "HUMIDITY", "filter[latency][range][max]": "16"},
        )
        assert found.status_code == 200
        items = found.json()
        assert [sensor_from_flavor(i).sensor.name for i in items] == ["hum"]
        assert len((await http.get("/api/v2/flavors")).json()) == 2
        empty = await http.get("/api/v2/flavors/sensors", params={"filter[node][match]": "nowhere"})
        assert empty.status_code == 200 and empty.json() == []
        bad = await http.get("/api/v2/flavors/sensors", params={"filter[latency][range][max]": "x"})
        assert bad.status_code == 400
        assert bad.json()["field"] == "filter[latency][range][max]"
        typo = await http.get("/api/v2/flavors/sensors", params={"sensor_type": "humidity"})
        assert typo.status_code == 400 and typo.json()["field"] == "sensor_type"
        assert "unknown query parameter" in typo.json()["error"]


async def test_bodies_are_bounded_and_checked(setup: Setup) -> None:
    async with setup.client() as http:
        big = await http.post("/api/v2/reservations", content=b"{" + b" " * 2000 + b"}")
        assert big.status_code == 413

        async def chunks() -> Any:  # no Content-Length: counted as it arrives
            for _ in range(3):
                yield b"x" * 600

        streamed = await http.post("/api/v2/reservations", content=chunks())
        assert streamed.status_code == 413
        garbage = await http.post(
            "/api/v2/reservations",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert garbage.status_code == 400 and "JSON" in garbage.json()["error"]
        missing = await http.post("/api/v2/reservations", json={"buyerID": {}})
        assert missing.status_code == 400 and missing.json()["field"] == "flavorID"
        bad_url = await http.post(
            "/api/v2/transactions/tx-1/purchase",
            json={"ingressTelemetryEndpoint": {"endpoint": "ftp://x/y"}},
        )
        assert bad_url.status_code == 400
        assert bad_url.json()["field"] == "ingressTelemetryEndpoint.endpoint"


async def test_starting_gateway_answers_503() -> None:
    s = Setup()
    async with s.client() as http:
        assert (await http.get("/api/v2/flavors")).status_code == 503  # tokens not loaded
        s.tokens.replace([secret("a", "consumer-a", TOKEN)])
        s.tokens_ready.set()
        starting = await http.get("/api/v2/flavors")
        assert starting.status_code == 503 and "loading" in starting.json()["error"]


async def test_openapi_documents_errors_and_security(setup: Setup) -> None:
    async with setup.client() as http:
        schema = (await http.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    purchase = schema["paths"]["/api/v2/transactions/{transaction_id}/purchase"]["post"]
    assert {"400", "401", "404", "409", "410", "413", "503"} <= set(purchase["responses"])
    assert "422" not in json.dumps(schema["paths"])
    sensors = schema["paths"]["/api/v2/flavors/sensors"]["get"]
    names = {p["name"] for p in sensors["parameters"]}
    assert "filter[sensor_manufacturer][match]" in names
    assert "filter[observed_latency][range][max]" in names


async def test_a_wrong_method_is_405_with_allow(setup: Setup) -> None:
    async with setup.client() as http:
        wrong = await http.put("/api/v2/flavors")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        both = await http.patch("/api/v2/contracts/contract-x")
        assert both.status_code == 405 and both.headers["allow"] == "DELETE, GET"


async def test_the_query_schema_is_what_the_server_takes(setup: Setup) -> None:
    """Issue 24.5: a sampling rate of 0 is outside the published pattern and refused, naming
    the parameter; values outside a pattern the parser would take are refused too."""
    async with setup.client() as http:
        for value in ("0", "0.0", "1e999"):
            bad = await http.get("/api/v2/flavors/sensors", params={"filter[sampling_rate]": value})
            # the short form is not published: the parser decides (0 is not a rate either)
            assert bad.status_code == 400
        for key, value in (
            ("filter[sampling_rate][exact]", "0"),
            ("filter[latency][range][max]", "16\n"),
            ("filter[latency][range][max]", "1e999"),
        ):
            bad = await http.get("/api/v2/flavors/sensors", params={key: value})
            assert bad.status_code == 400 and bad.json()["field"] == key, (key, value)
        ok = await http.get(
            "/api/v2/flavors/sensors", params={"filter[latency][range][max]": "1e-07"}
        )
        assert ok.status_code == 200
        schema = (await http.get("/openapi.json")).json()
    auth = schema["components"]["schemas"]["DeliveryAuthorization"]
    assert [set(form["required"]) for form in auth["oneOf"]] == [
        {"token"},
        {"username", "password"},
    ]


async def test_probes_need_no_token_and_tell_only_a_state() -> None:
    """/healthz answers as soon as the app serves; /readyz once tokens and flavors are loaded.
    Neither needs a token nor says anything but its state; any token or none is the same."""
    s = Setup()
    for token in (None, "wrong-token-0123456789", TOKEN):
        async with s.client(token) as http:
            health = await http.get("/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.text) == (503, "not ready\n")
            assert ready.headers["cache-control"] == "no-store"
            assert (await http.get("/api/v2/flavors")).status_code == 503  # starting
    s.tokens.replace([secret("a", "consumer-a", TOKEN)])
    s.tokens_ready.set()
    async with s.client(None) as http:
        assert (await http.get("/readyz")).status_code == 503  # flavor index not synced yet
        s.index.replace([sensor_flavor("hum", "humidity", 12)])
        s.index_ready.set()
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.text) == (200, "ok\n")
        assert (await http.head("/healthz")).status_code == 200
        post = await http.post("/readyz")
        assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
        # Only those two paths: everything else still needs a token, near misses included.
        for path in ("/healthz/", "/readyz/x", "/api/v2/flavors", "/openapi.json"):
            assert (await http.get(path)).status_code == 401, path

"""The marketplace end to end on the two-consumer testbed: SensorRequests in the consumer
clusters, resolved by the testbed's consumer operators (each running as its least-privilege
ServiceAccount, the chart's files/rbac/consumer.yaml) against the provider's REAR gateway
over HTTPS.

The provider's Flavors come from Devices only: the testbed's mapper registers four simulated
boards on the edge node (STWIN.box 1, SensorTile 2, STWIN.box 3, SensorTile 4, declaring 10, 15,
20 and 22 ms: `mapper.simulated.LINK_LATENCY_MS`); tests add Devices of their own in the
provider's `default` namespace (the one its resource manager serves) and publish their readings
on the edge broker themselves, as a mapper would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest
import support
from influxdb_client import InfluxDBClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from consumer import status as st
from fluidos_sensors import api as fs_api
from fluidos_sensors.broker import MAPPER_USER, BrokerAccess
from fluidos_sensors.contract import CONSUMER_LABEL
from fluidos_sensors.flavor import DEVICE_ANNOTATION, SENSOR_KEY_ANNOTATION, sensor_from_flavor
from fluidos_sensors.kube import get_or_none
from fluidos_sensors.reading import Reading
from testbed import bootstrap, edge
from testbed.services import ConsumerStack
from testbed.state import ClusterAccess, TestbedState

pytestmark = pytest.mark.integration

EDGE = "provider-1-edge"
PROVIDER = "provider-1"
NS = fs_api.FLUIDOS_NAMESPACE  # consumers keep requests and providers there, as the provider
DEVICES = edge.DEVICE_NAMESPACE
RESOLVE = 60.0  # a pass takes a second; a new Flavor is seen within one resync (20 s)
DATA = 90.0


def eventually(check: Callable[[], Any], what: str, timeout: float = RESOLVE) -> Any:
    return support.eventually(check, what, timeout)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# ------------------------------------------------------------------------------ consumer side


class Consumer:
    """A consumer cluster as its user sees it: SensorRequests, Secrets, its InfluxDB."""

    def __init__(self, testbed: TestbedState, access: ClusterAccess) -> None:
        self.name = access.name
        self.kubeconfig = access.kubeconfig
        self.api = bootstrap.api_client(access.kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.stack = ConsumerStack.load(testbed.directory / access.name)
        self.requests: list[str] = []

    def telegraf_secret(self) -> str:
        """The Telegraf listener's credentials, for the providers to deliver with."""
        name = "telegraf-basic"
        body = {
            "metadata": {"name": name, "namespace": NS},
            "stringData": {
                "username": self.stack.telegraf_username,
                "password": self.stack.telegraf_password,
            },
        }
        try:
            # kubernetes takes a dict body too; its annotation names only the model
            self.core.create_namespaced_secret(NS, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise
        return name

    def request(
        self,
        name: str,
        spec_filter: dict[str, Any],
        *,
        count: int = 1,
        providers: list[str] | None = None,
        rate: str | None = None,
    ) -> None:
        spec: dict[str, Any] = {
            "filter": spec_filter,
            "count": count,
            "endpoint": {
                "url": self.stack.telegraf_url,
                "format": "influx",
                "auth": {"type": "basic", "secretName": self.telegraf_secret()},
            },
        }
        if providers is not None:
            spec["providers"] = providers
        if rate is not None:
            spec["rate"] = rate
        body = {
            "apiVersion": fs_api.SENSOR_REQUEST.api_version,
            "kind": fs_api.SENSOR_REQUEST.kind,
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(*self._args(), body)
        self.requests.append(name)

    @staticmethod
    def _args() -> tuple[str, str, str, str]:
        r = fs_api.SENSOR_REQUEST
        return r.group, r.version, NS, r.plural

    def get(self, name: str) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            get_or_none(self.custom.get_namespaced_custom_object, *self._args(), name),
        )

    def settled(self, name: str, phases: tuple[str, ...] = st.SETTLED, timeout: float = RESOLVE):
        """The request once the operator resolved its current spec into one of `phases`."""

        def check() -> dict[str, Any] | None:
            obj = self.get(name)
            if obj is None:
                return None
            status = obj.get("status") or {}
            current = status.get("observedGeneration") == obj["metadata"]["generation"]
            return obj if current and status.get("phase") in phases else None

        return eventually(check, f"{self.name} SensorRequest {name} in {phases}", timeout)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(*self._args(), name, {"spec": spec})

    def delete(self, name: str) -> None:
        """Delete a request and wait until the operator released it and it is gone."""
        try:
            self.custom.delete_namespaced_custom_object(*self._args(), name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        eventually(lambda: self.get(name) is None, f"{self.name} SensorRequest {name} gone")

    def events(self, name: str) -> list[tuple[str, str]]:
        return [
            (e.reason or "", e.message or "")
            for e in self.core.list_namespaced_event(NS).items
            if e.involved_object.name == name and e.involved_object.kind == "SensorRequest"
        ]

    def first_point(self, device: str, sensor: str, since: str) -> str | None:
        """The time of the first point of a sensor in this consumer's InfluxDB since `since`."""
        flux = (
            f'from(bucket: "{self.stack.bucket}") |> range(start: time(v: "{since}"))'
            f' |> filter(fn: (r) => r.device == "{device}" and r.sensor == "{sensor}")'
            ' |> first() |> keep(columns: ["_time"])'
        )
        with InfluxDBClient(
            url=self.stack.influx_url, token=self.stack.influx_token, org="-"
        ) as influx:
            tables = influx.query_api().query(flux)
        times = sorted(r.get_time() for t in tables for r in t.records)
        return times[0].isoformat() if times else None

    def close(self) -> None:
        for name in list(self.requests):
            if self.get(name) is not None:
                self.delete(name)
        self.api.close()


@pytest.fixture
def sides(testbed: TestbedState, consumers: list[ClusterAccess]) -> Iterator[list[Consumer]]:
    made = [Consumer(testbed, access) for access in consumers]
    try:
        yield made
    finally:
        for side in made:
            side.close()


def contracts_of(status: dict[str, Any]) -> dict[str, str]:
    """flavor id -> contract id of a request's status."""
    return {c["flavorID"]: c["contractID"] for c in status.get("contracts") or []}


# ------------------------------------------------------------------------------ provider side


def provider_contracts(api: client.ApiClient, consumer: str) -> dict[str, str]:
    """contract name -> flavor name of a consumer's Contracts at the provider."""
    items = cast(
        dict[str, Any],
        client.CustomObjectsApi(api).list_namespaced_custom_object(
            fs_api.CONTRACT.group,
            fs_api.CONTRACT.version,
            fs_api.FLUIDOS_NAMESPACE,
            fs_api.CONTRACT.plural,
            label_selector=f"{CONSUMER_LABEL}={consumer}",
        ),
    )["items"]
    return {c["metadata"]["name"]: c["spec"]["flavor"]["metadata"]["name"] for c in items}


def board_flavor(api: client.ApiClient, board: str, sensor: str) -> str:
    """The Flavor name of a sensor of one of the testbed mapper's boards ("sensortile-2")."""

    def find() -> str | None:
        for item in cast(
            dict[str, Any],
            client.CustomObjectsApi(api).list_namespaced_custom_object(
                fs_api.FLAVOR.group, fs_api.FLAVOR.version, fs_api.FLUIDOS_NAMESPACE, "flavors"
            ),
        )["items"]:
            annotations = item["metadata"].get("annotations") or {}
            if (
                annotations.get(DEVICE_ANNOTATION) == f"{DEVICES}/{EDGE}-{board}"
                and annotations.get(SENSOR_KEY_ANNOTATION) == sensor
            ):
                return str(item["metadata"]["name"])
        return None

    return eventually(find, f"the {board} {sensor} Flavor", timeout=90)


class ExtraDevice:
    """A KubeEdge Device (v1beta1) bound to the edge node, one sensor in its `sensors`
    annotation, whose readings this object publishes on the edge broker (as a mapper would)."""

    def __init__(
        self,
        api: client.ApiClient,
        broker: BrokerAccess,
        name: str,
        *,
        kind: str,
        unit: str,
        model: str,
        manufacturer: str,
        latency: str,
        accuracy: str,
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.name = name
        self.sensor = kind  # the sensor's name, hence its key and topic segment
        self.kind, self.unit = kind, unit
        self.broker = broker
        entry = {
            "uid": f"{name}-{kind}",
            "name": kind,
            "model": model,
            "manufacturer": manufacturer,
            "market": "industrial",
            "type": {"sensorCategory": "Environmental", "sensorType": [kind]},
            "samplingRate": "5",
            "accuracy": [accuracy],
            "latency": latency,
            "properties": {"unit": {"measurement": [unit], "latency": "ms"}},
        }
        body = {
            "apiVersion": fs_api.DEVICE.api_version,
            "kind": fs_api.DEVICE.kind,
            "metadata": {
                "name": name,
                "namespace": DEVICES,
                "annotations": {
                    fs_api.SENSORS_ANNOTATION: base64.b64encode(
                        json.dumps([entry]).encode()
                    ).decode()
                },
            },
            "spec": {"deviceModelRef": {"name": "sht-board"}, "nodeName": EDGE},
        }
        self.custom.create_namespaced_custom_object(
            fs_api.DEVICE.group, fs_api.DEVICE.version, DEVICES, fs_api.DEVICE.plural, body
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._publish()), daemon=True)
        self._thread.start()

    async def _publish(self) -> None:
        seq = 0
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.broker.username,
                    password=self.broker.password,
                    identifier=f"test-{self.name}",
                ) as mqtt:
                    while not self._stop.is_set():
                        reading = Reading(
                            namespace=DEVICES,
                            device=self.name,
                            sensor=self.sensor,
                            quantity=self.kind,
                            unit=self.unit,
                            values={"value": 40.0 + seq % 10},
                            node=EDGE,
                            seq=seq,
                            received_at=time.time(),
                        )
                        await mqtt.publish(reading.topic, reading.encode(), qos=1)
                        seq += 1
                        await asyncio.sleep(0.2)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)

    def flavor(self) -> str:
        def find() -> str | None:
            for item in cast(
                dict[str, Any],
                self.custom.list_namespaced_custom_object(
                    fs_api.FLAVOR.group, fs_api.FLAVOR.version, fs_api.FLUIDOS_NAMESPACE, "flavors"
                ),
            )["items"]:
                annotations = item["metadata"].get("annotations") or {}
                if annotations.get(DEVICE_ANNOTATION) == f"{DEVICES}/{self.name}":
                    return str(item["metadata"]["name"])
            return None

        return eventually(find, f"the Flavor of Device {self.name}", timeout=90)

    def remove(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            self.custom.delete_namespaced_custom_object(
                fs_api.DEVICE.group, fs_api.DEVICE.version, DEVICES, fs_api.DEVICE.plural, self.name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def broker(testbed: TestbedState, provider: ClusterAccess) -> BrokerAccess:
    node_dir = testbed.directory / provider.name / "nodes" / EDGE
    return BrokerAccess.load(edge.broker_credentials(node_dir, MAPPER_USER))  # publishes


@pytest.fixture
def extra_devices(
    provider_api: client.ApiClient, broker: BrokerAccess
) -> Iterator[list[ExtraDevice]]:
    made: list[ExtraDevice] = []
    yield made
    for device in made:
        device.remove()


def agent_status(testbed: TestbedState, provider: ClusterAccess) -> dict[str, Any]:
    path = testbed.directory / provider.name / "nodes" / EDGE / "agent" / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def route_targets(api: client.ApiClient, topic: str) -> list[dict[str, Any]]:
    items = cast(
        dict[str, Any],
        client.CustomObjectsApi(api).list_namespaced_custom_object(
            fs_api.SENSOR_ROUTE.group,
            fs_api.SENSOR_ROUTE.version,
            fs_api.ROUTE_NAMESPACE,
            fs_api.SENSOR_ROUTE.plural,
        ),
    )["items"]
    return [
        target
        for item in items
        if (item.get("spec") or {}).get("topic") == topic
        for target in item["spec"].get("targets") or []
    ]


def flavor_topic(api: client.ApiClient, flavor: str) -> str:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        fs_api.FLAVOR.group, fs_api.FLAVOR.version, fs_api.FLUIDOS_NAMESPACE, "flavors", flavor
    )
    topic = sensor_from_flavor(obj).broker_topic
    assert topic
    return topic


# ------------------------------------------------------------------------------ scenarios


def test_latency_filters_pick_different_sensors_and_data_reaches_each_buyer(
    sides: list[Consumer], provider_api: client.ApiClient
) -> None:
    """The seed's filtering scenario: "an STM32 humidity sensor with latency < 16 ms" and
    "< 25 ms". Humidity sensors on offer: the HTS221 of SensorTile 2 (15 ms) and of SensorTile
    4 (22 ms). "< 16 ms" matches only the first and takes it; "< 25 ms, count 2" matches both
    and takes both, ranked lowest latency first. Each buyer's InfluxDB gets the data of what
    it bought."""
    one, two = sides
    fast_tile = board_flavor(provider_api, "sensortile-2", "humidity")
    slow_tile = board_flavor(provider_api, "sensortile-4", "humidity")
    wanted = {"sensorType": ["humidity"], "sensorManufacturer": ["STMicroelectronics"]}
    fast_name, wide_name = unique("hum-16ms"), unique("hum-25ms")
    one.request(fast_name, {**wanted, "latency": {"max": "16ms"}})
    two.request(wide_name, {**wanted, "latency": {"max": "25 ms"}}, count=2)

    fast = one.settled(fast_name)["status"]
    wide = two.settled(wide_name)["status"]
    assert fast["phase"] == st.FULFILLED, fast["message"]
    assert wide["phase"] == st.FULFILLED, wide["message"]
    assert set(contracts_of(fast)) == {fast_tile}
    assert set(contracts_of(wide)) == {fast_tile, slow_tile}
    assert fast["matched"] == 1 and wide["matched"] == 2
    # Ranked lowest latency first: the 15 ms sensor, then the 22 ms one.
    assert [c["flavorID"] for c in wide["candidates"]] == [fast_tile, slow_tile]
    assert [c["latencyMs"] for c in wide["candidates"]] == ["15", "22"]
    # With count 1, "< 25 ms" would take the 15 ms one too: the ranking, not the filter, decides.
    # The provider holds exactly these contracts, each for its buyer.
    assert set(provider_contracts(provider_api, one.name).values()) == {fast_tile}
    assert set(provider_contracts(provider_api, two.name).values()) == {fast_tile, slow_tile}

    # Data of each bought sensor lands in the InfluxDB of the consumer that bought it, and
    # each request records when its first reading arrived.
    for side, name, status in ((one, fast_name, fast), (two, wide_name, wide)):
        for contract in status["contracts"]:

            def landed(s: Consumer = side, c: dict[str, Any] = contract) -> str | None:
                return s.first_point(c["device"], c["sensor"], c["boughtAt"])

            eventually(
                landed,
                f"{side.name}: readings of {c_name(contract)} in its InfluxDB",
                timeout=DATA,
            )

        def first_data(s: Consumer = side, n: str = name) -> Any:
            return (s.get(n) or {}).get("status", {}).get("firstData")

        first = eventually(first_data, f"{side.name}: firstData of its request", timeout=DATA)
        assert first >= min(c["boughtAt"] for c in status["contracts"])
    # Nothing of consumer 2's second sensor reached consumer 1.
    slow = next(c for c in wide["contracts"] if c["flavorID"] == slow_tile)
    assert one.first_point(slow["device"], slow["sensor"], slow["boughtAt"]) is None


def c_name(contract: dict[str, Any]) -> str:
    return f"{contract['device']}/{contract['sensor']}"


def test_sharing_driven_by_requests_subscribes_once_at_the_edge(
    sides: list[Consumer],
    provider_api: client.ApiClient,
    testbed: TestbedState,
    provider: ClusterAccess,
) -> None:
    """Consumers 1 and 2 both request S1 (an STWIN.box temperature, pinned by node, type and
    model: the best ranked of the two is the 10 ms board's); consumer 2 also requests S3 (a
    SensorTile pressure). The provider sells S1 twice; the edge reads it once (one
    subscription, one route with two targets)."""
    one, two = sides
    s1 = board_flavor(provider_api, "stwin-box-1", "temperature")
    s3 = board_flavor(provider_api, "sensortile-2", "pressure")
    pin_s1 = {"node": [EDGE], "sensorType": ["temperature"], "sensorModel": ["STTS22H"]}
    pin_s3 = {"node": [EDGE], "sensorType": ["pressure"], "sensorModel": ["LPS22HB"]}
    r1, r2, r3 = unique("s1"), unique("s1"), unique("s3")
    one.request(r1, pin_s1, providers=[PROVIDER])
    two.request(r2, pin_s1, providers=[PROVIDER])
    two.request(r3, pin_s3, providers=[PROVIDER])
    for side, name, flavor in ((one, r1, s1), (two, r2, s1), (two, r3, s3)):
        status = side.settled(name)["status"]
        assert status["phase"] == st.FULFILLED, status["message"]
        assert set(contracts_of(status)) == {flavor}
    assert sorted(provider_contracts(provider_api, one.name).values()) == [s1]
    assert sorted(provider_contracts(provider_api, two.name).values()) == sorted([s1, s3])

    # One route per sensor topic with a target per buyer; the agent subscribes once per topic.
    # (Needs the router manager to turn Contracts into route targets.)
    topic_s1, topic_s3 = flavor_topic(provider_api, s1), flavor_topic(provider_api, s3)
    eventually(lambda: len(route_targets(provider_api, topic_s1)) == 2, "S1 with 2 targets", DATA)
    eventually(lambda: len(route_targets(provider_api, topic_s3)) == 1, "S3 with 1 target", DATA)
    topics = eventually(
        lambda: (t := agent_status(testbed, provider).get("topics")) and topic_s1 in t and t,
        "the agent subscribed to S1",
        DATA,
    )
    assert topics.count(topic_s1) == 1


def rate_of(api: client.ApiClient, device: str, group: str) -> tuple[str | None, str | None]:
    """(desired, reported) rate of a rate group of a testbed Device."""
    custom = client.CustomObjectsApi(api)
    found: dict[str, dict[str, Any] | None] = {}
    for resource in (fs_api.DEVICE, fs_api.DEVICE_STATUS):
        found[resource.kind] = cast(
            dict[str, Any] | None,
            get_or_none(
                custom.get_namespaced_custom_object,
                resource.group,
                resource.version,
                DEVICES,
                resource.plural,
                device,
            ),
        )
    wanted = f"samplingRate.{group}"
    properties = ((found["Device"] or {}).get("spec") or {}).get("properties") or []
    desired = next((p["desired"]["value"] for p in properties if p.get("name") == wanted), None)
    twins = ((found["DeviceStatus"] or {}).get("status") or {}).get("twins") or []
    reported = next((t["reported"]["value"] for t in twins if t["propertyName"] == wanted), None)
    return desired, reported


def test_a_rate_bought_is_set_on_the_board_and_a_different_one_is_refused(
    sides: list[Consumer], provider_api: client.ApiClient
) -> None:
    """Consumer 1 buys an STWIN.box temperature at 20 Hz (declared 1 Hz; the firmware offers
    1, 10, 20): the Contract's rate becomes the Device's desired property, the mapper sets the
    board, the board's answer is the reported twin, and the rate observed on the data path
    follows on the Flavor. Consumer 2 asks for two STWIN.box pressures at 10 Hz: the one
    sampled with that temperature is refused (its request says why) and the other board's is
    bought and set to 10 Hz. Released, each board goes back to the rate its Flavor states."""
    one, two = sides
    temperatures = {"node": [EDGE], "sensorType": ["temperature"], "sensorModel": ["STTS22H"]}
    pressures = {"node": [EDGE], "sensorType": ["pressure"], "sensorModel": ["ILPS22QS"]}
    fast, other = unique("temp-20hz"), unique("press-10hz")
    one.request(fast, temperatures, providers=[PROVIDER], rate="20 Hz")
    status = one.settled(fast)["status"]
    assert status["phase"] == st.FULFILLED, status["message"]
    device = status["contracts"][0]["device"]
    temperature = status["contracts"][0]["flavorID"]
    eventually(
        lambda: rate_of(provider_api, device, "environmental") == ("20", "20"),
        f"{device}: environmental rate desired and reported at 20 Hz",
        DATA,
    )

    def observed_rate() -> float | None:
        obj = client.CustomObjectsApi(provider_api).get_namespaced_custom_object(
            fs_api.FLAVOR.group,
            fs_api.FLAVOR.version,
            fs_api.FLUIDOS_NAMESPACE,
            fs_api.FLAVOR.plural,
            temperature,
        )
        rate = sensor_from_flavor(obj).observed_rate_hz
        return rate if rate is not None and rate > 10 else None  # was 1 Hz

    eventually(observed_rate, "the observed rate on the Flavor above 10 Hz", DATA)

    board = device.removeprefix(f"{EDGE}-")
    shared = board_flavor(provider_api, board, "pressure")
    two.request(other, pressures, count=2, providers=[PROVIDER], rate="10")
    partial = two.settled(other)["status"]
    assert partial["phase"] == st.PARTIALLY_FULFILLED, partial["message"]
    assert shared in partial["message"] and "20 Hz" in partial["message"], partial["message"]
    (bought,) = partial["contracts"]
    assert bought["flavorID"] != shared and bought["device"] != device
    eventually(
        lambda: rate_of(provider_api, bought["device"], "environmental") == ("10", "10"),
        f"{bought['device']}: environmental rate desired and reported at 10 Hz",
        DATA,
    )

    one.delete(fast)
    two.delete(other)
    for released in (device, bought["device"]):

        def declared(d: str = released) -> bool:
            return rate_of(provider_api, d, "environmental") == (None, "1")

        eventually(declared, f"{released}: back at its declared 1 Hz", DATA)


def test_unsatisfiable_waits_for_a_matching_device_and_a_malformed_filter_fails(
    sides: list[Consumer],
    provider_api: client.ApiClient,
    broker: BrokerAccess,
    extra_devices: list[ExtraDevice],
) -> None:
    one, _ = sides
    model = unique("SHT4X").upper()  # a model no provider offers yet
    waiting, malformed, elsewhere = unique("sht"), unique("bad"), unique("nowhere")
    one.request(waiting, {"sensorType": ["humidity"], "sensorModel": [model]})
    one.request(malformed, {"sensorType": ["humidity"], "latency": {"max": "fast"}})
    one.request(elsewhere, {"sensorType": ["humidity"]}, providers=["provider-9"])

    status = one.settled(waiting)["status"]
    assert status["phase"] == st.UNSATISFIABLE
    assert (
        f"no available sensor matches sensor_type=humidity, sensor_model={model}"
        in (status["message"])
    )
    assert status["matched"] == 0 and status["contractCount"] == 0

    bad = one.settled(malformed)["status"]
    assert bad["phase"] == st.FAILED
    assert '"spec.filter.latency.max" must be a number of ms, got "fast"' in bad["message"]
    assert bad["contractCount"] == 0

    nowhere = one.settled(elsewhere)["status"]
    assert nowhere["phase"] == st.UNSATISFIABLE
    assert "SensorProvider fluidos/provider-9 not found" in nowhere["message"]

    # A matching Device appears at the provider: the request, untouched, is fulfilled.
    device = ExtraDevice(
        provider_api,
        broker,
        unique("sht4x"),
        kind="humidity",
        unit="%RH",
        model=model,
        manufacturer="Sensirion",
        latency="8",
        accuracy="1.8",
    )
    extra_devices.append(device)
    flavor = device.flavor()
    done = one.settled(waiting, (st.FULFILLED,))
    assert done["metadata"]["generation"] == 1  # nobody touched the request
    assert set(contracts_of(done["status"])) == {flavor}

    # The malformed request was not retried: one InvalidSpec event, no pass since. Fixing the
    # filter re-resolves it.
    after = one.get(malformed) or {}
    assert after["status"]["updated"] == bad["updated"]
    assert [reason for reason, _ in one.events(malformed)] == ["InvalidSpec"]
    one.patch_spec(malformed, {"filter": {"sensorType": ["humidity"], "latency": {"max": "9ms"}}})
    fixed = one.settled(malformed, (st.FULFILLED, st.PARTIALLY_FULFILLED, st.UNSATISFIABLE))
    # The only humidity sensor at <= 9 ms is the new one, which `waiting` holds already
    # (a consumer holds a sensor once).
    assert fixed["status"]["matched"] == 1
    assert fixed["status"]["phase"] == st.UNSATISFIABLE
    assert "only 0 could be bought" in fixed["status"]["message"]
    assert "already holds" in fixed["status"]["message"]


def test_a_spec_change_releases_what_no_longer_matches_and_buys_what_is_missing(
    sides: list[Consumer], provider_api: client.ApiClient
) -> None:
    one, _ = sides
    stwin = board_flavor(provider_api, "stwin-box-1", "temperature")  # STTS22H, 10 ms
    tile = board_flavor(provider_api, "sensortile-2", "temperature")  # HTS221, 15 ms
    name = unique("temps")
    one.request(name, {"sensorType": ["temperature"], "node": [EDGE]}, count=2)
    both = one.settled(name)["status"]
    assert both["phase"] == st.FULFILLED and set(contracts_of(both)) == {stwin, tile}
    assert both["matched"] == 4

    # Count down: the worse ranked (15 ms) goes.
    one.patch_spec(name, {"count": 1})
    first = one.settled(name)["status"]
    assert set(contracts_of(first)) == {stwin}
    assert set(provider_contracts(provider_api, one.name).values()) == {stwin}
    assert any(reason == "Released" and tile in message for reason, message in one.events(name))

    # Pin the HTS221: the held STTS22H no longer matches and is released; the best HTS221
    # (15 ms, not the 22 ms one) is bought.
    one.patch_spec(name, {"filter": {"sensorType": ["temperature"], "sensorModel": ["HTS221"]}})
    second = one.settled(name)["status"]
    assert second["phase"] == st.FULFILLED
    assert set(contracts_of(second)) == {tile}
    assert set(provider_contracts(provider_api, one.name).values()) == {tile}


def test_a_provider_with_a_wrong_token_is_skipped_with_its_name(
    sides: list[Consumer], provider_api: client.ApiClient
) -> None:
    one, _ = sides
    good = one.core.read_namespaced_secret(f"rear-{PROVIDER}", NS)
    assert good.data is not None
    bad_provider, bad_secret = unique("provider-1-badtoken"), unique("rear-bad")
    one.core.create_namespaced_secret(
        NS,
        # kubernetes takes a dict body too; its annotation names only the model
        {  # type: ignore[arg-type]
            "metadata": {"name": bad_secret},
            "stringData": {"token": "not-the-token-" + uuid.uuid4().hex},
            "data": {"ca.crt": good.data["ca.crt"]},
        },
    )
    provider_obj = cast(
        dict[str, Any],
        one.custom.get_namespaced_custom_object(
            fs_api.SENSOR_PROVIDER.group,
            fs_api.SENSOR_PROVIDER.version,
            NS,
            fs_api.SENSOR_PROVIDER.plural,
            PROVIDER,
        ),
    )
    args = (fs_api.SENSOR_PROVIDER.group, fs_api.SENSOR_PROVIDER.version, NS)
    one.custom.create_namespaced_custom_object(
        *args,
        fs_api.SENSOR_PROVIDER.plural,
        {
            "apiVersion": fs_api.SENSOR_PROVIDER.api_version,
            "kind": fs_api.SENSOR_PROVIDER.kind,
            "metadata": {"name": bad_provider},
            "spec": {
                "url": provider_obj["spec"]["url"],
                "tokenSecret": {"name": bad_secret},
                "caSecret": {"name": bad_secret},
            },
        },
    )
    try:
        tile = board_flavor(provider_api, "sensortile-2", "humidity")
        name = unique("hum")
        one.request(name, {"sensorType": ["humidity"], "sensorModel": ["HTS221"], "node": [EDGE]})
        status = one.settled(name)["status"]
        assert status["phase"] == st.FULFILLED
        assert f"provider {bad_provider}:" in status["message"]
        assert "HTTP 401" in status["message"]
        assert set(contracts_of(status)) == {tile}
        assert all(c["provider"] == PROVIDER for c in status["contracts"])
        # Only the wrong provider is asked: nothing.
        alone = unique("hum-bad-only")
        one.request(alone, {"sensorType": ["humidity"]}, providers=[bad_provider])
        refused = one.settled(alone)["status"]
        assert refused["phase"] == st.UNSATISFIABLE
        assert f"provider {bad_provider}:" in refused["message"]
        # The SensorProvider's status says so too; the good one answers.
        providers = {
            p["metadata"]["name"]: p.get("status") or {}
            for p in cast(
                dict[str, Any],
                one.custom.list_namespaced_custom_object(*args, fs_api.SENSOR_PROVIDER.plural),
            )["items"]
        }
        eventually(
            lambda: (
                (
                    s := cast(
                        dict[str, Any],
                        one.custom.get_namespaced_custom_object(
                            *args, fs_api.SENSOR_PROVIDER.plural, bad_provider
                        ),
                    ).get("status")
                    or {}
                ).get("reachable")
                is False
                and "401" in s.get("message", "")
            ),
            "the bad SensorProvider's status",
        )
        assert providers[PROVIDER].get("reachable") is True
        assert providers[PROVIDER].get("flavors", 0) >= 11
    finally:
        one.custom.delete_namespaced_custom_object(
            *args, fs_api.SENSOR_PROVIDER.plural, bad_provider
        )
        one.core.delete_namespaced_secret(bad_secret, NS)


def test_deleting_a_request_releases_its_contracts_and_nothing_else(
    sides: list[Consumer], provider_api: client.ApiClient
) -> None:
    one, two = sides
    pressure = board_flavor(provider_api, "stwin-box-1", "pressure")
    tile = board_flavor(provider_api, "sensortile-2", "temperature")
    doomed, kept, other = unique("doomed"), unique("kept"), unique("other")
    one.request(doomed, {"sensorType": ["pressure"], "sensorModel": ["ILPS22QS"]})
    one.request(kept, {"sensorType": ["temperature"], "sensorModel": ["HTS221"]})
    two.request(other, {"sensorType": ["pressure"], "sensorModel": ["ILPS22QS"]})
    for side, name in ((one, doomed), (one, kept), (two, other)):
        assert side.settled(name)["status"]["phase"] == st.FULFILLED
    doomed_contract = contracts_of(one.get(doomed)["status"])[pressure]  # type: ignore[index]
    kept_before = one.get(kept)["status"]  # type: ignore[index]
    other_before = two.get(other)["status"]  # type: ignore[index]
    before_one = provider_contracts(provider_api, one.name)
    before_two = provider_contracts(provider_api, two.name)
    assert before_one[doomed_contract] == pressure

    one.delete(doomed)

    after_one = provider_contracts(provider_api, one.name)
    assert doomed_contract not in after_one
    assert after_one == {k: v for k, v in before_one.items() if k != doomed_contract}
    assert provider_contracts(provider_api, two.name) == before_two  # the other buyer's stays
    allocations = cast(
        dict[str, Any],
        client.CustomObjectsApi(provider_api).list_namespaced_custom_object(
            fs_api.ALLOCATION.group,
            fs_api.ALLOCATION.version,
            fs_api.FLUIDOS_NAMESPACE,
            fs_api.ALLOCATION.plural,
        ),
    )["items"]
    assert all(a["spec"]["contract"]["name"] != doomed_contract for a in allocations), (
        "the Allocation of the released contract is gone too"
    )
    assert contracts_of(one.get(kept)["status"]) == contracts_of(kept_before)  # type: ignore[index]
    assert contracts_of(two.get(other)["status"]) == contracts_of(other_before)  # type: ignore[index]
    assert tile in contracts_of(kept_before)


def test_consumer_account_is_least_privilege(
    testbed: TestbedState, consumers: list[ClusterAccess]
) -> None:
    account = testbed.directory / consumers[0].name / "accounts"
    kubeconfig = account / "fluidos-sensors-consumer.kubeconfig"
    assert kubeconfig.exists()
    with bootstrap.api_client(Path(kubeconfig)) as api:
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        request = fs_api.SENSOR_REQUEST
        provider_kind = fs_api.SENSOR_PROVIDER
        allowed = [
            lambda: custom.list_namespaced_custom_object(
                request.group, request.version, NS, request.plural
            ),
            lambda: custom.list_namespaced_custom_object(
                provider_kind.group, provider_kind.version, NS, provider_kind.plural
            ),
            lambda: core.read_namespaced_secret(f"rear-{PROVIDER}", NS),
        ]
        for attempt in allowed:
            attempt()
        denied = [
            lambda: core.list_namespaced_secret(NS),
            lambda: core.read_namespaced_secret("anything", "default"),
            lambda: custom.create_namespaced_custom_object(
                request.group,
                request.version,
                NS,
                request.plural,
                {
                    "apiVersion": request.api_version,
                    "kind": request.kind,
                    "metadata": {"name": "x"},
                    "spec": {"endpoint": {"url": "http://x.example/y"}},
                },
            ),
            lambda: custom.delete_namespaced_custom_object(
                provider_kind.group, provider_kind.version, NS, provider_kind.plural, PROVIDER
            ),
            lambda: custom.patch_namespaced_custom_object(
                provider_kind.group,
                provider_kind.version,
                NS,
                provider_kind.plural,
                PROVIDER,
                {"spec": {"url": "https://evil.example"}},
            ),
            lambda: custom.list_namespaced_custom_object(
                request.group, request.version, "default", request.plural
            ),
            # kubernetes takes a dict body too; its annotation names only the model
            lambda: core.create_namespaced_secret(NS, {"metadata": {"name": "x"}}),  # type: ignore[arg-type]
        ]
        for attempt in denied:
            with pytest.raises(ApiException) as refused:
                attempt()
            assert refused.value.status == 403


def run_testbed_cli(testbed: TestbedState, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fluidos_sensors_cli", "testbed", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "FLUIDOS_SENSORS_STATE": str(testbed.directory)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@contextmanager
def stopped(testbed: TestbedState, process: str) -> Iterator[None]:
    """Hold a testbed process down (the supervisor does not restart it) for the block."""
    run_testbed_cli(testbed, "stop", process, "--state-dir", str(testbed.directory))
    try:
        yield
    finally:
        run_testbed_cli(testbed, "start", process, "--state-dir", str(testbed.directory))


def test_a_restarted_operator_finds_its_contracts_at_the_provider(
    sides: list[Consumer], provider_api: client.ApiClient, testbed: TestbedState
) -> None:
    """Status is the memory, the provider's contracts (by the request's intent) the proof: an
    operator that lost what it bought (a crash between purchase and status write) adopts the
    contract again instead of buying another."""
    one, _ = sides
    tile = board_flavor(provider_api, "sensortile-2", "pressure")
    name = unique("pressure")
    one.request(name, {"sensorType": ["pressure"], "sensorModel": ["LPS22HB"]})
    status = one.settled(name)["status"]
    assert set(contracts_of(status)) == {tile}
    contract = contracts_of(status)[tile]
    with stopped(testbed, f"{one.name}/consumer"):
        one.custom.patch_namespaced_custom_object_status(
            *one._args(),
            name,
            {"status": {"contracts": [], "contractCount": 0, "phase": st.PURCHASING}},
        )
    adopted = one.settled(name, (st.FULFILLED,))["status"]
    assert contracts_of(adopted) == {tile: contract}
    assert list(provider_contracts(provider_api, one.name)) == [contract]


def test_a_provider_down_at_delete_time_delays_the_release_until_it_is_back(
    sides: list[Consumer], provider_api: client.ApiClient, testbed: TestbedState
) -> None:
    one, _ = sides
    stwin = board_flavor(provider_api, "stwin-box-1", "magnetic-field")
    name = unique("mag")
    one.request(name, {"sensorType": ["magnetic_field"], "sensorModel": ["IIS2MDC"]})
    contract = contracts_of(one.settled(name)["status"])[stwin]
    with stopped(testbed, f"{PROVIDER}/rear-gateway"):
        one.custom.delete_namespaced_custom_object(*one._args(), name)
        retrying = eventually(
            lambda: [m for r, m in one.events(name) if r == "ReleaseRetrying"],
            "a ReleaseRetrying Event",
        )
        assert f"provider {PROVIDER}" in retrying[0] and "unreachable" in retrying[0]
        assert one.get(name) is not None  # held by its finalizer
        assert contract in provider_contracts(provider_api, one.name)
    eventually(lambda: one.get(name) is None, "the request gone once the gateway is back", 180)
    assert contract not in provider_contracts(provider_api, one.name)


def test_a_refused_purchase_moves_on_to_the_next_candidate(
    sides: list[Consumer], provider_api: client.ApiClient
) -> None:
    """The best-ranked sensor is refused (409: this consumer holds it already, for another
    request): the next candidate is bought instead."""
    one, _ = sides
    best = board_flavor(provider_api, "sensortile-2", "humidity")  # 15 ms
    next_best = board_flavor(provider_api, "sensortile-4", "humidity")  # 22 ms
    holder, wanting = unique("holder"), unique("wanting")
    one.request(holder, {"sensorType": ["humidity"], "latency": {"max": "16 ms"}})
    assert set(contracts_of(one.settled(holder)["status"])) == {best}
    one.request(wanting, {"sensorType": ["humidity"], "sensorModel": ["HTS221"]})
    status = one.settled(wanting)["status"]
    assert [c["flavorID"] for c in status["candidates"]] == [best, next_best]
    assert status["phase"] == st.FULFILLED
    assert set(contracts_of(status)) == {next_best}
    assert f"{PROVIDER}/{best}: " in status["message"] and "already holds" in status["message"]


def cli(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluidos_sensors_cli", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_request_list_and_delete(sides: list[Consumer], provider_api: client.ApiClient) -> None:
    one, _ = sides
    tile = board_flavor(provider_api, "sensortile-2", "humidity")
    name = unique("cli-hum")
    made = cli(
        "request",
        "--type",
        "humidity",
        "--manufacturer",
        "STMicroelectronics",
        "--max-latency",
        "16ms",
        "--endpoint",
        one.stack.telegraf_url,
        "--auth-type",
        "basic",
        "--auth-secret",
        one.telegraf_secret(),
        "--name",
        name,
        "--wait",
        "--timeout",
        "60",
        kubeconfig=one.kubeconfig,
    )
    one.requests.append(name)
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"SensorRequest {name}: Fulfilled" in made.stdout
    assert tile in made.stdout
    assert one.stack.telegraf_password not in made.stdout + made.stderr

    listed = cli("requests", "list", "-o", "json", kubeconfig=one.kubeconfig)
    assert listed.returncode == 0, listed.stderr
    mine = [r for r in json.loads(listed.stdout) if r["metadata"]["name"] == name]
    assert mine and mine[0]["status"]["phase"] == st.FULFILLED
    table = cli("requests", "list", kubeconfig=one.kubeconfig)
    row = next(line for line in table.stdout.splitlines() if line.startswith(name))
    assert row.split()[1:4] == [st.FULFILLED, "1", "1"]

    nothing = unique("cli-none")
    refused = cli(
        "request",
        "--type",
        "humidity",
        "--model",
        "NO-SUCH-MODEL",
        "--endpoint",
        one.stack.telegraf_url,
        "--name",
        nothing,
        "--wait",
        kubeconfig=one.kubeconfig,
    )
    one.requests.append(nothing)
    assert refused.returncode == 1
    assert f"SensorRequest {nothing}: Unsatisfiable - no available sensor matches" in refused.stdout

    gone = cli("requests", "delete", name, "--wait", kubeconfig=one.kubeconfig)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert one.get(name) is None
    assert tile not in provider_contracts(provider_api, one.name).values()

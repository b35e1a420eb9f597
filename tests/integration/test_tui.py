"""The TUI against the real testbed: Textual's pilot drives the app while the test writes
Flavors, Devices, DeviceStatus, SensorRoutes and SensorRequests through the API.

The app runs with the TUI's own least-privilege RBAC (the chart's files/rbac/tui.yaml) in both
clusters. A cluster behind a loopback TCP relay the test stops and restarts shows the TUI
marking it unreachable and reconnecting by itself.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from relay import Relay
from textual.pilot import Pilot

from fluidos_sensors.api import (
    DEVICE,
    DEVICE_STATUS,
    FLAVOR,
    ROUTE_NAMESPACE,
    SENSOR_REQUEST,
    SENSOR_ROUTE,
)
from fluidos_sensors.backoff import Backoff
from fluidos_sensors.filters import from_request_filter
from fluidos_sensors.flavor import ObservedPerformance, Price, ProviderConfig, build_flavor
from fluidos_sensors.sensor import DeviceRef, SensorSpec, parse_sensor_entry
from testbed import credentials, paths
from testbed.processes import free_port
from testbed.state import ClusterAccess
from tui.app import SensorsApp
from tui.capture import screen_text
from tui.data.actions import REQUESTED_FLAVOR_ANNOTATION
from tui.data.clusters import ClusterConfig
from tui.data.rows.cells import row_key
from tui.data.store import Phase, Store
from tui.data.watch import Watches
from tui.screens.confirm import ConfirmScreen
from tui.screens.request_sensor import RequestSensorScreen
from tui.widgets.event_log import EventLog

pytestmark = pytest.mark.integration

RBAC = paths.rbac_manifest("tui")
ACCOUNT = "fluidos-sensors-tui"
FLUIDOS = "fluidos"
SIZE = (160, 44)
WAIT = 30.0


# ---------------------------------------------------------------------------------------
# Fixtures and helpers


def _tui_kubeconfig(cluster: ClusterAccess, api: client.ApiClient, path: Path) -> Path:
    credentials.apply_manifest(api, RBAC)
    # A reused testbed may hold an older version of the roles: this test runs with these.
    rbac = client.RbacAuthorizationV1Api(api)
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc["kind"] == "ClusterRole":
            rbac.replace_cluster_role(doc["metadata"]["name"], doc)
        elif doc["kind"] == "Role":
            meta = doc["metadata"]
            rbac.replace_namespaced_role(meta["name"], meta["namespace"], doc)
    return credentials.service_account_kubeconfig(cluster.kubeconfig, FLUIDOS, ACCOUNT, path)


@pytest.fixture(scope="module")
def tui_clusters(
    provider: ClusterAccess,
    consumer: ClusterAccess,
    provider_api: client.ApiClient,
    consumer_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, ClusterConfig]:
    """Both clusters as the TUI's ServiceAccount sees them."""
    folder = tmp_path_factory.mktemp("tui")
    return {
        "provider": ClusterConfig(
            provider.name,
            _tui_kubeconfig(provider, provider_api, folder / "provider.kubeconfig"),
            role="provider",
        ),
        "consumer": ClusterConfig(
            consumer.name,
            _tui_kubeconfig(consumer, consumer_api, folder / "consumer.kubeconfig"),
            role="consumer",
        ),
    }


def app_for(*clusters: ClusterConfig, **options: Any) -> SensorsApp:
    store = Store()
    return SensorsApp(store, Watches(list(clusters), store, **options))


async def wait_for(pilot: Pilot[None], what: str, check: Callable[[], bool]) -> None:
    """Let the app run until `check` holds (watch events arrive on their own)."""
    loops = int(WAIT / 0.1)
    for _ in range(loops):
        if check():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{screen_text(pilot.app)}")


def sensor(
    name: str, kind: str, unit: str, manufacturer: str, model: str, latency: str
) -> SensorSpec:
    spec, errors = parse_sensor_entry(
        {
            "name": name,
            "model": model,
            "manufacturer": manufacturer,
            "type": {"sensorCategory": "Environmental", "sensorType": [kind]},
            "samplingRate": "1",
            "latency": latency,
            "accuracy": ["0.5"],
            "properties": {"unit": {"measurement": [unit]}},
        }
    )
    assert spec is not None, errors
    return spec


class Deployment:
    """Objects one test writes on the testbed, under names of its own."""

    def __init__(self, provider_api: client.ApiClient, consumer_api: client.ApiClient) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.node = f"tui-edge-{self.tag}"  # a node name only these Flavors carry
        self.provider = client.CustomObjectsApi(provider_api)
        self.consumer = client.CustomObjectsApi(consumer_api)
        self.config = ProviderConfig(
            node_id="provider-1",
            domain="fluidos.eu",
            ip="10.0.0.5",
            price=Price(amount="1", currency="EUR", period="hourly"),
        )

    def flavor(self, device: str, spec: SensorSpec, **extra: Any) -> dict[str, Any]:
        body = build_flavor(
            # Not namespace "default": the testbed's resource manager serves that one and would
            # delete Flavors whose Device it does not know.
            DeviceRef(f"tui-{self.tag}", f"{device}-{self.tag}"),
            self.node,
            spec,
            self.config,
            available=True,
            **extra,
        )
        return cast(
            dict[str, Any],
            self.provider.create_namespaced_custom_object(
                FLAVOR.group, FLAVOR.version, FLUIDOS, FLAVOR.plural, body
            ),
        )

    def route(self, flavor: dict[str, Any]) -> dict[str, Any]:
        meta = flavor["metadata"]
        body = {
            "apiVersion": SENSOR_ROUTE.api_version,
            "kind": SENSOR_ROUTE.kind,
            "metadata": {"name": f"route-{self.tag}", "namespace": ROUTE_NAMESPACE},
            "spec": {
                "node": self.node,
                "topic": f"default/fluidos-sensors/{meta['name']}",
                "flavor": f"{meta['namespace']}/{meta['name']}",
                "targets": [
                    {"id": "good", "url": "http://127.0.0.1:1/good"},
                    {"id": "broken", "url": "http://127.0.0.1:1/broken"},
                ],
            },
        }
        created = cast(
            dict[str, Any],
            self.provider.create_namespaced_custom_object(
                SENSOR_ROUTE.group, SENSOR_ROUTE.version, ROUTE_NAMESPACE, SENSOR_ROUTE.plural, body
            ),
        )
        created["status"] = {
            "agent": self.node,
            "updated": "2025-03-01T12:00:00Z",
            "targets": [
                {
                    "id": "good",
                    "state": "Delivering",
                    "delivered": 120,
                    "rateHz": 1.0,
                    "lastSuccess": "2025-03-01T12:00:00Z",
                },
                {
                    "id": "broken",
                    "state": "Retrying",
                    "failed": 7,
                    "queued": 30,
                    "lastError": "connection refused",
                    "lastErrorTime": "2025-03-01T12:00:00Z",
                },
            ],
        }
        return cast(
            dict[str, Any],
            self.provider.replace_namespaced_custom_object_status(
                SENSOR_ROUTE.group,
                SENSOR_ROUTE.version,
                ROUTE_NAMESPACE,
                SENSOR_ROUTE.plural,
                created["metadata"]["name"],
                created,
            ),
        )

    def device(self, namespace: str) -> str:
        name = f"board-{self.tag}"
        meta = {"name": name, "namespace": namespace}
        self.provider.create_namespaced_custom_object(
            DEVICE.group,
            DEVICE.version,
            namespace,
            DEVICE.plural,
            {
                "apiVersion": DEVICE.api_version,
                "kind": DEVICE.kind,
                "metadata": meta,
                # bound to a node no mapper serves: no mapper of the testbed touches it
                "spec": {"nodeName": self.node},
            },
        )
        self.provider.create_namespaced_custom_object(
            DEVICE_STATUS.group,
            DEVICE_STATUS.version,
            namespace,
            DEVICE_STATUS.plural,
            {
                "apiVersion": DEVICE_STATUS.api_version,
                "kind": DEVICE_STATUS.kind,
                "metadata": meta,
                "status": {
                    "state": "online",
                    "lastOnlineTime": "2025-03-01T12:00:00Z",
                    "twins": [
                        {
                            "propertyName": "humidity",
                            "reported": {
                                "value": "47.5",
                                "metadata": {"timestamp": "1740830400000", "unit": "%RH"},
                            },
                        },
                        {
                            "propertyName": "battery",
                            "reported": {
                                "value": '{"level":64.0,"voltage":3900.0}',
                                "metadata": {"timestamp": "1740830400000", "unit": "%"},
                            },
                        },
                    ],
                    "extensions": {
                        "fluidosSensors": {"board": "SensorTile", "rssi": -60, "node": self.node}
                    },
                },
            },
        )
        return name

    def request(self, namespace: str = "default") -> dict[str, Any]:
        body = {
            "apiVersion": SENSOR_REQUEST.api_version,
            "kind": SENSOR_REQUEST.kind,
            "metadata": {"name": f"want-{self.tag}", "namespace": namespace},
            "spec": {
                "filter": {"sensorType": ["humidity"], "latency": {"max": "16"}},
                "endpoint": {"url": "http://telegraf.example:8186/telegraf"},
            },
        }
        created = cast(
            dict[str, Any],
            self.consumer.create_namespaced_custom_object(
                SENSOR_REQUEST.group, SENSOR_REQUEST.version, namespace, SENSOR_REQUEST.plural, body
            ),
        )
        created["status"] = {"phase": "Searching", "matched": 3, "contractCount": 0}
        return cast(
            dict[str, Any],
            self.consumer.replace_namespaced_custom_object_status(
                SENSOR_REQUEST.group,
                SENSOR_REQUEST.version,
                namespace,
                SENSOR_REQUEST.plural,
                created["metadata"]["name"],
                created,
            ),
        )

    def requests_for(self, flavor_ref: str) -> list[dict[str, Any]]:
        items = cast(
            dict[str, Any],
            self.consumer.list_cluster_custom_object(
                SENSOR_REQUEST.group, SENSOR_REQUEST.version, SENSOR_REQUEST.plural
            ),
        )["items"]
        return [
            i
            for i in items
            if (i["metadata"].get("annotations") or {}).get(REQUESTED_FLAVOR_ANNOTATION)
            == flavor_ref
        ]

    def route_target_ids(self) -> list[str]:
        route = cast(
            dict[str, Any],
            self.provider.get_namespaced_custom_object(
                SENSOR_ROUTE.group,
                SENSOR_ROUTE.version,
                ROUTE_NAMESPACE,
                SENSOR_ROUTE.plural,
                f"route-{self.tag}",
            ),
        )
        return [t["id"] for t in route["spec"].get("targets") or []]


@pytest.fixture
def deployment(provider_api: client.ApiClient, consumer_api: client.ApiClient) -> Deployment:
    return Deployment(provider_api, consumer_api)


def flavor_key(cluster: str, flavor: dict[str, Any]) -> str:
    meta = flavor["metadata"]
    return row_key((cluster, meta["namespace"], meta["name"]))


# ---------------------------------------------------------------------------------------
# Tests


async def test_views_fill_from_real_objects_and_follow_changes(
    tui_clusters: dict[str, ClusterConfig], deployment: Deployment, namespace: str
) -> None:
    provider, consumer = tui_clusters["provider"], tui_clusters["consumer"]
    humid = deployment.flavor(
        "tile",
        sensor("humidity", "humidity", "%RH", "STMicroelectronics", "HTS221", "15"),
        observed=ObservedPerformance(latency_ms=13.5, rate_hz=1.0),
    )
    slow = deployment.flavor("bme", sensor("humidity", "humidity", "%RH", "Bosch", "BME280", "20"))
    deployment.flavor(
        "stts", sensor("temperature", "temperature", "°C", "STMicroelectronics", "STTS22H", "10")
    )
    route = deployment.route(humid)
    device = deployment.device(namespace)
    request = deployment.request()

    app = app_for(provider, consumer)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        flavors = main.flavor_table

        def mine() -> list[str]:
            return [
                k for k in flavors.shown_keys() if deployment.node in flavors.cell_texts(k)["node"]
            ]

        await wait_for(pilot, "three flavors", lambda: len(mine()) == 3)
        cells = flavors.cell_texts(flavor_key(provider.name, humid))
        assert cells["type"] == "humidity" and cells["manufacturer"] == "STMicroelectronics"
        assert cells["latency"] == "15 ms" and cells["observed_latency"] == "13.5 ms"
        assert cells["available"] == "yes"
        await wait_for(
            pilot,
            "two consumers of the routed flavor",
            lambda: flavors.cell_texts(flavor_key(provider.name, humid))["consumers"] == "2",
        )
        assert flavors.cell_texts(flavor_key(provider.name, slow))["consumers"] == "0"

        # Routes: one row per target; the failing one is marked.
        route_key = (provider.name, ROUTE_NAMESPACE, route["metadata"]["name"])
        broken = row_key(route_key, "broken")
        await wait_for(pilot, "route targets", lambda: broken in main.route_table.rows_by_key)
        assert broken in main.route_table.failing_keys()
        assert row_key(route_key, "good") not in main.route_table.failing_keys()
        assert main.route_table.cell_texts(broken)["last_error"] == "connection refused"

        # Devices: Device + DeviceStatus.
        device_key = row_key((provider.name, namespace, device))
        await wait_for(pilot, "the device", lambda: device_key in main.device_table.rows_by_key)
        device_cells = main.device_table.cell_texts(device_key)
        assert (device_cells["state"], device_cells["battery"]) == ("online", "64 %")
        assert "humidity 47.5 %RH" in device_cells["values"]

        # Events of the cluster reach the log and the device's detail.
        client.CoreV1Api(deployment.provider.api_client).create_namespaced_event(
            namespace,
            # kubernetes takes a dict body too; its annotation names only the model
            {  # type: ignore[arg-type]
                "metadata": {"name": f"tui-{deployment.tag}", "namespace": namespace},
                "involvedObject": {"kind": "Device", "name": device, "namespace": namespace},
                "type": "Warning",
                "reason": "InvalidSensor",
                "message": f"entry 2 of {device}: latency must be a number",
                "lastTimestamp": "2025-03-01T12:00:00Z",
            },
        )
        await wait_for(
            pilot,
            "the Event",
            lambda: any(
                e.reason == "InvalidSensor"
                for e in app.store.events_about(provider.name, "Device", namespace, device)
            ),
        )
        log = main.query_one(EventLog)
        await wait_for(pilot, "the Event in the log", lambda: log.lines_written > 0)

        # Requests (consumer cluster).
        request_key = row_key((consumer.name, "default", request["metadata"]["name"]))
        await wait_for(pilot, "the request", lambda: request_key in main.request_table.rows_by_key)
        assert main.request_table.cell_texts(request_key)["phase"] == "Searching"

        # Typing a filter narrows the table, with the same words as `flavors list`.
        await pilot.press("slash", *f"node={deployment.node} type=humidity latency<=16", "enter")
        await wait_for(pilot, "the filter", lambda: len(mine()) == 1)
        assert mine() == [flavor_key(provider.name, humid)]
        assert flavors.shown_keys() == mine()  # nothing of other tests passes node=...

        # A Flavor created now appears by itself (no key pressed), filtered like the rest.
        fresh = deployment.flavor(
            "tile2", sensor("humidity", "humidity", "%RH", "STMicroelectronics", "HTS221", "12")
        )
        deployment.flavor("bme2", sensor("humidity", "humidity", "%RH", "Bosch", "BME280", "30"))
        await wait_for(pilot, "the new flavor", lambda: len(mine()) == 2)
        assert flavor_key(provider.name, fresh) in mine()

        # A status update of the route moves its cells in place.
        deployment.provider.delete_namespaced_custom_object(
            FLAVOR.group, FLAVOR.version, FLUIDOS, FLAVOR.plural, fresh["metadata"]["name"]
        )
        await wait_for(pilot, "the deleted flavor to go", lambda: len(mine()) == 1)


async def test_actions_create_a_request_and_remove_a_route_target(
    tui_clusters: dict[str, ClusterConfig], deployment: Deployment
) -> None:
    provider, consumer = tui_clusters["provider"], tui_clusters["consumer"]
    humid = deployment.flavor(
        "tile", sensor("humidity", "humidity", "%RH", "STMicroelectronics", "HTS221", "15")
    )
    route = deployment.route(humid)
    app = app_for(provider, consumer)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        key = flavor_key(provider.name, humid)
        await pilot.press("slash", *f"node={deployment.node}", "enter")
        await wait_for(pilot, "the flavor", lambda: main.flavor_table.shown_keys() == [key])

        # Request a sensor like it: the dialog asks for the endpoint; Create makes the request.
        await pilot.press("n")
        await wait_for(
            pilot,
            "the dialog, ready for the endpoint",
            lambda: (
                isinstance(app.screen, RequestSensorScreen)
                and getattr(app.screen.focused, "id", None) == "endpoint"
            ),
        )
        await pilot.press(*"http://sink.consumer-1:8186/telegraf", "tab", *"every 10", "enter")
        ref = f"{provider.name}/{FLUIDOS}/{humid['metadata']['name']}"
        await wait_for(pilot, "the SensorRequest", lambda: len(deployment.requests_for(ref)) == 1)
        created = deployment.requests_for(ref)[0]
        assert created["spec"]["count"] == 1
        assert created["spec"]["endpoint"]["url"] == "http://sink.consumer-1:8186/telegraf"
        assert created["spec"]["endpoint"]["shape"] == {"every": 10}
        pinned = from_request_filter(created["spec"]["filter"], "SensorRequest")
        assert pinned.node == (deployment.node,)
        assert pinned.sensor_type == ("humidity",) and pinned.sensor_model == ("HTS221",)
        assert pinned.sensor_manufacturer == ("STMicroelectronics",)

        # It shows up in the requests view; delete it from there (confirmed).
        request_key = row_key((consumer.name, "default", created["metadata"]["name"]))
        await pilot.press("3")
        await wait_for(
            pilot, "the new request", lambda: request_key in main.request_table.rows_by_key
        )
        table = main.request_table
        table.move_cursor(row=table.get_row_index(request_key))
        await pilot.press("x")
        await wait_for(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, "the deletion", lambda: deployment.requests_for(ref) == [])
        await wait_for(pilot, "the row to go", lambda: request_key not in table.rows_by_key)

        # Remove the failing target of the route, confirmed; the other target stays.
        route_key = (provider.name, ROUTE_NAMESPACE, route["metadata"]["name"])
        broken = row_key(route_key, "broken")
        await pilot.press("2")
        routes = main.route_table
        await wait_for(pilot, "the route", lambda: broken in routes.rows_by_key)
        routes.move_cursor(row=routes.get_row_index(broken))
        await pilot.press("x")
        await wait_for(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # no: nothing changes
        await pilot.pause(0.3)
        assert deployment.route_target_ids() == ["good", "broken"]
        await pilot.press("x")
        await wait_for(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(
            pilot, "the target removal", lambda: deployment.route_target_ids() == ["good"]
        )
        await wait_for(pilot, "the row to go", lambda: broken not in routes.rows_by_key)
        assert row_key(route_key, "good") in routes.rows_by_key


def test_tui_account_cannot_write_flavors_or_devices(
    tui_clusters: dict[str, ClusterConfig], deployment: Deployment
) -> None:
    api = tui_clusters["provider"].api_client()
    try:
        objects = client.CustomObjectsApi(api)
        for resource, namespace in ((FLAVOR, FLUIDOS), (DEVICE, "default")):
            with pytest.raises(ApiException) as denied:
                objects.create_namespaced_custom_object(
                    resource.group,
                    resource.version,
                    namespace,
                    resource.plural,
                    {
                        "apiVersion": resource.api_version,
                        "kind": resource.kind,
                        "metadata": {"name": f"nope-{deployment.tag}"},
                        "spec": {},
                    },
                )
            assert denied.value.status == 403
    finally:
        api.close()


def _pointing_at(config: ClusterConfig, server: str, path: Path) -> ClusterConfig:
    loaded = yaml.safe_load(Path(config.kubeconfig or "").read_text())
    loaded = copy.deepcopy(loaded)
    loaded["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(loaded))
    return ClusterConfig(f"{config.name}-via-{urlsplit(server).port}", path, role=config.role)


async def test_an_unreachable_cluster_is_shown_while_the_other_works(
    tui_clusters: dict[str, ClusterConfig], deployment: Deployment, tmp_path: Path
) -> None:
    provider = tui_clusters["provider"]
    closed = _pointing_at(
        tui_clusters["consumer"], f"https://127.0.0.1:{free_port()}", tmp_path / "closed.kubeconfig"
    )
    app = app_for(provider, closed)
    async with app.run_test(size=SIZE) as pilot:
        states = lambda: {s.name: s for s in app.store.clusters()}  # noqa: E731
        await wait_for(
            pilot,
            "the closed port to count as unreachable",
            lambda: states()[closed.name].phase is Phase.UNREACHABLE,
        )
        assert states()[closed.name].message == "connection refused"
        await wait_for(
            pilot,
            "the provider to be connected",
            lambda: states()[provider.name].phase is Phase.CONNECTED,
        )
        bar = app.main.query_one("#clusters")
        shown = f"{closed.name} (consumer) unreachable: connection refused"
        await wait_for(pilot, "the bar to say so", lambda: shown in str(bar.render()))
        humid = deployment.flavor(
            "tile", sensor("humidity", "humidity", "%RH", "STMicroelectronics", "HTS221", "15")
        )
        key = flavor_key(provider.name, humid)
        await wait_for(
            pilot,
            "a flavor from the working cluster",
            lambda: key in app.main.flavor_table.rows_by_key,
        )


@pytest.fixture
def relay(consumer: ClusterAccess) -> Iterator[Relay]:
    server = urlsplit(consumer.server)
    relay = Relay((server.hostname or "127.0.0.1", server.port or 443))
    relay.start()
    yield relay
    relay.close()


async def test_a_cluster_that_goes_away_is_marked_and_reconnects_by_itself(
    tui_clusters: dict[str, ClusterConfig], deployment: Deployment, relay: Relay, tmp_path: Path
) -> None:
    provider = tui_clusters["provider"]
    relayed = _pointing_at(
        tui_clusters["consumer"], f"https://127.0.0.1:{relay.port}", tmp_path / "relay.kubeconfig"
    )
    app = app_for(provider, relayed, backoff=lambda: Backoff(0.2, 2.0))
    async with app.run_test(size=SIZE) as pilot:
        phase = lambda name: next(s.phase for s in app.store.clusters() if s.name == name)  # noqa: E731
        await wait_for(
            pilot,
            "both connected",
            lambda: (
                phase(relayed.name) is Phase.CONNECTED and phase(provider.name) is Phase.CONNECTED
            ),
        )
        relay.stop()
        await wait_for(
            pilot,
            "the cut cluster to be unreachable",
            lambda: phase(relayed.name) is Phase.UNREACHABLE,
        )
        assert phase(provider.name) is Phase.CONNECTED
        bar = app.main.query_one("#clusters")
        await wait_for(pilot, "the bar to show it", lambda: bar.has_class("-unreachable"))
        # Written while the TUI cannot see that cluster; it must show once it reconnects.
        request = deployment.request()
        relay.start()
        await wait_for(pilot, "the reconnection", lambda: phase(relayed.name) is Phase.CONNECTED)
        key = row_key((relayed.name, "default", request["metadata"]["name"]))
        await wait_for(
            pilot,
            "the request written meanwhile",
            lambda: key in app.main.request_table.rows_by_key,
        )
        await wait_for(pilot, "the bar to clear", lambda: not bar.has_class("-unreachable"))

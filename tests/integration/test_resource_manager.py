"""The resource manager against the real testbed: Devices and Nodes in, Sensor Flavors out."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import support
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors import api as fs_api
from fluidos_sensors.flavor import DEFAULT_FLAVOR_NAMESPACE, DEVICE_NAMESPACE_LABEL
from testbed import bootstrap, credentials, paths
from testbed.processes import ManagedProcess, ProcessSpec
from testbed.state import ClusterAccess

pytestmark = pytest.mark.integration

WAIT = 30.0


def sensor_entry(
    name: str, kind: str, unit: str, *, latency: Any = "15", node: str = "", rate: Any = "10"
) -> dict[str, Any]:
    """One sensor in the FLUIDOS edge format, numbers written as strings as FLUIDOS does."""
    return {
        "uid": f"uid-{name}",
        "name": name,
        "model": "STTS22H" if kind == "temperature" else "HTS221",
        "manufacturer": "STMicroelectronics",
        "market": "industrial",
        "type": {"sensorCategory": "Environmental", "sensorType": [kind]},
        "samplingRate": rate,
        "accuracy": ["0.5"],
        "consumption": "2",
        "latency": latency,
        "properties": {
            "unit": {
                "measurement": [unit],
                "consumption": "mW",
                "samplingRate": "Hz",
                "latency": "ms",
            }
        },
        "access": {"type": "MQTT", "source": "mapper", "resource": {"topic": "", "node": node}},
    }


def annotation(entries: Any) -> str:
    return base64.b64encode(json.dumps(entries).encode()).decode()


def device_body(
    name: str,
    node: str | None,
    entries: Any,
    *,
    raw: str | None = None,
    version: fs_api.Resource = fs_api.DEVICE,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"deviceModelRef": {"name": "stwin-box"}}
    if node and version is fs_api.DEVICE:
        spec["nodeName"] = node
    return {
        "apiVersion": version.api_version,
        "kind": "Device",
        "metadata": {
            "name": name,
            "annotations": {
                fs_api.SENSORS_ANNOTATION: raw if raw is not None else annotation(entries)
            },
        },
        "spec": spec,
    }


class Cluster:
    """Thin helpers over the provider's API for these tests."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create_device(self, body: dict[str, Any]) -> None:
        version = body["apiVersion"].split("/")[1]
        self.custom.create_namespaced_custom_object(
            fs_api.DEVICE.group, version, self.namespace, fs_api.DEVICE.plural, body
        )

    def patch_device(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            fs_api.DEVICE.group,
            fs_api.DEVICE.version,
            self.namespace,
            fs_api.DEVICE.plural,
            name,
            patch,
        )

    def delete_device(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            fs_api.DEVICE.group, fs_api.DEVICE.version, self.namespace, fs_api.DEVICE.plural, name
        )

    def flavors(self) -> list[dict[str, Any]]:
        return cast(
            dict[str, Any],
            self.custom.list_namespaced_custom_object(
                fs_api.FLAVOR.group,
                fs_api.FLAVOR.version,
                DEFAULT_FLAVOR_NAMESPACE,
                fs_api.FLAVOR.plural,
                label_selector=f"{DEVICE_NAMESPACE_LABEL}={self.namespace}",
            ),
        )["items"]

    def by_sensor(self) -> dict[str, dict[str, Any]]:
        return {
            f["spec"]["flavorType"]["typeData"]["characteristics"]["name"]: f
            for f in self.flavors()
        }

    def events(self, device: str) -> list[client.CoreV1Event]:
        return [
            e
            for e in self.core.list_namespaced_event(self.namespace).items
            if e.involved_object.name == device
        ]

    def add_node(self, name: str, *, edge: bool = True) -> None:
        labels = {fs_api.EDGE_WORKER_LABEL: "true"} if edge else {}
        # kubernetes takes a dict body too; its annotation names only the model
        self.core.create_node({"metadata": {"name": name, "labels": labels}})  # type: ignore[arg-type]
        self.set_ready(name, True)

    def set_ready(self, name: str, ready: bool) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.core.patch_node_status(
            name,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "False",
                            "reason": "Test",
                            "message": "test",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ]
                }
            },
        )


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    return support.eventually(check, what, timeout)


class Operator:
    """`fluidos-sensors resource-manager run` as a subprocess against the provider."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        argv = [sys.executable, "-m", "fluidos_sensors_cli", "resource-manager", "run"]
        argv += ["--kubeconfig", str(kubeconfig), "--node-id", "provider-1", "--ip", "127.0.0.1"]
        argv += ["--price-amount", "1", "--city", "Turin"]
        self.process = ManagedProcess(ProcessSpec("resource-manager", argv, log))

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop(20)

    def assert_alive(self) -> None:
        assert self.process.alive, f"operator exited:\n{self.log.read_text()[-3000:]}"


RBAC = paths.rbac_manifest("resource-manager")
ACCOUNT = "fluidos-sensors-resource-manager"


@pytest.fixture(scope="module")
def operator_kubeconfig(
    provider: ClusterAccess,
    provider_api: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The operator runs as its own ServiceAccount with the shipped least-privilege RBAC."""
    credentials.apply_manifest(provider_api, RBAC)
    return credentials.service_account_kubeconfig(
        provider.kubeconfig,
        DEFAULT_FLAVOR_NAMESPACE,
        ACCOUNT,
        tmp_path_factory.mktemp("rm") / "kubeconfig",
    )


@pytest.fixture(scope="module")
def operator(
    operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(operator_kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def cluster(provider_api: client.ApiClient, namespace: str) -> Cluster:
    return Cluster(provider_api, namespace)


EDGE = "provider-1-edge"


def test_devices_become_flavors_and_follow_changes(operator: Operator, cluster: Cluster) -> None:
    entries = [
        sensor_entry("temp", "temperature", "°C"),
        sensor_entry("hum", "humidity", "%RH", latency="12 ms"),
    ]
    cluster.create_device(device_body("stwin-01", EDGE, entries))
    flavors = eventually(lambda: len(cluster.flavors()) == 2 and cluster.by_sensor(), "two flavors")
    temp = flavors["temp"]
    chars = temp["spec"]["flavorType"]["typeData"]["characteristics"]
    assert temp["spec"]["availability"] is True
    assert temp["spec"]["flavorType"]["typeIdentifier"] == "Sensor"
    assert temp["spec"]["location"]["city"] == "Turin"
    assert chars["node"] == EDGE and chars["access"]["resource"]["node"] == EDGE
    assert chars["access"]["resource"]["topic"].startswith("fluidos-sensors/stwin-01/")
    assert float(chars["latency"]) == 15
    assert (
        float(flavors["hum"]["spec"]["flavorType"]["typeData"]["characteristics"]["latency"]) == 12
    )

    # Edit: drop humidity, change the temperature latency.
    cluster.patch_device(
        "stwin-01",
        {
            "metadata": {
                "annotations": {
                    fs_api.SENSORS_ANNOTATION: annotation(
                        [sensor_entry("temp", "temperature", "°C", latency="0.02 s")]
                    )
                }
            }
        },
    )
    eventually(lambda: set(cluster.by_sensor()) == {"temp"}, "humidity flavor removed")
    eventually(
        lambda: (
            float(
                cluster.by_sensor()["temp"]["spec"]["flavorType"]["typeData"]["characteristics"][
                    "latency"
                ]
            )
            == 20
        ),
        "latency updated to 20 ms",
    )
    assert cluster.by_sensor()["temp"]["metadata"]["name"] == temp["metadata"]["name"]

    eventually(
        lambda: any(e.reason == "FlavorsPublished" for e in cluster.events("stwin-01")),
        "a FlavorsPublished event",
    )
    cluster.delete_device("stwin-01")
    eventually(lambda: cluster.flavors() == [], "flavors of the deleted device gone")
    operator.assert_alive()


def test_v1alpha2_device_bound_through_the_annotation(operator: Operator, cluster: Cluster) -> None:
    body = device_body(
        "tile-01",
        None,
        [sensor_entry("hum", "humidity", "%RH", node=EDGE)],
        version=fs_api.DEVICE_V1ALPHA2,
    )
    cluster.create_device(body)
    flavors = eventually(cluster.by_sensor, "a flavor for the v1alpha2 device")
    assert flavors["hum"]["spec"]["flavorType"]["typeData"]["characteristics"]["node"] == EDGE


def test_node_state_drives_availability(operator: Operator, cluster: Cluster) -> None:
    node = f"edge-{cluster.namespace[-6:]}"
    cluster.add_node(node)
    cluster.create_device(device_body("board", node, [sensor_entry("temp", "temperature", "°C")]))

    def available() -> bool:
        return cluster.by_sensor()["temp"]["spec"]["availability"]

    eventually(lambda: cluster.flavors() and available(), "available flavor")
    cluster.core.patch_node(node, {"spec": {"unschedulable": True}})
    eventually(lambda: not available(), "cordoned node: unavailable")
    cluster.core.patch_node(node, {"spec": {"unschedulable": False}})
    eventually(available, "uncordoned node: available")
    cluster.set_ready(node, False)
    eventually(lambda: not available(), "NotReady node: unavailable")
    cluster.set_ready(node, True)
    eventually(available, "Ready again: available")
    cluster.core.patch_node(node, {"metadata": {"labels": {fs_api.EDGE_WORKER_LABEL: None}}})
    eventually(lambda: not available(), "unlabeled node: unavailable")
    cluster.core.patch_node(node, {"metadata": {"labels": {fs_api.EDGE_WORKER_LABEL: "true"}}})
    eventually(available, "relabeled node: available")
    cluster.core.delete_node(node)
    eventually(lambda: cluster.flavors() == [], "deleted node: flavors removed")
    operator.assert_alive()


def _warnings(cluster: Cluster, device: str) -> list[str]:
    return [e.message or "" for e in cluster.events(device) if e.type == "Warning"]


def test_bad_input_is_reported_and_costs_nothing_else(operator: Operator, cluster: Cluster) -> None:
    good = [sensor_entry("temp", "temperature", "°C")]
    cluster.create_device(device_body("bad-b64", EDGE, None, raw="%%%not-base64%%%"))
    cluster.create_device(device_body("bad-json", EDGE, None, raw=base64.b64encode(b"[{").decode()))
    cluster.create_device(device_body("not-array", EDGE, {"uid": "x"}))
    cluster.create_device(
        device_body(
            "mixed",
            EDGE,
            [
                sensor_entry("temp", "temperature", "°C"),
                sensor_entry("fast", "humidity", "%RH", latency="fast"),
                {"name": "incomplete"},
            ],
        )
    )
    cluster.create_device(device_body("lost", "no-such-node", good))
    cluster.create_device(device_body("fine", EDGE, good))

    eventually(
        lambda: (
            {f["metadata"]["annotations"]["sensors.fluidos.eu/device"] for f in cluster.flavors()}
            == {f"{cluster.namespace}/mixed", f"{cluster.namespace}/fine"}
        ),
        "flavors for the good sensors only",
    )
    assert {
        f["spec"]["flavorType"]["typeData"]["characteristics"]["name"] for f in cluster.flavors()
    } == {"temp"}

    latency = eventually(
        lambda: [m for m in _warnings(cluster, "mixed") if "latency" in m],
        "a warning naming the latency field",
    )
    assert "entry 1" in latency[0] and '"fast"' in latency[0], latency
    assert eventually(
        lambda: [m for m in _warnings(cluster, "mixed") if "entry 2" in m],
        "a warning for the incomplete entry",
    )
    assert "base64" in eventually(lambda: _warnings(cluster, "bad-b64"), "base64 warning")[0]
    assert "JSON" in eventually(lambda: _warnings(cluster, "bad-json"), "JSON warning")[0]
    assert "array" in eventually(lambda: _warnings(cluster, "not-array"), "array warning")[0]
    assert (
        "no-such-node" in eventually(lambda: _warnings(cluster, "lost"), "unknown node warning")[0]
    )

    # Reported once, not in a hot loop: a while later the count has not grown.
    count = len(cluster.events("bad-b64"))
    time.sleep(3)
    assert sum(e.count or 1 for e in cluster.events("bad-b64")) <= count + 1
    operator.assert_alive()


def test_restart_leaves_no_duplicates_and_no_orphans(operator: Operator, cluster: Cluster) -> None:
    entries = [sensor_entry("temp", "temperature", "°C"), sensor_entry("hum", "humidity", "%RH")]
    for name in ("keep", "edit", "gone"):
        cluster.create_device(device_body(name, EDGE, entries))
    eventually(lambda: len(cluster.flavors()) == 6, "six flavors")
    before = {f["metadata"]["name"] for f in cluster.flavors()}

    operator.stop()
    cluster.delete_device("gone")
    cluster.patch_device(
        "edit", {"metadata": {"annotations": {fs_api.SENSORS_ANNOTATION: annotation(entries[:1])}}}
    )
    operator.start()

    eventually(lambda: len(cluster.flavors()) == 3, "orphans and removed sensors gone")
    after = {f["metadata"]["name"] for f in cluster.flavors()}
    assert after < before  # same deterministic names, nothing new
    time.sleep(2)
    assert len(cluster.flavors()) == 3
    operator.assert_alive()


def test_flavors_list_cli_filters(
    operator: Operator, cluster: Cluster, provider: ClusterAccess
) -> None:
    entries = [
        sensor_entry("temp", "temperature", "°C", latency="20"),
        sensor_entry("hum", "humidity", "%RH", latency="12"),
    ]
    cluster.create_device(device_body("cli-board", EDGE, entries))
    eventually(lambda: len(cluster.flavors()) == 2, "two flavors")

    def run(*args: str) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fluidos_sensors_cli",
                "flavors",
                "list",
                "--kubeconfig",
                str(provider.kubeconfig),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    listed = json.loads(
        run(
            "--type",
            "HUMIDITY",
            "--max-latency",
            "16",
            "--manufacturer",
            "stmicroelectronics",
            "-o",
            "json",
        )
    )

    # The spelling `flavors list` had before issue 20.3 still works, the same.
    def names_with(latency_option: str) -> set[str]:
        found = json.loads(run("--type", "humidity", latency_option, "16", "-o", "json"))
        return {f["metadata"]["name"] for f in found}

    assert names_with("--latency-max") == names_with("--max-latency") != set()
    names = {
        f["spec"]["flavorType"]["typeData"]["characteristics"]["name"]
        for f in listed
        if f["metadata"]["labels"][DEVICE_NAMESPACE_LABEL] == cluster.namespace
    }
    assert names == {"hum"}
    # Bounded above too: the testbed's own boards declare 10, 15, 20 and 22 ms, and board 4
    # (22 ms) measures humidity.
    table = run("--query", "filter[latency][range][min]=19&filter[latency][range][max]=21")
    assert "temperature" in table and "humidity" not in table
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluidos_sensors_cli",
            "flavors",
            "list",
            "--kubeconfig",
            str(provider.kubeconfig),
            "--max-latency",
            "fast",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "latency" in bad.stderr


def test_flavors_validate_against_the_upstream_crd(operator: Operator, cluster: Cluster) -> None:
    """What the operator wrote reads back unchanged: nothing was pruned by the CRD schema."""
    cluster.create_device(device_body("prune", EDGE, [sensor_entry("t", "temperature", "°C")]))
    flavor = eventually(cluster.flavors, "a flavor")[0]
    chars = flavor["spec"]["flavorType"]["typeData"]["characteristics"]
    assert {
        "uid",
        "node",
        "name",
        "model",
        "manufacturer",
        "market",
        "type",
        "samplingRate",
        "accuracy",
        "consumption",
        "latency",
        "properties",
        "access",
    } <= set(chars)
    with pytest.raises(ApiException):
        cluster.custom.patch_namespaced_custom_object(
            fs_api.FLAVOR.group,
            fs_api.FLAVOR.version,
            DEFAULT_FLAVOR_NAMESPACE,
            fs_api.FLAVOR.plural,
            flavor["metadata"]["name"],
            {"spec": {"availability": "maybe"}},
        )


def test_operator_account_cannot_write_devices_or_nodes(
    operator_kubeconfig: Path, cluster: Cluster
) -> None:
    cluster.create_device(device_body("ro", EDGE, [sensor_entry("t", "temperature", "°C")]))
    with bootstrap.api_client(operator_kubeconfig) as api:
        custom = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as denied:
            custom.patch_namespaced_custom_object(
                fs_api.DEVICE.group,
                fs_api.DEVICE.version,
                cluster.namespace,
                fs_api.DEVICE.plural,
                "ro",
                {"metadata": {"labels": {"x": "y"}}},
            )
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).patch_node(EDGE, {"metadata": {"labels": {"x": "y"}}})
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied:  # Flavors only in the FLUIDOS namespace
            custom.create_namespaced_custom_object(
                fs_api.FLAVOR.group,
                fs_api.FLAVOR.version,
                cluster.namespace,
                fs_api.FLAVOR.plural,
                {
                    "apiVersion": fs_api.FLAVOR.api_version,
                    "kind": "Flavor",
                    "metadata": {"name": "x"},
                },
            )
        assert denied.value.status == 403


def test_device_without_annotation_uses_its_device_model(
    operator: Operator, cluster: Cluster
) -> None:
    model = {
        "apiVersion": fs_api.DEVICE_MODEL.api_version,
        "kind": "DeviceModel",
        "metadata": {"name": "env-probe"},
        "spec": {
            "protocol": "bluetooth",
            "properties": [
                {"name": "temperature", "type": "FLOAT", "unit": "°C", "accessMode": "ReadOnly"},
                {"name": "label", "type": "STRING", "accessMode": "ReadOnly"},
            ],
        },
    }
    cluster.custom.create_namespaced_custom_object(
        fs_api.DEVICE_MODEL.group,
        fs_api.DEVICE_MODEL.version,
        cluster.namespace,
        fs_api.DEVICE_MODEL.plural,
        model,
    )
    body = device_body("probe", EDGE, None)
    body["metadata"] = {"name": "probe", "labels": {"manufacturer": "Acme"}}
    body["spec"]["deviceModelRef"] = {"name": "env-probe"}
    cluster.create_device(body)
    flavors = eventually(cluster.by_sensor, "a flavor derived from the DeviceModel")
    chars = flavors["temperature"]["spec"]["flavorType"]["typeData"]["characteristics"]
    assert chars["manufacturer"] == "Acme" and chars["model"] == "env-probe"
    skipped = eventually(lambda: _warnings(cluster, "probe"), "a warning for the skipped property")
    assert any("label" in m and "STRING" in m for m in skipped), skipped

    # No annotation and no DeviceModel: nothing published, and the Device says why.
    orphan = device_body("no-model", EDGE, None)
    orphan["metadata"] = {"name": "no-model"}
    orphan["spec"]["deviceModelRef"] = {"name": "missing"}
    cluster.create_device(orphan)
    why = eventually(lambda: _warnings(cluster, "no-model"), "a warning for the missing model")
    assert "missing" in why[0]
    assert set(cluster.by_sensor()) == {"temperature"}


def test_flavors_follow_a_device_to_another_node(operator: Operator, cluster: Cluster) -> None:
    other = f"edge-b-{cluster.namespace[-6:]}"
    cluster.add_node(other)
    cluster.create_device(device_body("mover", EDGE, [sensor_entry("t", "temperature", "°C")]))
    first = eventually(cluster.flavors, "a flavor on the first node")[0]

    def node_of() -> str:
        flavors = cluster.flavors()
        return flavors[0]["spec"]["flavorType"]["typeData"]["characteristics"]["node"]

    assert node_of() == EDGE
    cluster.patch_device("mover", {"spec": {"nodeName": other}})
    eventually(lambda: node_of() == other, "the flavor on the new node")
    moved = cluster.flavors()
    assert len(moved) == 1 and moved[0]["metadata"]["name"] == first["metadata"]["name"]
    topic = moved[0]["spec"]["flavorType"]["typeData"]["characteristics"]["access"]["resource"]
    assert topic["node"] == other
    cluster.delete_device("mover")
    cluster.core.delete_node(other)  # leave the shared testbed's nodes as they were


# ---------------------------------------------------------------------------------------
# Hostile Devices (issue 11): each costs only itself, the operator keeps reconciling

# The API server's JSON decoder refuses nesting deeper than 10000 levels; this is how deep a
# Device's status (KubeEdge preserves unknown fields there) can nest and still be stored.
STORABLE_STATUS_DEPTH = 9_000
# Kubernetes caps all annotations of an object at 256 KiB (262144 bytes, key lengths count).
ANNOTATIONS_MAX_BYTES = 256 * 1024


def with_hostile_entry(field: str, raw_json: str) -> str:
    """A plain-JSON `sensors` annotation: a good sensor "ok", then "evil" with `field` written
    as `raw_json` verbatim (json.dumps cannot write 5001-digit numbers or 100k-deep nesting)."""
    evil = sensor_entry("evil", "humidity", "%RH")
    del evil[field]
    evil_json = json.dumps(evil)[:-1] + f', "{field}": {raw_json}}}'
    return f"[{json.dumps(sensor_entry('ok', 'temperature', '°C'))}, {evil_json}]"


def create_raw(
    api: client.ApiClient, resource: fs_api.Resource, namespace: str, body_json: str
) -> None:
    """POST an object as JSON text: the Python client cannot serialise 9000 levels."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    for auth in api.configuration.auth_settings().values():
        if auth.get("in") == "header" and auth.get("value"):
            headers[auth["key"]] = auth["value"]
    url = (
        f"{api.configuration.host}/apis/{resource.group}/{resource.version}"
        f"/namespaces/{namespace}/{resource.plural}"
    )
    answer = api.rest_client.pool_manager.request("POST", url, body=body_json, headers=headers)
    assert answer.status == 201, answer.data[:500]


def nested_json(depth: int) -> str:
    return '{"a":' * depth + "{}" + "}" * depth


def test_hostile_devices_cost_only_themselves(
    operator: Operator, cluster: Cluster, provider_api: client.ApiClient
) -> None:
    hostile = {
        # float(10**400) raised OverflowError; int("1" * 5001) ValueError; json.loads of
        # 100k levels RecursionError.
        "huge-latency": with_hostile_entry("latency", str(10**400)),
        "huge-accuracy": with_hostile_entry("accuracy", f"[{10**400}]"),
        "long-number": with_hostile_entry("latency", "1" * 5001),
        "deep-latency": with_hostile_entry("latency", "[" * 100_000 + "]" * 100_000),
    }
    for name, raw in hostile.items():
        cluster.create_device(device_body(name, EDGE, None, raw=raw))

    # A 1 MB sensor name: the API server itself refuses the annotation (over 256 KiB) ...
    megabyte_name = with_hostile_entry("name", json.dumps("n" * 1_000_000))
    with pytest.raises(ApiException) as refused:
        cluster.create_device(device_body("megabyte-name", EDGE, None, raw=megabyte_name))
    assert refused.value.status == 422 and "262144" in (refused.value.body or "")
    # ... so the longest name it stores is what must not reach a Flavor.
    longest = ANNOTATIONS_MAX_BYTES - len(fs_api.SENSORS_ANNOTATION) - 2_000
    long_name = with_hostile_entry("name", json.dumps("n" * longest))
    cluster.create_device(device_body("long-name", EDGE, None, raw=long_name))
    hostile["long-name"] = long_name

    # A Device whose status nests as deep as the API server allows, with a good annotation:
    # decoding it with Python's default recursion limit failed the whole Device watch.
    shallow = json.dumps(
        device_body("deep-status", EDGE, [sensor_entry("ok", "temperature", "°C")])
    )
    deep_status = f'{shallow[:-1]}, "status": {nested_json(STORABLE_STATUS_DEPTH)}}}'
    create_raw(provider_api, fs_api.DEVICE, cluster.namespace, deep_status)
    cluster.create_device(device_body("fine", EDGE, [sensor_entry("temp", "temperature", "°C")]))

    # Every good sensor is published, hostile and good Devices alike; no hostile one is.
    devices_with_flavors = {*hostile, "deep-status", "fine"}
    eventually(
        lambda: (
            {f["metadata"]["annotations"]["sensors.fluidos.eu/device"] for f in cluster.flavors()}
            == {f"{cluster.namespace}/{name}" for name in devices_with_flavors}
        ),
        "one flavor per Device, from its good sensor",
    )
    names = [
        f["spec"]["flavorType"]["typeData"]["characteristics"]["name"] for f in cluster.flavors()
    ]
    assert sorted(names) == sorted(["ok"] * (len(hostile) + 1) + ["temp"])

    # Each hostile entry is an InvalidSensor Warning naming the entry and the field.
    fields = {
        "huge-latency": '"latency" must be a number of ms',
        "huge-accuracy": '"accuracy[0]" must be a number',
        "long-number": '"latency" must be a number of ms',
        "deep-latency": '"latency" must be a number of ms',
        "long-name": f'"name" is {longest} characters long; at most 253',
    }
    for name, field in fields.items():

        def invalid(name: str = name) -> list[str]:
            return [
                e.message or ""
                for e in cluster.events(name)
                if e.type == "Warning" and e.reason == "InvalidSensor"
            ]

        warnings = eventually(invalid, f"an InvalidSensor warning for {name}")
        assert any("entry 1 (" in m and field in m for m in warnings), (name, warnings)
        assert all(len(m) <= 1000 for m in warnings), name
    operator.assert_alive()

    # Still reconciling: a Device created afterwards gets its Flavor.
    cluster.create_device(device_body("later", EDGE, [sensor_entry("late", "humidity", "%RH")]))
    eventually(lambda: "late" in cluster.by_sensor(), "a flavor for a Device created afterwards")
    operator.assert_alive()


def test_flavors_list_survives_hostile_flavors(
    operator: Operator, cluster: Cluster, provider: ClusterAccess, provider_api: client.ApiClient
) -> None:
    """Flavors FLUIDOS copied from other providers are input we do not control: one nested as
    deep as the API server stores, or with a megabyte of name, costs only itself."""
    cluster.create_device(device_body("listed", EDGE, [sensor_entry("temp", "temperature", "°C")]))
    eventually(cluster.flavors, "our flavor")
    suffix = cluster.namespace[-6:]
    deep = {
        "apiVersion": fs_api.FLAVOR.api_version,
        "kind": "Flavor",
        "metadata": {"name": f"deep-{suffix}"},
        "spec": {
            "availability": True,
            "flavorType": {"typeIdentifier": "Sensor", "typeData": {"characteristics": {}}},
            "owner": {"domain": "x", "ip": "1.2.3.4", "nodeID": "other"},
            "price": {"amount": "1", "currency": "EUR", "period": "hourly"},
            "providerID": "other",
        },
    }
    shallow = json.dumps(deep).replace(
        '"characteristics": {}', f'"characteristics": {nested_json(STORABLE_STATUS_DEPTH)}'
    )
    long_name = json.loads(json.dumps(deep))
    long_name["metadata"]["name"] = f"long-{suffix}"
    long_name["spec"]["flavorType"]["typeData"]["characteristics"] = {"name": "n" * 1_000_000}
    custom = cluster.custom
    args = (fs_api.FLAVOR.group, fs_api.FLAVOR.version, DEFAULT_FLAVOR_NAMESPACE)
    create_raw(provider_api, fs_api.FLAVOR, DEFAULT_FLAVOR_NAMESPACE, shallow)
    custom.create_namespaced_custom_object(*args, fs_api.FLAVOR.plural, long_name)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fluidos_sensors_cli",
                "flavors",
                "list",
                "--kubeconfig",
                str(provider.kubeconfig),
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        listed = json.loads(proc.stdout)
        assert any(
            f["metadata"]["labels"].get(DEVICE_NAMESPACE_LABEL) == cluster.namespace for f in listed
        )
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert any(f"deep-{suffix}" in w and "characteristics" in w for w in warnings), warnings
        assert any(f"long-{suffix}" in w and '"name" is 1000000' in w for w in warnings), warnings
        assert all(len(w) <= 1000 for w in warnings)
        operator.assert_alive()
    finally:
        for name in (f"deep-{suffix}", f"long-{suffix}"):
            custom.delete_namespaced_custom_object(*args, fs_api.FLAVOR.plural, name)

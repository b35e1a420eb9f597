"""The Helm chart (deploy/helm/fluidos-sensors) against real parts.

`helm lint`, then `helm template` of every role with default and non-default values, applied
with `kubectl apply --dry-run=server` to the testbed's real kube-apiservers (this project's,
KubeEdge's and FLUIDOS's CRDs installed): a schema, RBAC or admission mistake fails the test.
The namespace warns on Pod Security `restricted`, and exactly the parts that cannot meet it
(the real-board mapper: uid 0 and the host's D-Bus; the agent's hostPath queue) are the ones
the API server warns about. The chart's RBAC objects are those the testbed runs its parts
with, and the resource manager starts without a "Forbidden" in its log. helm comes from PATH
or is built from the Go module proxy (testbed.binaries.HELM), like every other binary.
"""

from __future__ import annotations

import base64
import getpass
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from support import mqtt_connect

from testbed import binaries, bootstrap, paths
from testbed.processes import port_open
from testbed.state import ClusterAccess, TestbedState

pytestmark = pytest.mark.integration

CHART = paths.CHART_DIR
CHART_APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
LOCAL_IMAGES = CHART.parent / "examples" / "local-images.yaml"
NAMESPACE = "fluidos"
IDENTITY = {"common": {"nodeIdentity": {"nodeId": "provider-x", "ip": "192.0.2.10"}}}
# Render against a cluster (lookup sees it); the testbed's parts created the RBAC objects, CRDs
# and namespaces the chart also renders, which Helm would otherwise refuse to adopt.
AGAINST = ("--dry-run=server", "--take-ownership", "--kubeconfig")
PSS_WARNING = re.compile(r'Warning: would violate PodSecurity "restricted:latest": (.*)')

# Role and values -> which objects may draw a Pod Security "restricted" warning.
CASES: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    "provider-default": ("provider", {"roles": {"provider": True}, **IDENTITY}, set()),
    "provider-edge-real-boards": (
        "provider",
        {"roles": {"provider": True, "edge": True}, **IDENTITY},
        {"DaemonSet/fluidos-sensors-mapper", "DaemonSet/fluidos-sensors-edge-agent"},
    ),
    "provider-edge-tuned": (
        "provider",
        {
            "roles": {"provider": True, "edge": True},
            **IDENTITY,
            "tag": "0.1.0-dev",
            "image": {"repository": "registry.example/fluidos-sensors"},
            "common": {
                "nodeIdentity": {"nodeId": "provider-x", "ip": "192.0.2.10", "domain": "x.eu"},
                "nodeSelector": {"node-role.fluidos.eu/resources": "true"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "extraArgs": ["--verbose"],
            },
            "networkPolicies": {"enabled": False},
            "crds": {"install": False},
            "routes": {"createNamespace": False},
            "provider": {
                "resourceManager": {
                    "config": {
                        "deviceNamespaces": ["default", "sensors"],
                        "price": {"amount": "2.5", "currency": "USD", "period": "daily"},
                        "location": {"city": "Turin", "country": "IT", "latitude": "45.07"},
                    }
                },
                "rearGateway": {
                    "config": {
                        "tls": {"existingSecret": "my-gateway-tls"},
                        "reservationTtl": "120",
                        "maxConsumersPerSensor": "4",
                        "consumers": {"consumer-1": "a-token-of-consumer-one-0123456789"},
                    },
                    "service": {"type": "ClusterIP"},
                },
                "routerManager": {"config": {"kubeedgeRules": False}},
            },
            "edge": {
                "mapper": {"config": {"simulate": 4, "allBoards": True}},
                "edgeAgent": {
                    "config": {
                        "allowHosts": ["telegraf.consumer.example"],
                        "storage": {"type": "persistentVolumeClaim", "claimName": "agent-queue"},
                    },
                    "pod": {"extraArgs": ["--log-level", "DEBUG"]},
                },
            },
        },
        set(),
    ),
    "provider-bare-cluster": (
        "provider",
        {"roles": {"provider": True}, **IDENTITY, "upstreamCRDs": {"install": True}},
        set(),
    ),
    "consumer-default": (
        "consumer",
        {"roles": {"consumer": True}, **IDENTITY},
        set(),
    ),
    "consumer-sink-providers": (
        "consumer",
        {
            "roles": {"consumer": True},
            **IDENTITY,
            "consumer": {
                "providers": [
                    {
                        "name": "provider-1",
                        "url": "https://192.0.2.10:30443",
                        "token": "a-token-of-consumer-one-0123456789",
                        "ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                    },
                    {
                        "name": "provider-2",
                        "url": "https://192.0.2.11:30443",
                        "tokenSecret": "my-token",
                        "caSecret": "my-ca",
                    },
                ],
                "sink": {"enabled": True, "influxdb": {"storage": {"size": "1Gi"}}},
            },
        },
        set(),
    ),
}


@pytest.fixture(scope="session")
def helm() -> Path:
    return binaries.resolve(binaries.HELM, log=print)


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return binaries.resolve(binaries.KUBECTL, log=print)


def _run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, check=False, **kwargs
    )


def _render(helm: Path, values: dict[str, Any], tmp: Path, *extra: str) -> str:
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = _run(
        [helm, "template", "fluidos-sensors", CHART, "-n", NAMESPACE, "-f", values_file, *extra]
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _docs(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def test_lint_every_role(helm: Path, tmp_path: Path) -> None:
    for role in ("provider", "edge", "consumer"):
        values = tmp_path / f"{role}.yaml"
        values.write_text(yaml.safe_dump({"roles": {role: True}, **IDENTITY}))
        proc = _run([helm, "lint", "--strict", CHART, "-n", NAMESPACE, "-f", values])
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_render_refuses_what_cannot_work(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "v.yaml"
    for bad, reason in (
        ({**IDENTITY}, "choose at least one role"),
        ({"roles": {"provider": True}}, "nodeId is required"),
        (
            {
                "roles": {"provider": True},
                **IDENTITY,
                "provider": {"routerManager": {"replicas": 2}},
            },
            "/provider/routerManager/replicas",  # kopf standalone: the schema says at most 1
        ),
        ({"role": {"provider": True}, **IDENTITY}, "'role' not allowed"),  # a typo
    ):
        values.write_text(yaml.safe_dump(bad))
        proc = _run([helm, "template", "x", CHART, "-n", NAMESPACE, "-f", values])
        assert proc.returncode != 0 and reason in proc.stderr, proc.stderr
    values.write_text(yaml.safe_dump({"roles": {"consumer": True}, **IDENTITY}))
    proc = _run([helm, "template", "x", CHART, "-n", "default", "-f", values])
    assert proc.returncode != 0 and "-n fluidos" in proc.stderr


def _container(docs: list[dict[str, Any]], kind: str, name: str, container: str) -> dict:
    workload = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    spec = workload["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == container)


def test_gateway_and_agent_probes_are_http(helm: Path, tmp_path: Path) -> None:
    """The gateway and the edge agent are probed on their unauthenticated /readyz and
    /healthz (tests/unit/test_gateway_http.py, tests/unit/test_agent_probes.py), on the
    ports they serve: HTTPS for the gateway, the agent's metrics port."""
    values = {
        "roles": {"provider": True, "edge": True},
        **IDENTITY,
        "edge": {"edgeAgent": {"config": {"metricsPort": 9333}}},
    }
    docs = _docs(_render(helm, values, tmp_path))
    for kind, name, container, port, scheme in (
        ("Deployment", "fluidos-sensors-rear-gateway", "rear-gateway", "https", "HTTPS"),
        ("DaemonSet", "fluidos-sensors-edge-agent", "edge-agent", "metrics", "HTTP"),
    ):
        spec = _container(docs, kind, name, container)
        assert port in [p["name"] for p in spec["ports"]], spec["ports"]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            assert "tcpSocket" not in spec[probe], (name, probe)
            get = spec[probe]["httpGet"]
            assert (get["path"], get["port"], get.get("scheme", "HTTP")) == (path, port, scheme)
    agent = _container(docs, "DaemonSet", "fluidos-sensors-edge-agent", "edge-agent")
    assert "0.0.0.0:9333" in agent["args"]


def test_local_images_example_points_every_third_party_image(helm: Path, tmp_path: Path) -> None:
    """deploy/helm/examples/local-images.yaml (what scripts/build-images.sh tags; the image
    test checks the tags against the images it builds) replaces every upstream image."""
    example = yaml.safe_load(LOCAL_IMAGES.read_text())
    values = {"roles": {"edge": True, "consumer": True}, **IDENTITY}
    values["consumer"] = {"sink": {"enabled": True}}
    rendered = _render(helm, values, tmp_path, "-f", str(LOCAL_IMAGES))
    images = set()
    for doc in _docs(rendered):
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            images.add(c["image"])
    mosquitto = example["edge"]["mosquitto"]["image"]
    sink = example["consumer"]["sink"]
    assert images == {
        f"{example['image']['repository']}:{CHART_APP_VERSION}",
        f"{mosquitto['repository']}:{mosquitto['tag']}",
        f"{sink['influxdb']['image']['repository']}:{sink['influxdb']['image']['tag']}",
        f"{sink['telegraf']['image']['repository']}:{sink['telegraf']['image']['tag']}",
    }
    assert all(i.startswith("fluidos-sensors") for i in images), images


@pytest.fixture
def warn_restricted(testbed: TestbedState, provider: ClusterAccess, consumer: ClusterAccess) -> Any:
    """Namespace `fluidos` of both clusters warns on Pod Security `restricted`."""
    label = "pod-security.kubernetes.io/warn"
    apis = []
    for cluster in (provider, consumer):
        api = bootstrap.api_client(cluster.kubeconfig)
        apis.append(api)
        core = client.CoreV1Api(api)
        core.patch_namespace(NAMESPACE, {"metadata": {"labels": {label: "restricted"}}})
    yield
    for api in apis:
        client.CoreV1Api(api).patch_namespace(NAMESPACE, {"metadata": {"labels": {label: None}}})
        api.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_role_is_accepted_by_a_real_api_server(
    case: str,
    helm: Path,
    kubectl: Path,
    provider: ClusterAccess,
    consumer: ClusterAccess,
    warn_restricted: Any,
    tmp_path: Path,
) -> None:
    role, values, may_warn = CASES[case]
    cluster = provider if role == "provider" else consumer
    docs = _docs(_render(helm, values, tmp_path))
    # Workloads one by one, so each Pod Security warning is known to be about that workload.
    workloads = [d for d in docs if "template" in d.get("spec", {})]
    rest = [d for d in docs if d not in workloads]
    warned = set()
    for batch in [rest, *([w] for w in workloads)]:
        manifest = tmp_path / "batch.yaml"
        manifest.write_text(yaml.safe_dump_all(batch))
        proc = _run(
            [
                kubectl,
                "--kubeconfig",
                cluster.kubeconfig,
                "apply",
                "--dry-run=server",
                "-f",
                manifest,
            ]
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("(server dry run)") == len(batch), proc.stdout
        reasons = PSS_WARNING.findall(proc.stderr)
        if batch is not rest and reasons:
            warned.add(f"{batch[0]['kind']}/{batch[0]['metadata']['name']}")
            # What may break "restricted" there: root (the mapper), host folders. Never
            # privilege, capabilities beyond CHOWN for the queue's folder, or no seccomp.
            for reason in reasons:
                assert not re.search(r"privileged|seccomp|allowPrivilegeEscalation", reason), reason
                assert "must set securityContext.capabilities.drop" not in reason, reason
                added = re.findall(r'must not include "([A-Z_]+)"', reason)
                assert set(added) <= {"CHOWN"}, reason
    assert warned == may_warn


def test_chart_rbac_is_what_the_testbed_runs_with(
    helm: Path, provider: ClusterAccess, consumer: ClusterAccess, tmp_path: Path
) -> None:
    """Every RBAC object the chart renders equals its file and the live object of the testbed
    (which applied the same files for its parts), rules and subjects alike."""
    rendered = _docs(
        _render(
            helm,
            {"roles": {"provider": True, "edge": True, "consumer": True}, **IDENTITY},
            tmp_path,
        )
    )
    rbac = [
        d for d in rendered if d["apiVersion"].startswith("rbac.") or d["kind"] == "ServiceAccount"
    ]
    from_files = [
        d
        for part in (
            "resource-manager",
            "gateway",
            "router-manager",
            "mapper",
            "edge-agent",
            "consumer",
        )
        for d in yaml.safe_load_all(paths.rbac_manifest(part).read_text())
        if d
    ]

    def key(d: dict[str, Any]) -> tuple[str, str, str]:
        return d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]

    # Helm orders what it renders by kind; the objects themselves are the files' own.
    assert sorted(rbac, key=key) == sorted(from_files, key=key)
    for doc in rbac:
        cluster = consumer if "consumer" in doc["metadata"]["name"] else provider
        with bootstrap.api_client(cluster.kubeconfig) as api:
            live = _read_live(api, doc)
        for field in ("rules", "subjects", "roleRef"):
            assert live.get(field) == doc.get(field), (doc["kind"], doc["metadata"]["name"], field)


def _read_live(api: client.ApiClient, doc: dict[str, Any]) -> dict[str, Any]:
    name, namespace = doc["metadata"]["name"], doc["metadata"].get("namespace")
    rbac = client.RbacAuthorizationV1Api(api)
    read = {
        "ServiceAccount": lambda: client.CoreV1Api(api).read_namespaced_service_account(
            name, namespace
        ),
        "ClusterRole": lambda: rbac.read_cluster_role(name),
        "ClusterRoleBinding": lambda: rbac.read_cluster_role_binding(name),
        "Role": lambda: rbac.read_namespaced_role(name, namespace),
        "RoleBinding": lambda: rbac.read_namespaced_role_binding(name, namespace),
    }[doc["kind"]]()
    return _clean(api.sanitize_for_serialization(read))


def _clean(obj: Any) -> Any:
    """The live object as the file writes it: no empty fields the server adds."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if v not in (None, [], {})}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def test_generated_secrets_stay_the_same_across_upgrades(
    helm: Path, kubectl: Path, provider: ClusterAccess, tmp_path: Path
) -> None:
    """The gateway's certificate and the MQTT passwords are generated once: rendered against a
    cluster that holds them (`--dry-run=server` enables `lookup`), the existing data comes back."""
    values = {"roles": {"provider": True, "edge": True}, **IDENTITY}
    first = {
        d["metadata"]["name"]: d
        for d in _docs(_render(helm, values, tmp_path))
        if d["kind"] == "Secret"
    }
    assert set(first) == {"fluidos-sensors-gateway-tls", "fluidos-sensors-mqtt"}
    manifest = tmp_path / "secrets.yaml"
    manifest.write_text(yaml.safe_dump_all(list(first.values())))
    kubeconfig: list[str | Path] = ["--kubeconfig", provider.kubeconfig]
    created = _run([kubectl, *kubeconfig, "create", "-f", manifest])
    assert created.returncode == 0, created.stderr
    try:
        again = {
            d["metadata"]["name"]: d
            for d in _docs(
                _render(
                    helm,
                    values,
                    tmp_path,
                    *AGAINST,
                    str(provider.kubeconfig),
                )
            )
            if d["kind"] == "Secret"
        }
        for name, secret in first.items():
            assert again[name]["data"] == secret["data"], name
        # And a fresh render (no cluster) makes new ones: what is kept comes from the cluster.
        fresh = {
            d["metadata"]["name"]: d
            for d in _docs(_render(helm, values, tmp_path))
            if d["kind"] == "Secret"
        }
        assert fresh["fluidos-sensors-mqtt"]["data"] != first["fluidos-sensors-mqtt"]["data"]
        tls = base64.b64decode(first["fluidos-sensors-gateway-tls"]["data"]["tls.crt"]).decode()
        assert tls.startswith("-----BEGIN CERTIFICATE-----")
    finally:
        _run([kubectl, *kubeconfig, "delete", "--ignore-not-found", "-f", manifest])


def test_upstream_crds_are_the_pinned_files(
    helm: Path, provider: ClusterAccess, tmp_path: Path
) -> None:
    """The opt-in upstream CRDs are byte for byte the files testbed/upstream.py pins; rendered
    against a cluster that has them (lookup), none is rendered: an installed one is never
    overwritten."""
    import hashlib

    from testbed import upstream

    folder = CHART / "files" / "upstream-crds"
    shipped = {p.relative_to(folder).as_posix() for p in folder.glob("*/*.yaml")}
    assert shipped == {f.mirror_path for f in upstream.CRDS}
    for pinned in upstream.CRDS:
        assert (
            hashlib.sha256((folder / pinned.mirror_path).read_bytes()).hexdigest() == pinned.sha256
        )
    values = {"roles": {"provider": True}, **IDENTITY, "upstreamCRDs": {"install": True}}
    offline = _docs(_render(helm, values, tmp_path))
    against = _docs(_render(helm, values, tmp_path, *AGAINST, str(provider.kubeconfig)))

    def names(docs: list[dict[str, Any]]) -> set[str]:
        return {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}

    upstream_names = {
        yaml.safe_load((folder / f.mirror_path).read_text())["metadata"]["name"]
        for f in upstream.CRDS
    }
    assert upstream_names <= names(offline)
    assert not upstream_names & names(against)


@pytest.mark.parametrize("part", ["resource-manager", "router-manager"])
def test_operators_start_without_forbidden(
    testbed: TestbedState, provider: ClusterAccess, part: str
) -> None:
    """kopf's start (cluster-wide: CRD and Namespace scanning) is allowed by the shipped RBAC."""
    log = testbed.directory / provider.name / "services" / part / f"{part}.log"
    text = log.read_text()
    assert "Forbidden" not in text and "forbidden" not in text, text[-3000:]


def _broker_files(helm: Path, tmp: Path, tls_port: int, plain_port: int) -> tuple[Path, dict]:
    """The chart's broker config, ACL, users and certificate as files for a local mosquitto:
    what the edge pod mounts, with the pod's paths and ports moved to the test's folder."""
    values = {
        "roles": {"edge": True},
        **IDENTITY,
        "edge": {"mosquitto": {"config": {"tlsPort": tls_port, "loopbackPort": plain_port}}},
    }
    docs = _docs(_render(helm, values, tmp))
    secret = next(d for d in docs if d["metadata"]["name"] == "fluidos-sensors-mqtt")
    conf = next(d for d in docs if d["metadata"]["name"] == "fluidos-sensors-mosquitto")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp / name).write_text(data[name])
    (tmp / "acl").write_text(conf["data"]["acl"])
    passwd = tmp / "passwd"
    passwd.write_text(data["passwords"])
    passwd.chmod(0o600)
    hashed = _run(["mosquitto_passwd", "-U", passwd])
    assert hashed.returncode == 0, hashed.stderr
    text = conf["data"]["mosquitto.conf"]
    for pod_path, local in (
        ("/run/mosquitto/passwd", passwd),
        ("/etc/mosquitto/acl/acl", tmp / "acl"),
        ("/etc/mosquitto/tls/tls.crt", tmp / "tls.crt"),
        ("/etc/mosquitto/tls/tls.key", tmp / "tls.key"),
    ):
        text = text.replace(pod_path, str(local))
    config = tmp / "mosquitto.conf"
    # Started as root, mosquitto would switch to user `mosquitto`, who cannot read the files.
    config.write_text(f"user {getpass.getuser()}\n{text}")
    return config, data


def test_chart_broker_separates_mapper_and_agent(helm: Path, tmp_path: Path) -> None:
    """The chart's broker config in the real mosquitto: the mapper publishes over TLS checked
    against the chart's CA and cannot read; the agent reads on loopback and cannot publish;
    no anonymous client gets in."""
    import json
    import threading

    import paho.mqtt.client as mqtt

    from testbed.processes import ManagedProcess, ProcessSpec, free_port

    mosquitto = binaries.resolve(binaries.MOSQUITTO, log=print)
    tls_port, plain_port = free_port(), free_port()
    config, data = _broker_files(helm, tmp_path, tls_port, plain_port)
    mapper, agent = json.loads(data["mapper.json"]), json.loads(data["agent.json"])
    assert agent["host"] == "127.0.0.1" and "ca" in mapper
    broker = ManagedProcess(
        ProcessSpec(
            "mosquitto",
            [str(mosquitto), "-c", str(config)],
            tmp_path / "mosquitto.log",
            ready=lambda: port_open(tls_port) and port_open(plain_port),
            ready_timeout=10,
        )
    )
    broker.start()

    def connect(user: dict | None, port: int, tls: bool) -> tuple[mqtt.Client, int]:
        return mqtt_connect(user, port, tmp_path / "ca.crt" if tls else None)

    try:
        broker.wait_ready()
        topic = "edge-1/fluidos-sensors/dev/temperature"
        got: dict[str, list[bytes | bytearray]] = {"agent": [], "mapper": []}
        reader, rc = connect(agent, plain_port, tls=False)
        assert rc == 0
        reader.on_message = lambda _c, _u, m: got["agent"].append(m.payload)
        reader.subscribe("+/fluidos-sensors/#", qos=1)
        writer, rc = connect(mapper, tls_port, tls=True)
        assert rc == 0
        writer.on_message = lambda _c, _u, m: got["mapper"].append(m.payload)
        writer.subscribe("+/fluidos-sensors/#", qos=1)  # ACL: the mapper may not read
        time.sleep(0.5)
        writer.publish(topic, b"from-mapper", qos=1).wait_for_publish(5)
        reader.publish(topic, b"from-agent", qos=1).wait_for_publish(5)  # ACL: dropped
        deadline = time.monotonic() + 5
        while not got["agent"] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        assert got == {"agent": [b"from-mapper"], "mapper": []}
        for client in (reader, writer):
            client.loop_stop()
            client.disconnect()
        anonymous, rc = connect(None, plain_port, tls=False)
        anonymous.loop_stop()
        assert rc != 0  # not authorised
        # The TLS listener takes no clear-text client: no CONNACK comes back.
        clear = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        clear.username_pw_set(mapper["username"], mapper["password"])
        accepted = threading.Event()

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if rc.value == 0:
                accepted.set()

        clear.on_connect = on_connect
        clear.connect("127.0.0.1", tls_port)
        clear.loop_start()
        assert not accepted.wait(3)
        clear.loop_stop()
    finally:
        broker.stop()


def test_mapper_publishes_over_tls_with_the_charts_credentials(helm: Path, tmp_path: Path) -> None:
    """The real mapper (simulated board, no cluster) with the chart's mapper.json reaches the
    chart's broker config over TLS only, and its readings reach the agent's user. The
    broker's certificate here names 127.0.0.1 (the chart's names the in-cluster Service)."""
    import json
    import sys
    import threading

    import paho.mqtt.client as mqtt

    from testbed.pki import ClusterPKI
    from testbed.processes import ManagedProcess, ProcessSpec, free_port

    mosquitto = binaries.resolve(binaries.MOSQUITTO, log=print)
    tls_port, plain_port = free_port(), free_port()
    config, data = _broker_files(helm, tmp_path, tls_port, plain_port)
    pki = ClusterPKI(tmp_path / "pki", "mqtt-test")
    serving = pki.rear_gateway_serving()  # loopback names, signed by this test's CA
    (tmp_path / "tls.crt").write_text(serving.cert.read_text())
    (tmp_path / "tls.key").write_text(serving.key.read_text())
    mapper = json.loads(data["mapper.json"])
    mapper.update(host="127.0.0.1", ca=str(pki.ca.cert))
    credentials = tmp_path / "mapper.json"
    credentials.write_text(json.dumps(mapper))
    credentials.chmod(0o600)
    agent = json.loads(data["agent.json"])
    broker = ManagedProcess(
        ProcessSpec(
            "mosquitto",
            [str(mosquitto), "-c", str(config)],
            tmp_path / "mosquitto.log",
            ready=lambda: port_open(plain_port),
            ready_timeout=10,
        )
    )
    broker.start()
    received: list[str] = []
    got = threading.Event()
    reader = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    reader.username_pw_set(agent["username"], agent["password"])

    def on_message(_c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        received.append(m.topic)
        got.set()

    reader.on_message = on_message
    argv = [sys.executable, "-m", "fluidos_sensors_cli", "mapper", "run", "--node", "edge-1"]
    argv += ["--no-kubernetes", "--simulate", "1", "--mqtt-credentials", str(credentials)]
    mapper_proc = ManagedProcess(ProcessSpec("mapper", argv, tmp_path / "mapper.log"))
    try:
        broker.wait_ready()
        reader.connect("127.0.0.1", plain_port)
        reader.subscribe("+/fluidos-sensors/#", qos=1)
        reader.loop_start()
        mapper_proc.start()
        assert got.wait(60), (tmp_path / "mapper.log").read_text()[-3000:]
        assert all("/fluidos-sensors/" in topic for topic in received)
    finally:
        reader.loop_stop()
        mapper_proc.stop(20)
        broker.stop()

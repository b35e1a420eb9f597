"""The images: built offline by scripts/build-images.sh, every entrypoint starts.

Docker: the daemon of DOCKER_HOST (or the default socket) when one answers; otherwise the test
runs a dockerd of its own (Debian's `docker.io`, installed with apt-get as root when missing),
with its data-root in the user's cache so the Debian base and the image stay cached between
runs, and stops it at the end. The image is built with `docker build --network none`, then
runs read-only as its non-root user: `--help` of every part, and the resource manager starts
for real against the testbed's API server (host network), as its least-privilege
ServiceAccount, until kopf's liveness endpoint answers.

The third-party images (mosquitto, InfluxDB 1.8, Telegraf on the same base) run the way the
Helm chart runs them, from the chart's rendered objects: its commands, users, groups, config,
Secrets and mount paths, on a read-only root with no capability; the broker takes the chart's
users under its ACL, InfluxDB creates the chart's database and admin user at first start, and
a reading posted to Telegraf's listener lands in that InfluxDB.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support import mqtt_connect

from testbed import binaries, credentials, paths
from testbed.processes import die_with_parent, free_port, port_open
from testbed.state import ClusterAccess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _answers(env: dict[str, str]) -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    proc = subprocess.run(
        [docker, "info"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return proc.returncode == 0


@pytest.fixture(scope="module")
def docker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    if _answers(env):
        yield env
        return
    if not shutil.which("dockerd"):
        assert os.geteuid() == 0 and shutil.which("apt-get"), (
            "no Docker daemon answers and dockerd is not installed: install docker.io"
        )
        apt = {**env, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"],
        ):
            subprocess.run(argv, env=apt, check=True, capture_output=True, timeout=900)
    assert os.geteuid() == 0, "running a dockerd of the test's own needs root"
    run = tmp_path_factory.mktemp("dockerd")
    data = paths.cache_dir() / "docker"  # kept: the base image and build cache survive runs
    data.mkdir(parents=True, exist_ok=True)
    socket = run / "docker.sock"
    config = run / "daemon.json"
    config.write_text(
        json.dumps(
            {
                "data-root": str(data),
                "exec-root": str(run / "exec"),
                "pidfile": str(run / "dockerd.pid"),
                "hosts": [f"unix://{socket}"],
                # Only host-network containers: no bridge, no iptables rules on the machine.
                "bridge": "none",
                "iptables": False,
                "ip-masq": False,
            }
        )
    )
    log = (run / "dockerd.log").open("w")
    dockerd = subprocess.Popen(
        ["dockerd", "--config-file", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    env["DOCKER_HOST"] = f"unix://{socket}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(env):
            assert dockerd.poll() is None, (run / "dockerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "dockerd did not answer within 60 s"
            time.sleep(0.5)
        yield env
    finally:
        dockerd.send_signal(signal.SIGTERM)
        try:
            dockerd.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dockerd.kill()
            dockerd.wait()
        log.close()
        # dockerd leaves its network namespace mounted under its exec-root.
        for mount in sorted(_mounts_under(run), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def _mounts_under(folder: Path) -> list[str]:
    prefix = f"{folder}/"
    with open("/proc/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


@pytest.fixture(scope="module")
def images(docker_env: dict[str, str]) -> dict[str, str]:
    """Every image the script builds, by repository: fluidos-sensors and the third parties."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh")],
        env=docker_env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = {line.split(":")[0]: line for line in proc.stdout.split()}
    assert set(built) == {
        "fluidos-sensors",
        "fluidos-sensors-mosquitto",
        "fluidos-sensors-influxdb",
        "fluidos-sensors-telegraf",
    }, proc.stdout
    return built


@pytest.fixture(scope="module")
def image(images: dict[str, str]) -> str:
    return images["fluidos-sensors"]


def _docker(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_image_runs_as_non_root_without_compilers(docker_env: dict[str, str], image: str) -> None:
    user = _docker(docker_env, "image", "inspect", image, "--format", "{{.Config.User}}")
    assert user.stdout.strip() == "65532:65532"
    probe = _docker(
        docker_env,
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        image,
        "-c",
        "id -u; for c in gcc cc c++ make ld; do command -v $c; done; true",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["65532"], probe.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["resource-manager", "run", "--help"],
        ["resource-manager", "gateway", "--help"],
        ["router-manager", "run", "--help"],
        ["router-manager", "agent", "--help"],
        ["mapper", "run", "--help"],
        ["consumer", "run", "--help"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_every_entrypoint_starts(
    docker_env: dict[str, str], image: str, command: list[str]
) -> None:
    proc = _docker(docker_env, "run", "--rm", "--read-only", "--network", "none", image, *command)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Usage:" in proc.stdout


def _self_contained(kubeconfig: Path, target: Path) -> None:
    """The kubeconfig with its certificate files inlined, for a container to read."""
    config = yaml.safe_load(kubeconfig.read_text())
    for section, keys in (
        ("clusters", ("certificate-authority",)),
        ("users", ("client-certificate", "client-key")),
    ):
        for entry in config.get(section, []):
            body = entry.get(section[:-1], {})
            for key in keys:
                if key in body:
                    body[f"{key}-data"] = base64.b64encode(
                        Path(body.pop(key)).read_bytes()
                    ).decode()
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o644)  # the container's uid reads it; the folder is the test's own


def test_resource_manager_starts_in_the_container(
    docker_env: dict[str, str], image: str, provider: ClusterAccess, tmp_path: Path
) -> None:
    account = credentials.service_account_kubeconfig(
        provider.kubeconfig,
        "fluidos",
        "fluidos-sensors-resource-manager",
        tmp_path / "account.kubeconfig",
        hours=1,
    )
    kubeconfig = tmp_path / "kubeconfig"
    _self_contained(account, kubeconfig)
    port = free_port()
    name = f"fs-test-rm-{port}"
    started = _docker(
        docker_env,
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--network",
        "host",
        "--volume",
        f"{kubeconfig}:/etc/fluidos-sensors/kubeconfig:ro",
        image,
        "resource-manager",
        "run",
        "--kubeconfig",
        "/etc/fluidos-sensors/kubeconfig",
        "--node-id",
        "image-test",
        "--ip",
        "127.0.0.1",
        # Devices of a namespace nobody uses: it runs beside the testbed's resource manager.
        "--namespace",
        "image-test-none",
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            state = _docker(docker_env, "inspect", name, "--format", "{{.State.Running}}")
            logs = _docker(docker_env, "logs", name)
            assert state.stdout.strip() == "true", logs.stdout + logs.stderr
            assert time.monotonic() < deadline, logs.stdout + logs.stderr
            time.sleep(1)
        logs = _docker(docker_env, "logs", name)
        assert "Forbidden" not in logs.stdout + logs.stderr, logs.stderr[-3000:]
    finally:
        _docker(docker_env, "rm", "--force", name)


# ----------------------------------------------------------------- the third-party images

CHART = paths.CHART_DIR
LOCAL_IMAGES = CHART.parent / "examples" / "local-images.yaml"
IDENTITY = {"common": {"nodeIdentity": {"nodeId": "image-test", "ip": "192.0.2.10"}}}


@pytest.fixture(scope="module")
def helm() -> Path:
    return binaries.resolve(binaries.HELM, log=print)


def _render(helm: Path, values: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    argv = [str(helm), "template", "fluidos-sensors", str(CHART), "-n", "fluidos"]
    proc = subprocess.run(
        [*argv, "-f", str(values_file), "-f", str(LOCAL_IMAGES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


class Pod:
    """One rendered pod template, run container by container with `docker run` the way the
    kubelet would: the container's command/args, uid/gid and the pod's fsGroup, a read-only
    root, no capability, and its volumes as host files (ConfigMap and Secret keys with their
    modes, group-owned by fsGroup; emptyDirs as folders)."""

    def __init__(self, docs: list[dict[str, Any]], kind: str, name: str, folder: Path) -> None:
        self.docs = docs
        workload = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
        self.spec = workload["spec"]["template"]["spec"]
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        self.folder = folder
        self.fs_group = self.spec.get("securityContext", {}).get("fsGroup")

    def container(self, name: str) -> dict[str, Any]:
        every = self.spec.get("initContainers", []) + self.spec["containers"]
        return next(c for c in every if c["name"] == name)

    def env(self, name: str, **extra: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in self.container(name).get("env", []):
            if "value" in item:
                found[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                found[item["name"]] = self._data("Secret", ref["name"])[ref["key"]].decode()
        return {**found, **extra}

    def _data(self, kind: str, name: str) -> dict[str, bytes]:
        doc = next(d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name)
        if kind == "Secret":
            data = {k: base64.b64decode(v) for k, v in doc.get("data", {}).items()}
            return {**data, **{k: v.encode() for k, v in doc.get("stringData", {}).items()}}
        return {k: v.encode() for k, v in doc["data"].items()}

    def _volume(self, name: str) -> Path:
        """The host side of a volume: a folder holding its keys, or an empty folder."""
        host = self.folder / name
        if host.exists():
            return host
        host.mkdir()
        volume = self.volumes[name]
        group = self.fs_group if self.fs_group is not None else 0
        os.chown(host, 0, group)
        if "emptyDir" in volume:
            host.chmod(0o2770)  # what the kubelet makes of an emptyDir with fsGroup
            return host
        host.chmod(0o755)
        if "hostPath" in volume:
            return host  # the node's folder: empty at first
        if "configMap" in volume:
            data, mode = self._data("ConfigMap", volume["configMap"]["name"]), 0o644
            mode = volume["configMap"].get("defaultMode", mode)
        else:
            data, mode = self._data("Secret", volume["secret"]["secretName"]), 0o644
            mode = volume["secret"].get("defaultMode", mode)
        for key, value in data.items():
            (host / key).write_bytes(value)
            os.chown(host / key, 0, group)
            (host / key).chmod(mode)
        return host

    def docker_args(self, name: str, image: str, *, network: str) -> list[str]:
        container = self.container(name)
        context = container.get("securityContext", {})
        pod_context = self.spec.get("securityContext", {})
        uid = context.get("runAsUser", pod_context.get("runAsUser"))
        gid = context.get("runAsGroup", pod_context.get("runAsGroup"))
        assert context.get("readOnlyRootFilesystem") and uid not in (None, 0), container
        argv = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        argv += ["--network", network, "--user", f"{uid}:{gid}"]
        if self.fs_group is not None:
            argv += ["--group-add", str(self.fs_group)]
        for mount in container.get("volumeMounts", []):
            host = self._volume(mount["name"])
            if "subPath" in mount:
                host = host / mount["subPath"]
                if "hostPath" in self.volumes[mount["name"]] and not host.exists():
                    host.mkdir()  # the chart's state-owner init container hands it over
                    os.chown(host, uid, gid)
            ro = ":ro" if mount.get("readOnly") else ""
            argv += ["--volume", f"{host}:{mount['mountPath']}{ro}"]
        command = container.get("command")
        if command:
            argv += ["--entrypoint", command[0], image, *command[1:]]
        else:
            argv.append(image)
        return argv + [str(a) for a in container.get("args", [])]


def test_third_party_images_are_the_charts_example(images: dict[str, str]) -> None:
    """deploy/helm/examples/local-images.yaml names exactly the images the script built."""
    example = yaml.safe_load(LOCAL_IMAGES.read_text())
    sink = example["consumer"]["sink"]
    named = {
        example["image"]["repository"],
        "{repository}:{tag}".format(**example["edge"]["mosquitto"]["image"]),
        "{repository}:{tag}".format(**sink["influxdb"]["image"]),
        "{repository}:{tag}".format(**sink["telegraf"]["image"]),
    }
    assert named == {images["fluidos-sensors"].split(":")[0]} | {
        images[name] for name in images if name != "fluidos-sensors"
    }


@pytest.mark.parametrize(
    ("name", "user", "command", "says"),
    [
        ("fluidos-sensors-mosquitto", "1883:1883", ["mosquitto", "-h"], "mosquitto version 2."),
        ("fluidos-sensors-influxdb", "1000:1000", ["influxd", "version"], "InfluxDB v1.8.10"),
        ("fluidos-sensors-telegraf", "65532:65532", ["--version"], "Telegraf 1.37.2"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("fluidos") else "",
)
def test_third_party_image_is_non_root(
    docker_env: dict[str, str],
    images: dict[str, str],
    name: str,
    user: str,
    command: list[str],
    says: str,
) -> None:
    image = images[name]
    configured = _docker(docker_env, "image", "inspect", image, "--format", "{{.Config.User}}")
    assert configured.stdout.strip() == user
    proc = _docker(docker_env, "run", "--rm", "--read-only", "--network", "none", image, *command)
    assert says in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _wait_until(check: Callable[[], bool], what: str, alive: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + 180
    while not check():
        problem = alive()
        assert problem is None, f"{what}: {problem}"
        assert time.monotonic() < deadline, f"{what}: not within 180 s"
        time.sleep(0.5)


def _running(env: dict[str, str], name: str) -> Callable[[], str | None]:
    def alive() -> str | None:
        state = _docker(env, "inspect", name, "--format", "{{.State.Running}}")
        if state.stdout.strip() == "true":
            return None
        logs = _docker(env, "logs", name)
        return f"container exited: {(logs.stdout + logs.stderr)[-3000:]}"

    return alive


def test_mosquitto_image_runs_the_charts_broker(
    docker_env: dict[str, str], images: dict[str, str], helm: Path, tmp_path: Path
) -> None:
    """The edge pod's broker containers, as rendered: the init container hashes the users'
    passwords, the broker reads the chart's config and ACL. The agent's user connects and
    reads on loopback, the mapper's publishes over TLS (checked against the chart's CA), a
    wrong password and an anonymous client are refused."""
    import threading

    import paho.mqtt.client as mqtt

    tls_port, plain_port = free_port(), free_port()
    values = {
        "roles": {"edge": True},
        **IDENTITY,
        "edge": {"mosquitto": {"config": {"tlsPort": tls_port, "loopbackPort": plain_port}}},
    }
    docs = _render(helm, values, tmp_path)
    pod = Pod(docs, "DaemonSet", "fluidos-sensors-edge-agent", tmp_path)
    image = images["fluidos-sensors-mosquitto"]
    assert pod.container("mosquitto")["image"] == image
    init = _docker(
        docker_env,
        "run",
        "--rm",
        *pod.docker_args("mosquitto-passwords", image, network="none"),
    )
    assert init.returncode == 0, init.stdout + init.stderr
    secret = pod._data("Secret", "fluidos-sensors-mqtt")
    agent, mapper = json.loads(secret["agent.json"]), json.loads(secret["mapper.json"])
    (tmp_path / "ca.crt").write_bytes(secret["ca.crt"])
    name = f"fs-test-mosquitto-{tls_port}"
    started = _docker(
        docker_env,
        "run",
        "--detach",
        "--name",
        name,
        *pod.docker_args("mosquitto", image, network="host"),
    )
    assert started.returncode == 0, started.stderr

    def connect(user: dict | None, port: int, tls: bool) -> tuple[mqtt.Client, int]:
        return mqtt_connect(user, port, tmp_path / "ca.crt" if tls else None)

    try:
        _wait_until(
            lambda: port_open(tls_port) and port_open(plain_port),
            "mosquitto listens",
            _running(docker_env, name),
        )
        got: list[bytes | bytearray] = []
        subscribed = threading.Event()
        reader, rc = connect(agent, plain_port, tls=False)
        assert rc == 0
        reader.on_message = lambda _c, _u, m: got.append(m.payload)
        reader.on_subscribe = lambda *_a: subscribed.set()
        reader.subscribe("+/fluidos-sensors/#", qos=1)
        assert subscribed.wait(30)
        writer, rc = connect(mapper, tls_port, tls=True)
        assert rc == 0
        writer.publish("edge-1/fluidos-sensors/dev/t", b"reading", qos=1).wait_for_publish(30)
        _wait_until(lambda: bool(got), "the agent's user receives", _running(docker_env, name))
        assert got == [b"reading"]
        for client in (reader, writer):
            client.loop_stop()
            client.disconnect()
        for user in (None, {"username": agent["username"], "password": "wrong"}):
            refused, rc = connect(user, plain_port, tls=False)
            refused.loop_stop()
            assert rc != 0, user  # not authorised
    finally:
        _docker(docker_env, "rm", "--force", name)


def test_influxdb_and_telegraf_images_run_the_charts_sink(
    docker_env: dict[str, str], images: dict[str, str], helm: Path, tmp_path: Path
) -> None:
    """The consumer's sink as rendered: InfluxDB starts with the chart's variables (its
    database and admin user made at first start, authentication on) and answers /ping;
    Telegraf runs the chart's config (http_listener_v2 with basic auth -> InfluxDB): a reading
    posted to it with the chart's credentials is stored, one without is refused."""
    influx_port, rpc_port, telegraf_port = free_port(), free_port(), free_port()
    values = {
        "roles": {"consumer": True},
        **IDENTITY,
        "consumer": {"sink": {"enabled": True, "telegraf": {"port": telegraf_port}}},
    }
    docs = _render(helm, values, tmp_path)
    config = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fluidos-sensors-telegraf"
    )
    service_url = "http://fluidos-sensors-influxdb.fluidos.svc:8086"
    text = config["data"]["telegraf.conf"]
    assert service_url in text
    config["data"]["telegraf.conf"] = text.replace(service_url, f"http://127.0.0.1:{influx_port}")
    influx = Pod(docs, "Deployment", "fluidos-sensors-influxdb", tmp_path / "influxdb")
    telegraf = Pod(docs, "Deployment", "fluidos-sensors-telegraf", tmp_path / "telegraf")
    for pod in (influx, telegraf):
        pod.folder.mkdir()
    influx_env = influx.env(
        "influxdb",
        # The host network stands in for the pod's own: ports of the test's choosing.
        INFLUXDB_HTTP_BIND_ADDRESS=f"127.0.0.1:{influx_port}",
        INFLUXDB_BIND_ADDRESS=f"127.0.0.1:{rpc_port}",
    )
    admin = (influx_env["INFLUXDB_ADMIN_USER"], influx_env["INFLUXDB_ADMIN_PASSWORD"])
    database = influx_env["INFLUXDB_DB"]
    names = [f"fs-test-influxdb-{influx_port}", f"fs-test-telegraf-{telegraf_port}"]
    try:
        env_args = [a for k, v in influx_env.items() for a in ("--env", f"{k}={v}")]
        started = _docker(
            docker_env,
            "run",
            "--detach",
            "--name",
            names[0],
            *env_args,
            *influx.docker_args("influxdb", images["fluidos-sensors-influxdb"], network="host"),
        )
        assert started.returncode == 0, started.stderr
        base = f"http://127.0.0.1:{influx_port}"

        def pings() -> bool:
            try:
                return httpx.get(f"{base}/ping", timeout=2).status_code == 204
            except httpx.HTTPError:
                return False

        _wait_until(pings, "influxd answers /ping", _running(docker_env, names[0]))
        show = {"q": "SHOW DATABASES"}
        assert httpx.post(f"{base}/query", data=show, timeout=10).status_code == 401
        answer = httpx.post(f"{base}/query", data=show, auth=admin, timeout=10)
        assert answer.status_code == 200 and f'["{database}"]' in answer.text, answer.text

        telegraf_env = telegraf.env("telegraf")
        env_args = [a for k, v in telegraf_env.items() for a in ("--env", f"{k}={v}")]
        started = _docker(
            docker_env,
            "run",
            "--detach",
            "--name",
            names[1],
            *env_args,
            *telegraf.docker_args("telegraf", images["fluidos-sensors-telegraf"], network="host"),
        )
        assert started.returncode == 0, started.stderr
        listener = f"http://127.0.0.1:{telegraf_port}/telegraf"
        user = (telegraf_env["TELEGRAF_USERNAME"], telegraf_env["TELEGRAF_PASSWORD"])
        _wait_until(
            lambda: port_open(telegraf_port), "telegraf listens", _running(docker_env, names[1])
        )
        line = b"image_test,sensor=t value=21.5 1700000000000000000\n"
        assert httpx.post(listener, content=line, timeout=10).status_code == 401
        assert httpx.post(listener, content=line, auth=user, timeout=10).status_code == 204

        def stored() -> bool:
            query = {"q": "SELECT value FROM image_test", "db": database}
            text = httpx.post(f"{base}/query", data=query, auth=admin, timeout=10).text
            return "21.5" in text

        _wait_until(stored, "the reading reaches InfluxDB", _running(docker_env, names[1]))
    finally:
        for name in names:
            _docker(docker_env, "rm", "--force", name)

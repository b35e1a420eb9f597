"""The KIND testbed: the seed's topology as kind clusters, the parts installed with the chart.

`up` brings the testbed's engine and node image up (`docker.py`, `nodeimage.py`), builds the
project's images (`scripts/build-images.sh`), creates provider-N (control plane, a resources
worker, an edge worker) and consumer-N (one node) clusters, loads the images into their nodes
with `kind load`, and installs the chart in each: provider + edge roles with simulated boards,
consumer role with Telegraf + InfluxDB. Clusters reach each other only over kind's docker
network: a consumer buys through the provider's gateway NodePort, an edge agent delivers to the
consumer's Telegraf NodePort.

The state folder then reads like the local testbed's (`status.json` with `mode: kind`, each
cluster's kubeconfig, each consumer's `consumer-stack.json`), so the demo, `--check` and the
TUI work on either. The testbed lives as long as its engine: `status.json`'s pid is dockerd's.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed import binaries, credentials, paths
from testbed.kind import cluster as kind_cluster
from testbed.kind import nodeimage
from testbed.kind.docker import Engine
from testbed.kind.steps import Log, StepFailed, run, step
from testbed.services import ConsumerStack
from testbed.state import STATUS_FILE, ClusterAccess, TestbedState, write_status
from testbed.topology import CONSUMER, PROVIDER

MODE = "kind"
NAMESPACE = "fluidos"
RELEASE = "fluidos-sensors"
SIMULATED_BOARDS = 4  # as on the local testbed: STWIN.box, SensorTile, STWIN.box, SensorTile
GATEWAY_NODE_PORT = 30443
TELEGRAF_NODE_PORT = 30186
INFLUX_NODE_PORT = 30086
DEVICE_NAMESPACES = ["default", NAMESPACE]
LOCAL_IMAGES = paths.CHART_DIR.parent / "examples" / "local-images.yaml"
BUILD_IMAGES = Path(__file__).resolve().parents[2] / "scripts" / "build-images.sh"
# Images per role (repositories as local-images.yaml names them).
ROLE_IMAGES = {
    PROVIDER: ("image", "edge.mosquitto.image"),
    CONSUMER: ("image", "consumer.sink.influxdb.image", "consumer.sink.telegraf.image"),
}
INOTIFY_FILE = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_RESTORE = "inotify-restore.json"


@dataclass(frozen=True)
class KindCluster:
    name: str
    role: str

    @property
    def config(self) -> Path:
        return kind_cluster.CONFIG_DIR / f"{self.role}.yaml"


def clusters_for(providers: int, consumers: int) -> list[KindCluster]:
    if providers < 1 or consumers < 0:
        raise ValueError("need at least one provider; consumers >= 0")
    return [KindCluster(f"provider-{i}", PROVIDER) for i in range(1, providers + 1)] + [
        KindCluster(f"consumer-{i}", CONSUMER) for i in range(1, consumers + 1)
    ]


def kind_dir(state_dir: Path) -> Path:
    return state_dir / "kind"


# --- inotify -------------------------------------------------------------------------------


def _inotify_needed(clusters: list[KindCluster]) -> int:
    needed = 0
    for one in clusters:
        nodes = yaml.safe_load(one.config.read_text()).get("nodes") or []
        planes = sum(1 for n in nodes if n.get("role") == "control-plane")
        needed += len(nodes) * kind_cluster.INOTIFY_PER_NODE
        needed += planes * kind_cluster.INOTIFY_PER_CONTROL_PLANE
    return needed


def _inotify_record() -> Path:
    """Machine-wide (two KIND testbeds may run at once): the limit found before the first
    raised it; the last one down sets it back."""
    return paths.cache_dir() / "kind" / INOTIFY_RESTORE


def ensure_inotify(clusters: list[KindCluster], log: Log) -> None:
    """Every kind node's kubelet, systemd and containerd take inotify instances, counted per
    user across the machine (kind's known issue: "too many open files"). As root, raise
    `fs.inotify.max_user_instances` to what the topology needs, and remember the value it had
    so `down` puts it back; otherwise say what to run."""
    if not INOTIFY_FILE.exists():
        return
    limit = int(INOTIFY_FILE.read_text())
    wanted = kind_cluster.inotify_instances_in_use() + _inotify_needed(clusters) + 64
    if limit >= wanted:
        return
    if os.geteuid() != 0:
        raise StepFailed(
            f"the clusters need about {wanted} inotify instances and this user may hold "
            f"{limit}: run `sudo sysctl -w fs.inotify.max_user_instances={max(wanted, 512)}`"
        )
    target = max(wanted, 512)
    record = _inotify_record()
    if not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"max_user_instances": limit}))
    INOTIFY_FILE.write_text(str(target))
    log(
        f"[kind] raised fs.inotify.max_user_instances {limit} -> {target} for the kind nodes "
        f"(kind's known issue); `--down` sets it back"
    )


def restore_inotify(log: Log) -> None:
    """Set the limit back to what it was before a KIND testbed raised it, unless what still
    runs (another KIND testbed) needs more."""
    record = _inotify_record()
    try:
        previous = int(json.loads(record.read_text())["max_user_instances"])
    except (OSError, ValueError, KeyError):
        return
    in_use = kind_cluster.inotify_instances_in_use()
    if in_use + 16 > previous:  # another KIND testbed still runs
        log(f"[kind] fs.inotify.max_user_instances left raised: {in_use} instances in use")
        return
    try:
        INOTIFY_FILE.write_text(str(previous))
        log(f"[kind] fs.inotify.max_user_instances set back to {previous}")
    except OSError as exc:
        log(f"[kind] could not set fs.inotify.max_user_instances back to {previous}: {exc}")
    record.unlink(missing_ok=True)


# --- images ----------------------------------------------------------------------------------


def build_images(engine: Engine, log: Log) -> dict[str, str]:
    """The project's and the third-party images in the engine; `values path -> image ref`
    (`image` -> fluidos-sensors:<version>, `edge.mosquitto.image` -> ...)."""
    with step(log, "project images (scripts/build-images.sh)", f"run {BUILD_IMAGES} by hand"):
        proc = subprocess.run(
            ["bash", str(BUILD_IMAGES)],
            env=engine.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        for line in proc.stderr.splitlines():
            log(f"  {line}")
        if proc.returncode != 0:
            raise StepFailed(f"scripts/build-images.sh exited with {proc.returncode}")
    built = proc.stdout.split()
    local = yaml.safe_load(LOCAL_IMAGES.read_text())
    # The project's image by its inputs tag (the hash of what went in), not its version: a
    # changed image is a changed pod spec, so `helm upgrade` rolls the pods onto it.
    tags = run(
        ["docker", "image", "inspect", built[0], "--format", "{{json .RepoTags}}"],
        what=f"docker image inspect {built[0]}",
        env=engine.env(),
    )
    repository = built[0].rsplit(":", 1)[0]
    by_inputs = [t for t in json.loads(tags) if t.startswith(f"{repository}:inputs-")]
    refs: dict[str, str] = {"image": by_inputs[0] if by_inputs else built[0]}
    third_party = {path for paths_ in ROLE_IMAGES.values() for path in paths_} - {"image"}
    for path in sorted(third_party):
        node: Any = local
        for key in path.split("."):
            node = node[key]
        ref = f"{node['repository']}:{node['tag']}"
        if ref not in built:
            raise StepFailed(f"scripts/build-images.sh did not build {ref} ({LOCAL_IMAGES.name})")
        refs[path] = ref
    return refs


# --- one cluster ----------------------------------------------------------------------------


class Installed:
    """A cluster of this testbed: its kind cluster, helm and API access."""

    def __init__(self, engine: Engine, spec: KindCluster, state_dir: Path) -> None:
        self.spec = spec
        self.cluster = kind_cluster.Cluster(engine, spec.name, state_dir)
        self.helm = str(binaries.resolve(binaries.HELM))

    @property
    def name(self) -> str:
        return self.spec.name

    def address(self) -> str:
        """The control-plane node's address on kind's network: where NodePorts answer."""
        return self.cluster.node_ip(f"{self.name}-control-plane")

    def load(self, images: list[str], log: Log) -> None:
        """Into the nodes that run pods of ours: the workers, or a lone control plane."""
        nodes = self.cluster.nodes()
        workers = [n for n in nodes if not n.endswith("-control-plane")] or nodes
        with step(log, f"kind load {len(images)} images into {self.name}", "run it again"):
            run(
                [
                    self.cluster.kind,
                    "load",
                    "docker-image",
                    "--name",
                    self.name,
                    "--nodes",
                    ",".join(workers),
                    *images,
                ],
                what="kind load docker-image",
                env=self.cluster.env(),
                timeout=900,
            )

    def install(self, values: dict[str, Any], log: Log) -> None:
        values_file = self.cluster.kubeconfig.with_suffix(".values.yaml")
        credentials.write_secret_file(values_file, yaml.safe_dump(values, sort_keys=False))
        retry = (
            f"helm status {RELEASE} -n {NAMESPACE} --kubeconfig {self.cluster.kubeconfig}; "
            f"kubectl get pods -A"
        )
        with step(log, f"helm install {RELEASE} on {self.name} (waits for every pod)", retry):
            run(
                [
                    self.helm,
                    "upgrade",
                    "--install",
                    RELEASE,
                    str(paths.CHART_DIR),
                    "--namespace",
                    NAMESPACE,
                    "--create-namespace",
                    "--kubeconfig",
                    str(self.cluster.kubeconfig),
                    "-f",
                    str(LOCAL_IMAGES),
                    "-f",
                    str(values_file),
                    "--wait",
                    "--timeout",
                    "15m",
                ],
                what="helm upgrade --install",
                timeout=960,
            )

    def secret(self, name: str) -> dict[str, str]:
        data = json.loads(
            self.cluster.kubectl_run(
                "-n", NAMESPACE, "get", "secret", name, "-o", "json", what=f"get secret {name}"
            )
        )["data"]
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def access(self) -> dict[str, Any]:
        """This cluster as status.json's `clusters` entry."""
        listed = json.loads(self.cluster.kubectl_run("get", "nodes", "-o", "json", what="nodes"))
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        return {
            "role": self.spec.role,
            "server": config["clusters"][0]["cluster"]["server"],
            "kubeconfig": str(self.cluster.kubeconfig),
            "nodes": [
                {"name": n["metadata"]["name"], "labels": n["metadata"].get("labels", {})}
                for n in listed["items"]
            ],
        }


def _provider_values(
    provider: Installed, tag: str, consumers: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """`consumers`: name -> (token, address its readings may go to)."""
    return {
        "roles": {"provider": True, "edge": True},
        "tag": tag,
        "pullPolicy": "Never",
        "upstreamCRDs": {"install": True},
        "common": {"nodeIdentity": {"nodeId": provider.name, "ip": provider.address()}},
        "provider": {
            "resourceManager": {"config": {"deviceNamespaces": DEVICE_NAMESPACES}},
            "rearGateway": {
                "config": {
                    "consumers": {
                        name: {"token": token, "deliveryAllowed": [address]}
                        for name, (token, address) in consumers.items()
                    }
                },
                "service": {"nodePort": GATEWAY_NODE_PORT},
            },
        },
        "edge": {"mapper": {"config": {"simulate": SIMULATED_BOARDS}}},
    }


def _consumer_values(
    consumer: Installed, tag: str, providers: list[tuple[str, str, str, str]]
) -> dict[str, Any]:
    """`providers`: (name, gateway URL, token, CA certificate)."""
    return {
        "roles": {"consumer": True},
        "tag": tag,
        "pullPolicy": "Never",
        "common": {"nodeIdentity": {"nodeId": consumer.name, "ip": consumer.address()}},
        "consumer": {
            "providers": [
                {"name": name, "url": url, "token": token, "ca": ca}
                for name, url, token, ca in providers
            ],
            "sink": {
                "enabled": True,
                "influxdb": {"service": {"type": "NodePort", "nodePort": INFLUX_NODE_PORT}},
                "telegraf": {"service": {"type": "NodePort", "nodePort": TELEGRAF_NODE_PORT}},
            },
        },
    }


def _consumer_stack(consumer: Installed) -> ConsumerStack:
    """Where the demo and the tests find the consumer's Telegraf and InfluxDB, from the host."""
    address = consumer.address()
    values = yaml.safe_load((paths.CHART_DIR / "values.yaml").read_text())["consumer"]["sink"]
    influx = consumer.secret("fluidos-sensors-influxdb")
    telegraf = consumer.secret("fluidos-sensors-telegraf")
    return ConsumerStack(
        influx_url=f"http://{address}:{INFLUX_NODE_PORT}",
        influx_username=influx["username"],
        influx_password=influx["password"],
        telegraf_url=f"http://{address}:{TELEGRAF_NODE_PORT}{values['telegraf']['path']}",
        telegraf_username=telegraf["username"],
        telegraf_password=telegraf["password"],
        database=values["influxdb"]["database"],
    )


def _tokens(state_dir: Path, names: list[str]) -> dict[str, str]:
    """Each consumer's REAR token, generated once (re-running `up` keeps them)."""
    path = kind_dir(state_dir) / "tokens.json"
    try:
        tokens: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        tokens = {}
    for name in names:
        tokens.setdefault(name, secrets.token_urlsafe(24))
    credentials.write_secret_file(path, json.dumps(tokens))
    return tokens


# --- the testbed ----------------------------------------------------------------------------


def up(
    providers: int = 1,
    consumers: int = 2,
    state_dir: Path | None = None,
    *,
    log: Log = print,
    engine: Engine | None = None,
) -> TestbedState:
    """Bring the KIND testbed up (or complete it: every step finds what exists). `engine`:
    another than the state folder's default (a test's, on its own bridge and addresses)."""
    state_dir = state_dir or paths.state_dir()
    existing = TestbedState.read(state_dir)
    if existing and existing.running and existing.status.get("mode") != MODE:
        raise StepFailed(
            f"a local testbed runs from {state_dir}; stop it first (scripts/setup.sh --down)"
        )
    specs = clusters_for(providers, consumers)
    started = time.monotonic()
    kind_dir(state_dir).mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    engine = engine or Engine.default(state_dir)
    engine.start(log)
    _write(state_dir, engine, "starting", {})
    tag = nodeimage.build(engine, log)
    images = build_images(engine, log)
    ensure_inotify(specs, log)
    installed = [Installed(engine, spec, state_dir) for spec in specs]
    for one in installed:
        one.cluster.create(one.spec.config, tag, log)
        wanted = [images[path] for path in ROLE_IMAGES[one.spec.role]]
        one.load(wanted, log)
    version = images["image"].rsplit(":", 1)[1]
    buyers = [c for c in installed if c.spec.role == CONSUMER]
    sellers = [c for c in installed if c.spec.role == PROVIDER]
    tokens = _tokens(state_dir, [c.name for c in buyers])
    offers = []
    for provider in sellers:
        provider.install(
            _provider_values(
                provider, version, {c.name: (tokens[c.name], c.address()) for c in buyers}
            ),
            log,
        )
        ca = provider.secret("fluidos-sensors-gateway-tls")["ca.crt"]
        offers.append((provider.name, f"https://{provider.address()}:{GATEWAY_NODE_PORT}", ca))
    for consumer in buyers:
        consumer.install(
            _consumer_values(
                consumer, version, [(n, url, tokens[consumer.name], ca) for n, url, ca in offers]
            ),
            log,
        )
        _consumer_stack(consumer).save(state_dir / consumer.name)
    state = _write(state_dir, engine, "ready", {one.name: one.access() for one in installed})
    log(f"[kind] testbed ready in {time.monotonic() - started:.0f} s ({state_dir})")
    return state


def _write(state_dir: Path, engine: Engine, phase: str, clusters: dict[str, Any]) -> TestbedState:
    write_status(
        state_dir,
        {"mode": MODE, "phase": phase, "pid": engine.pid(), "clusters": clusters},
    )
    state = TestbedState.read(state_dir)
    assert state is not None
    return state


def is_kind(state_dir: Path) -> bool:
    state = TestbedState.read(state_dir)
    return bool(state and state.status.get("mode") == MODE)


def down(state_dir: Path | None = None, *, log: Log = print, engine: Engine | None = None) -> bool:
    """Delete every cluster, kind's network, stop the engine (images stay cached), set the
    inotify limit back, remove the state folder. Returns whether a KIND testbed was there."""
    state_dir = state_dir or paths.state_dir()
    engine = engine or Engine.default(state_dir)
    was = (state_dir / STATUS_FILE).exists() or engine.pid() is not None
    if engine.pid():
        probe = kind_cluster.Cluster(engine, "", state_dir)
        for name in probe.kind_clusters():
            kind_cluster.Cluster(engine, name, state_dir).delete(log)
        kind_cluster.remove_network(engine, log)
    engine.stop(log)
    restore_inotify(log)
    shutil.rmtree(state_dir, ignore_errors=True)
    return was


def _get_pods(access: ClusterAccess, *output: str) -> str:
    kubectl = str(binaries.resolve(binaries.KUBECTL))
    command: list[str | Path] = [
        kubectl,
        "--kubeconfig",
        access.kubeconfig,
        "get",
        "pods",
        "-A",
        *output,
    ]
    return run(command, what=f"pods of {access.name}")


def pods(state: TestbedState) -> list[tuple[str, str]]:
    """(cluster, `kubectl get pods -A`) for every cluster."""
    return [(access.name, _get_pods(access)) for access in state.clusters.values()]


def unhealthy_pods(state: TestbedState) -> list[str]:
    """Pods of the testbed's clusters that are neither Running and ready nor Succeeded."""
    bad = []
    for access in state.clusters.values():
        for pod in json.loads(_get_pods(access, "-o", "json"))["items"]:
            phase = pod["status"].get("phase")
            ready = all(c.get("ready") for c in pod["status"].get("containerStatuses", []))
            if phase == "Succeeded" or (phase == "Running" and ready):
                continue
            meta = pod["metadata"]
            bad.append(f"{access.name}: {meta['namespace']}/{meta['name']} {phase}")
    return bad

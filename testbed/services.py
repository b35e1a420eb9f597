"""Processes that run once per cluster: a provider's control-plane parts, a consumer's stack.

Like `edge.py`: each factory turns a `ClusterContext` into a `ProcessSpec`; `SERVICES` lists
them per cluster role, in start order. Ports are chosen once, at `up` (`allocate_ports`).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from influxdb_client import InfluxDBClient

from fluidos_sensors.api import DEVICE_NAMESPACES
from testbed import bootstrap, cloudevents_sink, credentials, paths
from testbed.pki import ClusterPKI
from testbed.processes import PortPool, ProcessSpec, port_open
from testbed.topology import CONSUMER, PROVIDER, ClusterSpec, Topology

_REPO = Path(__file__).resolve().parent.parent
RESOURCE_MANAGER_RBAC = paths.rbac_manifest("resource-manager")
ROUTER_MANAGER_RBAC = paths.rbac_manifest("router-manager")
GATEWAY_RBAC = paths.rbac_manifest("gateway")
CONSUMER_RBAC = paths.rbac_manifest("consumer")

GATEWAY_PORT = "rear-gateway"
INFLUX_HTTP_PORT = "influxdb-http"
INFLUX_RPC_PORT = "influxdb-rpc"
TELEGRAF_PORT = "telegraf-listener"
CLOUDEVENTS_PORT = "cloudevents-receiver"
# Named ports per cluster role; add a name when a cluster process needs one.
CLUSTER_PORTS: dict[str, list[str]] = {
    PROVIDER: [GATEWAY_PORT],
    CONSUMER: [INFLUX_HTTP_PORT, INFLUX_RPC_PORT, TELEGRAF_PORT, CLOUDEVENTS_PORT],
}
DATABASE = "telegraf"
TELEGRAF_PATH = "/telegraf"
CLOUDEVENTS_PATH = cloudevents_sink.PATH


@dataclass(frozen=True)
class ClusterContext:
    """Everything a cluster process factory needs to know about its cluster."""

    cluster: ClusterSpec
    directory: Path
    """The cluster's state folder: <state>/<cluster>."""
    binaries: dict[str, Path]
    ports: dict[str, int]

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def folder(self, what: str) -> Path:
        path = self.directory / "services" / what
        path.mkdir(parents=True, exist_ok=True)
        return path

    def service_account_kubeconfig(self, manifest: Path, account: str) -> Path:
        """A kubeconfig for `account` (namespace fluidos) after applying its RBAC manifest."""
        with bootstrap.api_client(self.kubeconfig) as api:
            credentials.apply_manifest(api, manifest)
        return credentials.service_account_kubeconfig(
            self.kubeconfig,
            bootstrap.FLUIDOS_NAMESPACE,
            account,
            self.directory / "accounts" / f"{account}.kubeconfig",
            hours=24 * 30,
        )

    def process_name(self, what: str) -> str:
        return f"{self.cluster.name}/{what}"


ServiceFactory = Callable[[ClusterContext], ProcessSpec]


def allocate_ports(topology: Topology, ports: PortPool) -> dict[str, dict[str, int]]:
    """Free loopback ports for every cluster's services, by cluster name, then port name."""
    return {
        cluster.name: {name: ports.take() for name in CLUSTER_PORTS[cluster.role]}
        for cluster in topology.clusters
    }


@dataclass(frozen=True)
class ConsumerStack:
    """Where a consumer cluster's Telegraf listens and its InfluxDB answers, with credentials.

    Kept in `<cluster>/services/consumer-stack.json` (0600) for the demo, tests and users.
    """

    influx_url: str
    influx_username: str
    influx_password: str = field(repr=False)
    telegraf_url: str
    telegraf_username: str
    telegraf_password: str = field(repr=False)
    database: str = DATABASE
    cloudevents_url: str = ""
    """The consumer's CloudEvents receiver (`testbed.cloudevents_sink`; same credentials as
    Telegraf's listener); "" where there is none (KIND clusters)."""

    @property
    def bucket(self) -> str:
        """The InfluxDB v2-compatibility bucket of the database (retention policy autogen)."""
        return f"{self.database}/autogen"

    @property
    def influx_token(self) -> str:
        """InfluxDB 1.8 takes "user:password" as the v2 API token."""
        return f"{self.influx_username}:{self.influx_password}"

    def delivery_hosts(self) -> list[str]:
        """The hosts readings may be delivered to (Telegraf's and InfluxDB's): the delivery
        policy a provider grants this consumer in the testbed."""
        urls = (self.telegraf_url, self.influx_url, self.cloudevents_url)
        return sorted({urlsplit(url).hostname or "" for url in urls if url})

    def seq_times(self, device: str, sensor: str, since: float | None = None) -> dict[int, float]:
        """seq -> time (the mapper's receive time, Unix seconds) of every point of one sensor
        in this InfluxDB, received since `since` (Unix seconds; a restarted mapper counts from
        0 again) or over the last day."""
        start = "-1d"
        if since is not None:
            start = dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        flux = (
            f'from(bucket: "{self.bucket}") |> range(start: {start})'
            f' |> filter(fn: (r) => r._field == "seq" and r.device == "{device}"'
            f' and r.sensor == "{sensor}")'
        )
        with InfluxDBClient(url=self.influx_url, token=self.influx_token, org="-") as influx:
            tables = influx.query_api().query(flux)
        return {
            int(record.get_value()): record.get_time().timestamp()
            for table in tables
            for record in table.records
        }

    @classmethod
    def path(cls, cluster_directory: Path) -> Path:
        return cluster_directory / "services" / "consumer-stack.json"

    @classmethod
    def load(cls, cluster_directory: Path) -> ConsumerStack:
        return cls(**json.loads(cls.path(cluster_directory).read_text()))

    def save(self, cluster_directory: Path) -> None:
        credentials.write_secret_file(self.path(cluster_directory), json.dumps(asdict(self)))


def consumer_stack(ctx: ClusterContext) -> ConsumerStack:
    """The cluster's stack, generated once (a restarted process keeps its credentials)."""
    try:
        return ConsumerStack.load(ctx.directory)
    except FileNotFoundError:
        pass
    stack = ConsumerStack(
        influx_url=f"http://127.0.0.1:{ctx.ports[INFLUX_HTTP_PORT]}",
        influx_username="admin",
        influx_password=secrets.token_urlsafe(18),
        telegraf_url=f"http://127.0.0.1:{ctx.ports[TELEGRAF_PORT]}{TELEGRAF_PATH}",
        telegraf_username="fluidos-sensors",
        telegraf_password=secrets.token_urlsafe(18),
        cloudevents_url=f"http://127.0.0.1:{ctx.ports[CLOUDEVENTS_PORT]}{CLOUDEVENTS_PATH}",
    )
    stack.save(ctx.directory)
    return stack


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fluidos_sensors_cli", *args]


def resource_manager(ctx: ClusterContext) -> ProcessSpec:
    """Nodes + Devices -> Sensor Flavors, as its least-privilege ServiceAccount."""
    folder = ctx.folder("resource-manager")
    ready = folder / "ready"
    ready.unlink(missing_ok=True)
    kubeconfig = ctx.service_account_kubeconfig(
        RESOURCE_MANAGER_RBAC, "fluidos-sensors-resource-manager"
    )
    return ProcessSpec(
        name=ctx.process_name("resource-manager"),
        argv=_python_cli(
            "resource-manager",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--node-id",
            ctx.cluster.name,
            "--ip",
            "127.0.0.1",
            "--price-amount",
            "1",
            "--price-currency",
            "EUR",
            "--price-period",
            "hourly",
            "--city",
            "Turin",
            "--country",
            "IT",
            # The namespaces KubeEdge's and FLUIDOS's Devices live in (the testbed's mappers
            # register theirs in the first); tests and users may run more resource managers
            # for other namespaces without the two fighting.
            *(arg for namespace in DEVICE_NAMESPACES for arg in ("--namespace", namespace)),
            "--ready-file",
            str(ready),
        ),
        log=folder / "resource-manager.log",
        ready=ready.exists,
        ready_timeout=60.0,
        cwd=_REPO,
    )


def router_manager(ctx: ClusterContext) -> ProcessSpec:
    """Routes -> KubeEdge Rules, observed latency -> Flavors, as its own ServiceAccount."""
    folder = ctx.folder("router-manager")
    ready = folder / "ready"
    ready.unlink(missing_ok=True)
    kubeconfig = ctx.service_account_kubeconfig(
        ROUTER_MANAGER_RBAC, "fluidos-sensors-router-manager"
    )
    return ProcessSpec(
        name=ctx.process_name("router-manager"),
        argv=_python_cli(
            "router-manager", "run", "--kubeconfig", str(kubeconfig), "--ready-file", str(ready)
        ),
        log=folder / "router-manager.log",
        ready=ready.exists,
        ready_timeout=60.0,
        cwd=_REPO,
    )


def gateway_url(ctx: ClusterContext) -> str:
    return f"https://127.0.0.1:{ctx.ports[GATEWAY_PORT]}"


def _gateway_up(url: str, ca: Path) -> bool:
    try:  # up: it answers, and refuses a request without a token
        return httpx.get(f"{url}/api/v2/flavors", verify=str(ca), timeout=2).status_code == 401
    except httpx.HTTPError:
        return False


def rear_gateway(ctx: ClusterContext) -> ProcessSpec:
    """The provider's REAR gateway over HTTPS (the cluster CA signs it), as its ServiceAccount."""
    folder = ctx.folder("rear-gateway")
    pki = ClusterPKI(ctx.directory / "pki", ctx.cluster.name)
    serving = pki.rear_gateway_serving()
    kubeconfig = ctx.service_account_kubeconfig(GATEWAY_RBAC, "fluidos-sensors-gateway")
    url = gateway_url(ctx)
    return ProcessSpec(
        name=ctx.process_name("rear-gateway"),
        argv=_python_cli(
            "resource-manager",
            "gateway",
            "--kubeconfig",
            str(kubeconfig),
            "--node-id",
            ctx.cluster.name,
            "--ip",
            "127.0.0.1",
            "--listen",
            f"127.0.0.1:{ctx.ports[GATEWAY_PORT]}",
            "--tls-cert",
            str(serving.cert),
            "--tls-key",
            str(serving.key),
        ),
        log=folder / "rear-gateway.log",
        ready=lambda: _gateway_up(url, pki.ca.cert),
        ready_timeout=60.0,
        cwd=_REPO,
        ports=[ctx.ports[GATEWAY_PORT]],
    )


def _influx_initialised(stack: ConsumerStack) -> bool:
    """Ready once InfluxDB answers; then (idempotently) its admin user and database exist."""
    try:
        if httpx.get(f"{stack.influx_url}/ping", timeout=2).status_code != 204:
            return False
        auth = (stack.influx_username, stack.influx_password)
        create_db = {"q": f"CREATE DATABASE {stack.database}"}
        answer = httpx.post(f"{stack.influx_url}/query", data=create_db, auth=auth, timeout=10)
        if "create admin user first" in answer.text:  # a fresh server: create its first user
            create_user = (
                f"CREATE USER {stack.influx_username} WITH PASSWORD "
                f"'{stack.influx_password}' WITH ALL PRIVILEGES"
            )
            httpx.post(f"{stack.influx_url}/query", data={"q": create_user}, timeout=10)
            answer = httpx.post(f"{stack.influx_url}/query", data=create_db, auth=auth, timeout=10)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and '"error"' not in answer.text


def influxdb(ctx: ClusterContext) -> ProcessSpec:
    """The consumer's InfluxDB 1.8: loopback, authentication on, Flux on (v2 query API)."""
    folder = ctx.folder("influxdb")
    stack = consumer_stack(ctx)
    config = folder / "influxdb.conf"
    config.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{ctx.ports[INFLUX_RPC_PORT]}"
[meta]
  dir = "{folder / "meta"}"
[data]
  dir = "{folder / "data"}"
  wal-dir = "{folder / "wal"}"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{ctx.ports[INFLUX_HTTP_PORT]}"
  auth-enabled = true
  flux-enabled = true
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"""
    )
    return ProcessSpec(
        name=ctx.process_name("influxdb"),
        argv=[str(ctx.binaries["influxd"]), "run", "-config", str(config)],
        log=folder / "influxdb.log",
        ready=lambda: _influx_initialised(stack),
        # Flux type-checks its standard library at start: tens of seconds on a busy machine.
        ready_timeout=180.0,
        ports=[ctx.ports[INFLUX_HTTP_PORT], ctx.ports[INFLUX_RPC_PORT]],
    )


def telegraf(ctx: ClusterContext) -> ProcessSpec:
    """The consumer's Telegraf: an authenticated HTTP listener (line protocol) -> InfluxDB."""
    folder = ctx.folder("telegraf")
    stack = consumer_stack(ctx)
    port = ctx.ports[TELEGRAF_PORT]
    config = folder / "telegraf.conf"
    credentials.write_secret_file(
        config,
        f"""[agent]
  interval = "10s"
  flush_interval = "1s"
  flush_jitter = "0s"
  metric_batch_size = 5000
  metric_buffer_limit = 200000
  omit_hostname = true
  quiet = true

[[inputs.http_listener_v2]]
  service_address = "127.0.0.1:{port}"
  paths = ["{TELEGRAF_PATH}"]
  methods = ["POST"]
  basic_username = "{stack.telegraf_username}"
  basic_password = "{stack.telegraf_password}"
  data_format = "influx"

[[outputs.influxdb]]
  urls = ["{stack.influx_url}"]
  database = "{stack.database}"
  skip_database_creation = true
  username = "{stack.influx_username}"
  password = "{stack.influx_password}"
  timeout = "10s"
""",
    )
    return ProcessSpec(
        name=ctx.process_name("telegraf"),
        argv=[str(ctx.binaries["telegraf"]), "--config", str(config)],
        log=folder / "telegraf.log",
        ready=lambda: port_open(port),
        ready_timeout=60.0,
        ports=[port],
    )


def cloudevents_receiver(ctx: ClusterContext) -> ProcessSpec:
    """The consumer's CloudEvents receiver -> its InfluxDB (Telegraf has no CloudEvents input)."""
    folder = ctx.folder("cloudevents")
    stack = consumer_stack(ctx)
    port = ctx.ports[CLOUDEVENTS_PORT]
    login, token = folder / "credentials.json", folder / "influx-token"
    credentials.write_secret_file(
        login,
        json.dumps({"username": stack.telegraf_username, "password": stack.telegraf_password}),
    )
    credentials.write_secret_file(token, stack.influx_token)
    return ProcessSpec(
        name=ctx.process_name("cloudevents"),
        argv=[
            sys.executable,
            "-m",
            "testbed.cloudevents_sink",
            "--listen",
            f"127.0.0.1:{port}",
            "--credentials",
            str(login),
            "--influx-url",
            stack.influx_url,
            "--influx-token-file",
            str(token),
            "--bucket",
            stack.bucket,
        ],
        log=folder / "cloudevents.log",
        ready=lambda: port_open(port),
        ready_timeout=60.0,
        ports=[port],
        cwd=_REPO,
    )


def consumer_operator(ctx: ClusterContext) -> ProcessSpec:
    """SensorRequests -> REAR purchases, as its ServiceAccount; the cluster's own InfluxDB
    tells it when a request's first reading arrived."""
    folder = ctx.folder("consumer")
    ready = folder / "ready"
    ready.unlink(missing_ok=True)
    stack = consumer_stack(ctx)
    token_file = folder / "influx-token"
    credentials.write_secret_file(token_file, stack.influx_token)
    kubeconfig = ctx.service_account_kubeconfig(CONSUMER_RBAC, "fluidos-sensors-consumer")
    return ProcessSpec(
        name=ctx.process_name("consumer"),
        argv=_python_cli(
            "consumer",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--node-id",
            ctx.cluster.name,
            "--ip",
            "127.0.0.1",
            "--influx-url",
            stack.influx_url,
            "--influx-token-file",
            str(token_file),
            "--influx-bucket",
            stack.bucket,
            "--ready-file",
            str(ready),
        ),
        log=folder / "consumer.log",
        ready=ready.exists,
        ready_timeout=60.0,
        cwd=_REPO,
    )


SERVICES: dict[str, list[ServiceFactory]] = {
    PROVIDER: [resource_manager, router_manager, rear_gateway],
    CONSUMER: [influxdb, telegraf, cloudevents_receiver, consumer_operator],
}
# Binaries those processes need, resolved by `testbed up` before anything starts.
SERVICE_BINARIES: list[str] = ["influxd", "telegraf"]


def processes_for(
    cluster: ClusterSpec, directory: Path, binaries: dict[str, Path], ports: dict[str, int]
) -> list[ProcessSpec]:
    """The cluster-level processes of `cluster`; `directory` is the cluster's state folder."""
    ctx = ClusterContext(cluster, directory, binaries, dict(ports))
    return [factory(ctx) for factory in SERVICES[cluster.role]]

"""The seed's two scenarios as real consumer requests, run by `scripts/setup.sh` on the testbed.

1. sharing: consumer 1 and consumer 2 both buy sensor subset S1 (the STWIN.box of board 1:
   its temperature and pressure; the edge reads each once), consumer 2 also buys S3 (that
   board's magnetometer);
2. filtering: "an STM32 humidity sensor with latency < 16 ms" (consumer 1, one sensor) and
   "< 25 ms" (consumer 2, every match, up to two): the simulated boards declare 10, 15, 20,
   22 ms and only the SensorTiles (boards 2 and 4) carry humidity (HTS221), so the first
   gets board 2's and the second boards 2's and 4's;
3. shaping: consumer 1 buys S3 as 1 s windows (mean, min, max per axis) while consumer 2 buys
   its raw readings: the edge still reads the magnetometer once, and computes the windows
   there;
4. sampling rate: consumer 2 buys the temperature of board 3 (the other STWIN.box, 20 ms) at
   20 Hz, where it runs 1 Hz: the gateway grants it, the router manager sets it as the
   Device's desired rate, the mapper writes it to the board, and the readings that reach
   consumer 2 come twenty times as often;
5. CloudEvents: consumer 1 buys board 3's pressure as CloudEvents (structured mode), received
   by its CloudEvents receiver (`testbed.cloudevents_sink`, on the SDK's parser), which
   stores them in its InfluxDB (local testbed only: the KIND consumers have no receiver).

Requests are plain `SensorRequest`s in each consumer cluster (namespace fluidos), resolved by
that cluster's consumer operator through the providers' REAR gateways; readings go to each
consumer's own Telegraf (basic auth from a Secret) and InfluxDB. Idempotent: re-running it finds
its requests. `python -m testbed.demo [--no-demo]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from influxdb_client import InfluxDBClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import FLUIDOS_NAMESPACE, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from fluidos_sensors.api import SENSOR_REQUEST as REQUEST
from fluidos_sensors.filters import FilterError
from testbed import binaries, bootstrap, manager, paths
from testbed.services import ConsumerStack
from testbed.state import ClusterAccess, TestbedState
from testbed.topology import CONSUMER, PROVIDER

DEMO_LABEL = "sensors.fluidos.eu/demo"
ENDPOINT_SECRET = "telegraf-delivery"
WAIT_SECONDS = 240.0
COUNT_WINDOW_SECONDS = 15


@dataclass(frozen=True)
class DemoRequest:
    consumer: int  # 1-based: which consumer cluster asks
    name: str
    scenario: str
    says: str
    filter: dict[str, Any]
    count: int = 1
    shape: dict[str, Any] | None = None  # window aggregates or downsampling at the edge
    rate: str | None = None  # the sampling rate to set on the sensor bought
    format: str = "influx"  # "cloudevents": to the consumer's CloudEvents receiver


REQUESTS = (
    DemoRequest(
        1, "s1-temperature", "sharing", "S1: board 1's temperature",
        {"sensorType": ["temperature"], "sensorModel": ["STTS22H"], "latency": {"max": "10ms"}},
    ),
    DemoRequest(
        1, "s1-pressure", "sharing", "S1: board 1's pressure",
        {"sensorType": ["pressure"], "sensorModel": ["ILPS22QS"], "latency": {"max": "10ms"}},
    ),
    DemoRequest(
        2, "s1-temperature", "sharing", "S1: board 1's temperature",
        {"sensorType": ["temperature"], "sensorModel": ["STTS22H"], "latency": {"max": "10ms"}},
    ),
    DemoRequest(
        2, "s1-pressure", "sharing", "S1: board 1's pressure",
        {"sensorType": ["pressure"], "sensorModel": ["ILPS22QS"], "latency": {"max": "10ms"}},
    ),
    DemoRequest(
        2, "s3-magnetometer", "sharing", "S3: board 1's magnetometer",
        {"sensorType": ["magnetic_field"], "sensorModel": ["IIS2MDC"], "latency": {"max": "10ms"}},
    ),
    DemoRequest(
        1, "s3-magnetometer-1s", "shaping", "S3 as 1 s windows: mean, min, max per axis",
        {"sensorType": ["magnetic_field"], "sensorModel": ["IIS2MDC"], "latency": {"max": "10ms"}},
        shape={"aggregate": ["mean", "min", "max"], "windowMs": 1000},
    ),
    DemoRequest(
        1, "humidity-under-16ms", "filtering", "an STM32 humidity sensor, latency < 16 ms",
        {
            "sensorType": ["humidity"],
            "sensorManufacturer": ["STMicroelectronics"],
            "latency": {"max": "15.9ms"},
        },
    ),
    DemoRequest(
        2, "humidity-under-25ms", "filtering", "STM32 humidity sensors, latency < 25 ms",
        {
            "sensorType": ["humidity"],
            "sensorManufacturer": ["STMicroelectronics"],
            "latency": {"max": "24.9ms"},
        },
        count=2,
    ),
    DemoRequest(
        2, "board-3-temperature-20hz", "rate", "board 3's temperature at 20 Hz (it runs 1 Hz)",
        {"sensorType": ["temperature"], "sensorModel": ["STTS22H"], "latency": {"min": "11ms"}},
        rate="20 Hz",
    ),
    DemoRequest(
        1, "board-3-pressure-cloudevents", "cloudevents", "board 3's pressure as CloudEvents",
        {"sensorType": ["pressure"], "sensorModel": ["ILPS22QS"], "latency": {"min": "11ms"}},
        format="cloudevents",
    ),
)  # fmt: skip


def say(message: str) -> None:
    print(message, flush=True)


def _consumers(state: TestbedState) -> list[ClusterAccess]:
    return sorted((c for c in state.clusters.values() if c.role == CONSUMER), key=lambda c: c.name)


def _delivery_secret(core: client.CoreV1Api, stack: ConsumerStack) -> None:
    body = {
        "metadata": {
            "name": ENDPOINT_SECRET,
            "namespace": FLUIDOS_NAMESPACE,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
        "stringData": {"username": stack.telegraf_username, "password": stack.telegraf_password},
    }
    # kubernetes takes a dict body too; its annotation names only the model
    try:
        core.create_namespaced_secret(FLUIDOS_NAMESPACE, body)  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(ENDPOINT_SECRET, FLUIDOS_NAMESPACE, body)  # type: ignore[arg-type]


def _served(request: DemoRequest, stack: ConsumerStack) -> bool:
    """Whether the consumer has where the request's format goes."""
    return request.format == "influx" or bool(stack.cloudevents_url)


def _demo(state: TestbedState) -> list[tuple[int, ClusterAccess, DemoRequest]]:
    """(consumer index, consumer, request) of every request this testbed can serve."""
    consumers = _consumers(state)
    found = []
    for request in REQUESTS:
        if request.consumer > len(consumers):
            continue
        consumer = consumers[request.consumer - 1]
        if _served(request, ConsumerStack.load(state.directory / consumer.name)):
            found.append((request.consumer, consumer, request))
    return found


def _request_body(request: DemoRequest, stack: ConsumerStack) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "url": stack.telegraf_url if request.format == "influx" else stack.cloudevents_url,
        "format": request.format,
        "auth": {"type": "basic", "secretName": ENDPOINT_SECRET},
    }
    if request.shape:
        endpoint["shape"] = request.shape
    return {
        "apiVersion": REQUEST.api_version,
        "kind": REQUEST.kind,
        "metadata": {
            "name": request.name,
            "namespace": FLUIDOS_NAMESPACE,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, DEMO_LABEL: request.scenario},
        },
        "spec": {
            "filter": request.filter,
            "count": request.count,
            "endpoint": endpoint,
        }
        | ({"rate": request.rate} if request.rate else {}),
    }


def _custom(api: client.ApiClient) -> tuple[client.CustomObjectsApi, tuple[str, str, str, str]]:
    return client.CustomObjectsApi(api), (
        REQUEST.group,
        REQUEST.version,
        FLUIDOS_NAMESPACE,
        REQUEST.plural,
    )


def ask(state: TestbedState) -> None:
    """Create the demo's requests (those missing) in each consumer cluster."""
    for _, consumer, request in _demo(state):
        stack = ConsumerStack.load(state.directory / consumer.name)
        with bootstrap.api_client(Path(consumer.kubeconfig)) as api:
            _delivery_secret(client.CoreV1Api(api), stack)
            custom, args = _custom(api)
            try:
                custom.create_namespaced_custom_object(*args, _request_body(request, stack))
                say(f"  {consumer.name} asks for {request.says} (SensorRequest {request.name})")
            except ApiException as exc:
                if exc.status != 409:
                    raise
                say(f"  {consumer.name} already asks for {request.says}")


def _status(consumer: ClusterAccess, name: str) -> dict[str, Any]:
    with bootstrap.api_client(Path(consumer.kubeconfig)) as api:
        custom, args = _custom(api)
        try:
            request = cast(dict[str, Any], custom.get_namespaced_custom_object(*args, name))
            return request.get("status") or {}
        except ApiException:
            return {}


def wait_fulfilled(state: TestbedState, timeout: float = WAIT_SECONDS) -> bool:
    """Until every demo request holds its contracts and saw its first reading."""
    pending = [(consumer, request) for _, consumer, request in _demo(state)]
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while pending and time.monotonic() < deadline:
        still = []
        for consumer, request in pending:
            status = _status(consumer, request.name)
            if status.get("phase") == "Fulfilled" and status.get("firstData"):
                say(
                    f"  {consumer.name}/{request.name}: fulfilled, first reading after "
                    f"{time.monotonic() - started:.0f} s"
                )
            else:
                still.append((consumer, request))
        pending = still
        if pending:
            time.sleep(2)
    for consumer, request in pending:
        status = _status(consumer, request.name)
        say(
            f"  {consumer.name}/{request.name}: {status.get('phase', 'not seen yet')}: "
            f"{status.get('message', '')}"
        )
    return not pending


def _recent_counts(stack: ConsumerStack, seconds: int) -> dict[tuple[str, str], int]:
    flux = (
        f'from(bucket: "{stack.bucket}") |> range(start: -{seconds}s)'
        ' |> filter(fn: (r) => r._field == "seq")'
        ' |> group(columns: ["device", "sensor"]) |> count()'
    )
    with InfluxDBClient(url=stack.influx_url, token=stack.influx_token, org="-") as influx:
        tables = influx.query_api().query(flux)
    return {
        (str(record.values.get("device")), str(record.values.get("sensor"))): int(
            record.get_value()
        )
        for table in tables
        for record in table.records
    }


def report(state: TestbedState) -> None:
    """Per consumer: what it bought, and how many readings reached its InfluxDB lately."""
    consumers = _consumers(state)
    for index, consumer in enumerate(consumers, start=1):
        stack = ConsumerStack.load(state.directory / consumer.name)
        say(f"\n{consumer.name} bought:")
        for request in (r for i, _, r in _demo(state) if i == index):
            status = _status(consumer, request.name)
            for contract in status.get("contracts") or []:
                say(
                    f"  {request.name:22} {contract.get('device', '?')}/"
                    f"{contract.get('sensor', '?')}  ({contract.get('provider')}, "
                    f"{contract.get('contractID')})"
                )
        counts = _recent_counts(stack, COUNT_WINDOW_SECONDS)
        say(f"  readings in its InfluxDB over the last {COUNT_WINDOW_SECONDS} s:")
        for (device, sensor), count in sorted(counts.items()):
            say(f"    {device}/{sensor}: {count}")
        if not counts:
            say("    none yet")


def check(state: TestbedState) -> bool:
    """Whether every demo request is still fulfilled and every sensor it bought reached its
    consumer's InfluxDB in the last seconds; what is not is said."""
    consumers = _consumers(state)
    healthy = True
    for index, consumer in enumerate(consumers, start=1):
        counts = _recent_counts(
            ConsumerStack.load(state.directory / consumer.name), COUNT_WINDOW_SECONDS
        )
        for request in (r for i, _, r in _demo(state) if i == index):
            status = _status(consumer, request.name)
            contracts = status.get("contracts") or []
            if status.get("phase") != "Fulfilled" or not contracts:
                say(
                    f"  {consumer.name}/{request.name}: {status.get('phase', 'gone')}: "
                    f"{status.get('message', '')}"
                )
                healthy = False
            for contract in contracts:
                sensor = f"{contract.get('device')}/{contract.get('sensor')}"
                readings = counts.get((str(contract.get("device")), str(contract.get("sensor"))))
                say(f"  {consumer.name}/{request.name}: {sensor}: {readings or 0} readings")
                healthy &= bool(readings)
    return healthy


def summary(state: TestbedState) -> None:
    kubectl = binaries.resolve(binaries.KUBECTL, install=False)
    say("\nClusters:")
    for cluster in state.clusters.values():
        command = manager.kubectl_command(cluster.kubeconfig, kubectl)
        say(f"  {cluster.name} ({cluster.role}): {command}")
        if cluster.role == PROVIDER:
            say("      get sensorroutes -A; get flavors -n fluidos; get contracts -n fluidos")
        else:
            say("      get sensorrequests -n fluidos; get sensorproviders -n fluidos")
            stack = ConsumerStack.load(state.directory / cluster.name)
            where = ConsumerStack.path(state.directory / cluster.name)
            say(f"      InfluxDB {stack.influx_url} (database {stack.database})")
            say(f"      Telegraf {stack.telegraf_url}; credentials in {where}")
    if state.status.get("mode") == "kind":
        say(
            "\nNext:\n"
            "  .venv/bin/fluidos-sensors tui --testbed       # flavors, routes, requests, devices\n"
            "  .venv/bin/fluidos-sensors testbed status      # every cluster's pods\n"
            "  kubectl --kubeconfig <above> -n fluidos logs ds/fluidos-sensors-edge-agent\n"
            "  scripts/setup.sh --down                       # delete the clusters, stop Docker"
        )  # fmt: skip
        return
    say(
        "\nNext:\n"
        "  .venv/bin/fluidos-sensors tui --testbed       # flavors, routes, requests, devices\n"
        "  .venv/bin/fluidos-sensors testbed status      # every process and route target\n"
        "  .venv/bin/fluidos-sensors testbed logs agent  # a component's log (-f to follow)\n"
        "  scripts/setup.sh --down                       # stop everything"
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the seed's scenarios on the testbed.")
    parser.add_argument("--no-demo", action="store_true", help="only show the testbed")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that the demo's requests are still fulfilled and their readings "
        f"still arrive (in the last {COUNT_WINDOW_SECONDS} s); exit 1 otherwise",
    )
    args = parser.parse_args(argv)
    state = TestbedState.read(paths.state_dir())
    if state is None or not state.running:
        print("no testbed running: start it with scripts/setup.sh", file=sys.stderr)
        return 1
    if args.check:
        say(f"The demo's requests, and their readings over the last {COUNT_WINDOW_SECONDS} s:")
        return 0 if check(state) else 1
    if not args.no_demo and len(_consumers(state)) < 2:
        say("the scenarios need two consumer clusters (scripts/setup.sh --consumers 2)")
    elif not args.no_demo:
        say("\nThe scenarios (sharing, filtering, shaping, rate, CloudEvents) as requests:")
        try:
            ask(state)
        except (ApiException, FilterError, OSError) as exc:
            print(f"error: cannot create the demo requests: {exc}", file=sys.stderr)
            return 1
        say("\nWaiting for the consumer operators to buy, and for the first readings:")
        fulfilled = wait_fulfilled(state)
        time.sleep(COUNT_WINDOW_SECONDS if fulfilled else 0)
        report(state)
        if not fulfilled:
            summary(state)
            return 1
    summary(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())

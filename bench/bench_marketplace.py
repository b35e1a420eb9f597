"""Marketplace benchmark: request-to-first-reading time on the testbed; prints JSON.

Each repetition creates a SensorRequest in a consumer cluster (one humidity sensor by
default, delivered to the cluster's Telegraf) and measures, from the moment it was created:

- `contract_s`: until the consumer operator reports it Fulfilled (discovery, reservation and
  purchase over REAR, status written);
- `first_reading_s`: until the first reading of the bought sensor was received on the edge
  (the `firstData` the operator finds in the consumer's InfluxDB: the reading's time), i.e.
  request -> contract -> route target -> edge agent -> Telegraf -> InfluxDB;
- `seen_s`: until this benchmark itself saw that point in the consumer's InfluxDB (polling
  every 0.2 s, so it includes Telegraf's flush and the poll);
- `release_s`: from deleting the request until it is gone (its contract released).

Repetitions run one after the other (a consumer holds a sensor once). p50 and max per
measure; a repetition whose reading never came within `--timeout` counts in `timeouts`.

    .venv/bin/python bench/bench_marketplace.py [--repetitions 5] [--type humidity]
        [--consumer consumer-1] [--timeout 120]

It uses the running testbed (`$FLUIDOS_SENSORS_STATE`, as `scripts/setup.sh` starts it), or
starts one in a temporary folder and stops it at the end; no process is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from influxdb_client import InfluxDBClient
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from consumer import status as st
from fluidos_sensors.api import FLUIDOS_NAMESPACE, SENSOR_REQUEST
from fluidos_sensors.kube import get_or_none
from testbed import bootstrap, manager, paths
from testbed.services import ConsumerStack
from testbed.state import TestbedState
from testbed.topology import default_topology

ARGS = (SENSOR_REQUEST.group, SENSOR_REQUEST.version, FLUIDOS_NAMESPACE, SENSOR_REQUEST.plural)
SECRET = "telegraf-basic"


def _wait(check: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(poll)
    return None


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "max": None}
    return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3)}


class Bench:
    def __init__(self, state: TestbedState, consumer: str, sensor_type: str) -> None:
        access = state.clusters[consumer]
        self.api = bootstrap.api_client(access.kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)
        self.stack = ConsumerStack.load(state.directory / consumer)
        self.sensor_type = sensor_type
        core = client.CoreV1Api(self.api)
        body = {
            "metadata": {"name": SECRET, "namespace": FLUIDOS_NAMESPACE},
            "stringData": {
                "username": self.stack.telegraf_username,
                "password": self.stack.telegraf_password,
            },
        }
        try:
            # kubernetes takes a dict body too; its annotation names only the model
            core.create_namespaced_secret(FLUIDOS_NAMESPACE, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _get(self, name: str) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            get_or_none(self.custom.get_namespaced_custom_object, *ARGS, name),
        )

    def _in_influx(self, contract: dict[str, Any]) -> bool:
        # From the purchase on (the contract start has whole seconds only): points an earlier
        # repetition brought within that second must not count.
        since = contract.get("boughtAt") or contract["since"]
        flux = (
            f'from(bucket: "{self.stack.bucket}") |> range(start: time(v: "{since}"))'
            f' |> filter(fn: (r) => r.device == "{contract["device"]}"'
            f' and r.sensor == "{contract["sensor"]}") |> first()'
        )
        with InfluxDBClient(
            url=self.stack.influx_url, token=self.stack.influx_token, org="-"
        ) as influx:
            return any(table.records for table in influx.query_api().query(flux))

    def once(self, timeout: float) -> dict[str, Any]:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": SENSOR_REQUEST.api_version,
            "kind": SENSOR_REQUEST.kind,
            "metadata": {"name": name, "namespace": FLUIDOS_NAMESPACE},
            "spec": {
                "filter": {"sensorType": [self.sensor_type]},
                "endpoint": {
                    "url": self.stack.telegraf_url,
                    "auth": {"type": "basic", "secretName": SECRET},
                },
            },
        }
        result: dict[str, Any] = {"request": name}
        created = time.time()
        self.custom.create_namespaced_custom_object(*ARGS, body)
        try:

            def settled() -> dict[str, Any] | None:
                obj = self._get(name) or {}
                status = obj.get("status") or {}
                return status if status.get("phase") in st.SETTLED else None

            status = _wait(settled, timeout)
            if status is None or status.get("phase") != st.FULFILLED:
                result["error"] = (status or {}).get("message", "not settled in time")
                return result
            result["contract_s"] = time.time() - created
            contract = status["contracts"][0]
            seen = _wait(lambda: self._in_influx(contract), timeout, poll=0.2)
            if seen:
                result["seen_s"] = time.time() - created
            first = _wait(
                lambda: ((self._get(name) or {}).get("status") or {}).get("firstData"), 30
            )
            if first:
                result["first_reading_s"] = _epoch(first) - created
            if not seen or not first:
                result["error"] = "no reading within the timeout"
            return result
        finally:
            deleted = time.time()
            self.custom.delete_namespaced_custom_object(*ARGS, name)
            if _wait(lambda: self._get(name) is None, 120, poll=0.1):
                result["release_s"] = time.time() - deleted


def run(state: TestbedState, args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(state, args.consumer, args.type)
    runs = [bench.once(args.timeout) for _ in range(args.repetitions)]
    report: dict[str, Any] = {
        "benchmark": "marketplace request-to-first-reading",
        "consumer": args.consumer,
        "sensor_type": args.type,
        "repetitions": args.repetitions,
        "timeouts": sum(1 for r in runs if "error" in r),
        "runs": [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in runs
        ],
    }
    for measure in ("contract_s", "first_reading_s", "seen_s", "release_s"):
        report[measure] = _summary([r[measure] for r in runs if measure in r])
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--type", default="humidity", help="sensor type to request")
    parser.add_argument("--consumer", default="consumer-1")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per step")
    args = parser.parse_args()
    running = TestbedState.read(paths.state_dir())
    if running and running.running and running.phase == "ready":
        print(json.dumps(run(running, args), indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-marketplace-") as folder:
        state_dir = Path(folder)
        state, _ = manager.up(
            default_topology(providers=1, consumers=2),
            state_dir,
            log=lambda m: print(m, file=sys.stderr),
            owner_pid=os.getpid(),  # a killed bench leaves nothing running
        )
        try:
            print(json.dumps(run(state, args), indent=2))
        finally:
            manager.down(state_dir, log=lambda _m: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

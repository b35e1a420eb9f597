"""Resource manager benchmark on the local testbed; prints JSON.

1. Burst: N Devices x S sensors created at once while the operator runs; for each Device the
   time from its create request to all its Flavors being visible to a watcher (p50/p99/max).
2. Cold start: with C Devices already in the cluster and no Flavors, the time from starting
   the operator to all C x S Flavors visible.

    .venv/bin/python bench/bench_resource_manager.py [--devices 1000] [--cold 3000] [--sensors 3]

It starts its own testbed (one provider) in a temporary folder and stops it at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from kubernetes import client, watch

from fluidos_sensors import api as fs_api
from fluidos_sensors.flavor import DEFAULT_FLAVOR_NAMESPACE, DEVICE_ANNOTATION
from testbed import bootstrap, manager
from testbed.processes import die_with_parent
from testbed.topology import default_topology

EDGE = "provider-1-edge"
NAMESPACE = "bench"
KINDS = [
    ("temperature", "°C"),
    ("humidity", "%RH"),
    ("pressure", "hPa"),
    ("acceleration", "mg"),
    ("angular_velocity", "dps"),
]


def annotation(sensors: int) -> str:
    entries = [
        {
            "uid": f"s{i}",
            "name": f"{kind}-{i}",
            "model": "STTS22H",
            "manufacturer": "STMicroelectronics",
            "market": "industrial",
            "type": {"sensorCategory": "Environmental", "sensorType": [kind]},
            "samplingRate": "10",
            "accuracy": ["0.5"],
            "latency": "15",
            "properties": {"unit": {"measurement": [unit]}},
        }
        for i, (kind, unit) in ((i, KINDS[i % len(KINDS)]) for i in range(sensors))
    ]
    return base64.b64encode(json.dumps(entries).encode()).decode()


class FlavorWatcher(threading.Thread):
    """Records when each Device's Flavors are first seen."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(daemon=True)
        self.custom = client.CustomObjectsApi(api)
        self.seen: dict[str, float] = {}
        self.per_device: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            listing = cast(
                dict[str, Any],
                self.custom.list_namespaced_custom_object(
                    fs_api.FLAVOR.group,
                    fs_api.FLAVOR.version,
                    DEFAULT_FLAVOR_NAMESPACE,
                    fs_api.FLAVOR.plural,
                ),
            )
            for item in listing["items"]:
                self._saw(item)
            self.ready.set()
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    fs_api.FLAVOR.group,
                    fs_api.FLAVOR.version,
                    DEFAULT_FLAVOR_NAMESPACE,
                    fs_api.FLAVOR.plural,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=5,
                ):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._saw(event["object"])
                    if self.stop_event.is_set():
                        break
            except client.ApiException:
                continue

    def _saw(self, item: dict[str, Any]) -> None:
        now = time.monotonic()
        name = item["metadata"]["name"]
        device = item["metadata"]["annotations"][DEVICE_ANNOTATION]
        with self.lock:
            if name not in self.seen:
                self.seen[name] = now
                self.per_device.setdefault(device, []).append(now)

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.per_device.clear()


def create_devices(api: client.ApiClient, names: list[str], raw: str) -> dict[str, float]:
    custom = client.CustomObjectsApi(api)
    started: dict[str, float] = {}

    def create(name: str) -> None:
        started[f"{NAMESPACE}/{name}"] = time.monotonic()
        custom.create_namespaced_custom_object(
            fs_api.DEVICE.group,
            fs_api.DEVICE.version,
            NAMESPACE,
            fs_api.DEVICE.plural,
            {
                "apiVersion": fs_api.DEVICE.api_version,
                "kind": "Device",
                "metadata": {"name": name, "annotations": {fs_api.SENSORS_ANNOTATION: raw}},
                "spec": {"deviceModelRef": {"name": "stwin-box"}, "nodeName": EDGE},
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, names))
    return started


def wait_for(watcher: FlavorWatcher, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while watcher.count() < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return watcher.count() >= expected


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_operator(kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fluidos_sensors_cli",
                "resource-manager",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--node-id",
                "bench",
                "--ip",
                "127.0.0.1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--cold", type=int, default=3000)
    parser.add_argument("--sensors", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    raw = annotation(args.sensors)
    result: dict[str, Any] = {
        "benchmark": "resource_manager",
        "devices": args.devices,
        "sensors_per_device": args.sensors,
        "cold_devices": args.cold,
    }
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        state_dir = Path(tmp) / "testbed"
        state, _ = manager.up(
            default_topology(providers=1, consumers=0),
            state_dir,
            log=lambda m: print(m, file=sys.stderr),
            owner_pid=os.getpid(),  # a killed bench leaves nothing running
        )
        operator: subprocess.Popen[bytes] | None = None
        try:
            kubeconfig = state.clusters["provider-1"].kubeconfig
            api = bootstrap.api_client(kubeconfig)
            bootstrap.create_namespace(client.CoreV1Api(api), NAMESPACE)
            watcher = FlavorWatcher(bootstrap.api_client(kubeconfig))
            watcher.start()
            watcher.ready.wait(30)
            log = Path(tmp) / "operator.log"

            # 1. Burst while running.
            operator = start_operator(kubeconfig, log)
            time.sleep(3)  # let kopf list and index the (empty) cluster
            names = [f"burst-{i:05d}" for i in range(args.devices)]
            t0 = time.monotonic()
            started = create_devices(api, names, raw)
            created_s = time.monotonic() - t0
            expected = args.devices * args.sensors
            complete = wait_for(watcher, expected, args.timeout)
            with watcher.lock:
                latencies = [
                    max(seen) - started[d]
                    for d, seen in watcher.per_device.items()
                    if d in started and len(seen) == args.sensors
                ]
            result["burst"] = {
                "complete": complete,
                "flavors_seen": watcher.count(),
                "create_requests_s": round(created_s, 2),
                "all_flavors_visible_s": round(time.monotonic() - t0, 2),
                "device_to_flavors_ms": {
                    "p50": round(percentile(latencies, 0.50) * 1000, 1),
                    "p99": round(percentile(latencies, 0.99) * 1000, 1),
                    "max": round(max(latencies) * 1000, 1),
                    "mean": round(statistics.fmean(latencies) * 1000, 1),
                }
                if latencies
                else None,
            }

            # 2. Cold start: more Devices, no Flavors, operator down.
            stop(operator)
            operator = None
            client.CustomObjectsApi(api).delete_collection_namespaced_custom_object(
                fs_api.FLAVOR.group,
                fs_api.FLAVOR.version,
                DEFAULT_FLAVOR_NAMESPACE,
                fs_api.FLAVOR.plural,
            )
            extra = [f"cold-{i:05d}" for i in range(max(0, args.cold - args.devices))]
            create_devices(api, extra, raw)
            time.sleep(2)
            watcher.reset()
            expected = max(args.cold, args.devices) * args.sensors
            t0 = time.monotonic()
            operator = start_operator(kubeconfig, log)
            complete = wait_for(watcher, expected, args.timeout)
            result["cold_start"] = {
                "devices": max(args.cold, args.devices),
                "complete": complete,
                "flavors_seen": watcher.count(),
                "reconcile_all_s": round(time.monotonic() - t0, 2),
            }
            watcher.stop_event.set()
        finally:
            if operator is not None:
                stop(operator)
            manager.down(state_dir, log=lambda _m: None)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the data-path tests: an HTTP endpoint that records what it gets, route CLI and
status readers. Real HTTP on loopback; nothing here stands in for a part of the system."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from kubernetes import client
from support import eventually

from fluidos_sensors import api as fs_api
from fluidos_sensors.flavor import DEVICE_NAMESPACE_LABEL, sensor_from_flavor
from fluidos_sensors.kube import get_or_none
from testbed.state import ClusterAccess, TestbedState

EDGE = "provider-1-edge"
_SEQ = re.compile(r"[ ,]seq=(\d+)i")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


@dataclass
class Endpoint:
    """A consumer endpoint on loopback that answers `status` and records every request."""

    status: int = 204
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                endpoint.requests.append(
                    Received(self.path, dict(self.headers), body, time.time(), endpoint.status)
                )
                payload = b'{"error":"test endpoint says no"}' if endpoint.status >= 400 else b""
                self.send_response(endpoint.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # dozens of targets may connect at once
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/telegraf"

    def lines(self, *, refused_too: bool = False) -> list[str]:
        """Lines of the requests it accepted (answered 2xx; with `refused_too`, of every
        request), in arrival order."""
        return [
            line
            for request in list(self.requests)
            if refused_too or request.status < 300
            for line in request.body.decode().splitlines()
            if line
        ]

    def seqs(self, device: str, sensor: str, *, refused_too: bool = False) -> list[int]:
        """seq of every accepted line of that device and sensor, in arrival order."""
        wanted = (f"device={device},", f"sensor={sensor},", f"sensor={sensor} ")
        found = []
        for line in self.lines(refused_too=refused_too):
            tags = line.split(" ", 1)[0] + " "
            if wanted[0] in tags and (wanted[1] in tags or wanted[2] in tags):
                match = _SEQ.search(line)
                assert match, line
                found.append(int(match.group(1)))
        return found


def line_records(endpoint: Endpoint, device: str, sensor: str) -> list[tuple[int, dict[str, str]]]:
    """(timestamp ns, fields) of every accepted line of that device and sensor, in order."""
    found = []
    for line in endpoint.lines():
        tags, fields, timestamp = line.rsplit(" ", 2)
        if f"device={device}," in tags + "," and f"sensor={sensor}," in tags + ",":
            pairs = (pair.split("=", 1) for pair in fields.split(","))
            found.append((int(timestamp), dict(pairs)))
    return found


def cloudevents_of(request: Received) -> list[CloudEvent]:
    """The events of one request as a CloudEvents consumer reads them: the SDK's HTTP parser
    for structured mode; batch mode (which the SDK does not parse) is a JSON array of events
    in the structured format, each read by the SDK's parser."""
    content_type = request.headers.get("Content-Type", "")
    if content_type == "application/cloudevents-batch+json":
        bodies = [json.dumps(item).encode() for item in json.loads(request.body)]
        content_type = "application/cloudevents+json"
    else:
        bodies = [request.body]
    events = []
    for body in bodies:
        event = from_http(HTTPMessage({"content-type": content_type}, body), JSONFormat())
        assert isinstance(event, CloudEvent)
        events.append(event)
    return events


def basic_auth(request: Received) -> tuple[str, str] | None:
    value = request.headers.get("Authorization", "")
    if not value.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    return user, password


def cli(*args: str, kubeconfig: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fluidos_sensors_cli", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def testbed_flavors(api: client.ApiClient) -> dict[tuple[str, str], dict[str, Any]]:
    """The Flavors of the testbed mapper's boards by (device, sensor key)."""
    items = cast(
        dict[str, Any],
        client.CustomObjectsApi(api).list_namespaced_custom_object(
            fs_api.FLAVOR.group,
            fs_api.FLAVOR.version,
            fs_api.FLUIDOS_NAMESPACE,
            fs_api.FLAVOR.plural,
            label_selector=f"{DEVICE_NAMESPACE_LABEL}=default",
        ),
    )["items"]
    found = {}
    for item in items:
        view = sensor_from_flavor(item)
        if view.node == EDGE and view.device:
            found[(view.device.split("/", 1)[1], view.sensor.key)] = item
    return found


def wait_for_flavor(api: client.ApiClient, model: str, sensor: str) -> dict[str, Any]:
    """The Flavor of `sensor` of the testbed's first board of `model` (stwin-box, sensortile)."""

    def find() -> dict[str, Any] | None:
        for (device, key), item in sorted(testbed_flavors(api).items()):
            if f"-{model}-" in device and key == sensor:
                return item
        return None

    return eventually(find, f"the {model} {sensor} Flavor", timeout=90)


def route_of(api: client.ApiClient, name: str) -> dict[str, Any] | None:
    return cast(
        dict[str, Any] | None,
        get_or_none(
            client.CustomObjectsApi(api).get_namespaced_custom_object,
            fs_api.SENSOR_ROUTE.group,
            fs_api.SENSOR_ROUTE.version,
            fs_api.ROUTE_NAMESPACE,
            fs_api.SENSOR_ROUTE.plural,
            name,
        ),
    )


def target_status(api: client.ApiClient, route: str, target_id: str) -> dict[str, Any]:
    obj = route_of(api, route) or {}
    for entry in (obj.get("status") or {}).get("targets") or []:
        if entry.get("id") == target_id:
            return entry
    return {}


def agent_status(testbed: TestbedState, provider: ClusterAccess) -> dict[str, Any]:
    path = testbed.directory / provider.name / "nodes" / EDGE / "agent" / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def running_pid(testbed: TestbedState, process: str) -> int | None:
    """The pid of a testbed process while it runs (`<cluster>/<node>/agent`, ...)."""
    current = TestbedState.read(testbed.directory)
    proc = (current.status.get("processes", {}) if current else {}).get(process) or {}
    return proc.get("pid") if proc.get("alive") else None


def agent_log(testbed: TestbedState, provider: ClusterAccess) -> str:
    path = testbed.directory / provider.name / "nodes" / EDGE / "agent" / "agent.log"
    return path.read_text(errors="replace")


def flavor_topic(flavor: dict[str, Any]) -> str:
    topic = sensor_from_flavor(flavor).broker_topic
    assert topic
    return topic

"""A provider whose gateway is not ready (503) is waited for, not given up on (issue 20).

A real REAR gateway that cannot reach its Kubernetes API server answers every call with 503
"the gateway is starting" (so does a FLUIDOS node's while it starts). The testbed's consumer
operator, asked for sensors at that provider only, keeps the request Searching and says which
provider is not ready, instead of calling it Unsatisfiable.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import support
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from consumer import status as st
from fluidos_sensors import api as fs_api
from testbed import bootstrap
from testbed.processes import ManagedProcess, ProcessSpec, free_port
from testbed.state import ClusterAccess

pytestmark = pytest.mark.integration

NS = fs_api.FLUIDOS_NAMESPACE
# Generous: on a loaded 2-core machine a Python process takes a minute to start, and a pass
# comes after the SensorProvider reaches the consumer operator's index.
WAIT = 180.0


@pytest.fixture
def starting_gateway(provider: ClusterAccess, tmp_path: Path) -> Iterator[str]:
    """A real gateway whose API server does not answer: its kubeconfig names a closed port."""
    config = yaml.safe_load(provider.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    kubeconfig = tmp_path / "unreachable.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "gateway.log"
    argv = [sys.executable, "-m", "fluidos_sensors_cli", "resource-manager", "gateway"]
    argv += ["--kubeconfig", str(kubeconfig), "--node-id", "provider-starting"]
    proc = ManagedProcess(ProcessSpec("gateway", [*argv, "--listen", f"127.0.0.1:{port}"], log))
    proc.start()
    url = f"http://127.0.0.1:{port}"

    def answers_503() -> bool:
        assert proc.alive, log.read_text()[-3000:]
        try:
            return httpx.get(f"{url}/api/v2/flavors", timeout=2).status_code == 503
        except httpx.HTTPError:
            return False

    try:
        support.eventually(answers_503, "the gateway to answer 503", timeout=WAIT)
        yield url
    finally:
        proc.stop(20)


def test_a_request_waits_for_a_provider_that_is_not_ready(
    consumer: ClusterAccess, starting_gateway: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    provider, secret, request = (
        f"provider-starting-{suffix}",
        f"rear-starting-{suffix}",
        f"wait-{suffix}",
    )
    api = bootstrap.api_client(consumer.kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    providers = (fs_api.SENSOR_PROVIDER.group, fs_api.SENSOR_PROVIDER.version, NS)
    requests = (fs_api.SENSOR_REQUEST.group, fs_api.SENSOR_REQUEST.version, NS)
    core.create_namespaced_secret(
        # kubernetes takes a dict body too; its annotation names only the model
        NS,
        {"metadata": {"name": secret}, "stringData": {"token": uuid.uuid4().hex}},  # type: ignore[arg-type]
    )
    custom.create_namespaced_custom_object(
        *providers,
        fs_api.SENSOR_PROVIDER.plural,
        {
            "apiVersion": fs_api.SENSOR_PROVIDER.api_version,
            "kind": fs_api.SENSOR_PROVIDER.kind,
            "metadata": {"name": provider},
            "spec": {"url": starting_gateway, "tokenSecret": {"name": secret}},
        },
    )
    custom.create_namespaced_custom_object(
        *requests,
        fs_api.SENSOR_REQUEST.plural,
        {
            "apiVersion": fs_api.SENSOR_REQUEST.api_version,
            "kind": fs_api.SENSOR_REQUEST.kind,
            "metadata": {"name": request},
            "spec": {
                "filter": {"sensorType": ["humidity"]},
                "count": 1,
                "providers": [provider],
                "endpoint": {"url": "http://127.0.0.1:9/telegraf", "format": "influx"},
            },
        },
    )

    def status() -> dict[str, Any]:
        obj = cast(
            dict[str, Any],
            custom.get_namespaced_custom_object(*requests, fs_api.SENSOR_REQUEST.plural, request),
        )
        current = obj.get("status") or {}
        resolved = current.get("observedGeneration") == obj["metadata"]["generation"]
        return current if resolved and "not ready" in (current.get("message") or "") else {}

    try:
        waiting = support.eventually(status, "the request to name the provider not ready", WAIT)
        assert waiting["phase"] == st.SEARCHING, waiting  # not settled: not Unsatisfiable
        message = waiting["message"]
        assert message.startswith(f"waiting for provider(s) {provider}, not ready yet ("), message
        assert f"provider {provider} is not ready, asking again in " in message, message
        assert "(HTTP 503: the gateway is starting; try again in a moment)" in message, message
        # It keeps looking (more passes, same answer), still not settled.
        support.eventually(
            lambda: status().get("updated", waiting.get("updated")) != waiting.get("updated"),
            "another pass of the request",
            WAIT,
        )
        assert status()["phase"] == st.SEARCHING
    finally:
        try:
            custom.delete_namespaced_custom_object(*requests, fs_api.SENSOR_REQUEST.plural, request)
        except ApiException as exc:
            if exc.status != 404:
                raise

        def gone() -> bool:
            try:
                custom.get_namespaced_custom_object(
                    *requests, fs_api.SENSOR_REQUEST.plural, request
                )
            except ApiException as exc:
                return exc.status == 404
            return False

        support.eventually(gone, "the request deleted (it held nothing)", WAIT)
        custom.delete_namespaced_custom_object(*providers, fs_api.SENSOR_PROVIDER.plural, provider)
        core.delete_namespaced_secret(secret, NS)
        api.close()

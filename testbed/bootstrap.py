"""What a fresh cluster needs before anything runs on it: the upstream CRDs and its Node objects.

There is no kubelet in the local testbed, so the supervisor plays its part for each Node: it
registers it and keeps its Ready condition fresh. A node annotated with `NOT_READY_ANNOTATION`
reports Ready=False instead, which lets tests take a node down without stopping the testbed.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import FLUIDOS_NAMESPACE, ROUTE_NAMESPACE
from testbed import paths, upstream
from testbed.topology import NodeSpec

NOT_READY_ANNOTATION = "testbed.fluidos-sensors.io/simulate-not-ready"
# Namespaces every cluster of the testbed gets.
NAMESPACES = (FLUIDOS_NAMESPACE, ROUTE_NAMESPACE)
OWN_CRDS = paths.OWN_CRDS_DIR


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def install_crds(api: client.ApiClient, timeout: float = 60) -> list[str]:
    """Create every pinned upstream CRD that the cluster lacks; never overwrite an existing one
    (a real KubeEdge or FLUIDOS deployment may own it). This project's own CRDs
    (the chart's `files/crds/`) are created or updated. Returns the CRD names, established."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for file in upstream.CRDS:
        for doc in yaml.safe_load_all(upstream.read(file)):
            if not doc:
                continue
            names.append(doc["metadata"]["name"])
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
    for path in sorted(OWN_CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                names.append(apply_own_crd(ext, doc))
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status and crd.status.conditions) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(name)
        if pending:
            time.sleep(0.2)
    if pending:
        raise RuntimeError(f"CRDs not established after {timeout:.0f}s: {sorted(pending)}")
    return names


def apply_own_crd(ext: client.ApiextensionsV1Api, doc: dict) -> str:
    """Create one of our CRDs, or replace it with this version of its definition."""
    name = doc["metadata"]["name"]
    try:
        # kubernetes takes a dict body too; its annotation names only the model
        ext.create_custom_resource_definition(doc)  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        assert current.metadata is not None  # every stored object has metadata
        doc = {**doc, "metadata": {**doc["metadata"]}}
        doc["metadata"]["resourceVersion"] = current.metadata.resource_version
        # kubernetes takes a dict body too; its annotation names only the model
        ext.replace_custom_resource_definition(name, doc)  # type: ignore[arg-type]
    return name


def create_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        # kubernetes takes a dict body too; its annotation names only the model
        core.create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_node(core: client.CoreV1Api, node: NodeSpec) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": dict(node.labels)},
    }
    try:
        # kubernetes takes a dict body too; its annotation names only the model
        core.create_node(body)  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise
    heartbeat(core, node.name)


def heartbeat(core: client.CoreV1Api, name: str) -> None:
    """Post the node's Ready condition, as a kubelet would."""
    node = core.read_node(name)
    assert node.metadata is not None and node.status is not None  # a stored Node has both
    annotations = node.metadata.annotations or {}
    simulated_down = annotations.get(NOT_READY_ANNOTATION) == "true"
    now = _now()
    previous = next((c for c in (node.status.conditions or []) if c.type == "Ready"), None)
    status = "False" if simulated_down else "True"
    changed = previous is None or previous.status != status
    since = None if previous is None or changed else previous.last_transition_time
    ready = {
        "type": "Ready",
        "status": status,
        "reason": "SimulatedNotReady" if simulated_down else "KubeletReady",
        "message": "testbed: node marked not ready"
        if simulated_down
        else "testbed: kubelet is posting ready status",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now if since is None else since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    core.patch_node_status(
        name,
        {
            "status": {
                "conditions": [ready],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": name},
                ],
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            }
        },
    )

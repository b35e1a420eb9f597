"""The testbed's clusters are real: CRDs validate, label selectors and RBAC work."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors import api as fs_api
from testbed import bootstrap, manager
from testbed.processes import die_with_parent, port_open
from testbed.state import TestbedState, pid_alive
from testbed.topology import default_topology

pytestmark = pytest.mark.integration


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def test_v1beta1_device_round_trips(provider_api: client.ApiClient, namespace: str) -> None:
    body = {
        "apiVersion": fs_api.DEVICE.api_version,
        "kind": "Device",
        "metadata": {"name": "stwin-01"},
        "spec": {
            "deviceModelRef": {"name": "stwin-box"},
            "nodeName": "provider-1-edge",
            "protocol": {"protocolName": "bluetooth", "configData": {"macAddress": "aa:bb"}},
        },
    }
    custom = _custom(provider_api)
    custom.create_namespaced_custom_object(
        fs_api.DEVICE.group, fs_api.DEVICE.version, namespace, fs_api.DEVICE.plural, body
    )
    read = cast(
        dict[str, Any],
        custom.get_namespaced_custom_object(
            fs_api.DEVICE.group, fs_api.DEVICE.version, namespace, fs_api.DEVICE.plural, "stwin-01"
        ),
    )
    assert read["spec"]["nodeName"] == "provider-1-edge"
    assert read["spec"]["protocol"]["configData"] == {"macAddress": "aa:bb"}


def test_v1alpha2_device_round_trips(provider_api: client.ApiClient, namespace: str) -> None:
    selector = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "", "operator": "In", "values": ["provider-1-edge"]}]}
        ]
    }
    body = {
        "apiVersion": fs_api.DEVICE_V1ALPHA2.api_version,
        "kind": "Device",
        "metadata": {"name": "sensortile-01"},
        "spec": {
            "deviceModelRef": {"name": "sensortile"},
            "nodeSelector": selector,
            "protocol": {"bluetooth": {"macAddress": "c0:ff:ee:00:00:01"}},
        },
    }
    custom = _custom(provider_api)
    r = fs_api.DEVICE_V1ALPHA2
    custom.create_namespaced_custom_object(r.group, r.version, namespace, r.plural, body)
    read = cast(
        dict[str, Any],
        custom.get_namespaced_custom_object(
            r.group, r.version, namespace, r.plural, "sensortile-01"
        ),
    )
    assert read["apiVersion"] == "devices.kubeedge.io/v1alpha2"
    assert read["spec"]["deviceModelRef"] == {"name": "sensortile"}
    # The unmodified v1.23 CRD stores v1beta1 with conversion "None": fields only v1alpha2
    # declares are pruned on write. Whoever binds v1alpha2 Devices to nodes cannot rely on
    # spec.nodeSelector surviving in such a cluster.
    crd = client.ApiextensionsV1Api(provider_api).read_custom_resource_definition(
        fs_api.DEVICE.crd_name
    )
    assert crd.spec.conversion is not None and crd.spec.conversion.strategy == "None"
    assert "nodeSelector" not in read["spec"]
    assert "bluetooth" not in read["spec"].get("protocol", {})


def test_schema_violation_is_rejected(provider_api: client.ApiClient, namespace: str) -> None:
    flavor = {
        "apiVersion": fs_api.FLAVOR.api_version,
        "kind": "Flavor",
        "metadata": {"name": "broken"},
        # availability must be a boolean, and owner/price/providerID are required.
        "spec": {"availability": "yes", "flavorType": {"typeIdentifier": "Sensor", "typeData": {}}},
    }
    r = fs_api.FLAVOR
    with pytest.raises(ApiException) as excinfo:
        _custom(provider_api).create_namespaced_custom_object(
            r.group, r.version, namespace, r.plural, flavor
        )
    assert excinfo.value.status == 422
    body = excinfo.value.body
    assert body is not None
    assert "spec.availability" in body
    assert "spec.providerID" in body


def test_label_selector_finds_the_edge_worker(provider_api: client.ApiClient) -> None:
    selector = f"{fs_api.EDGE_WORKER_LABEL}={fs_api.ROLE_LABEL_VALUE}"
    nodes = client.CoreV1Api(provider_api).list_node(label_selector=selector).items
    names = {n.metadata.name for n in nodes if n.metadata}
    # Other tests may add edge nodes of their own; the testbed's edge worker is there, its
    # ordinary worker is not.
    assert "provider-1-edge" in names and "provider-1-worker" not in names
    assert all(
        n.metadata and n.metadata.labels and n.metadata.labels[fs_api.EDGE_WORKER_LABEL] == "true"
        for n in nodes
    )
    edge = next(n for n in nodes if n.metadata and n.metadata.name == "provider-1-edge")
    assert edge.status is not None
    ready = {c.type: c.status for c in edge.status.conditions or []}
    assert ready["Ready"] == "True"


def test_rbac_denies_a_service_account_without_binding(
    provider_api: client.ApiClient, provider, namespace: str
) -> None:
    core = client.CoreV1Api(provider_api)
    # kubernetes takes a dict body too; its annotation names only the model
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})  # type: ignore[arg-type]
    answer = core.create_namespaced_service_account_token(
        # kubernetes takes a dict body too; its annotation names only the model
        "nobody",
        namespace,
        {"spec": {"expirationSeconds": 600}},  # type: ignore[arg-type]
    )
    assert answer.status is not None
    token = answer.status.token

    configuration = client.Configuration()
    configuration.host = provider.server
    configuration.ssl_ca_cert = provider_api.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(configuration) as as_sa:
        sa_core = client.CoreV1Api(as_sa)
        with pytest.raises(ApiException) as excinfo:
            sa_core.list_namespaced_config_map(namespace)
        assert excinfo.value.status == 403

        # The token itself is good: once a Role grants it, the same call succeeds.
        rbac = client.RbacAuthorizationV1Api(provider_api)
        rbac.create_namespaced_role(
            namespace,
            # kubernetes takes a dict body too; its annotation names only the model
            {  # type: ignore[arg-type]
                "metadata": {"name": "read-configmaps"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            # kubernetes takes a dict body too; its annotation names only the model
            {  # type: ignore[arg-type]
                "metadata": {"name": "nobody-reads"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "read-configmaps",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
            },
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                sa_core.list_namespaced_config_map(namespace)
                break
            except ApiException as exc:  # the RBAC cache takes a moment
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with pytest.raises(ApiException) as excinfo:
            sa_core.list_node()
        assert excinfo.value.status == 403


def test_supervisor_reports_simulated_not_ready(provider_api: client.ApiClient) -> None:
    core = client.CoreV1Api(provider_api)
    name = "provider-1-worker"

    def ready() -> str:
        status = core.read_node(name).status
        assert status is not None
        return next(c.status for c in status.conditions or [] if c.type == "Ready")

    def wait_for(status: str) -> None:
        deadline = time.monotonic() + 40
        while ready() != status:
            assert time.monotonic() < deadline, f"node {name} never became Ready={status}"
            time.sleep(0.5)

    core.patch_node(name, {"metadata": {"annotations": {bootstrap.NOT_READY_ANNOTATION: "true"}}})
    try:
        wait_for("False")
    finally:
        core.patch_node(name, {"metadata": {"annotations": {bootstrap.NOT_READY_ANNOTATION: None}}})
    wait_for("True")


def _pids_and_ports(state: TestbedState) -> tuple[list[int], list[int]]:
    """Every process of a testbed (its supervisor too) and every port they listen on."""
    procs = list(state.status["processes"].values())
    pids = [p["pid"] for p in procs] + [state.supervisor_pid]
    return pids, [port for p in procs for port in p["ports"]]


def test_down_leaves_no_process_and_no_port(tmp_path) -> None:
    """A second, small testbed: up, idempotent up, down; nothing of it survives."""
    topology = default_topology(providers=1, consumers=0)
    state, started = manager.up(
        topology, tmp_path / "tb", log=lambda _m: None, owner_pid=os.getpid()
    )
    assert started
    again, started_again = manager.up(topology, tmp_path / "tb", log=lambda _m: None)
    assert not started_again and again.supervisor_pid == state.supervisor_pid
    assert {"provider-1/etcd", "provider-1/kube-apiserver"} <= set(again.status["processes"])
    pids, ports = _pids_and_ports(again)
    assert all(pid_alive(pid) for pid in pids) and all(port_open(p) for p in ports)

    assert manager.down(tmp_path / "tb", log=lambda _m: None)
    assert not any(pid_alive(pid) for pid in pids)
    assert not any(port_open(p) for p in ports)
    assert not (tmp_path / "tb").exists()


def test_a_testbed_stops_when_its_owner_process_ends(tmp_path) -> None:
    """A test run's testbed (conftest's `owner_pid`) goes when the run's process dies, even
    by a signal it cannot handle: a segfaulted pytest once left a whole testbed running."""
    owner = subprocess.Popen(["sleep", "600"], preexec_fn=die_with_parent)
    try:
        state, started = manager.up(
            default_topology(providers=1, consumers=0),
            tmp_path / "tb",
            log=lambda _m: None,
            owner_pid=owner.pid,
        )
        assert started
        pids, ports = _pids_and_ports(state)
        assert all(pid_alive(pid) for pid in pids)
        owner.kill()
        deadline = time.monotonic() + 60
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(pid_alive(pid) for pid in pids)
        assert not any(port_open(p) for p in ports)
        stopped = TestbedState.read(tmp_path / "tb")
        assert stopped is not None and stopped.status["phase"] == "stopped"
    finally:
        owner.kill()
        owner.wait()
        manager.down(tmp_path / "tb", log=lambda _m: None)  # when this test fails

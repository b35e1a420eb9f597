"""Kubeconfigs for service accounts, so each part runs with its own least-privilege RBAC."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes import client, dynamic

from testbed import bootstrap


def write_secret_file(path: Path, content: str) -> None:
    """Write a credential file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)


def apply_manifest(api: client.ApiClient, manifest: Path) -> None:
    """Create every object of a YAML manifest, or bring an existing one to what the file says
    (server-side apply): a testbed that outlives a change of the shipped RBAC gets the change."""
    resources = dynamic.DynamicClient(api).resources
    for doc in yaml.safe_load_all(manifest.read_text()):
        if not doc:
            continue
        resource = resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        resource.server_side_apply(
            body=doc,
            name=doc["metadata"]["name"],
            namespace=doc["metadata"].get("namespace"),
            field_manager="fluidos-sensors-testbed",
            force_conflicts=True,
        )


def service_account_kubeconfig(
    admin_kubeconfig: Path, namespace: str, account: str, path: Path, *, hours: int = 24
) -> Path:
    """A kubeconfig that authenticates as `namespace/account` with a bound token."""
    with bootstrap.api_client(admin_kubeconfig) as api:
        answer = client.CoreV1Api(api).create_namespaced_service_account_token(
            # kubernetes takes a dict body too; its annotation names only the model
            account,
            namespace,
            {"spec": {"expirationSeconds": hours * 3600}},  # type: ignore[arg-type]
        )
        assert answer.status is not None  # the API server answers a TokenRequest with a token
        token = answer.status.token
        server = api.configuration.host
        ca = api.configuration.ssl_ca_cert
    user = f"{namespace}-{account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "cluster", "cluster": {"server": server, "certificate-authority": ca}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": user, "context": {"cluster": "cluster", "user": user, "namespace": namespace}}
        ],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path

"""Introduce every consumer cluster to every provider's REAR gateway, as an operator would.

Clusters share no kubeconfig: the provider issues each consumer a bearer token (a Secret the
gateway watches, labelled with the consumer's id, annotated with where the consumer may have
data delivered); the consumer keeps that token and the CA of the gateway's certificate in
Secrets beside a `SensorProvider` naming the gateway's URL.
Idempotent: a restarted supervisor finds what it made and keeps the tokens it issued.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import FLUIDOS_NAMESPACE, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from fluidos_sensors.api import SENSOR_PROVIDER as PROVIDER_KIND
from fluidos_sensors.contract import DELIVERY_POLICY_ANNOTATION
from fluidos_sensors.rear.wire import CONSUMER_TOKEN_KEY, REAR_CONSUMER_LABEL
from testbed import bootstrap, credentials

CA_KEY = "ca.crt"
# Where consumers keep their SensorProviders, tokens and SensorRequests.
CONSUMER_NAMESPACE = FLUIDOS_NAMESPACE


def token_secret_name(provider: str) -> str:
    """The consumer-side Secret holding its token for (and the CA of) `provider`'s gateway."""
    return f"rear-{provider}"


def _apply_secret(core: client.CoreV1Api, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    try:
        # kubernetes takes a dict body too; its annotation names only the model
        core.create_namespaced_secret(meta["namespace"], body)  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise
        # kubernetes takes a dict body too; its annotation names only the model
        core.replace_namespaced_secret(meta["name"], meta["namespace"], body)  # type: ignore[arg-type]


def _token(cluster_dir: Path, provider: str) -> str:
    """The token this consumer holds for `provider`, issued once and kept (0600)."""
    path = cluster_dir / "rear-tokens" / provider
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    credentials.write_secret_file(path, token)
    return token


def connect(
    provider: str,
    provider_kubeconfig: Path,
    gateway_url: str,
    gateway_ca: Path,
    consumer: str,
    consumer_dir: Path,
    *,
    delivery_hosts: Sequence[str],
) -> None:
    """Let `consumer` buy from `provider` (both cluster names), with data delivered only to
    `delivery_hosts` (its own Telegraf and InfluxDB: loopback in the testbed, which the
    delivery policy refuses unless named)."""
    token = _token(consumer_dir, provider)
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    with bootstrap.api_client(provider_kubeconfig) as api:
        _apply_secret(
            client.CoreV1Api(api),
            {
                "metadata": {
                    "name": f"rear-consumer-{consumer}",
                    "namespace": FLUIDOS_NAMESPACE,
                    "labels": {**labels, REAR_CONSUMER_LABEL: consumer},
                    "annotations": {DELIVERY_POLICY_ANNOTATION: ",".join(delivery_hosts)},
                },
                "stringData": {CONSUMER_TOKEN_KEY: token},
            },
        )
    with bootstrap.api_client(consumer_dir / "kubeconfig") as api:
        secret = token_secret_name(provider)
        _apply_secret(
            client.CoreV1Api(api),
            {
                "metadata": {"name": secret, "namespace": CONSUMER_NAMESPACE, "labels": labels},
                "stringData": {CONSUMER_TOKEN_KEY: token, CA_KEY: gateway_ca.read_text()},
            },
        )
        body = {
            "apiVersion": PROVIDER_KIND.api_version,
            "kind": PROVIDER_KIND.kind,
            "metadata": {"name": provider, "namespace": CONSUMER_NAMESPACE, "labels": labels},
            "spec": {
                "url": gateway_url,
                "tokenSecret": {"name": secret, "key": CONSUMER_TOKEN_KEY},
                "caSecret": {"name": secret, "key": CA_KEY},
            },
        }
        custom = client.CustomObjectsApi(api)
        args = (PROVIDER_KIND.group, PROVIDER_KIND.version, CONSUMER_NAMESPACE)
        try:
            custom.create_namespaced_custom_object(*args, PROVIDER_KIND.plural, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            custom.patch_namespaced_custom_object(
                *args, PROVIDER_KIND.plural, provider, {"spec": body["spec"]}
            )

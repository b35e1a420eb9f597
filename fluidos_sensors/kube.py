"""Kubernetes access shared by the long-running parts: API clients, kopf's login, reads that
may find nothing (their list + watch is `fluidos_sensors.watch`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

# (connect, read) seconds for single requests: an API outage costs a retry, not a hang.
REQUEST_TIMEOUT = (3.0, 15.0)
_T = TypeVar("_T")


def api_client(kubeconfig: Path | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a Pod without a kubeconfig, else the kubeconfig."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(
        config_file=str(kubeconfig) if kubeconfig else None, context=context
    )


def kopf_login(api: client.ApiClient, default_namespace: str | None = None) -> Any:
    """kopf's connection info from our API client, so an operator and its own API calls use
    the same credentials (a kubeconfig's token or client certificate, or in-cluster)."""
    import kopf  # only operators need it

    conf = api.configuration
    keys = conf.api_key or {}
    # The client names the header value "BearerToken" (newer) or "authorization" (older).
    token = keys.get("BearerToken") or keys.get("authorization") or ""
    scheme, _, value = token.partition(" ")
    return kopf.ConnectionInfo(
        server=conf.host,
        ca_path=conf.ssl_ca_cert,
        insecure=not conf.verify_ssl,
        certificate_path=conf.cert_file,
        private_key_path=conf.key_file,
        scheme=scheme or None,
        token=value or None,
        default_namespace=default_namespace,
    )


def get_or_none(read: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
    """`read(*args, **kwargs)` (a `get_*`/`read_*` call of the kubernetes client), or None
    when the API server answers 404: the object does not exist. Other errors raise."""
    try:
        return read(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise

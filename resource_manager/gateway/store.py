"""Kubernetes I/O of the gateway: Flavors (by name), Transactions, Contracts, Allocations and
delivery Secrets. API-server trouble becomes ``Unavailable`` (503), never a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import (
    ALLOCATION,
    CONTRACT,
    FLAVOR,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ROUTE_NAMESPACE,
    TRANSACTION,
    Resource,
)
from fluidos_sensors.kube import get_or_none
from resource_manager.gateway.errors import Unavailable

log = logging.getLogger("resource_manager.gateway.store")

_T = TypeVar("_T")
_RETRYABLE = {429, 500, 502, 503, 504}


class AlreadyExists(Exception):
    """A create found an object of that name."""


class StoreError(Exception):
    """The API server refused a call for a reason that is the gateway's, not the client's."""


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


class MarketStore:
    """The FLUIDOS objects of one namespace (and the delivery Secrets of ROUTE_NAMESPACE)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        secret_namespace: str = ROUTE_NAMESPACE,
        timeout: float = 10.0,
    ) -> None:
        self.namespace = namespace
        self.secret_namespace = secret_namespace
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._timeout = timeout

    def _call(self, what: str, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return call(*args, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            if exc.status in _RETRYABLE or exc.status in (0, None):
                log.warning("Kubernetes API: %s failed: %s %s", what, exc.status, exc.reason)
                raise _unavailable(what) from exc
            if exc.status == 409:
                raise AlreadyExists(what) from exc
            if exc.status == 404:
                raise
            log.error("Kubernetes API refused %s: %s %s", what, exc.status, exc.reason)
            raise StoreError(f"{what}: {exc.status} {exc.reason}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("Kubernetes API unreachable during %s: %s", what, type(exc).__name__)
            raise _unavailable(what) from exc

    # ------------------------------------------------------------------ custom objects

    def _get(self, resource: Resource, name: str) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            get_or_none(  # _call raises ApiException for a 404 only
                self._call,
                f"get {resource.kind} {self.namespace}/{name}",
                self._custom.get_namespaced_custom_object,
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                name,
            ),
        )

    def _list(self, resource: Resource, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = _selector({MANAGED_BY_LABEL: MANAGED_BY_VALUE, **labels})
        return cast(
            dict[str, Any],
            self._call(
                f"list {resource.plural} in {self.namespace}",
                self._custom.list_namespaced_custom_object,
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                label_selector=selector,
            ),
        )["items"]

    def _create(self, resource: Resource, body: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._call(
                f"create {resource.kind} {self.namespace}/{body['metadata']['name']}",
                self._custom.create_namespaced_custom_object,
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                body,
            ),
        )

    def _delete(self, resource: Resource, name: str) -> bool:
        """Delete by name; False when it was not there."""
        try:
            self._call(
                f"delete {resource.kind} {self.namespace}/{name}",
                self._custom.delete_namespaced_custom_object,
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                name,
            )
            return True
        except ApiException:
            return False

    def get_flavor(self, name: str) -> dict[str, Any] | None:
        return self._get(FLAVOR, name)

    def get_transaction(self, name: str) -> dict[str, Any] | None:
        return self._get(TRANSACTION, name)

    def list_transactions(self, **labels: str) -> list[dict[str, Any]]:
        """The gateway's Transactions with these labels (label key -> value)."""
        return self._list(TRANSACTION, labels)

    def create_transaction(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._create(TRANSACTION, body)

    def delete_transaction(self, name: str) -> bool:
        return self._delete(TRANSACTION, name)

    def get_contract(self, name: str) -> dict[str, Any] | None:
        return self._get(CONTRACT, name)

    def list_contracts(self, **labels: str) -> list[dict[str, Any]]:
        return self._list(CONTRACT, labels)

    def create_contract(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._create(CONTRACT, body)

    def delete_contract(self, name: str) -> bool:
        return self._delete(CONTRACT, name)

    def create_allocation(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._create(ALLOCATION, body)

    def delete_allocation(self, name: str) -> bool:
        return self._delete(ALLOCATION, name)

    # ------------------------------------------------------------------ delivery secrets

    def create_secret(self, body: dict[str, Any]) -> None:
        """Create a delivery Secret (its answer, which holds the credentials, is dropped)."""
        # Without preloading, the client answers the raw urllib3 response (not the V1Secret it
        # is annotated to return).
        answer = self._call(
            f"create Secret {self.secret_namespace}/{body['metadata']['name']}",
            self._core.create_namespaced_secret,
            self.secret_namespace,
            body,
            _preload_content=False,  # do not deserialize (or keep) the credentials
        )
        cast("urllib3.BaseHTTPResponse", answer).release_conn()

    def delete_secret(self, name: str) -> bool:
        try:
            self._call(
                f"delete Secret {self.secret_namespace}/{name}",
                self._core.delete_namespaced_secret,
                name,
                self.secret_namespace,
            )
            return True
        except ApiException:
            return False


def _unavailable(what: str) -> Unavailable:
    return Unavailable(
        f"the provider's Kubernetes API server is unavailable ({what}); try again later"
    )

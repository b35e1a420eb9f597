"""SensorRoutes in the API: read-modify-write of targets, shared by the CLI and the operator.

Writers never overwrite each other: every change is a replace with the resourceVersion that
was read, retried on conflict. A route left without targets is deleted (its agent then
unsubscribes from the topic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import ROUTE_NAMESPACE, SENSOR_ROUTE
from fluidos_sensors.kube import REQUEST_TIMEOUT, get_or_none
from router_manager.route import (
    Route,
    RouteTarget,
    body_of,
    parse_route,
    route_name,
    with_target,
    without_target,
)

_CONFLICT_RETRIES = 8


class RouteConflict(RuntimeError):
    """Others kept changing the route; the change was not made."""


class RouteApi:
    """SensorRoutes of one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str = ROUTE_NAMESPACE) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        r = SENSOR_ROUTE
        self._args = (r.group, r.version, namespace, r.plural)

    def get(self, name: str) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            get_or_none(
                self._custom.get_namespaced_custom_object,
                *self._args,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )

    def list(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT}
        if label_selector:
            kwargs["label_selector"] = label_selector
        listing = self._custom.list_namespaced_custom_object(*self._args, **kwargs)
        return list(cast(dict[str, Any], listing)["items"])

    def change(
        self, node: str, topic: str, flavor: str, edit: Callable[[Route], Route]
    ) -> Route | None:
        """Apply `edit` to the route of (node, topic), creating or deleting it as needed.
        Returns the route as written (None when deleted or not needed)."""
        name = route_name(node, topic)
        for _ in range(_CONFLICT_RETRIES):
            current = self.get(name)
            if current is None:
                route = edit(Route(self.namespace, name, node, topic, flavor=flavor))
                if not route.targets:
                    return None
                try:
                    self._custom.create_namespaced_custom_object(
                        *self._args, body_of(route), _request_timeout=REQUEST_TIMEOUT
                    )
                    return route
                except ApiException as exc:
                    if exc.status == 409:
                        continue  # created meanwhile: edit that one
                    raise
            parsed, _ = parse_route(current)
            # Targets another writer put there but which do not parse stay as they are.
            base = parsed or Route(self.namespace, name, node, topic)
            keep_raw = [
                t
                for t in current.get("spec", {}).get("targets") or []
                if isinstance(t, dict) and base.target(str(t.get("id"))) is None
            ]
            route = edit(base)
            if not route.flavor and flavor:
                route = replace(route, flavor=flavor)
            version = current["metadata"]["resourceVersion"]
            try:
                if not route.targets and not keep_raw:
                    self._custom.delete_namespaced_custom_object(
                        *self._args,
                        name,
                        # kubernetes takes a dict body too; its annotation names only the model
                        body={"preconditions": {"resourceVersion": version}},  # type: ignore[arg-type]
                        _request_timeout=REQUEST_TIMEOUT,
                    )
                    return None
                body = body_of(route)
                body["spec"]["targets"] += keep_raw
                body["metadata"]["resourceVersion"] = version
                self._custom.replace_namespaced_custom_object(
                    *self._args, name, body, _request_timeout=REQUEST_TIMEOUT
                )
                return route
            except ApiException as exc:
                if exc.status in (404, 409):
                    continue
                raise
        raise RouteConflict(f"SensorRoute {self.namespace}/{name} kept changing; try again")

    def add_target(self, node: str, topic: str, flavor: str, target: RouteTarget) -> Route:
        route = self.change(node, topic, flavor, lambda r: with_target(r, target))
        assert route is not None
        return route

    def remove_target(self, node: str, topic: str, target_id: str) -> Route | None:
        return self.change(node, topic, "", lambda r: without_target(r, target_id))

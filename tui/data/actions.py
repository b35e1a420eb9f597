"""What the TUI writes: a SensorRequest for a flavor, deleting a request, removing a route
target. Blocking calls; the app runs them in worker threads."""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import SENSOR_REQUEST, SENSOR_ROUTE
from fluidos_sensors.filters import SensorFilter, to_request_filter
from fluidos_sensors.flavor import SENSORS_PREFIX, SensorFlavor
from fluidos_sensors.kube import get_or_none
from fluidos_sensors.rates import offer_problem
from fluidos_sensors.shaping import (
    Shaping,
    ShapingError,
    parse_aggregates,
    parse_shaping,
    parse_window,
)
from fluidos_sensors.units import QuantityError, format_number, parse_rate_hz

# Which Flavor a request made from the TUI was pinned to ("cluster/namespace/name").
REQUESTED_FLAVOR_ANNOTATION = f"{SENSORS_PREFIX}/requested-flavor"
URL_MAX_LENGTH = 2048  # the SensorRequest CRD's bound on spec.endpoint.url
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
REQUEST_TIMEOUT = (3.0, 15.0)


class ActionError(Exception):
    """An action could not be done; the message says what and why."""


def check_endpoint(url: str) -> str:
    """The delivery endpoint as the SensorRequest CRD accepts it, or ActionError saying why."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ActionError(f"endpoint URL must be http:// or https:// and name a host, got {url!r}")
    if parts.username or parts.password:
        raise ActionError("endpoint URL must not carry credentials (use a Secret)")
    if len(url) > URL_MAX_LENGTH:
        raise ActionError(f"endpoint URL is longer than {URL_MAX_LENGTH} characters")
    return url


def check_namespace(namespace: str) -> str:
    namespace = namespace.strip()
    if not _NAME.match(namespace) or len(namespace) > 63:
        raise ActionError(f"namespace {namespace!r} is not a valid namespace name")
    return namespace


def pinned_filter(flavor: SensorFlavor) -> SensorFilter:
    """A filter only this flavor's sensor meets: its node, types, model and manufacturer."""
    sensor = flavor.sensor
    return SensorFilter.from_options(
        node=flavor.node or None,
        sensor_type=list(sensor.types),
        sensor_model=sensor.model or None,
        sensor_manufacturer=sensor.manufacturer or None,
    )


def parse_shape_text(text: str) -> Shaping | None:
    """What the request dialog's shape field says: empty for every reading, "every 10", or
    aggregates over a window ("mean,max per 1s"); ActionError says what is wrong."""
    text = text.strip()
    if not text:
        return None
    try:
        if text.lower().startswith("every"):
            count = text[len("every") :].strip()
            if not count.isdigit():
                raise ActionError(f"shape: 'every' takes a whole number, got {count!r}")
            return parse_shaping({"every": int(count)})
        aggregates, per, window = text.partition(" per ")
        if not per:
            raise ActionError(
                "shape: write 'every N' or aggregates per a window: 'mean,max per 1s'"
            )
        return parse_shaping(
            {"aggregate": parse_aggregates(aggregates), "windowMs": parse_window(window.strip())}
        )
    except ShapingError as exc:
        raise ActionError(f"shape: {str(exc).partition(': ')[2] or exc}") from None


def parse_rate_text(text: str, flavor: SensorFlavor) -> float | None:
    """The dialog's rate field (empty: the board's rate) as the flavor can run it."""
    text = text.strip()
    if not text:
        return None
    try:
        rate = parse_rate_hz(text)
    except QuantityError as exc:
        raise ActionError(f"rate: {exc}") from None
    problem = offer_problem(flavor.sensor, rate)
    if problem is not None:
        raise ActionError(f"rate: the sensor {problem}")
    return rate


def sensor_request_body(
    flavor: SensorFlavor,
    flavor_ref: str,
    endpoint: str,
    namespace: str,
    data_format: str = "influx",
    *,
    shape: Shaping | None = None,
    rate_hz: float | None = None,
) -> dict[str, Any]:
    """A SensorRequest for one sensor like `flavor`, delivered to `endpoint` (as `shape`
    says), set to `rate_hz` when given."""
    prefix = re.sub("-+", "-", re.sub(r"[^a-z0-9-]", "-", flavor.sensor.key.lower()))
    prefix = prefix.strip("-")[:40] or "sensor"
    target: dict[str, Any] = {"url": check_endpoint(endpoint), "format": data_format}
    if shape is not None:
        target["shape"] = shape.body()
    spec: dict[str, Any] = {
        "filter": to_request_filter(pinned_filter(flavor)),
        "count": 1,
        "endpoint": target,
    }
    if rate_hz is not None:
        spec["rate"] = format_number(rate_hz)
    return {
        "apiVersion": SENSOR_REQUEST.api_version,
        "kind": SENSOR_REQUEST.kind,
        "metadata": {
            "generateName": f"{prefix}-",
            "namespace": check_namespace(namespace),
            "annotations": {REQUESTED_FLAVOR_ANNOTATION: flavor_ref},
        },
        "spec": spec,
    }


def _failed(what: str, exc: ApiException) -> ActionError:
    import json

    try:
        message = json.loads(exc.body or "").get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        message = exc.reason
    return ActionError(f"{what}: {exc.status} {message}")


def create_sensor_request(api: client.ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    """Create the SensorRequest; returns it as the API server stored it."""
    namespace = body["metadata"]["namespace"]
    try:
        return cast(
            dict[str, Any],
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                SENSOR_REQUEST.group,
                SENSOR_REQUEST.version,
                namespace,
                SENSOR_REQUEST.plural,
                body,
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )
    except ApiException as exc:
        raise _failed(f"create SensorRequest in {namespace}", exc) from None


def delete_sensor_request(api: client.ApiClient, namespace: str, name: str) -> None:
    """Delete a SensorRequest (its operator releases what it acquired)."""
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            SENSOR_REQUEST.group,
            SENSOR_REQUEST.version,
            namespace,
            SENSOR_REQUEST.plural,
            name,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 404:
            return  # gone already: what was asked for holds
        raise _failed(f"delete SensorRequest {namespace}/{name}", exc) from None


def removal_patch(route: dict[str, Any], target_id: str) -> list[dict[str, Any]] | None:
    """A JSON patch removing target `target_id` from this version of the route, guarded by
    `test`s on its resourceVersion and the target's position; None if the target is gone."""
    targets = (route.get("spec") or {}).get("targets") or []
    index = next((i for i, t in enumerate(targets) if t.get("id") == target_id), None)
    if index is None:
        return None
    version = route["metadata"]["resourceVersion"]
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "test", "path": f"/spec/targets/{index}/id", "value": target_id},
        {"op": "remove", "path": f"/spec/targets/{index}"},
    ]


def remove_route_target(
    api: client.ApiClient, namespace: str, name: str, target_id: str, attempts: int = 5
) -> bool:
    """Remove one target from a SensorRoute without losing a concurrent update: the patch only
    applies to the version it was computed from; a newer version is read and tried again.
    Returns False when the target was not there (any more)."""
    objects = client.CustomObjectsApi(api)
    where = f"SensorRoute {namespace}/{name}"
    args = (SENSOR_ROUTE.group, SENSOR_ROUTE.version, namespace, SENSOR_ROUTE.plural, name)
    for _ in range(attempts):
        try:
            route = cast(
                dict[str, Any] | None,
                get_or_none(
                    objects.get_namespaced_custom_object, *args, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as exc:
            raise _failed(f"read {where}", exc) from None
        if route is None:
            return False
        patch = removal_patch(route, target_id)
        if patch is None:
            return False
        try:
            objects.patch_namespaced_custom_object(
                *args,
                patch,
                _content_type="application/json-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
            return True
        except ApiException as exc:
            # A failed `test` (422) or a conflict (409): someone changed the route meanwhile.
            if exc.status not in (409, 422):
                raise _failed(f"remove target {target_id} from {where}", exc) from None
    raise ActionError(f"remove target {target_id} from {where}: it kept changing; try again")

"""A SensorRoute as the router sees it: one (edge node, source topic), many targets. No I/O.

Whoever writes Routes (the CLI, the router manager) builds them here; the edge agent parses
them here. A bad target costs only itself: `parse_route` keeps the good targets and reports
each bad one with the route and the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fluidos_sensors.api import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ROUTE_NAMESPACE,
    SENSOR_ROUTE,
)
from fluidos_sensors.contract import ContractDelivery
from fluidos_sensors.endpoints import (
    AuthType,
    DeliveryFormat,
    DeliveryPolicy,
    EndpointError,
    check_endpoint_url,
)
from fluidos_sensors.flavor import NODE_LABEL, label_safe, stable_name
from fluidos_sensors.shaping import Shaping, ShapingError, parse_shaping

FORMATS = tuple(DeliveryFormat)
DEFAULT_FORMAT = DeliveryFormat.INFLUX.value
AUTH_TYPES = tuple(AuthType)
ORIGIN_CONTRACT = "Contract"
ORIGIN_MANUAL = "Manual"


DEFAULT_BATCH_SIZE = 1000
DEFAULT_BATCH_DELAY_MS = 100
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
BATCH_SIZE_MAX = 10_000
BATCH_DELAY_MS_MAX = 60_000
QUEUE_BYTES_MIN = 4096
TARGETS_MAX = 256


@dataclass(frozen=True)
class TargetAuth:
    """Credentials from Secret `secret_name` in the route's namespace.

    bearer: key ``token`` sent as ``Authorization: Bearer``; token: key ``token`` sent as
    ``Authorization: Token`` (InfluxDB v2); basic: keys ``username`` and ``password``.
    """

    type: str
    secret_name: str


@dataclass(frozen=True)
class RouteTarget:
    """One consumer endpoint of a route, with its delivery settings."""

    id: str
    url: str
    format: str = DEFAULT_FORMAT
    batch_size: int = DEFAULT_BATCH_SIZE
    # The longest a reading may be held to make a batch. The edge agent holds none by choice
    # (adaptive batching: it sends at once unless a request is in flight), so it never
    # reaches it; kept in routes (their CRD names it) and used by the Telegraf peer in bench/.
    batch_delay_ms: int = DEFAULT_BATCH_DELAY_MS
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    auth: TargetAuth | None = None
    origin_kind: str = ORIGIN_MANUAL
    origin_name: str = ""
    origin_namespace: str = ""
    # The buyer's delivery policy (endpoints.DeliveryPolicy entries) recorded on its Contract.
    allowed_hosts: tuple[str, ...] = ()
    # Window aggregates or downsampling instead of raw readings (router_manager.shaping).
    shape: Shaping | None = None


@dataclass(frozen=True)
class Route:
    """Deliver every reading of `topic` on `node`'s broker to each of `targets`."""

    namespace: str
    name: str
    node: str
    topic: str
    targets: tuple[RouteTarget, ...] = ()
    flavor: str = ""  # "namespace/name" of the Sensor Flavor this topic serves
    generation: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def target(self, target_id: str) -> RouteTarget | None:
        return next((t for t in self.targets if t.id == target_id), None)


@dataclass(frozen=True)
class RouteProblem:
    """What is wrong with (part of) a route, naming the object and the field."""

    route: str
    field: str
    message: str
    target: str | None = None

    def __str__(self) -> str:
        return f"{SENSOR_ROUTE.kind} {self.route}: {self.field}: {self.message}"


# ---------------------------------------------------------------------------------------
# Names


def route_name(node: str, topic: str) -> str:
    """The one Route name for (node, topic), so that every writer finds the same object."""
    device_and_sensor = "-".join(topic.split("/")[-2:])
    return stable_name(f"route-{device_and_sensor}", f"{node}\n{topic}")


def manual_target_id(url: str) -> str:
    """A target id for a URL added by hand (stable: adding the same URL twice is one target)."""
    return stable_name("manual", url)


def contract_target_id(contract: str) -> str:
    """The target id of a purchase, after its Contract's name."""
    return stable_name(contract, contract)


def target_for_contract(delivery: ContractDelivery) -> RouteTarget:
    """The route target a sold sensor's Contract asks for (its Secret holds the credentials)."""
    auth = None
    if delivery.auth_type is not None and delivery.secret_name:
        auth = TargetAuth(str(delivery.auth_type), delivery.secret_name)
    return RouteTarget(
        id=contract_target_id(delivery.contract),
        url=delivery.endpoint,
        format=str(delivery.format),
        auth=auth,
        origin_kind=ORIGIN_CONTRACT,
        origin_name=delivery.contract,
        origin_namespace=delivery.namespace,
        allowed_hosts=delivery.policy.entries,
        shape=delivery.shape,
    )


# ---------------------------------------------------------------------------------------
# Building


def target_body(target: RouteTarget) -> dict[str, Any]:
    """A target as it sits in ``spec.targets``."""
    body: dict[str, Any] = {
        "id": target.id,
        "url": target.url,
        "format": target.format,
        "origin": {"kind": target.origin_kind},
        "batch": {"maxSize": target.batch_size, "maxDelayMs": target.batch_delay_ms},
        "queueBytes": target.queue_bytes,
    }
    if target.origin_name:
        body["origin"]["name"] = target.origin_name
    if target.origin_namespace:
        body["origin"]["namespace"] = target.origin_namespace
    if target.auth is not None:
        body["auth"] = {"type": target.auth.type, "secretName": target.auth.secret_name}
    if target.allowed_hosts:
        body["allowedHosts"] = list(target.allowed_hosts)
    if target.shape is not None:
        body["shape"] = target.shape.body()
    return body


def route_labels(node: str) -> dict[str, str]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    if label_safe(node):
        labels[NODE_LABEL] = node  # edge agents select their routes by it
    return labels


def route_body(
    node: str,
    topic: str,
    targets: Iterable[RouteTarget],
    *,
    flavor: str = "",
    namespace: str = ROUTE_NAMESPACE,
) -> dict[str, Any]:
    """The whole SensorRoute object for (node, topic)."""
    spec: dict[str, Any] = {
        "node": node,
        "topic": topic,
        "targets": [target_body(t) for t in sorted(targets, key=lambda t: t.id)],
    }
    if flavor:
        spec["flavor"] = flavor
    return {
        "apiVersion": SENSOR_ROUTE.api_version,
        "kind": SENSOR_ROUTE.kind,
        "metadata": {
            "name": route_name(node, topic),
            "namespace": namespace,
            "labels": route_labels(node),
        },
        "spec": spec,
    }


def with_target(route: Route, target: RouteTarget) -> Route:
    """The route with `target` added, or replacing the target of the same id."""
    others = tuple(t for t in route.targets if t.id != target.id)
    return replace(route, targets=(*others, target))


def without_target(route: Route, target_id: str) -> Route:
    return replace(route, targets=tuple(t for t in route.targets if t.id != target_id))


def body_of(route: Route) -> dict[str, Any]:
    """A parsed route back as an object body (for read-modify-write by the CLI and operator)."""
    return route_body(
        route.node, route.topic, route.targets, flavor=route.flavor, namespace=route.namespace
    )


# ---------------------------------------------------------------------------------------
# Parsing


@dataclass
class _Reader:
    route: str
    problems: list[RouteProblem] = field(default_factory=list)

    def fail(self, path: str, message: str, target: str | None = None) -> None:
        self.problems.append(RouteProblem(self.route, path, message, target))


def _int(value: object, default: int, low: int, high: int) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _target(
    read: _Reader, index: int, item: object, allowed_hosts: Iterable[str]
) -> RouteTarget | None:
    path = f"spec.targets[{index}]"
    if not isinstance(item, Mapping):
        read.fail(path, "must be an object")
        return None
    target_id = item.get("id")
    if not isinstance(target_id, str) or not target_id:
        read.fail(f"{path}.id", "is required")
        return None
    raw_origin = item.get("origin")
    origin = raw_origin if isinstance(raw_origin, Mapping) else {}
    origin_kind = str(origin.get("kind") or ORIGIN_MANUAL)
    raw_allowed = item.get("allowedHosts") or []
    if not isinstance(raw_allowed, list) or not all(isinstance(h, str) for h in raw_allowed):
        read.fail(f"{path}.allowedHosts", "must be a list of strings", target_id)
        return None
    policy, _ = DeliveryPolicy.parse(",".join(raw_allowed))
    try:
        url = check_endpoint_url(item.get("url"), allowed_hosts)
        # A sold target goes only where the buyer's policy allows (the gateway checked it at
        # purchase; this holds even if a Contract or route was written around the gateway).
        if origin_kind == ORIGIN_CONTRACT or raw_allowed:
            policy.check(url)
    except EndpointError as err:
        read.fail(f"{path}.url", str(err), target_id)
        return None
    fmt = item.get("format") or DEFAULT_FORMAT
    if fmt not in FORMATS:
        read.fail(f"{path}.format", f"must be one of {', '.join(FORMATS)}", target_id)
        return None
    batch = item.get("batch") or {}
    if not isinstance(batch, Mapping):
        batch = {}
    size = _int(batch.get("maxSize"), DEFAULT_BATCH_SIZE, 1, BATCH_SIZE_MAX)
    delay = _int(batch.get("maxDelayMs"), DEFAULT_BATCH_DELAY_MS, 0, BATCH_DELAY_MS_MAX)
    queue = _int(item.get("queueBytes"), DEFAULT_QUEUE_BYTES, QUEUE_BYTES_MIN, 2**34)
    for value, where, bounds in (
        (size, "batch.maxSize", f"1..{BATCH_SIZE_MAX}"),
        (delay, "batch.maxDelayMs", f"0..{BATCH_DELAY_MS_MAX}"),
        (queue, "queueBytes", f">= {QUEUE_BYTES_MIN}"),
    ):
        if value is None:
            read.fail(f"{path}.{where}", f"must be an integer {bounds}", target_id)
            return None
    auth = None
    raw_auth = item.get("auth")
    if raw_auth is not None:
        if (
            not isinstance(raw_auth, Mapping)
            or raw_auth.get("type") not in AUTH_TYPES
            or not isinstance(raw_auth.get("secretName"), str)
            or not raw_auth.get("secretName")
        ):
            read.fail(
                f"{path}.auth",
                f"must be {{type: {'|'.join(AUTH_TYPES)}, secretName: <Secret name>}}",
                target_id,
            )
            return None
        auth = TargetAuth(raw_auth["type"], raw_auth["secretName"])
    try:
        shape = parse_shaping(item.get("shape"), f"{path}.shape")
    except ShapingError as err:
        field_path, _, message = str(err).partition(": ")
        read.fail(field_path, message, target_id)
        return None
    assert size is not None and delay is not None and queue is not None
    return RouteTarget(
        id=target_id,
        url=url,
        format=fmt,
        batch_size=size,
        batch_delay_ms=delay,
        queue_bytes=queue,
        auth=auth,
        origin_kind=origin_kind,
        origin_name=str(origin.get("name") or ""),
        origin_namespace=str(origin.get("namespace") or ""),
        allowed_hosts=policy.entries,
        shape=shape,
    )


def parse_route(
    obj: Mapping[str, Any], allowed_hosts: Iterable[str] = ()
) -> tuple[Route | None, list[RouteProblem]]:
    """The route an object describes (None when node or topic is unusable) and its problems.

    Bad targets are left out, each with a problem; duplicate ids keep the first.
    """
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    read = _Reader(f"{namespace}/{name}")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        read.fail("spec", "is required")
        return None, read.problems
    node, topic = spec.get("node"), spec.get("topic")
    if not isinstance(node, str) or not node:
        read.fail("spec.node", "must name the edge node")
    if not isinstance(topic, str) or not topic or any(ch in topic for ch in "#+\x00"):
        read.fail("spec.topic", "must be an MQTT topic without wildcards")
    if read.problems:
        return None, read.problems
    allowed = list(allowed_hosts)
    targets: list[RouteTarget] = []
    raw_targets = spec.get("targets") or []
    if not isinstance(raw_targets, list):
        read.fail("spec.targets", "must be a list")
        raw_targets = []
    for index, item in enumerate(raw_targets):
        target = _target(read, index, item, allowed)
        if target is None:
            continue
        if any(t.id == target.id for t in targets):
            read.fail(f"spec.targets[{index}].id", f'"{target.id}" is used twice', target.id)
            continue
        targets.append(target)
    flavor = spec.get("flavor")
    generation = meta.get("generation")
    return Route(
        namespace=namespace,
        name=name,
        node=node,  # type: ignore[arg-type]
        topic=topic,  # type: ignore[arg-type]
        targets=tuple(targets),
        flavor=flavor if isinstance(flavor, str) else "",
        generation=generation if isinstance(generation, int) else 0,
    ), read.problems

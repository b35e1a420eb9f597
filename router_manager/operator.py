"""The router manager as a kopf operator (provider control plane).

- SensorRoutes -> KubeEdge RuleEndpoints and Rules (optional): created, recreated when they
  must change (KubeEdge ignores updates), deleted with the route; orphans are removed.
- SensorRoute status -> the Flavor's ``typeData.observed`` (latency, rate), at a bounded rate.
- Contracts (written by the REAR gateway at purchase) -> targets of the route of the sold
  sensor; a deleted Contract's target leaves (also when it went while we were down).

Decisions live in `kubeedge` and `observed`; this module only does the I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import (
    CONTRACT,
    FLAVOR,
    FLUIDOS_NAMESPACE,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ROUTE_NAMESPACE,
    RULE,
    RULE_ENDPOINT,
    SENSOR_ROUTE,
)
from fluidos_sensors.contract import ContractError, delivery_target
from fluidos_sensors.flavor import ObservedPerformance
from fluidos_sensors.kube import REQUEST_TIMEOUT, kopf_login
from router_manager import kubeedge, observed
from router_manager.route import (
    ORIGIN_CONTRACT,
    RouteTarget,
    contract_target_id,
    parse_route,
    target_for_contract,
)
from router_manager.routes_api import RouteApi

log = logging.getLogger("router_manager")

_CREATE_ATTEMPTS = 20


@dataclass
class Settings:
    api: client.ApiClient
    route_namespace: str = ROUTE_NAMESPACE
    contract_namespace: str = FLUIDOS_NAMESPACE
    kubeedge_rules: bool = True
    ready_file: Path | None = None  # touched once the operator has started


@dataclass
class _Runtime:
    settings: Settings
    custom: client.CustomObjectsApi
    lock: threading.Lock = field(default_factory=threading.Lock)
    endpoints_ready: set[str] = field(default_factory=set)
    observed: dict[str, tuple[ObservedPerformance, float]] = field(default_factory=dict)
    # Route name -> the spec its Rule was last made from: status updates (every few seconds
    # per route) must not cost a list of Rules each.
    ruled: dict[str, Any] = field(default_factory=dict)
    # Contract name -> the target last written for it (Contract status updates cost nothing).
    delivered: dict[str, tuple[str, str, RouteTarget]] = field(default_factory=dict)


_runtime: _Runtime | None = None


def configure(settings: Settings) -> None:
    global _runtime
    _runtime = _Runtime(settings, client.CustomObjectsApi(settings.api))


def _rt() -> _Runtime:
    if _runtime is None:
        raise RuntimeError("router_manager.operator.configure() was not called")
    return _runtime


def _in_route_namespace(namespace: str | None, **_: Any) -> bool:
    return namespace == _rt().settings.route_namespace


def _in_contract_namespace(namespace: str | None, **_: Any) -> bool:
    return namespace == _rt().settings.contract_namespace


def _kubeedge_on(**_: Any) -> bool:
    return _rt().settings.kubeedge_rules


# ------------------------------------------------------------------------------- KubeEdge


def _ensure_endpoints(rt: _Runtime, namespace: str) -> None:
    if namespace in rt.endpoints_ready:
        return
    for body in kubeedge.rule_endpoints(namespace):
        try:
            rt.custom.create_namespaced_custom_object(
                RULE_ENDPOINT.group,
                RULE_ENDPOINT.version,
                namespace,
                RULE_ENDPOINT.plural,
                body,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
    rt.endpoints_ready.add(namespace)


def _rule_args(namespace: str) -> tuple[str, str, str, str]:
    return RULE.group, RULE.version, namespace, RULE.plural


def _delete_rule(rt: _Runtime, namespace: str, name: str) -> None:
    try:
        rt.custom.delete_namespaced_custom_object(
            *_rule_args(namespace), name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def _owned_rules(rt: _Runtime, route_name: str) -> list[dict[str, Any]]:
    answer = cast(
        dict[str, Any],
        rt.custom.list_cluster_custom_object(
            RULE.group,
            RULE.version,
            RULE.plural,
            label_selector=f"{kubeedge.ROUTE_LABEL}={route_name}",
            _request_timeout=REQUEST_TIMEOUT,
        ),
    )
    return list(answer.get("items") or [])


def sync_rule(route_obj: Mapping[str, Any]) -> None:
    """Make the KubeEdge Rule of a route match it (delete + create when it must change)."""
    rt = _rt()
    route, _ = parse_route(route_obj)
    name = str((route_obj.get("metadata") or {}).get("name"))
    desired = kubeedge.rule_for(route) if route is not None else None
    with rt.lock:
        up_to_date = False
        for rule in _owned_rules(rt, name):
            meta = rule["metadata"]
            if (
                desired is not None
                and not up_to_date
                and (meta["namespace"], meta["name"])
                == (desired["metadata"]["namespace"], desired["metadata"]["name"])
                and not kubeedge.needs_recreate(rule, desired)
            ):
                up_to_date = True
                continue
            _delete_rule(rt, meta["namespace"], meta["name"])
            log.info("Rule %s/%s deleted (route %s changed)", meta["namespace"], meta["name"], name)
        if desired is None or up_to_date:
            return
        namespace = desired["metadata"]["namespace"]
        _ensure_endpoints(rt, namespace)
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                rt.custom.create_namespaced_custom_object(
                    *_rule_args(namespace), desired, _request_timeout=REQUEST_TIMEOUT
                )
                break
            except ApiException as exc:
                # 409: the old Rule is still being deleted (finalizers elsewhere): wait for it.
                if exc.status != 409 or attempt == _CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5)
        log.info("Rule %s/%s created for route %s", namespace, desired["metadata"]["name"], name)


def remove_rules(route_name: str) -> None:
    rt = _rt()
    with rt.lock:
        for rule in _owned_rules(rt, route_name):
            _delete_rule(rt, rule["metadata"]["namespace"], rule["metadata"]["name"])


# ------------------------------------------------------------------------------- observed


def report_observed(route_obj: Mapping[str, Any], now: float | None = None) -> bool:
    """Write the route's measured latency and rate on its Flavor when worth it."""
    rt = _rt()
    now = time.time() if now is None else now
    flavor = str((route_obj.get("spec") or {}).get("flavor") or "")
    if "/" not in flavor:
        return False
    new = observed.observed_from_status(route_obj.get("status") or {}, now)
    if new is None:
        return False
    last, last_at = rt.observed.get(flavor, (None, None))
    if not observed.worth_writing(last, last_at, new, now):
        return False
    namespace, name = flavor.split("/", 1)
    try:
        rt.custom.patch_namespaced_custom_object(
            FLAVOR.group,
            FLAVOR.version,
            namespace,
            FLAVOR.plural,
            name,
            observed.observed_patch(new),
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 404:  # the Flavor is gone; its route will follow
            return False
        raise
    rt.observed[flavor] = (new, now)
    return True


# ------------------------------------------------------------------------------ contracts


def _routes(rt: _Runtime) -> RouteApi:
    return RouteApi(rt.settings.api, rt.settings.route_namespace)


def deliver_contract(contract: Mapping[str, Any]) -> RouteTarget | None:
    """Make the Contract's endpoint a target of the route of its sensor (None: unusable)."""
    rt = _rt()
    name = str((contract.get("metadata") or {}).get("name"))
    try:
        delivery = delivery_target(contract)
    except ContractError as exc:
        log.error("%s; no route target for it", exc)
        # kopf.event takes any object mapping (its annotation names only kopf's own Body).
        kopf.event(dict(contract), type="Warning", reason="NotDeliverable", message=str(exc)[:1000])  # type: ignore[arg-type]
        return None
    target = target_for_contract(delivery)
    wanted = (delivery.node, delivery.broker_topic, target)
    if rt.delivered.get(name) == wanted:
        return target
    flavor = f"{delivery.namespace}/{delivery.flavor}"
    previous = rt.delivered.get(name)
    if previous is not None and previous[:2] != wanted[:2]:  # the sensor moved
        _routes(rt).remove_target(previous[0], previous[1], previous[2].id)
    _routes(rt).add_target(delivery.node, delivery.broker_topic, flavor, target)
    rt.delivered[name] = wanted
    log.info("Contract %s: delivering %s to target %s", name, delivery.broker_topic, target.id)
    return target


def withdraw_contract(contract: Mapping[str, Any]) -> None:
    """The Contract is gone: its target leaves its route (the route goes with its last one)."""
    rt = _rt()
    name = str((contract.get("metadata") or {}).get("name"))
    known = rt.delivered.pop(name, None)
    target_id = contract_target_id(name)
    if known is not None:
        _routes(rt).remove_target(known[0], known[1], target_id)
        return
    try:
        delivery = delivery_target(contract)
    except ContractError:
        return  # never delivered: nothing to withdraw
    _routes(rt).remove_target(delivery.node, delivery.broker_topic, target_id)


def withdraw_orphans(route_obj: Mapping[str, Any], contracts: Mapping[str, Any]) -> list[str]:
    """Targets of Contracts that no longer exist (deleted while we were down) leave the route."""
    route, _ = parse_route(route_obj)
    if route is None:
        return []
    gone = [
        t.id
        for t in route.targets
        if t.origin_kind == ORIGIN_CONTRACT
        and t.origin_namespace == _rt().settings.contract_namespace
        and t.origin_name
        and t.origin_name not in contracts
    ]
    for target_id in gone:
        _routes(_rt()).remove_target(route.node, route.topic, target_id)
        log.info("route %s: target %s of a deleted Contract removed", route.name, target_id)
    return gone


# ------------------------------------------------------------------------------ handlers


@kopf.on.login()
def _login(**_: Any) -> kopf.ConnectionInfo:
    """kopf talks to the cluster with the same credentials as our API client."""
    return kopf_login(_rt().settings.api, _rt().settings.route_namespace)


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 4
    ready_file = _rt().settings.ready_file
    if ready_file is not None:
        ready_file.touch()


@kopf.index(SENSOR_ROUTE.group, SENSOR_ROUTE.version, SENSOR_ROUTE.plural, when=_in_route_namespace)
def routes_index(name: str, **_: Any) -> dict[str, bool]:
    return {name: True}


@kopf.index(CONTRACT.group, CONTRACT.version, CONTRACT.plural, when=_in_contract_namespace)
def contracts_index(name: str, **_: Any) -> dict[str, bool]:
    return {name: True}


@kopf.on.event(CONTRACT.group, CONTRACT.version, CONTRACT.plural, when=_in_contract_namespace)
def contract_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    obj = {"metadata": dict(body.get("metadata", {})), "spec": dict(body.get("spec") or {})}
    if event.get("type") == "DELETED":
        withdraw_contract(obj)
    else:
        deliver_contract(obj)


# kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
@kopf.on.event(  # type: ignore[arg-type]
    SENSOR_ROUTE.group, SENSOR_ROUTE.version, SENSOR_ROUTE.plural, when=_in_route_namespace
)
def route_event(
    event: kopf.RawEvent, body: kopf.Body, name: str, contracts_index: kopf.Index, **_: Any
) -> None:
    rt = _rt()
    if event.get("type") == "DELETED":
        rt.ruled.pop(name, None)
        if rt.settings.kubeedge_rules:
            remove_rules(name)
        return
    obj = {"metadata": dict(body.get("metadata", {})), "spec": dict(body.get("spec") or {})}
    obj["status"] = dict(body.get("status") or {})
    if rt.ruled.get(name) != obj["spec"]:
        if withdraw_orphans(obj, contracts_index):
            return  # the route changed: its next event does the rest
        if rt.settings.kubeedge_rules:
            sync_rule(obj)
        rt.ruled[name] = obj["spec"]
    report_observed(obj)


# kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
@kopf.on.event(  # type: ignore[arg-type]
    RULE.group,
    RULE.version,
    RULE.plural,
    labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
    when=_kubeedge_on,
)
def rule_event(event: kopf.RawEvent, body: kopf.Body, routes_index: kopf.Index, **_: Any) -> None:
    """A Rule whose route is gone (deleted while the operator was down) is an orphan."""
    if event.get("type") == "DELETED":
        return
    meta = body.get("metadata", {})
    route = (meta.get("labels") or {}).get(kubeedge.ROUTE_LABEL)
    if route and route not in routes_index:
        _delete_rule(_rt(), meta["namespace"], meta["name"])
        log.info(
            "deleted orphan Rule %s/%s of missing route %s", meta["namespace"], meta["name"], route
        )

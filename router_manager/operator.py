"""The router manager as a kopf operator (provider control plane).

- SensorRoutes -> KubeEdge RuleEndpoints and Rules (optional): created, recreated when they
  must change (KubeEdge ignores updates), deleted with the route; orphans are removed.
- SensorRoute status -> the Flavor's ``typeData.observed`` (latency, rate), at a bounded rate.
- Contracts (written by the REAR gateway at purchase) -> targets of the route of the sold
  sensor; a deleted Contract's target leaves (also when it went while we were down).
- The sampling rate a Contract holds -> its Device's desired rate property (`device_rates`).

Decisions live in `kubeedge` and `observed`; this module only does the I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
from fluidos_sensors.kube import REQUEST_TIMEOUT
from fluidos_sensors.operators import operator_settings, run_operator
from fluidos_sensors.rates import RateError, held_rate
from router_manager import kubeedge, observed
from router_manager.device_rates import DeviceRates
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
_EVENT_MESSAGE_MAX = 1000  # the API server caps Event messages at 1 KiB
_MAX_WORKERS = 4
_ROUTES = (SENSOR_ROUTE.group, SENSOR_ROUTE.version, SENSOR_ROUTE.plural)
_CONTRACTS = (CONTRACT.group, CONTRACT.version, CONTRACT.plural)
_RULES = (RULE.group, RULE.version, RULE.plural)


@dataclass
class Settings:
    api: client.ApiClient
    route_namespace: str = ROUTE_NAMESPACE
    contract_namespace: str = FLUIDOS_NAMESPACE
    kubeedge_rules: bool = True


def _rule_args(namespace: str) -> tuple[str, str, str, str]:
    return RULE.group, RULE.version, namespace, RULE.plural


class RouteOperator:
    """The handlers, and what they keep between events so that frequent route status updates
    cost no API calls: the spec each route's Rule was made from, the target written for each
    Contract, the observed performance last written on each Flavor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.custom = client.CustomObjectsApi(settings.api)
        self.routes = RouteApi(settings.api, settings.route_namespace)
        self.lock = threading.Lock()
        self.endpoints_ready: set[str] = set()
        self.observed: dict[str, tuple[ObservedPerformance, float]] = {}
        self.ruled: dict[str, Any] = {}  # route name -> spec
        self.delivered: dict[str, tuple[str, str, RouteTarget]] = {}  # Contract name -> target
        self.rates = DeviceRates(settings.api)

    def registry(self) -> kopf.OperatorRegistry:
        """Every handler, bound to this operator; Rules are watched only when kept."""
        registry = kopf.OperatorRegistry()
        in_routes, in_contracts = self.in_route_namespace, self.in_contract_namespace
        kopf.index(*_ROUTES, id="routes_index", when=in_routes, registry=registry)(
            self.routes_index
        )
        kopf.index(*_CONTRACTS, id="contracts_index", when=in_contracts, registry=registry)(
            self.contracts_index
        )
        kopf.on.event(*_CONTRACTS, when=in_contracts, registry=registry)(self.contract_event)
        # kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
        kopf.on.event(*_ROUTES, when=in_routes, registry=registry)(self.route_event)  # type: ignore[arg-type]
        if self.settings.kubeedge_rules:
            kopf.on.event(*_RULES, labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE}, registry=registry)(
                self.rule_event  # type: ignore[arg-type]
            )
        return registry

    async def run(self, ready_file: Path | None = None, liveness: str | None = None) -> None:
        """Serve the routes and Contracts of the settings' namespaces until cancelled."""
        await run_operator(
            self.registry(),
            operator_settings(_MAX_WORKERS),
            self.settings.api,
            default_namespace=self.settings.route_namespace,
            ready_file=ready_file,
            liveness=liveness,
        )

    def in_route_namespace(self, namespace: str | None, **_: Any) -> bool:
        return namespace == self.settings.route_namespace

    def in_contract_namespace(self, namespace: str | None, **_: Any) -> bool:
        return namespace == self.settings.contract_namespace

    # ---------------------------------------------------------------------------- KubeEdge

    def _ensure_endpoints(self, namespace: str) -> None:
        if namespace in self.endpoints_ready:
            return
        for body in kubeedge.rule_endpoints(namespace):
            try:
                self.custom.create_namespaced_custom_object(
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
        self.endpoints_ready.add(namespace)

    def _delete_rule(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                *_rule_args(namespace), name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _owned_rules(self, route_name: str) -> list[dict[str, Any]]:
        answer = cast(
            dict[str, Any],
            self.custom.list_cluster_custom_object(
                RULE.group,
                RULE.version,
                RULE.plural,
                label_selector=f"{kubeedge.ROUTE_LABEL}={route_name}",
                _request_timeout=REQUEST_TIMEOUT,
            ),
        )
        return list(answer.get("items") or [])

    def sync_rule(self, route_obj: Mapping[str, Any]) -> None:
        """Make the KubeEdge Rule of a route match it (delete + create when it must change)."""
        route, _ = parse_route(route_obj)
        name = str((route_obj.get("metadata") or {}).get("name"))
        desired = kubeedge.rule_for(route) if route is not None else None
        with self.lock:
            up_to_date = False
            for rule in self._owned_rules(name):
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
                self._delete_rule(meta["namespace"], meta["name"])
                log.info(
                    "Rule %s/%s deleted (route %s changed)", meta["namespace"], meta["name"], name
                )
            if desired is None or up_to_date:
                return
            self._create_rule(desired)
            log.info(
                "Rule %s/%s created for route %s",
                desired["metadata"]["namespace"],
                desired["metadata"]["name"],
                name,
            )

    def _create_rule(self, desired: dict[str, Any]) -> None:
        namespace = desired["metadata"]["namespace"]
        self._ensure_endpoints(namespace)
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                self.custom.create_namespaced_custom_object(
                    *_rule_args(namespace), desired, _request_timeout=REQUEST_TIMEOUT
                )
                return
            except ApiException as exc:
                # 409: the old Rule is still being deleted (finalizers elsewhere): wait for it.
                if exc.status != 409 or attempt == _CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5)

    def remove_rules(self, route_name: str) -> None:
        with self.lock:
            for rule in self._owned_rules(route_name):
                self._delete_rule(rule["metadata"]["namespace"], rule["metadata"]["name"])

    # ---------------------------------------------------------------------------- observed

    def report_observed(self, route_obj: Mapping[str, Any], now: float | None = None) -> bool:
        """Write the route's measured latency and rate on its Flavor when worth it."""
        now = time.time() if now is None else now
        flavor = str((route_obj.get("spec") or {}).get("flavor") or "")
        if "/" not in flavor:
            return False
        new = observed.observed_from_status(route_obj.get("status") or {}, now)
        if new is None:
            return False
        last, last_at = self.observed.get(flavor, (None, None))
        if not observed.worth_writing(last, last_at, new, now):
            return False
        namespace, name = flavor.split("/", 1)
        try:
            self.custom.patch_namespaced_custom_object(
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
        self.observed[flavor] = (new, now)
        return True

    # --------------------------------------------------------------------------- contracts

    def deliver_contract(self, contract: Mapping[str, Any]) -> RouteTarget | None:
        """Make the Contract's endpoint a target of the route of its sensor (None: unusable)."""
        name = str((contract.get("metadata") or {}).get("name"))
        try:
            delivery = delivery_target(contract)
        except ContractError as exc:
            log.error("%s; no route target for it", exc)
            # kopf.event takes any object mapping (its annotation names only kopf's own Body).
            kopf.event(
                dict(contract),  # type: ignore[arg-type]
                type="Warning",
                reason="NotDeliverable",
                message=str(exc)[:_EVENT_MESSAGE_MAX],
            )
            return None
        target = target_for_contract(delivery)
        wanted = (delivery.node, delivery.broker_topic, target)
        if self.delivered.get(name) == wanted:
            return target
        flavor = f"{delivery.namespace}/{delivery.flavor}"
        previous = self.delivered.get(name)
        if previous is not None and previous[:2] != wanted[:2]:  # the sensor moved
            self.routes.remove_target(previous[0], previous[1], previous[2].id)
        self.routes.add_target(delivery.node, delivery.broker_topic, flavor, target)
        self.delivered[name] = wanted
        log.info("Contract %s: delivering %s to target %s", name, delivery.broker_topic, target.id)
        return target

    def withdraw_contract(self, contract: Mapping[str, Any]) -> None:
        """The Contract is gone: its target leaves its route (the route goes with its last)."""
        name = str((contract.get("metadata") or {}).get("name"))
        known = self.delivered.pop(name, None)
        target_id = contract_target_id(name)
        if known is not None:
            self.routes.remove_target(known[0], known[1], target_id)
            return
        try:
            delivery = delivery_target(contract)
        except ContractError:
            return  # never delivered: nothing to withdraw
        self.routes.remove_target(delivery.node, delivery.broker_topic, target_id)

    def withdraw_orphans(
        self, route_obj: Mapping[str, Any], contracts: Mapping[str, Any]
    ) -> list[str]:
        """Targets of Contracts that no longer exist (deleted while we were down) leave."""
        route, _ = parse_route(route_obj)
        if route is None:
            return []
        gone = [
            t.id
            for t in route.targets
            if t.origin_kind == ORIGIN_CONTRACT
            and t.origin_namespace == self.settings.contract_namespace
            and t.origin_name
            and t.origin_name not in contracts
        ]
        for target_id in gone:
            self.routes.remove_target(route.node, route.topic, target_id)
            log.info("route %s: target %s of a deleted Contract removed", route.name, target_id)
        return gone

    # ---------------------------------------------------------------------------- handlers

    def routes_index(self, name: str, **_: Any) -> dict[str, bool]:
        return {name: True}

    def contracts_index(self, name: str, **_: Any) -> dict[str, bool]:
        return {name: True}

    def contract_event(self, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        obj = {"metadata": dict(body.get("metadata", {})), "spec": dict(body.get("spec") or {})}
        if event.get("type") == "DELETED":
            self.withdraw_contract(obj)
            self.rates.release(str(obj["metadata"].get("name")))
        else:
            self.deliver_contract(obj)
            self.hold_rate(obj)

    def hold_rate(self, contract: Mapping[str, Any]) -> None:
        """The rate the Contract holds becomes its Device's desired rate."""
        name = str((contract.get("metadata") or {}).get("name"))
        try:
            held = held_rate(contract)
        except RateError as exc:
            message = f"Contract {name}: {exc}; its sampling rate is not set"
            log.error("%s", message)
            kopf.event(
                dict(contract),  # type: ignore[arg-type]
                type="Warning",
                reason="RateNotSet",
                message=message[:_EVENT_MESSAGE_MAX],
            )
            return
        self.rates.hold(name, held)

    def route_event(
        self,
        event: kopf.RawEvent,
        body: kopf.Body,
        name: str,
        contracts_index: kopf.Index,
        **_: Any,
    ) -> None:
        if event.get("type") == "DELETED":
            self.ruled.pop(name, None)
            if self.settings.kubeedge_rules:
                self.remove_rules(name)
            return
        obj = {"metadata": dict(body.get("metadata", {})), "spec": dict(body.get("spec") or {})}
        obj["status"] = dict(body.get("status") or {})
        if self.ruled.get(name) != obj["spec"]:
            if self.withdraw_orphans(obj, contracts_index):
                return  # the route changed: its next event does the rest
            if self.settings.kubeedge_rules:
                self.sync_rule(obj)
            self.ruled[name] = obj["spec"]
        self.report_observed(obj)

    def rule_event(
        self, event: kopf.RawEvent, body: kopf.Body, routes_index: kopf.Index, **_: Any
    ) -> None:
        """A Rule whose route is gone (deleted while the operator was down) is an orphan."""
        if event.get("type") == "DELETED":
            return
        meta = body.get("metadata", {})
        route = (meta.get("labels") or {}).get(kubeedge.ROUTE_LABEL)
        if route and route not in routes_index:
            self._delete_rule(meta["namespace"], meta["name"])
            log.info(
                "deleted orphan Rule %s/%s of missing route %s",
                meta["namespace"],
                meta["name"],
                route,
            )

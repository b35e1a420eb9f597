"""KubeEdge router objects for a route: RuleEndpoints and a Rule (no I/O).

For clusters that run KubeEdge's own router: an eventbus source `{topic, node_name}` in the
Device's namespace (KubeEdge maps it to broker topic `<namespace>/<topic>`) and a rest target
`{resource: URL}`. KubeEdge allows one Rule per (topic, node) and forwards to one URL, so the
Rule names the route's first target; the edge agent is what delivers to all of them.
KubeEdge also ignores Rule updates: a Rule that must change is deleted and created again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluidos_sensors.api import MANAGED_BY_LABEL, MANAGED_BY_VALUE, RULE, RULE_ENDPOINT
from fluidos_sensors.flavor import SENSORS_PREFIX
from router_manager.route import Route

EVENTBUS_ENDPOINT = "fluidos-sensors-eventbus"
REST_ENDPOINT = "fluidos-sensors-rest"
ROUTE_LABEL = f"{SENSORS_PREFIX}/route"
TARGETS_ANNOTATION = f"{SENSORS_PREFIX}/targets"


def _labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, **(extra or {})}


def rule_endpoints(namespace: str) -> list[dict[str, Any]]:
    """The two RuleEndpoints every Rule of a namespace refers to."""
    return [
        {
            "apiVersion": RULE_ENDPOINT.api_version,
            "kind": RULE_ENDPOINT.kind,
            "metadata": {"name": name, "namespace": namespace, "labels": _labels()},
            "spec": {"ruleEndpointType": kind, "properties": {}},
        }
        for name, kind in ((EVENTBUS_ENDPOINT, "eventbus"), (REST_ENDPOINT, "rest"))
    ]


def rule_for(route: Route) -> dict[str, Any] | None:
    """The Rule mirroring `route` (None when the route has no target or no namespaced topic)."""
    if not route.targets or route.topic.count("/") < 1:
        return None
    namespace, source = route.topic.split("/", 1)
    primary = min(route.targets, key=lambda t: t.id)
    return {
        "apiVersion": RULE.api_version,
        "kind": RULE.kind,
        "metadata": {
            "name": route.name,
            "namespace": namespace,
            "labels": _labels({ROUTE_LABEL: route.name}),
            "annotations": {TARGETS_ANNOTATION: str(len(route.targets))},
        },
        "spec": {
            "source": EVENTBUS_ENDPOINT,
            "sourceResource": {"topic": source, "node_name": route.node},
            "target": REST_ENDPOINT,
            "targetResource": {"resource": primary.url},
        },
    }


def needs_recreate(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether an existing Rule differs in anything KubeEdge acts on."""
    return current.get("spec") != desired.get("spec")

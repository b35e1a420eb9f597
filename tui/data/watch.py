"""The TUI's watches: every kind it shows, per cluster, each a core list + watch.

Each (cluster, kind) is one `fluidos_sensors.watch.ListWatch` whose sink is the store: its
objects, and its health (a cluster that stops answering is reported unreachable; the other
clusters' watches never notice). Stopping shuts every open watch connection of a cluster at
once, so no thread lingers until a server timeout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kubernetes import client

from fluidos_sensors.api import (
    DEVICE,
    DEVICE_STATUS,
    EVENT,
    FLAVOR,
    SENSOR_PROVIDER,
    SENSOR_REQUEST,
    SENSOR_ROUTE,
    Resource,
)
from fluidos_sensors.backoff import Backoff
from fluidos_sensors.watch import ListCall, ListWatch, Report, State
from tui.data.clusters import ClusterConfig
from tui.data.store import Health, Kind, Store

RESOURCES: dict[Kind, Resource] = {
    Kind.FLAVORS: FLAVOR,
    Kind.DEVICES: DEVICE,
    Kind.DEVICE_STATUSES: DEVICE_STATUS,
    Kind.ROUTES: SENSOR_ROUTE,
    Kind.REQUESTS: SENSOR_REQUEST,
    Kind.PROVIDERS: SENSOR_PROVIDER,
    # Events through events.k8s.io/v1 (the same objects as core/v1): one code path for every
    # kind, and no import of the large CoreV1Api module, which costs a second at startup.
    Kind.EVENTS: EVENT,
}
_HEALTH = {
    State.SYNCED: Health.SYNCED,
    State.UNREACHABLE: Health.UNREACHABLE,
    State.FORBIDDEN: Health.FORBIDDEN,
    State.ABSENT: Health.ABSENT,
    State.FAILING: Health.FAILING,
}


def _list_call(objects: client.CustomObjectsApi, kind: Kind) -> ListCall:
    """The list of `kind` across namespaces."""
    r = RESOURCES[kind]
    return functools.partial(objects.list_cluster_custom_object, r.group, r.version, r.plural)


class StoreSink:
    """What one watch learns, into the store as one kind of one cluster."""

    def __init__(self, store: Store, cluster: str, kind: Kind) -> None:
        self._store = store
        self._cluster = cluster
        self._kind = kind

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self._store.replace(self._cluster, self._kind, objects)

    def upsert(self, obj: dict[str, Any]) -> None:
        self._store.upsert(self._cluster, self._kind, obj)

    def delete(self, obj: dict[str, Any]) -> None:
        self._store.delete(self._cluster, self._kind, obj)

    def report(self, report: Report) -> None:
        health = _HEALTH[report.state]
        self._store.report(self._cluster, self._kind, health, report.reason, report.retry_in)


class ClusterWatch:
    """Every watch of one cluster, plus its API client for the TUI's actions."""

    def __init__(
        self,
        cluster: ClusterConfig,
        store: Store,
        *,
        kinds: tuple[Kind, ...] = tuple(Kind),
        backoff: Callable[[], Backoff] = lambda: Backoff(0.5, 30.0),
        watch_timeout: int = 300,
    ) -> None:
        self.config = cluster
        self.api = cluster.api_client()
        store.add_cluster(cluster.name, cluster.role)
        objects = client.CustomObjectsApi(self.api)
        self.watches = [
            ListWatch(
                f"{cluster.name} {kind.value}",
                _list_call(objects, kind),
                StoreSink(store, cluster.name, kind),
                backoff=backoff(),
                watch_seconds=watch_timeout,
            )
            for kind in kinds
        ]

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        for watch in self.watches:
            watch.start()

    def reconnect(self) -> None:
        """Try every failed watch now."""
        for watch in self.watches:
            watch.wake()

    def stop(self, timeout: float = 5.0) -> None:
        for watch in self.watches:
            watch.stop(timeout=0)  # every open connection shut at once, then waited for
        for watch in self.watches:
            watch.join(timeout)
        self.api.close()


class Watches:
    """The watches of every cluster the TUI shows."""

    def __init__(self, clusters: list[ClusterConfig], store: Store, **options: Any) -> None:
        self.store = store
        self.clusters = {c.name: ClusterWatch(c, store, **options) for c in clusters}

    def start(self) -> None:
        for cluster in self.clusters.values():
            cluster.start()

    def stop(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()

    def api(self, cluster: str) -> client.ApiClient:
        return self.clusters[cluster].api

    def reconnect(self, cluster: str | None = None) -> None:
        for name, watch in self.clusters.items():
            if cluster is None or name == cluster:
                watch.reconnect()

"""The model between the watches and the widgets: objects per cluster, changes in batches.

Watch threads write (`replace`, `upsert`, `delete`, `report`); the app drains the changes
at most every few hundred milliseconds (`drain`) and gets ready-made rows for exactly what
changed, so a table updates those rows and nothing else. Parsing (a Flavor into a
SensorFlavor) happens on the writer's thread, not in the UI.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from fluidos_sensors.flavor import SensorFlavor
from tui.data.rows.cells import ObjectKey, as_number, object_key
from tui.data.rows.device import DeviceRow
from tui.data.rows.event import EventRow, event_row
from tui.data.rows.flavor import FlavorRow, flavor_row, parse_flavor
from tui.data.rows.provider import ProviderRow
from tui.data.rows.request import RequestRow
from tui.data.rows.route import RouteTargetRow, route_rows, route_target_statuses


class Kind(StrEnum):
    """What the TUI watches in every cluster."""

    FLAVORS = "flavors"
    DEVICES = "devices"
    DEVICE_STATUSES = "devicestatuses"
    ROUTES = "routes"
    REQUESTS = "requests"
    PROVIDERS = "providers"
    EVENTS = "events"


class Health(StrEnum):
    """How the watch of one kind in one cluster is doing."""

    CONNECTING = "connecting"
    SYNCED = "synced"
    FORBIDDEN = "forbidden"  # our credentials may not list it: shown, not retried quickly
    ABSENT = "absent"  # the CRD is not installed in that cluster
    UNREACHABLE = "unreachable"  # no answer from the API server
    FAILING = "failing"  # the API server answers with errors


class Phase(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ClusterState:
    """What the cluster bar shows about one cluster."""

    name: str
    role: str
    phase: Phase
    message: str = ""
    retry_at: float | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Batch:
    """Changes since the last drain: per object key its new rows, or None when it is gone."""

    flavors: dict[ObjectKey, FlavorRow | None] = field(default_factory=dict)
    devices: dict[ObjectKey, DeviceRow | None] = field(default_factory=dict)
    routes: dict[ObjectKey, list[RouteTargetRow] | None] = field(default_factory=dict)
    requests: dict[ObjectKey, RequestRow | None] = field(default_factory=dict)
    providers: dict[ObjectKey, ProviderRow | None] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    clusters: list[ClusterState] | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.flavors
            or self.devices
            or self.routes
            or self.requests
            or self.providers
            or self.events
            or self.clusters is not None
        )


_VIEW_KINDS = (Kind.FLAVORS, Kind.DEVICES, Kind.ROUTES, Kind.REQUESTS, Kind.PROVIDERS)


class Store:
    """Thread-safe objects of every watched cluster, with the changes not yet drained."""

    def __init__(
        self,
        *,
        event_limit: int = 500,
        history: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Kind, dict[ObjectKey, dict[str, Any]]] = {k: {} for k in Kind}
        self._flavors: dict[ObjectKey, SensorFlavor | str] = {}
        # (cluster, "namespace/name" of a Flavor) -> routes naming it in spec.flavor
        self._routes_by_flavor: dict[tuple[str, str], set[ObjectKey]] = defaultdict(set)
        self._rate_history: dict[ObjectKey, dict[str, deque[float]]] = {}
        self._history = history
        self._dirty: dict[Kind, set[ObjectKey]] = {k: set() for k in _VIEW_KINDS}
        self._events: OrderedDict[tuple[str, str], EventRow] = OrderedDict()
        self._new_events: list[EventRow] = []
        self._event_limit = event_limit
        self._clusters: dict[str, str] = {}  # name -> role, in the order given
        self._health: dict[tuple[str, Kind], tuple[Health, str, float | None]] = {}
        self._clusters_dirty = False
        self._clock = clock
        self._notify: Callable[[], object] | None = None
        self._notified = False

    # -------------------------------------------------------------------------------------
    # Setup

    def add_cluster(self, name: str, role: str = "") -> None:
        with self._lock:
            self._clusters[name] = role
            for kind in Kind:
                self._health[(name, kind)] = (Health.CONNECTING, "", None)
            self._clusters_dirty = True
        self._wake()

    def on_change(self, callback: Callable[[], object] | None) -> None:
        """Call `callback` (from any thread) when changes wait after a drain; once per drain."""
        with self._lock:
            self._notify = callback
            self._notified = False
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._notify is None or self._notified or not self._pending():
                return
            self._notified = True
            notify = self._notify
        notify()

    def _pending(self) -> bool:
        return any(self._dirty.values()) or bool(self._new_events) or self._clusters_dirty

    # -------------------------------------------------------------------------------------
    # Writers (watch threads)

    def replace(self, cluster: str, kind: Kind, objects: Iterable[dict[str, Any]]) -> None:
        """The complete list of `kind` in `cluster` (after a list or relist)."""
        fresh = {object_key(cluster, obj): obj for obj in objects}
        with self._lock:
            if kind is Kind.EVENTS:
                rows = sorted((event_row(cluster, o) for o in fresh.values()), key=_by_time)
                for row in rows[-self._event_limit :]:
                    self._add_event(row)
            else:
                current = self._objects[kind]
                gone = [key for key in current if key[0] == cluster and key not in fresh]
                for key in gone:
                    self._remove(kind, key)
                for key, obj in fresh.items():
                    if current.get(key) is not obj:
                        self._put(kind, key, obj)
        self._wake()

    def upsert(self, cluster: str, kind: Kind, obj: dict[str, Any]) -> None:
        key = object_key(cluster, obj)
        with self._lock:
            if kind is Kind.EVENTS:
                self._add_event(event_row(cluster, obj))
            else:
                self._put(kind, key, obj)
        self._wake()

    def delete(self, cluster: str, kind: Kind, obj: Mapping[str, Any]) -> None:
        if kind is Kind.EVENTS:
            return  # the log keeps what happened
        key = object_key(cluster, obj)
        with self._lock:
            self._remove(kind, key)
        self._wake()

    def report(
        self,
        cluster: str,
        kind: Kind,
        health: Health,
        message: str = "",
        retry_in: float | None = None,
    ) -> None:
        """How the watch of `kind` in `cluster` is doing (connection state, errors)."""
        retry_at = None if retry_in is None else self._clock() + retry_in
        with self._lock:
            if self._health.get((cluster, kind)) == (health, message, retry_at):
                return
            self._health[(cluster, kind)] = (health, message, retry_at)
            self._clusters_dirty = True
        self._wake()

    def _put(self, kind: Kind, key: ObjectKey, obj: dict[str, Any]) -> None:
        previous = self._objects[kind].get(key)
        self._objects[kind][key] = obj
        if kind is Kind.FLAVORS:
            self._flavors[key] = parse_flavor(obj)
            self._dirty[Kind.FLAVORS].add(key)
        elif kind in (Kind.DEVICES, Kind.DEVICE_STATUSES):
            self._dirty[Kind.DEVICES].add(key)
        elif kind is Kind.ROUTES:
            self._index_route(key, previous, obj)
            self._record_rates(key, previous, obj)
            self._dirty[Kind.ROUTES].add(key)
        else:
            self._dirty[kind].add(key)

    def _remove(self, kind: Kind, key: ObjectKey) -> None:
        previous = self._objects[kind].pop(key, None)
        if previous is None:
            return
        if kind is Kind.FLAVORS:
            self._flavors.pop(key, None)
            self._dirty[Kind.FLAVORS].add(key)
        elif kind in (Kind.DEVICES, Kind.DEVICE_STATUSES):
            self._dirty[Kind.DEVICES].add(key)
        elif kind is Kind.ROUTES:
            self._index_route(key, previous, None)
            self._rate_history.pop(key, None)
            self._dirty[Kind.ROUTES].add(key)
        else:
            self._dirty[kind].add(key)

    def _index_route(
        self, key: ObjectKey, previous: Mapping[str, Any] | None, obj: Mapping[str, Any] | None
    ) -> None:
        # A route's targets count as consumers of the Flavor it names: mark both the Flavor it
        # named before and the one it names now, so their consumer counts are redrawn.
        for route, add in ((previous, False), (obj, True)):
            ref = _flavor_ref(route)
            if ref is None:
                continue
            routes = self._routes_by_flavor[(key[0], ref)]
            if add:
                routes.add(key)
            else:
                routes.discard(key)
            namespace, _, name = ref.partition("/")
            flavor_key = (key[0], namespace, name)
            if flavor_key in self._objects[Kind.FLAVORS]:
                self._dirty[Kind.FLAVORS].add(flavor_key)

    def _record_rates(
        self, key: ObjectKey, previous: Mapping[str, Any] | None, obj: Mapping[str, Any]
    ) -> None:
        # One point per status report of the agent (a new `status.updated`, or any status
        # change when it does not stamp one), so the sparkline moves at the agent's pace.
        status = obj.get("status") or {}
        before = (previous or {}).get("status") or {}
        if previous is not None and (
            status == before
            or (status.get("updated") and status.get("updated") == before.get("updated"))
        ):
            return
        for target_id, target in route_target_statuses(obj).items():
            rate = as_number(target.get("rateHz"))
            if rate is None:
                continue
            histories = self._rate_history.setdefault(key, {})
            histories.setdefault(target_id, deque(maxlen=self._history)).append(rate)

    def _add_event(self, row: EventRow) -> None:
        identity = (row.cluster, row.uid)
        known = self._events.get(identity)
        if known is not None and known == row:
            return  # a relist repeats what the log already shows
        self._events[identity] = row
        self._events.move_to_end(identity)
        while len(self._events) > self._event_limit:
            self._events.popitem(last=False)
        self._new_events.append(row)

    # -------------------------------------------------------------------------------------
    # Reader (the UI thread)

    def drain(self) -> Batch:
        """Rows for everything that changed since the last drain."""
        with self._lock:
            batch = self._build(
                {kind: set(keys) for kind, keys in self._dirty.items()},
                self._new_events,
                self._clusters_dirty,
            )
            for keys in self._dirty.values():
                keys.clear()
            self._new_events = []
            self._clusters_dirty = False
            self._notified = False
        return batch

    def snapshot(self) -> Batch:
        """Rows for everything the store holds (to fill a new view); it counts as a drain."""
        with self._lock:
            for keys in self._dirty.values():
                keys.clear()
            self._new_events = []
            self._clusters_dirty = False
            self._notified = False
            everything = {
                Kind.FLAVORS: set(self._objects[Kind.FLAVORS]),
                Kind.DEVICES: set(self._objects[Kind.DEVICES])
                | set(self._objects[Kind.DEVICE_STATUSES]),
                Kind.ROUTES: set(self._objects[Kind.ROUTES]),
                Kind.REQUESTS: set(self._objects[Kind.REQUESTS]),
                Kind.PROVIDERS: set(self._objects[Kind.PROVIDERS]),
            }
            return self._build(everything, list(self._events.values()), True)

    def _build(
        self, keys: Mapping[Kind, set[ObjectKey]], events: list[EventRow], clusters: bool
    ) -> Batch:
        # Keys in order: rows new in one batch appear sorted by cluster, namespace and name.
        objects = self._objects
        batch = Batch(events=list(events))
        for key in sorted(keys.get(Kind.FLAVORS, ())):
            obj = objects[Kind.FLAVORS].get(key)
            batch.flavors[key] = (
                None
                if obj is None
                else flavor_row(key, obj, self._flavors[key], self._consumers(key))
            )
        for key in sorted(keys.get(Kind.DEVICES, ())):
            device = objects[Kind.DEVICES].get(key)
            status = objects[Kind.DEVICE_STATUSES].get(key)
            batch.devices[key] = (
                None if device is None and status is None else DeviceRow(key, device, status)
            )
        for key in sorted(keys.get(Kind.ROUTES, ())):
            route = objects[Kind.ROUTES].get(key)
            if route is None:
                batch.routes[key] = None
                continue
            histories = {
                target: tuple(values) for target, values in self._rate_history.get(key, {}).items()
            }
            batch.routes[key] = route_rows(key, route, histories)
        for key in sorted(keys.get(Kind.REQUESTS, ())):
            obj = objects[Kind.REQUESTS].get(key)
            batch.requests[key] = None if obj is None else RequestRow(key, obj)
        for key in sorted(keys.get(Kind.PROVIDERS, ())):
            obj = objects[Kind.PROVIDERS].get(key)
            batch.providers[key] = None if obj is None else ProviderRow(key, obj)
        if clusters:
            batch.clusters = self._cluster_states()
        return batch

    def _consumers(self, flavor_key: ObjectKey) -> int:
        cluster, namespace, name = flavor_key
        routes = self._routes_by_flavor.get((cluster, f"{namespace}/{name}"), ())
        return sum(
            len((self._objects[Kind.ROUTES][route].get("spec") or {}).get("targets") or [])
            for route in routes
        )

    def _cluster_states(self) -> list[ClusterState]:
        states = []
        for name, role in self._clusters.items():
            health = {kind: self._health[(name, kind)] for kind in Kind}
            states.append(_cluster_state(name, role, health))
        return states

    def clusters(self) -> list[ClusterState]:
        with self._lock:
            return self._cluster_states()

    def cluster_roles(self) -> dict[str, str]:
        with self._lock:
            return dict(self._clusters)

    def get(self, kind: Kind, key: ObjectKey) -> dict[str, Any] | None:
        with self._lock:
            return self._objects[kind].get(key)

    def count(self, kind: Kind, cluster: str | None = None) -> int:
        with self._lock:
            if cluster is None:
                return len(self._objects[kind])
            return sum(1 for key in self._objects[kind] if key[0] == cluster)

    def events_about(self, cluster: str, kind: str, namespace: str, name: str) -> list[EventRow]:
        """Recent Events whose involved object is the given one, oldest first."""
        with self._lock:
            found = [
                e
                for e in self._events.values()
                if e.cluster == cluster
                and e.kind == kind
                and e.name == name
                and e.namespace == namespace
            ]
        return sorted(found, key=_by_time)


def _by_time(row: EventRow) -> float:
    return row.sort_time


def _flavor_ref(route: Mapping[str, Any] | None) -> str | None:
    ref = ((route or {}).get("spec") or {}).get("flavor")
    return ref if isinstance(ref, str) and "/" in ref else None


def _cluster_state(
    name: str, role: str, health: Mapping[Kind, tuple[Health, str, float | None]]
) -> ClusterState:
    def worst(*wanted: Health) -> tuple[Kind, tuple[Health, str, float | None]] | None:
        return next(((k, h) for k, h in health.items() if h[0] in wanted), None)

    notes = tuple(
        f"{kind.value}: {state.value}"
        for kind, (state, _, _) in health.items()
        if state in (Health.FORBIDDEN, Health.ABSENT)
    )
    state = ClusterState(name, role, Phase.CONNECTED, notes=notes)
    if found := worst(Health.UNREACHABLE):
        _, (_, message, retry_at) = found
        return replace(state, phase=Phase.UNREACHABLE, message=message, retry_at=retry_at)
    if found := worst(Health.FAILING):
        kind, (_, message, retry_at) = found
        return replace(
            state, phase=Phase.DEGRADED, message=f"{kind.value}: {message}", retry_at=retry_at
        )
    if worst(Health.CONNECTING):
        return replace(state, phase=Phase.CONNECTING)
    return state

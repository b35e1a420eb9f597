"""The one list + watch (`fluidos_sensors.watch`) against the testbed's real kube-apiserver.

SensorRoutes in a fresh namespace, selected by node label as the edge agent selects its own:
the first list comes in pages, then additions, changes and deletions arrive; a watch from an
expired resourceVersion relists; `stop` ends an open watch; a server cut off behind a relay is
reported unreachable and the watch recovers by itself, with what changed meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client
from relay import Relay
from support import eventually

from fluidos_sensors.api import SENSOR_ROUTE
from fluidos_sensors.backoff import Backoff
from fluidos_sensors.flavor import NODE_LABEL
from fluidos_sensors.watch import SLOW_RETRY, ListWatch, Report, State
from testbed import bootstrap
from testbed.processes import free_port
from testbed.state import ClusterAccess

pytestmark = pytest.mark.integration

NODE = "edge-watched"
SELECTOR = f"{NODE_LABEL}={NODE}"


class Recorder:
    """A sink that remembers: the objects by name, every list, every report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}
        self.lists: list[list[str]] = []
        self.reports: list[Report] = []

    def replace(self, objects: list[dict[str, Any]]) -> None:
        with self._lock:
            self._objects = {obj["metadata"]["name"]: obj for obj in objects}
            self.lists.append(sorted(self._objects))

    def upsert(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._objects[obj["metadata"]["name"]] = obj

    def delete(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._objects.pop(obj["metadata"]["name"], None)

    def report(self, report: Report) -> None:
        with self._lock:
            self.reports.append(report)

    def objects(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._objects)

    def topic(self, name: str) -> str | None:
        obj = self.objects().get(name)
        return None if obj is None else obj["spec"]["topic"]

    @property
    def state(self) -> State | None:
        with self._lock:
            return self.reports[-1].state if self.reports else None


class Calls:
    """A list call that keeps the keyword arguments of every request, and may rewrite them."""

    def __init__(
        self, call: Callable[..., Any], rewrite: Callable[[dict[str, Any]], None] = lambda _: None
    ) -> None:
        self._call = call
        self._rewrite = rewrite
        self.requests: list[dict[str, Any]] = []

    def __call__(self, **params: Any) -> Any:
        self._rewrite(params)
        self.requests.append(dict(params))
        return self._call(**params)

    def lists(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if not r.get("watch")]

    def watches(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("watch")]


def routes_of(api: client.ApiClient, namespace: str) -> Callable[..., Any]:
    r = SENSOR_ROUTE
    objects = client.CustomObjectsApi(api)
    return functools.partial(
        objects.list_namespaced_custom_object, r.group, r.version, namespace, r.plural
    )


class Routes:
    """SensorRoutes of one namespace, written as a controller would."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._objects = client.CustomObjectsApi(api)
        r = SENSOR_ROUTE
        self._args = (r.group, r.version, namespace, r.plural)

    def create(self, name: str, node: str = NODE) -> None:
        body = {
            "apiVersion": SENSOR_ROUTE.api_version,
            "kind": SENSOR_ROUTE.kind,
            "metadata": {"name": name, "labels": {NODE_LABEL: node}},
            "spec": {"node": node, "topic": f"default/fluidos-sensors/{name}/humidity"},
        }
        self._objects.create_namespaced_custom_object(*self._args, body)

    def retopic(self, name: str, topic: str) -> None:
        self._objects.patch_namespaced_custom_object(*self._args, name, {"spec": {"topic": topic}})

    def relabel(self, name: str, node: str) -> None:
        patch = {"metadata": {"labels": {NODE_LABEL: node}}}
        self._objects.patch_namespaced_custom_object(*self._args, name, patch)

    def delete(self, name: str) -> None:
        self._objects.delete_namespaced_custom_object(*self._args, name)


@contextlib.contextmanager
def running(watch: ListWatch) -> Iterator[ListWatch]:
    watch.start()
    try:
        yield watch
    finally:
        assert watch.stop(timeout=10), "the watch thread did not end"


@pytest.fixture
def routes(provider_api: client.ApiClient, namespace: str) -> Routes:
    return Routes(provider_api, namespace)


def test_the_first_list_comes_in_pages_then_every_change_arrives(
    provider_api: client.ApiClient, namespace: str, routes: Routes
) -> None:
    for i in range(7):
        routes.create(f"r{i}")
    routes.create("elsewhere", node="edge-other")  # not selected
    calls = Calls(routes_of(provider_api, namespace))
    sink = Recorder()
    watch = ListWatch("routes", calls, sink, label_selector=SELECTOR, page_size=3)
    with running(watch):
        assert watch.synced.wait(30)
        assert sink.lists == [[f"r{i}" for i in range(7)]]
        pages = calls.lists()
        assert len(pages) == 3  # 7 objects, 3 a page
        assert [bool(p.get("_continue")) for p in pages] == [False, True, True]
        assert all(p["label_selector"] == SELECTOR for p in calls.requests)
        assert isinstance(sink.objects()["r0"], dict)  # plain, as the API server sent it
        assert sink.state is State.SYNCED

        routes.create("r7")
        eventually(lambda: "r7" in sink.objects(), "an added route")
        routes.retopic("r0", "default/fluidos-sensors/r0/temperature")
        eventually(lambda: sink.topic("r0") == "default/fluidos-sensors/r0/temperature", "a change")
        routes.delete("r1")
        eventually(lambda: "r1" not in sink.objects(), "a deletion")
        routes.relabel("r2", "edge-other")  # leaves the selection: gone for this watch
        eventually(lambda: "r2" not in sink.objects(), "a route moved to another node")
        assert sorted(sink.objects()) == ["r0", "r3", "r4", "r5", "r6", "r7"]
        assert len(sink.lists) == 1  # all of that came through the watch


def test_a_watch_from_an_expired_version_relists(
    provider_api: client.ApiClient, namespace: str, routes: Routes
) -> None:
    routes.create("before")

    def expire_first_watch(params: dict[str, Any]) -> None:
        # The API server keeps no history that old (the CRD came long after): 410 Gone.
        if params.get("watch") and not calls.watches():
            params["resource_version"] = "1"

    calls = Calls(routes_of(provider_api, namespace), expire_first_watch)
    sink = Recorder()
    with running(ListWatch("routes", calls, sink, label_selector=SELECTOR)):
        eventually(lambda: len(sink.lists) == 2, "the relist after 410 Gone")
        assert sink.lists == [["before"], ["before"]]
        first, second = calls.watches()[:2]
        assert first["resource_version"] == "1"
        assert second["resource_version"] != "1"
        routes.create("after")
        eventually(lambda: "after" in sink.objects(), "a route added after the relist")
        assert all(r.state is State.SYNCED for r in sink.reports)  # a relist is no failure


def test_stop_ends_an_open_watch(
    provider_api: client.ApiClient, namespace: str, routes: Routes
) -> None:
    calls = Calls(routes_of(provider_api, namespace))
    sink = Recorder()
    watch = ListWatch("routes", calls, sink, label_selector=SELECTOR)
    watch.start()
    assert watch.synced.wait(30)
    routes.create("streamed")
    eventually(lambda: "streamed" in sink.objects(), "an event through the open watch")
    # The server would hold this watch open for minutes; stop shuts its connection instead.
    assert watch.stop(timeout=10)
    assert len(calls.watches()) == 1


def test_a_kind_the_server_does_not_serve_is_absent_and_looked_at_slowly(
    provider_api: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(provider_api)
    missing = functools.partial(
        objects.list_namespaced_custom_object, SENSOR_ROUTE.group, "v9", namespace, "nothings"
    )
    sink = Recorder()
    watch = ListWatch("nothings", missing, sink)
    with running(watch):
        eventually(lambda: sink.reports, "a report")
        assert sink.reports[0].state is State.ABSENT
        assert sink.reports[0].retry_in == SLOW_RETRY
        assert not watch.synced.is_set()


def admin_via(provider: ClusterAccess, server: str) -> client.ApiClient:
    """The provider's admin credentials, reaching its API server at `server`."""
    api = bootstrap.api_client(provider.kubeconfig)
    api.configuration.host = server
    return api


def test_a_closed_port_is_unreachable_and_stop_cuts_the_wait_short(
    provider: ClusterAccess,
) -> None:
    api = admin_via(provider, f"https://127.0.0.1:{free_port()}")
    try:
        sink = Recorder()
        # The first retry would come after a minute: stop must not wait for it.
        watch = ListWatch("routes", routes_of(api, "default"), sink, backoff=Backoff(60, 60))
        with running(watch):
            eventually(lambda: sink.reports, "a report")
            first = sink.reports[0]
            assert (first.state, first.reason) == (State.UNREACHABLE, "connection refused")
    finally:
        api.close()


@pytest.fixture
def relay(provider: ClusterAccess) -> Iterator[Relay]:
    server = urlsplit(provider.server)
    relay = Relay((server.hostname or "127.0.0.1", server.port or 443))
    relay.start()
    yield relay
    relay.close()


def test_a_server_cut_off_is_unreachable_and_the_watch_recovers_by_itself(
    provider: ClusterAccess, namespace: str, routes: Routes, relay: Relay
) -> None:
    api = admin_via(provider, f"https://127.0.0.1:{relay.port}")
    try:
        routes.create("before")
        sink = Recorder()
        calls = Calls(routes_of(api, namespace))
        watch = ListWatch("routes", calls, sink, label_selector=SELECTOR, backoff=Backoff(0.2, 2.0))
        with running(watch):
            assert watch.synced.wait(30)
            relay.stop()
            eventually(lambda: sink.state is State.UNREACHABLE, "the cut to be reported")
            routes.create("meanwhile")  # written while the watch cannot see the server
            relay.start()
            eventually(lambda: sink.state is State.SYNCED, "the watch to recover")
            eventually(lambda: "meanwhile" in sink.objects(), "the route written meanwhile")
            assert "before" in sink.objects()
    finally:
        api.close()

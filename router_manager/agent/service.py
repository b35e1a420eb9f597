"""The edge agent: executes the SensorRoutes of its node.

Routes in -> one subscription per topic on the node's broker -> every reading decoded and
encoded once, stored once -> each target's worker delivers its queue. Status goes back to
each Route at a bounded rate; counters are also exposed as Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fluidos_sensors.api import ROUTE_NAMESPACE, SENSOR_ROUTE
from fluidos_sensors.broker import BrokerAccess
from fluidos_sensors.delivery import FAILING_STATES, TargetState
from fluidos_sensors.files import write_json_atomic
from fluidos_sensors.flavor import NODE_LABEL
from fluidos_sensors.kube import REQUEST_TIMEOUT, get_or_none
from fluidos_sensors.reading import Reading, ReadingError, refusal
from fluidos_sensors.topics import split_broker_topic
from fluidos_sensors.watch import ListWatch, Snapshot, Snapshots
from router_manager.agent.delivery import TargetWorker, authorization
from router_manager.agent.metrics import metrics_app
from router_manager.agent.shapers import Shapers, raw_topic, shaped_topic
from router_manager.agent.store import DurableLog, Entry
from router_manager.agent.subscriber import Inbound, Subscriber
from router_manager.agent.window import LatencyWindow
from router_manager.encoding import LineProtocolEncoder
from router_manager.route import Route, RouteProblem, RouteTarget, parse_route

log = logging.getLogger(__name__)

STATUS_HEARTBEAT_S = 30.0
SHAPER_TICK_S = 0.25  # how often windows past their end + grace are closed
SHAPER_SETTLE_S = 2.0  # after (re)connecting, the broker's kept readings come first
CREDENTIALS_REFRESH_S = 60.0
_MESSAGE_MAX = 1000


@dataclass
class AgentSettings:
    node: str
    state_dir: Path
    namespace: str = ROUTE_NAMESPACE
    allowed_hosts: tuple[str, ...] = ()
    status_interval: float = 5.0
    http_timeout: float = 10.0
    status_file: Path | None = None
    metrics_address: tuple[str, int] | None = None
    metrics_token: str = field(default="", repr=False)


@dataclass
class TopicStats:
    """What arrives on one topic: rate and mapper-to-agent latency, unreadable payloads, and
    readings refused (`refusal`: not of this topic, outside the time window, names with
    control characters)."""

    parts: tuple[str, str, str] | None
    """(namespace, device, sensor) of the topic; None when it is not a readings topic."""
    window: LatencyWindow = field(default_factory=LatencyWindow)
    invalid: int = 0
    last_invalid_log: float = 0.0
    refused: int = 0
    last_refused: str = ""
    last_refused_log: float = 0.0


def target_key(route: Route, target: RouteTarget) -> str:
    """A target's identity in the store and metrics: route name + target id."""
    return f"{route.name}/{target.id}"


def store_topic(route: Route, target: RouteTarget) -> str:
    """The log topic a target reads: its route's readings, or what its shaper makes."""
    return route.topic if target.shape is None else shaped_topic(route.topic, target.shape)


def _now_rfc3339(seconds: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if seconds is None else seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Credentials:
    """Delivery Secrets of the route namespace, read when needed and refreshed now and then."""

    def __init__(self, api: client.ApiClient | None, namespace: str) -> None:
        self._core = client.CoreV1Api(api) if api is not None else None
        self._namespace = namespace
        self._data: dict[str, dict[str, str] | None] = {}
        self._fetched: dict[str, float] = {}

    def header(self, target: RouteTarget) -> str | None:
        if target.auth is None:
            return None
        data = self._data.get(target.auth.secret_name)
        if not data:
            return None
        try:
            return authorization(target.auth.type, data)
        except KeyError:
            return None

    async def refresh(self, names: set[str], *, force: bool = False) -> None:
        if self._core is None:
            return
        now = time.monotonic()
        for name in names:
            if not force and now - self._fetched.get(name, -1e9) < CREDENTIALS_REFRESH_S:
                continue
            self._fetched[name] = now
            try:
                secret = await asyncio.to_thread(
                    get_or_none,
                    self._core.read_namespaced_secret,
                    name,
                    self._namespace,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                log.warning("cannot read Secret %s/%s: %s", self._namespace, name, exc.reason)
                continue
            except Exception as exc:  # an API outage: keep what we had
                log.warning("cannot read Secret %s/%s: %s", self._namespace, name, exc)
                continue
            if secret is None:
                self._data[name] = None
                continue
            self._data[name] = {
                key: base64.b64decode(value).decode("utf-8", "replace")
                for key, value in (secret.data or {}).items()
            }
        for name in set(self._data) - names:
            del self._data[name]


class Agent:
    """One edge node's router: routes -> subscriptions -> durable queues -> deliveries."""

    def __init__(
        self,
        settings: AgentSettings,
        broker: BrokerAccess,
        api: client.ApiClient | None,
        *,
        static_routes: Snapshot | None = None,
    ) -> None:
        """Routes come from the API (watched), or, without one, from `static_routes`."""
        self.settings = settings
        self.api = api
        self._static_routes = static_routes
        self.store = DurableLog(settings.state_dir / "queue.sqlite")
        self.encoder = LineProtocolEncoder()
        self.shapers = Shapers(self.store, self.encoder)
        self.subscriber = Subscriber(
            broker, f"fluidos-sensors-agent-{settings.node}"[:128], self._ingest
        )
        self.credentials = Credentials(api, settings.namespace)
        self.routes: dict[str, Route] = {}
        self.problems: dict[str, list[RouteProblem]] = {}
        self.workers: dict[str, TargetWorker] = {}
        self.by_topic: dict[str, list[TargetWorker]] = {}  # by log topic (raw or shaped)
        self.subscribed: set[str] = set()
        self.topics: dict[str, TopicStats] = {}
        self._changed = asyncio.Event()
        self._snapshot: Snapshot | None = None
        self._written: dict[str, tuple[dict[str, Any], float]] = {}
        self._custom = client.CustomObjectsApi(api) if api is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._metrics_server: uvicorn.Server | None = None
        self._logged: set[str] = set()
        self._routed = asyncio.Event()  # set once the routes were applied

    @property
    def ready(self) -> bool:
        """What /readyz reports: the routes were loaded and the broker connection is up."""
        return self._routed.is_set() and self.subscriber.connected

    # ------------------------------------------------------------------ routes

    def on_routes(self, snapshot: Snapshot) -> None:
        """From the watch thread: the node's routes changed (applied on the event loop)."""
        self._snapshot = snapshot
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed.set)

    async def apply(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Make workers, queues and subscriptions match these SensorRoute objects."""
        routes: dict[str, Route] = {}
        problems: dict[str, list[RouteProblem]] = {}
        for obj in objects.values():
            route, found = parse_route(obj, self.settings.allowed_hosts)
            name = str((obj.get("metadata") or {}).get("name"))
            if route is not None and route.node != self.settings.node:
                continue  # labelled for us but meant for another node: not ours
            if found:
                problems[name] = found
                for problem in found:
                    if str(problem) not in self._logged:  # once, not at every change
                        log.warning("%s", problem)
            if route is not None:
                routes[route.name] = route
        self._logged = {str(p) for found in problems.values() for p in found}
        await self.credentials.refresh(
            {t.auth.secret_name for r in routes.values() for t in r.targets if t.auth},
            force=True,
        )
        wanted = {target_key(r, t): (r, t) for r in routes.values() for t in r.targets}
        for key in list(self.workers):
            if key not in wanted:
                await self.workers.pop(key).stop()
                self.store.remove(key)
                log.info("target %s removed", key)
        for key, (route, target) in wanted.items():
            self.store.register(key, store_topic(route, target), target.format, target.queue_bytes)
            worker = self.workers.get(key)
            if worker is None:
                worker = TargetWorker(
                    key,
                    target,
                    self.store,
                    timeout=self.settings.http_timeout,
                    credentials=functools.partial(self._target_credentials, key, target),
                )
                self.workers[key] = worker
                worker.start()
                log.info("target %s added for %s", key, route.topic)
            else:
                worker.update(target)
        self.by_topic = {}
        for key, (route, target) in wanted.items():
            self.by_topic.setdefault(store_topic(route, target), []).append(self.workers[key])
        # After the targets: what a shaper makes on resuming is stored for them.
        shaped = self.shapers.apply(
            (r.topic, t.shape) for r, t in wanted.values() if t.shape is not None
        )
        self._notify(shaped)
        # Cursors of targets removed while the agent was down, and their topics' subscriptions.
        leftovers = {
            k: raw_topic(t)
            for k, t in self.store.known_targets()
            if k not in wanted and k not in self.shapers.keys
        }
        for key in leftovers:
            self.store.remove(key)
        self.subscribed = {route.topic for route, _ in wanted.values()}
        self.subscriber.set_topics(set(self.subscribed), set(leftovers.values()))
        self.routes, self.problems = routes, problems
        for name in set(self._written) - set(routes) - set(problems):
            del self._written[name]

    def _target_credentials(self, key: str, target: RouteTarget) -> str | None:
        """The Authorization header for a target: of its worker's current target, else of the
        target it was added with."""
        return self.credentials.header(self.workers[key].target if key in self.workers else target)

    # ------------------------------------------------------------------ data

    def _ingest(self, messages: list[Inbound]) -> None:
        """Decode and encode each reading once, store it once, wake the targets."""
        entries: list[Entry] = []
        decoded: dict[int, Reading] = {}  # by id() of its entry, for the shapers
        latencies: dict[str, list[float]] = {}
        now = time.time()
        for message in messages:
            topic, payload = message.topic, message.payload
            stats = self.topics.get(topic)
            if stats is None:  # not setdefault: that would build a TopicStats per reading
                stats = self.topics[topic] = TopicStats(split_broker_topic(topic))
            try:
                reading = Reading.decode(payload)
            except ReadingError as exc:
                stats.invalid += 1
                if now - stats.last_invalid_log > 60:
                    stats.last_invalid_log = now
                    log.warning(
                        "topic %s: unreadable reading skipped (%s); %d so far",
                        topic,
                        str(exc)[:200],
                        stats.invalid,
                    )
                continue
            problem = refusal(reading, stats.parts, now)
            if problem is not None:
                stats.refused += 1
                stats.last_refused = f"seq {reading.seq}: {problem}"[:_MESSAGE_MAX]
                if now - stats.last_refused_log > 60:
                    stats.last_refused_log = now
                    log.warning(
                        "topic %s: reading refused (%s); %d so far",
                        topic,
                        stats.last_refused[:200],
                        stats.refused,
                    )
                continue
            latencies.setdefault(topic, []).append(now - reading.received_at)
            entry = Entry(topic, reading.received_at, self.encoder.encode(reading), payload)
            entries.append(entry)
            decoded[id(entry)] = reading
        stored = self.store.append(entries)
        shaped = self.shapers.feed(stored, [decoded[id(entry)] for _, entry in stored], now)
        for topic, values in latencies.items():
            self.topics[topic].window.add(values)
        self._notify(latencies.keys() | shaped)

    def _notify(self, topics: Iterable[str]) -> None:
        """Wake the workers of these log topics: they have new readings."""
        for topic in topics:
            for worker in self.by_topic.get(topic, ()):
                worker.notify()

    # ------------------------------------------------------------------ status

    def route_status(self, route_name: str) -> dict[str, Any]:
        route = self.routes.get(route_name)
        problems = self.problems.get(route_name, [])
        targets: list[dict[str, Any]] = []
        latencies: list[float] = []
        failing = delivered = 0
        for target in route.targets if route else ():
            key = target_key(route, target)  # type: ignore[arg-type]
            worker, state = self.workers.get(key), self.store.target(key)
            if worker is None or state is None:
                continue
            health = worker.health
            summary = health.window.summary()
            if target.shape is None:  # a window's latency is its length: not the route's
                latencies.extend(health.window.latencies())
            entry: dict[str, Any] = {
                "id": target.id,
                "state": health.state.value,
                "delivered": state.delivered,
                "failed": state.failed,
                "rejected": state.rejected,
                "dropped": state.dropped,
                "queued": state.queued,
                "queuedBytes": state.queued_bytes,
                "rateHz": round(summary.rate_hz, 3),
            }
            if target.shape is not None:
                entry["shape"] = target.shape.key
                entry["late"] = self.shapers.late(route.topic, target.shape)  # type: ignore[union-attr]
            if summary.p50_ms is not None:
                entry["latencyP50Ms"] = round(summary.p50_ms, 3)
                entry["latencyP99Ms"] = round(summary.p99_ms or 0.0, 3)
            if health.last_error:
                entry["lastError"] = health.last_error
            if health.last_error_time:
                entry["lastErrorTime"] = _now_rfc3339(health.last_error_time)
            if health.last_success:
                entry["lastSuccess"] = _now_rfc3339(health.last_success)
            if health.last_rejected:
                entry["lastRejected"] = health.last_rejected
            if health.state in FAILING_STATES:
                failing += 1
            delivered += state.delivered
            targets.append(entry)
        for problem in problems:
            if problem.target is not None:
                targets.append(
                    {
                        "id": problem.target,
                        "state": TargetState.INVALID.value,
                        "lastError": str(problem)[:500],
                    }
                )
                failing += 1
        status: dict[str, Any] = {
            "agent": self.settings.node,
            "targetCount": len(targets),
            "delivered": delivered,
            "failing": failing,
            "targets": targets,
            "message": "; ".join(str(p) for p in problems)[:_MESSAGE_MAX] or "",
        }
        if route is not None:
            topic = self.topics.get(route.topic)
            ingest = topic.window.summary() if topic else None
            status["observedGeneration"] = route.generation
            status["subscribed"] = self.subscriber.connected and route.topic in self.subscribed
            status["rateHz"] = round(ingest.rate_hz, 3) if ingest else 0.0
            # Readings of the topic that no target got: unreadable, or refused at ingest.
            status["invalid"] = topic.invalid if topic else 0
            status["refused"] = topic.refused if topic else 0
            if topic and topic.last_refused:
                status["lastRefused"] = topic.last_refused
            if latencies:
                p50, p99 = _percentiles(latencies)
                status["latencyP50Ms"], status["latencyP99Ms"] = p50, p99
        return status

    async def write_status(self, *, force: bool = False) -> None:
        """Patch each route's status when it changed (or as a heartbeat), never faster than
        the status interval."""
        if self._custom is None:
            return
        now = time.monotonic()
        for name in sorted(set(self.routes) | set(self.problems)):
            status = self.route_status(name)
            last = self._written.get(name)
            if not force and last is not None:
                same = last[0] == status
                if same and now - last[1] < STATUS_HEARTBEAT_S:
                    continue
            body = {"status": {**status, "updated": _now_rfc3339()}}
            try:
                await asyncio.to_thread(
                    self._custom.patch_namespaced_custom_object_status,
                    SENSOR_ROUTE.group,
                    SENSOR_ROUTE.version,
                    self.settings.namespace,
                    SENSOR_ROUTE.plural,
                    name,
                    body,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("status of SensorRoute %s not written: %s", name, exc.reason)
                continue
            except Exception as exc:  # API outage: the next round tries again
                log.warning("status of SensorRoute %s not written: %s", name, exc)
                continue
            self._written[name] = (status, now)

    def local_status(self) -> dict[str, Any]:
        """What the status file says: for the testbed and operators on the node."""
        return {
            "node": self.settings.node,
            "connected": self.subscriber.connected,
            "connects": self.subscriber.connects,
            "received": self.subscriber.received,
            "topics": sorted(self.subscribed),
            "routesSynced": self._snapshot is not None,
            "invalid": {t: s.invalid for t, s in self.topics.items() if s.invalid},
            "refused": {t: s.refused for t, s in self.topics.items() if s.refused},
            "targets": {
                key: {
                    "state": w.health.state.value,
                    "delivered": s.delivered,
                    "failed": s.failed,
                    "rejected": s.rejected,
                    "dropped": s.dropped,
                    "queued": s.queued,
                }
                for key, w in self.workers.items()
                if (s := self.store.target(key)) is not None
            },
        }

    def _write_status_file(self) -> None:
        path = self.settings.status_file
        if path is None:
            return
        write_json_atomic(path, self.local_status(), indent=2)

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        self._loop = asyncio.get_running_loop()
        watcher = None
        if self.api is not None:
            node = self.settings.node
            watcher = ListWatch(
                f"SensorRoutes of {node}",
                functools.partial(
                    client.CustomObjectsApi(self.api).list_namespaced_custom_object,
                    SENSOR_ROUTE.group,
                    SENSOR_ROUTE.version,
                    self.settings.namespace,
                    SENSOR_ROUTE.plural,
                ),
                Snapshots(self.on_routes),
                label_selector=f"{NODE_LABEL}={node}",
                list_timeout=REQUEST_TIMEOUT[1],
            )
            watcher.start()
        else:
            self.on_routes(dict(self._static_routes or {}))
        tasks = [
            asyncio.create_task(self._subscribe_once_routed(), name="subscriber"),
            asyncio.create_task(self._apply_loop(), name="routes"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._shape_clock(), name="shapers"),
        ]
        if self.settings.metrics_address is not None:
            tasks.append(asyncio.create_task(self._serve_metrics(), name="metrics"))
        try:
            await stop.wait()
        finally:
            if watcher is not None:
                await asyncio.to_thread(watcher.stop)
            if self._metrics_server is not None:
                self._metrics_server.should_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(tasks[-1]), 5)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for worker in self.workers.values():
                await worker.stop()
            with contextlib.suppress(Exception):
                await self.write_status(force=True)
            self.store.close()

    async def _subscribe_once_routed(self) -> None:
        # The persistent session hands over what the broker kept the moment we connect: a
        # reading of a topic whose targets are not known yet would be acknowledged and lost.
        await self._routed.wait()
        await self.subscriber.run()

    async def _serve_metrics(self) -> None:
        host, port = self.settings.metrics_address  # type: ignore[misc]
        config = uvicorn.Config(
            metrics_app(self, self.settings.metrics_token),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        # The agent owns SIGTERM/SIGINT; uvicorn must not take them over.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._metrics_server = server
        await server.serve()

    async def _apply_loop(self) -> None:
        applied: dict[str, Any] | None = None
        while True:
            await self._changed.wait()
            self._changed.clear()
            snapshot = self._snapshot
            if snapshot is None:
                continue
            # Our own status writes come back as watch events: only spec changes matter.
            specs = {key: obj.get("spec") for key, obj in snapshot.items()}
            if specs == applied:
                continue
            try:
                await self.apply(snapshot)
                applied = specs
                self._routed.set()
            except Exception:  # a bug in one round must not stop the agent
                log.exception("applying routes failed")
            await self.write_status()
            self._write_status_file()

    async def _shape_clock(self) -> None:
        """Close the windows of quiet topics. Not while the broker connection is down, nor
        in the first seconds after it is up: the readings the broker kept meanwhile are
        still to come, and belong in those windows."""
        connected_at: float | None = None
        while True:
            await asyncio.sleep(SHAPER_TICK_S)
            now = time.time()
            if not self.subscriber.connected:
                connected_at = None
                continue
            if connected_at is None:
                connected_at = now
            if now - connected_at < SHAPER_SETTLE_S:
                continue
            try:
                self._notify(self.shapers.tick(now))
            except Exception:  # a bug must not stop windows for good
                log.exception("closing windows failed")

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_interval)
            try:
                self.store.compact()
                await self.credentials.refresh(
                    {t.auth.secret_name for r in self.routes.values() for t in r.targets if t.auth}
                )
                await self.write_status()
                self._write_status_file()
            except Exception:
                log.exception("housekeeping failed")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples, dtype=float), [50, 99]) * 1000.0
    return round(float(p50), 3), round(float(p99), 3)

"""The agent's Prometheus metrics, read from its live state at scrape time (no double books).

Served over HTTP with a bearer token: every network API of the project is authenticated.
The same server answers the kubelet's probes without one, and they tell nothing but a state:
``/healthz`` (the process serves HTTP) and ``/readyz`` (routes loaded and connected to the
broker), ``ok`` or ``not ready``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from router_manager.agent.service import Agent

PREFIX = "fluidos_sensors_agent"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
_COUNTERS = (
    ("delivered", "Readings delivered (2xx)"),
    ("failed", "Delivery attempts that failed and were retried"),
    ("rejected", "Readings refused for good by the target (4xx other than 408/429)"),
    ("dropped", "Readings dropped at the queue bound"),
)


class AgentCollector(Collector):
    """Per-target counters and queue gauges, per-topic ingest counters."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        labels = ["route", "target"]
        counters = {
            name: CounterMetricFamily(f"{PREFIX}_{name}_readings", text, labels=labels)
            for name, text in _COUNTERS
        }
        queued = GaugeMetricFamily(f"{PREFIX}_queued_readings", "Readings waiting", labels=labels)
        queued_bytes = GaugeMetricFamily(
            f"{PREFIX}_queued_bytes", "Bytes waiting in the durable queue", labels=labels
        )
        latency = GaugeMetricFamily(
            f"{PREFIX}_delivery_latency_seconds",
            "Mapper receive to 2xx answer, last minute",
            labels=[*labels, "quantile"],
        )
        for key, worker in list(self.agent.workers.items()):
            state = self.agent.store.target(key)
            if state is None:
                continue
            route, target = key.split("/", 1)
            for name, family in counters.items():
                family.add_metric([route, target], getattr(state, name))
            queued.add_metric([route, target], state.queued)
            queued_bytes.add_metric([route, target], state.queued_bytes)
            summary = worker.health.window.summary()
            if summary.p50_ms is not None and summary.p99_ms is not None:
                latency.add_metric([route, target, "0.5"], summary.p50_ms / 1000)
                latency.add_metric([route, target, "0.99"], summary.p99_ms / 1000)
        yield from counters.values()
        yield from (queued, queued_bytes, latency)
        received = CounterMetricFamily(
            f"{PREFIX}_received_messages", "MQTT messages received", labels=[]
        )
        received.add_metric([], self.agent.subscriber.received)
        invalid = CounterMetricFamily(
            f"{PREFIX}_invalid_readings", "Unreadable payloads skipped", labels=["topic"]
        )
        refused = CounterMetricFamily(
            f"{PREFIX}_refused_readings",
            "Readings refused at ingest: not of their topic, outside the time window, or names "
            "with control characters",
            labels=["topic"],
        )
        for topic, stats in list(self.agent.topics.items()):
            invalid.add_metric([topic], stats.invalid)
            refused.add_metric([topic], stats.refused)
        connected = GaugeMetricFamily(f"{PREFIX}_broker_connected", "1 when connected")
        connected.add_metric([], 1.0 if self.agent.subscriber.connected else 0.0)
        yield from (received, invalid, refused, connected)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def metrics_app(agent: Agent, token: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app serving the agent's metrics to requests bearing `token`."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(AgentCollector(agent))
    inner = make_asgi_app(registry)
    expected = f"Bearer {token}".encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in (HEALTH_PATH, READY_PATH):
            await _probe(scope, send, agent)
            return
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"www-authenticate", b"Bearer"), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await inner(scope, receive, send)

    return app


async def _probe(scope: Scope, send: Send, agent: Agent) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
    if scope.get("method") not in ("GET", "HEAD"):
        status, body = 405, b"method not allowed\n"
        headers.append((b"allow", b"GET, HEAD"))
    elif scope["path"] == HEALTH_PATH or agent.ready:
        status, body = 200, b"ok\n"
    else:
        status, body = 503, b"not ready\n"
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

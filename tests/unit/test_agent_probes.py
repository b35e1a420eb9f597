"""The edge agent's probes on its metrics server: /healthz and /readyz need no token and tell
only a state; /readyz follows the agent's real state (routes loaded, broker connection)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fluidos_sensors.broker import BrokerAccess
from router_manager.agent.metrics import metrics_app
from router_manager.agent.service import Agent, AgentSettings
from testbed import binaries
from testbed.processes import die_with_parent, free_port, port_open

TOKEN = "metrics-token-0123456789"


def _agent(tmp_path: Path, port: int) -> Agent:
    settings = AgentSettings(node="edge-probe", state_dir=tmp_path / "state")
    settings.state_dir.mkdir()
    return Agent(settings, BrokerAccess("127.0.0.1", port), None, static_routes={})


def _client(agent: Agent, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=metrics_app(agent, TOKEN)),
        base_url="http://agent",
        headers=headers,
    )


async def test_probes_need_no_token_and_metrics_still_do(tmp_path: Path) -> None:
    agent = _agent(tmp_path, free_port())  # not started: no routes, no broker
    try:
        for token in (None, "wrong-token", TOKEN):
            async with _client(agent, token) as http:
                health = await http.get("/healthz")
                assert (health.status_code, health.text) == (200, "ok\n")
                ready = await http.get("/readyz")
                assert (ready.status_code, ready.text) == (503, "not ready\n")
                assert ready.headers["cache-control"] == "no-store"
                head = await http.head("/healthz")
                assert (head.status_code, head.content) == (200, b"")
                post = await http.post("/healthz")
                assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
        async with _client(agent, None) as http:
            for path in ("/metrics", "/healthz/", "/readyz/x", "/"):
                assert (await http.get(path)).status_code == 401, path
        async with _client(agent, TOKEN) as http:
            assert (await http.get("/metrics")).status_code == 200
    finally:
        agent.store.close()


@pytest.mark.integration
async def test_ready_follows_the_routes_and_the_broker(tmp_path: Path) -> None:
    """A real mosquitto: ready once the (static, empty) routes are applied and the agent is
    connected; not ready when the broker goes away, while /healthz stays ok."""
    mosquitto = binaries.resolve(binaries.MOSQUITTO, log=print)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log = (tmp_path / "mosquitto.log").open("w")
    broker = subprocess.Popen(
        [mosquitto, "-c", config], stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
    )
    agent = _agent(tmp_path, port)
    stop = asyncio.Event()

    async def state(http: httpx.AsyncClient, wanted: int) -> None:
        deadline = time.monotonic() + 30
        while (await http.get("/readyz")).status_code != wanted:
            assert broker.poll() is None or wanted == 503, (tmp_path / "mosquitto.log").read_text()
            assert time.monotonic() < deadline, f"/readyz never answered {wanted}"
            await asyncio.sleep(0.2)

    try:
        while not port_open(port):
            assert broker.poll() is None, (tmp_path / "mosquitto.log").read_text()
            await asyncio.sleep(0.1)
        running = asyncio.create_task(agent.run(stop))
        async with _client(agent, None) as http:
            await state(http, 200)
            assert agent.subscriber.connected
            broker.terminate()
            broker.wait(timeout=10)
            await state(http, 503)
            assert (await http.get("/healthz")).status_code == 200
        stop.set()
        await asyncio.wait_for(running, 30)
    finally:
        stop.set()
        if broker.poll() is None:
            broker.terminate()
            broker.wait(timeout=10)
        log.close()

"""HTTP clients for the edge agent's deliveries, side by side; prints JSON.

The agent POSTs a batch of line protocol to every target of a sensor at the same moment, so
at many targets its CPU per POST is most of its work and decides how long the last target
waits. For each client (pyreqwest, the agent's; aiohttp; httpx) on each event loop (uvloop,
the agent's; asyncio's own): `--rounds` rounds of `--targets` simultaneous POSTs (one client
and keep-alive connection per target, as in the agent) of a `--lines`-line body to the
router benchmark's sink; reported: this process's CPU per POST (pyreqwest's Rust threads
included) and the time from the first POST of a round to the last answer, p50 and p99.

    .venv/bin/python bench/bench_http_clients.py [--targets 16] [--rounds 300] [--lines 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import httpx
import numpy as np
import uvloop
from bench_router import Sink  # this folder: run as bench/bench_http_clients.py
from pyreqwest.client import ClientBuilder

LINE = (
    b"acceleration,device=loadgen,node=bench-edge,provider=bench,sensor=acceleration,unit=mg "
    b"x=1.0,y=-2.5,z=1003.0,seq=12345i,device_time=123.45 1700000000123456000\n"
)
CONTENT_TYPE = "text/plain; charset=utf-8"
Post = Callable[[], Awaitable[int]]


async def pyreqwest_posts(urls: list[str], body: bytes) -> tuple[list[Post], list[Any]]:
    clients = [
        ClientBuilder().timeout(timedelta(seconds=10)).follow_redirects(False).no_proxy().build()
        for _ in urls
    ]

    def post(client: Any, url: str) -> Post:
        async def send() -> int:
            request = client.post(url).header("Content-Type", CONTENT_TYPE).body_bytes(body)
            async with request.build_streamed() as answer:
                await answer.body_reader.read(1200)
                return answer.status

        return send

    return [post(c, u) for c, u in zip(clients, urls, strict=True)], clients


async def aiohttp_posts(urls: list[str], body: bytes) -> tuple[list[Post], list[Any]]:
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2), timeout=aiohttp.ClientTimeout(total=10)
        )
        for _ in urls
    ]

    def post(session: aiohttp.ClientSession, url: str) -> Post:
        async def send() -> int:
            headers = {"Content-Type": CONTENT_TYPE}
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.content.read(1200)
                return answer.status

        return send

    return [post(s, u) for s, u in zip(sessions, urls, strict=True)], sessions


async def httpx_posts(urls: list[str], body: bytes) -> tuple[list[Post], list[Any]]:
    clients = [httpx.AsyncClient(timeout=10, trust_env=False) for _ in urls]

    def post(client: httpx.AsyncClient, url: str) -> Post:
        async def send() -> int:
            answer = await client.post(url, content=body, headers={"Content-Type": CONTENT_TYPE})
            return answer.status_code

        return send

    return [post(c, u) for c, u in zip(clients, urls, strict=True)], clients


CLIENTS = {"pyreqwest": pyreqwest_posts, "aiohttp": aiohttp_posts, "httpx": httpx_posts}


async def measure(client: str, urls: list[str], body: bytes, rounds: int) -> dict[str, Any]:
    posts, handles = await CLIENTS[client](urls, body)
    try:
        statuses = await asyncio.gather(*(post() for post in posts))  # connect, warm up
        if set(statuses) != {204}:
            raise RuntimeError(f"{client}: the sink answered {statuses}")
        spans = []
        cpu = time.process_time()
        for _ in range(rounds):
            started = time.perf_counter()
            await asyncio.gather(*(post() for post in posts))
            spans.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)  # the sink drains; rounds do not overlap
        cpu = time.process_time() - cpu
    finally:
        for handle in handles:
            await (handle.aclose() if isinstance(handle, httpx.AsyncClient) else handle.close())
    p50, p99 = np.percentile(np.asarray(spans) * 1000, [50, 99])
    return {
        "cpu_ms_per_post": round(cpu / (rounds * len(urls)) * 1000, 4),
        "round_ms_p50": round(float(p50), 2),
        "round_ms_p99": round(float(p99), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--lines", type=int, default=100, help="lines of line protocol per POST")
    args = parser.parse_args()
    sink = Sink()  # the router benchmark's: one process, a path per target
    results: list[dict[str, Any]] = []
    try:
        urls = [sink.url(i, "clients") for i in range(args.targets)]
        body = LINE * args.lines
        for loop, run in (("uvloop", uvloop.run), ("asyncio", asyncio.run)):
            for client in CLIENTS:
                rounds = args.rounds if client != "httpx" else max(args.rounds // 4, 10)
                figures = run(measure(client, urls, body, rounds))
                results.append({"client": client, "loop": loop, "rounds": rounds, **figures})
    finally:
        sink.stop()
    baseline = {r["loop"]: r for r in results if r["client"] == "aiohttp"}
    for result in results:
        aio = baseline[result["loop"]]["cpu_ms_per_post"]
        result["cpu_over_aiohttp"] = round(result["cpu_ms_per_post"] / aio, 3)
    report = {
        "benchmark": "HTTP clients: simultaneous POSTs to every target of a sensor",
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count()},
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Router benchmark: our edge agent against Telegraf configured as the same router; prints JSON.

Both routers subscribe to one sensor's topic on the same real mosquitto (QoS 1, persistent
session) and POST InfluxDB line protocol to 1, 4 and 16 targets of the same sink, with the
same batching (size and delay). For each router and target count, in one run:

- steady: a load generator publishes readings at `--rate` per second for `--seconds`;
  router-added latency = arrival at the sink - the reading's own timestamp (set when it was
  published), p50 and p99 over every delivery to every target;
- burst: `--burst` readings wait at the broker for the router's persistent session, then the
  router starts: throughput = readings delivered per second to each target while it drains
  them (the generator's own speed does not count);
- outage: every consumer answers 503 for `--outage-seconds` while `--outage-rate` readings/s
  stream; loss per target once they are back;
- crash: the router is SIGKILLed in the middle of a steady stream and started again; loss.

Also: the router process's CPU seconds, so that "readings per CPU-second" compares the two.
Telegraf is configured as a router should be: inputs.mqtt_consumer (json_v2, the reading's
timestamp) -> one outputs.http per target (line protocol, batch format), flush_interval =
our batch delay, metric_batch_size = our batch size, metric_buffer_limit 100000.

    .venv/bin/python bench/bench_router.py [--targets 1,4,16] [--rate 1000] [--seconds 15]
        [--burst 30000] [--outage-seconds 40] [--outage-rate 3000]
        [--phases steady,burst,outage,crash] [--batch-size 1000] [--batch-delay-ms 100]
        [--repeat 1]

With `--repeat N` every measurement is taken N times, the two routers back to back (which
goes first alternates), and the figures are the medians (losses and duplicates: the worst
run); each run is listed too. This machine's speed moves by tens of percent for tens of
seconds (the same process start-up takes 45 % longer in a slow spell), so single runs of
either router mislead.

It builds/uses the cached Telegraf, starts its own mosquitto, sink, generator and routers and
stops them all; no process is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_mapper import start_mosquitto  # this folder: run as bench/bench_router.py

from fluidos_sensors.broker import BrokerAccess
from fluidos_sensors.shaping import Shaping
from router_manager.route import RouteTarget, route_body
from testbed import binaries
from testbed.processes import die_with_parent, free_port, port_open

TOPIC = "bench/fluidos-sensors/loadgen/acceleration"

# The sink: one HTTP server (aiohttp's, with its C parser: a pure-Python one queued 16
# simultaneous deliveries for tens of ms and counted that as router latency), a path per
# target; keeps every body with its arrival time and parses them only for the figures: the
# time it spends on a delivery delays the next one, and a router that sends to 16 targets at
# once would pay for the sink's parsing in latency. Polls (GET /counts/<run>) are cheap and
# the figures (GET /stats/<run>) are computed once per run, then the run is forgotten, so the
# sink's work does not grow run after run and take CPU from the router being measured.
_SINK = r"""
import asyncio, json, re, sys, time
import numpy as np
from aiohttp import web
LINE = re.compile(rb"[ ,]seq=(\d+)i[^\n]* (\d+)$", re.M)
paths = {}
down_until = [0.0]
# Per path: lines, unique seqs, first/last arrival; latency p50/p99 over every delivery.
def figures(mine):
    out, latency = {}, [np.empty(0)]
    for path, stats in mine.items():
        seqs, stamps, arrival = [], [], []
        for now, body in stats["posts"]:
            found = LINE.findall(body)
            seqs.extend(int(seq) for seq, _ in found)
            stamps.extend(int(stamp) for _, stamp in found)
            arrival.extend([now] * len(found))
        latency.append(np.asarray(arrival, dtype=np.float64)
                       - np.asarray(stamps, dtype=np.int64) / 1e9)
        unique = np.unique(np.asarray(seqs, dtype=np.int64))
        # Where readings are missing, to tell a start-up race from a loss in the middle.
        holes = np.flatnonzero(np.diff(unique) > 1)[:3]
        out[path] = {"lines": stats["lines"], "unique": int(unique.size),
                     "requests": len(stats["posts"]),
                     "bytes": sum(len(body) for _, body in stats["posts"]),
                     "first": stats["first"], "last": stats["last"],
                     "seq_min": int(unique[0]) if unique.size else None,
                     "seq_max": int(unique[-1]) if unique.size else None,
                     "gaps": [[int(unique[i]) + 1, int(unique[i + 1]) - 1] for i in holes]}
    pooled = np.concatenate(latency)
    p50, p99 = np.percentile(pooled, [50, 99]) if pooled.size else (None, None)
    return {"targets": out, "latency_p50": p50 and float(p50), "latency_p99": p99 and float(p99)}
async def handle(request):
    body = await request.read()
    now = time.time()
    method, path = request.method, request.path
    if method == "PUT":  # /down/<seconds>: answer 503 to every delivery that long
        down_until[0] = now + float(path.rsplit("/", 1)[1])
        return web.Response(status=204)
    if method == "GET":  # /counts/<run> or /stats/<run>
        _, what, run = path.split("/", 2)
        mine = {k: v for k, v in paths.items() if k.startswith(f"/{run}/")}
        if what == "counts":
            out = {k: v["lines"] for k, v in mine.items()}
        else:
            out = figures(mine)
            for k in mine:
                del paths[k]
        return web.Response(status=200, body=json.dumps(out).encode())
    if now < down_until[0]:
        return web.Response(status=503)
    stats = paths.get(path)
    if stats is None:
        stats = paths[path] = {"lines": 0, "posts": [], "first": now, "last": now}
    stats["lines"] += body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    stats["posts"].append((now, body))
    stats["last"] = now
    return web.Response(status=204)
async def main():
    runner = web.ServerRunner(web.Server(handle), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    await asyncio.Event().wait()
asyncio.run(main())
"""

# The generator: readings of one sensor, QoS 1, at a rate or as fast as it can.
_LOADGEN = r"""
import asyncio, json, sys, time
import aiomqtt
access = json.loads(sys.argv[1])
count, rate, start_seq = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
async def main():
    async with aiomqtt.Client(access["host"], access["port"], username=access["username"],
                              password=access["password"], max_inflight_messages=1000) as mqtt:
        mqtt.pending_calls_threshold = 10**6
        started = time.monotonic()
        sent = 0
        while sent < count:
            batch = []
            due = count if rate <= 0 else min(count, int((time.monotonic() - started) * rate) + 1)
            while sent < due and len(batch) < 500:
                now = time.time()
                body = {"v": 1, "ns": "bench", "device": "loadgen", "sensor": "acceleration",
                        "quantity": "acceleration", "unit": "mg",
                        "values": {"x": 1.0, "y": -2.5, "z": 1000.0 + sent % 7},
                        "node": "bench-edge", "provider": "bench", "seq": start_seq + sent,
                        "deviceTime": round(sent / 100, 3), "receivedAt": round(now, 6)}
                batch.append(mqtt.publish(%r, json.dumps(body, separators=(",", ":")), qos=1))
                sent += 1
            if batch:
                await asyncio.gather(*batch)
            else:
                await asyncio.sleep(0.001)
        print(json.dumps({"sent": sent, "seconds": time.monotonic() - started}), flush=True)
asyncio.run(main())
""".replace("%r", repr(TOPIC))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its waited children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SINK, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        wait_port(self.port, self.proc)

    def url(self, index: int, run: str) -> str:
        return f"http://127.0.0.1:{self.port}/{run}/t{index}"

    def counts(self, run: str) -> dict[str, int]:
        """Lines received so far per target path of a run."""
        return httpx.get(f"http://127.0.0.1:{self.port}/counts/{run}", timeout=60).json()

    def stats(self, run: str) -> dict[str, Any]:
        """A run's figures: per target path lines, unique seqs, first/last arrival; latency
        p50/p99 in seconds over all deliveries. The sink forgets the run afterwards."""
        return httpx.get(f"http://127.0.0.1:{self.port}/stats/{run}", timeout=60).json()

    def down(self, seconds: float) -> None:
        """Every target answers 503 for that long (a consumer outage)."""
        httpx.put(f"http://127.0.0.1:{self.port}/down/{seconds}", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            shown = proc.args[:3] if isinstance(proc.args, list | tuple) else str(proc.args)
            raise RuntimeError(f"process {shown} did not listen on {port}")
        time.sleep(0.05)


def access_json(access: BrokerAccess) -> str:
    return json.dumps(
        {
            "host": access.host,
            "port": access.port,
            "username": access.username,
            "password": access.password,
        }
    )


def telegraf_config(
    access: BrokerAccess, urls: list[str], batch_size: int, delay_ms: int, client_id: str
) -> str:
    outputs = "\n".join(
        f"""[[outputs.http]]
  url = "{url}"
  data_format = "influx"
  use_batch_format = true
  timeout = "10s"
  [outputs.http.headers]
    Content-Type = "text/plain; charset=utf-8"
"""
        for url in urls
    )
    tags = "\n".join(
        f"""    [[inputs.mqtt_consumer.json_v2.tag]]
      path = "{name}"
"""
        for name in ("device", "node", "provider", "sensor", "unit")
    )
    fields = "\n".join(
        f"""    [[inputs.mqtt_consumer.json_v2.field]]
      path = "{path}"
      rename = "{name}"
      type = "{kind}"
"""
        for path, name, kind in (
            ("values.x", "x", "float"),
            ("values.y", "y", "float"),
            ("values.z", "z", "float"),
            ("deviceTime", "device_time", "float"),
            ("seq", "seq", "int"),
        )
    )
    return f"""[agent]
  interval = "1s"
  flush_interval = "{max(delay_ms, 10)}ms"
  flush_jitter = "0s"
  metric_batch_size = {batch_size}
  metric_buffer_limit = 100000
  omit_hostname = true
  quiet = true

[[inputs.mqtt_consumer]]
  servers = ["tcp://{access.host}:{access.port}"]
  topics = ["{TOPIC}"]
  qos = 1
  persistent_session = true
  client_id = "{client_id}"
  username = "{access.username}"
  password = "{access.password}"
  max_undelivered_messages = 1000
  topic_tag = ""
  data_format = "json_v2"
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name_path = "quantity"
    timestamp_path = "receivedAt"
    timestamp_format = "unix"
{tags}
{fields}
{outputs}"""


def router_client_id(kind: str, run: str) -> str:
    """The MQTT client id a router of a run connects with (persistent session)."""
    return run if kind == "telegraf" else f"fluidos-sensors-agent-bench-{run}"


class Router:
    """One router process (ours or Telegraf) delivering TOPIC to `urls`."""

    def __init__(
        self,
        kind: str,
        access: BrokerAccess,
        urls: list[str],
        folder: Path,
        batch_size: int,
        delay_ms: int,
        run: str,
        shape: Shaping | None = None,
    ) -> None:
        """`shape`: what every target of the agent asks for instead of raw readings."""
        self.kind = kind
        node = f"bench-{run}"
        self.client_id = router_client_id(kind, run)
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / f"{kind}.log").open("ab")
        if kind == "telegraf":
            config = folder / "telegraf.conf"
            config.write_text(telegraf_config(access, urls, batch_size, delay_ms, run))
            argv = [str(binaries.resolve(binaries.TELEGRAF)), "--config", str(config)]
        else:
            credentials = folder / "broker.json"
            access.save(credentials)
            targets = [
                RouteTarget(
                    id=f"t{i}", url=url, batch_size=batch_size, batch_delay_ms=delay_ms, shape=shape
                )
                for i, url in enumerate(urls)
            ]
            routes = folder / "routes.json"
            routes.write_text(json.dumps([route_body(node, TOPIC, targets)]))
            argv = [
                sys.executable, "-m", "fluidos_sensors_cli", "router-manager", "agent",
                "--node", node, "--mqtt-credentials", str(credentials),
                "--state-dir", str(folder / "queue"), "--routes-file", str(routes),
                "--log-level", "WARNING",
            ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def publish(access: BrokerAccess, count: int, rate: float, start_seq: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _LOADGEN, access_json(access), str(count), str(rate),
         str(start_seq)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def settle(sink: Sink, run: str, targets: int, expected: int, timeout: float) -> dict[str, Any]:
    """Wait until every target got `expected` readings (or nothing moves for a while)."""
    deadline = time.monotonic() + timeout
    last_total, last_change = -1, time.monotonic()
    while True:
        counts = sink.counts(run)
        total = sum(counts.values())
        done = len(counts) == targets and all(n >= expected for n in counts.values())
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        if done or time.monotonic() > deadline or time.monotonic() - last_change > 15:
            return sink.stats(run)
        time.sleep(0.5)


def _session(access: BrokerAccess, client_id: str, *, keep: bool) -> None:
    script = (
        "import asyncio, json, sys, aiomqtt\n"
        "a = json.loads(sys.argv[1])\n"
        "keep = sys.argv[3] == 'keep'\n"
        "async def main():\n"
        "  async with aiomqtt.Client(a['host'], a['port'], username=a['username'], "
        "password=a['password'], identifier=sys.argv[2], clean_session=not keep) as c:\n"
        "    if keep:\n"
        f"      await c.subscribe({TOPIC!r}, qos=1)\n"
        "asyncio.run(main())\n"
    )
    mode = "keep" if keep else "forget"
    subprocess.run(
        [sys.executable, "-c", script, access_json(access), client_id, mode],
        check=True,
        timeout=30,
    )


def open_session(access: BrokerAccess, client_id: str) -> None:
    """Make a router's persistent session and its subscription before the router starts:
    from then on the broker keeps every reading for it, so a router slow to start (this
    machine has slow spells) cannot miss the first readings of a phase."""
    _session(access, client_id, keep=True)


def forget_session(access: BrokerAccess, client_id: str) -> None:
    """Drop a persistent session (and what the broker queued for it) between runs."""
    _session(access, client_id, keep=False)


def measure(
    kind: str,
    targets: int,
    phases: str,
    args: argparse.Namespace,
    access: BrokerAccess,
    sink: Sink,
    tmp: Path,
    repetition: int = 0,
) -> dict[str, Any]:
    """The figures of `phases` (comma-separated), by phase.

    Steady: publish at a rate while the router runs. Burst: the router subscribes, stops,
    `--burst` readings wait at the broker (its persistent session), the router starts again:
    how fast it drains them is its throughput, independent of the generator's speed.
    Outage: the consumers answer 503 for `--outage-seconds` while readings stream at
    `--outage-rate`; what arrives once they are back. Crash: the router is SIGKILLed in the
    middle of a steady stream and started again; what arrives."""
    result: dict[str, Any] = {}
    for phase in phases.split(","):
        run = f"{kind}-{targets}-{phase}-{repetition}"
        urls = [sink.url(i, run) for i in range(targets)]

        def start(urls: list[str] = urls, run: str = run) -> Router:
            return Router(kind, access, urls, tmp / run, args.batch_size, args.batch_delay_ms, run)

        open_session(access, router_client_id(kind, run))
        router = start()
        time.sleep(4)  # connected before the first reading
        cpu_before = router.cpu()
        cpu_spent = 0.0
        if phase == "burst":
            count = args.burst
            router.stop()
            sent = publish(access, count, 0, 0)
            router = start()
            cpu_before = router.cpu()
        elif phase == "outage":
            count = int(args.outage_rate * args.outage_seconds * 1.25)
            sink.down(args.outage_seconds)
            sent = publish(access, count, args.outage_rate, 0)
        elif phase == "crash":
            count = int(args.rate * args.seconds)
            publishing = publish_in_background(access, count, args.rate)
            time.sleep(args.seconds / 2)
            cpu_spent = router.cpu() - cpu_before
            router.proc.kill()  # SIGKILL: whatever the router held only in memory is gone
            router.proc.wait()
            router = start()
            cpu_before = router.cpu()
            sent = finish(publishing)
        else:
            count = int(args.rate * args.seconds)
            sent = publish(access, count, args.rate, 0)
        figures = settle(sink, run, targets, count, timeout=300)
        stats = figures["targets"]
        cpu = cpu_spent + router.cpu() - cpu_before
        router.stop()
        forget_session(access, router.client_id)
        delivered = [v["lines"] for v in stats.values()] + [0] * (targets - len(stats))
        unique = [v["unique"] for v in stats.values()] + [0] * (targets - len(stats))
        firsts = [v["first"] for v in stats.values()]
        lasts = [v["last"] for v in stats.values()]
        span = (max(lasts) - min(firsts)) if lasts else 0.0
        entry: dict[str, Any] = {
            "published": sent["sent"],
            "delivered_per_target_min": min(delivered),
            "lost_per_target_max": count - min(unique),
            "duplicates": sum(delivered) - sum(unique),
            "router_cpu_seconds": round(cpu, 2),
            "deliveries_per_cpu_second": round(sum(unique) / cpu, 1) if cpu else None,
        }
        if entry["lost_per_target_max"]:
            entry["missing"] = {
                path.rsplit("/", 1)[1]: {k: v[k] for k in ("seq_min", "seq_max", "gaps")}
                for path, v in stats.items()
                if v["unique"] < count
            }
        if phase == "steady":
            entry["offered_per_second"] = round(sent["sent"] / sent["seconds"], 1)
            entry["latency_p50_ms"] = _ms(figures["latency_p50"])
            entry["latency_p99_ms"] = _ms(figures["latency_p99"])
        elif phase == "burst":
            entry["drain_seconds"] = round(span, 3)
            entry["throughput_per_target"] = round(min(unique) / span, 1) if span else 0.0
            entry["throughput_total"] = round(sum(unique) / span, 1) if span else 0.0
        result[phase] = entry
    return result


def publish_in_background(access: BrokerAccess, count: int, rate: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _LOADGEN, access_json(access), str(count), str(rate), "0"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )


def finish(publishing: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = publishing.communicate(timeout=600)
    return json.loads(out.strip().splitlines()[-1])


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One router and target count over repeated runs: per phase the median of each figure,
    the worst of losses and duplicates; the runs themselves under "runs"."""
    out: dict[str, Any] = {"router": runs[0]["router"], "targets": runs[0]["targets"]}
    for phase in [k for k, v in runs[0].items() if isinstance(v, dict)]:
        entries = [run[phase] for run in runs]
        merged: dict[str, Any] = {}
        for key in entries[0]:
            if key == "missing":  # per run only (under "runs", or as it is for one run)
                continue
            values = [e[key] for e in entries if e.get(key) is not None]
            if not values:
                merged[key] = None
            elif key.startswith("lost") or key == "duplicates":
                merged[key] = max(values)
            else:
                merged[key] = round(statistics.median(values), 3)
        if len(runs) > 1:
            merged["runs"] = entries
        elif "missing" in entries[0]:
            merged["missing"] = entries[0]["missing"]
        out[phase] = merged
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    by = {(r["router"], r["targets"]): r for r in results}

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    for targets in sorted({r["targets"] for r in results}):
        ours, peer = by.get(("agent", targets)), by.get(("telegraf", targets))
        if not ours or not peer:
            continue
        row: dict[str, Any] = {"targets": targets}
        if "burst" in ours and "burst" in peer:
            row["burst_throughput_agent_over_telegraf"] = ratio(
                ours["burst"]["throughput_per_target"], peer["burst"]["throughput_per_target"]
            )
            row["cpu_efficiency_agent_over_telegraf"] = ratio(
                ours["burst"]["deliveries_per_cpu_second"],
                peer["burst"]["deliveries_per_cpu_second"],
            )
        if "steady" in ours and "steady" in peer:
            for q in ("p50", "p99"):
                row[f"steady_{q}_agent_over_telegraf"] = ratio(
                    ours["steady"][f"latency_{q}_ms"], peer["steady"][f"latency_{q}_ms"]
                )
        for phase in ("steady", "burst", "outage", "crash"):
            if phase in ours and phase in peer:
                row[f"{phase}_lost_agent"] = ours[phase]["lost_per_target_max"]
                row[f"{phase}_lost_telegraf"] = peer[phase]["lost_per_target_max"]
        out.append(row)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="1,4,16")
    parser.add_argument("--rate", type=float, default=1000.0, help="steady readings/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="steady phase length")
    parser.add_argument("--burst", type=int, default=30_000, help="readings in the burst")
    parser.add_argument("--outage-seconds", type=float, default=40.0)
    parser.add_argument("--outage-rate", type=float, default=3000.0, help="readings/s")
    parser.add_argument("--phases", default="steady,burst,outage,crash")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-delay-ms", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement")
    args = parser.parse_args()
    counts = [int(n) for n in args.targets.split(",")]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp_name:
        tmp = Path(tmp_name)
        broker, access = start_mosquitto(tmp)
        sink = Sink()
        try:
            for repetition in range(args.repeat):
                # Side by side (same broker, load and sink): each measurement of the two
                # routers back to back, the first one alternating, so that a slow spell of
                # the machine falls on both rather than on one.
                kinds = ("agent", "telegraf")[:: 1 if repetition % 2 == 0 else -1]
                for phase in args.phases.split(","):
                    for targets in counts:
                        for kind in kinds:
                            found = runs.setdefault((kind, targets), [])
                            if len(found) == repetition:
                                found.append({"router": kind, "targets": targets})
                            found[repetition].update(
                                measure(kind, targets, phase, args, access, sink, tmp, repetition)
                            )
        finally:
            sink.stop()
            broker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                broker.wait(10)
    results = [combine(runs[(kind, n)]) for n in counts for kind in ("agent", "telegraf")]
    report = {
        "benchmark": "router: edge agent vs Telegraf as MQTT->HTTP router",
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count()},
        "results": results,
        "ratios": ratios(results),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

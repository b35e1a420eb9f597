"""Shaping benchmark: what window aggregates and downsampling at the edge save against raw
delivery of the same stream; prints JSON.

One real mosquitto, the edge agent (routes from a file), the router benchmark's sink. For
each case the same load (`--rate` readings/s of one 3-axis sensor for `--seconds`) goes to
`--targets` targets that all ask the same:

- raw: every reading;
- windows: mean, max and count over 1 s windows (one shaper for all targets);
- every10: every 10th reading.

Per case, per target: requests, bytes and records the consumer received, scaled to an hour;
and the agent's CPU seconds per second of stream. `reduction` is raw / case.

    .venv/bin/python bench/bench_shaping.py [--rate 1000] [--seconds 20] [--targets 4]
        [--repeat 1]

With `--repeat N` the cases run N times in turn and the figures are medians. It starts its
own mosquitto, sink and agents and stops them all; no process is left behind.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_mapper import start_mosquitto  # this folder: run as bench/bench_shaping.py
from bench_router import Router, Sink, forget_session, open_session, publish, router_client_id

from fluidos_sensors.broker import BrokerAccess
from fluidos_sensors.shaping import Shaping

CASES: dict[str, Shaping | None] = {
    "raw": None,
    "windows": Shaping(aggregates=("mean", "max", "count"), window_ms=1000),
    "every10": Shaping(every=10),
}
HOUR = 3600.0


def quiet(sink: Sink, run: str, seconds: float = 3.0, timeout: float = 120.0) -> None:
    """Wait until nothing more arrives for `seconds` (the last window closes after a grace)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        counts = sink.counts(run)
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
        time.sleep(0.5)


def run_case(
    name: str,
    shape: Shaping | None,
    args: argparse.Namespace,
    access: BrokerAccess,
    sink: Sink,
    folder: Path,
    repetition: int,
) -> dict[str, Any]:
    run = f"{name}-{repetition}"
    urls = [sink.url(i, run) for i in range(args.targets)]
    open_session(access, router_client_id("agent", run))
    agent = Router("agent", access, urls, folder / run, 1000, 100, run, shape=shape)
    try:
        time.sleep(4)  # connected before the first reading
        cpu_before = agent.cpu()
        sent = publish(access, int(args.rate * args.seconds), args.rate, 0)
        quiet(sink, run)
        cpu = agent.cpu() - cpu_before
    finally:
        agent.stop()
        forget_session(access, agent.client_id)
    targets = sink.stats(run)["targets"].values()
    scale = HOUR / sent["seconds"]

    def per_hour(key: str) -> float:
        return statistics.median(t[key] for t in targets) * scale if targets else 0.0

    return {
        "published": sent["sent"],
        "targets_reached": len(targets),
        "requests_per_hour": round(per_hour("requests")),
        "bytes_per_hour": round(per_hour("bytes")),
        "records_per_hour": round(per_hour("lines")),
        "agent_cpu_s_per_s": round(cpu / sent["seconds"], 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--targets", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory(prefix="bench-shaping-") as tmp:
        folder = Path(tmp)
        broker, access = start_mosquitto(folder)
        sink = Sink()
        try:
            for repetition in range(args.repeat):
                for name, shape in CASES.items():
                    runs[name].append(run_case(name, shape, args, access, sink, folder, repetition))
        finally:
            sink.stop()
            broker.terminate()
            broker.wait(10)
    figures = {
        name: {key: statistics.median(r[key] for r in found) for key in found[0]}
        for name, found in runs.items()
    }
    raw = figures["raw"]
    for name, case in figures.items():
        shape = CASES[name]
        case["shape"] = shape.key if shape else "raw"
        case["reduction"] = {
            key: round(raw[key] / case[key], 1) if case[key] else None
            for key in ("requests_per_hour", "bytes_per_hour")
        }
        case["cpu_vs_raw"] = (
            round(case["agent_cpu_s_per_s"] / raw["agent_cpu_s_per_s"], 2)
            if raw["agent_cpu_s_per_s"]
            else None
        )
    json.dump(
        {
            "benchmark": "shaping",
            "rate": args.rate,
            "seconds": args.seconds,
            "targets": args.targets,
            "repeat": args.repeat,
            "cases": figures,
            "runs": runs,
        },
        sys.stdout,
        indent=2,
    )
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

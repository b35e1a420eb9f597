"""Mapper benchmark: decoded readings per second per core, and RSS; prints JSON.

10 simulated boards (STWIN.box and SensorTile alternating) stream inertial data at 30 Hz and
environmental data at 20 Hz through bleak into the real mapper pipeline (decode, one reading
per sensor, publish) to a real mosquitto, for a bounded time. A subscriber in another process
counts what reaches the broker. Issue 4 names no peer to compare against, so the decoder
alone (and decoder + reading encoding) on the same frames is reported as a reference.

    .venv/bin/python bench/bench_mapper.py [--boards 10] [--seconds 20]

It starts and stops its own mosquitto (and subscriber); no process is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fluidos_sensors.backoff import Backoff
from fluidos_sensors.broker import BrokerAccess, mosquitto_config, write_password_file
from fluidos_sensors.reading import Reading
from mapper.ble import BleBackends, LinkSettings
from mapper.bluest import decode_notification
from mapper.dataplane.publisher import MqttPublisher
from mapper.naming import quantity_of, sensor_segment
from mapper.service import Mapper, MapperSettings
from mapper.simulated import simulated_boards
from mapper.simulator import SimulatedRadio, client_backend, scanner_backend
from testbed import binaries
from testbed.processes import die_with_parent, free_port, port_open

NODE = "bench-edge"
INERTIAL_HZ = 30.0
ENVIRONMENTAL_HZ = 20.0

_SUBSCRIBER = """
import asyncio, json, signal, sys
import aiomqtt
access = json.loads(sys.argv[1])
count = 0
async def main():
    global count
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with aiomqtt.Client(access["host"], access["port"], username=access["username"],
                              password=access["password"]) as mqtt:
        await mqtt.subscribe("#")
        print("ready", flush=True)
        async def consume():
            global count
            async for _ in mqtt.messages:
                count += 1
        task = asyncio.create_task(consume())
        await stop.wait()
        task.cancel()
    print(count, flush=True)
asyncio.run(main())
"""


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], BrokerAccess]:
    executable = binaries.resolve(binaries.MOSQUITTO)
    port = free_port()
    access = BrokerAccess.generate("127.0.0.1", port, "bench")
    write_password_file(folder / "passwords", access)
    config = folder / "mosquitto.conf"
    config.write_text(mosquitto_config(port, folder / "passwords", run_as=getpass.getuser()))
    broker = subprocess.Popen(
        [str(executable), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    deadline = time.monotonic() + 10
    while not port_open(port):
        if time.monotonic() > deadline or broker.poll() is not None:
            broker.kill()
            raise RuntimeError("mosquitto did not start")
        time.sleep(0.05)
    return broker, access


def start_subscriber(access: BrokerAccess) -> subprocess.Popen[str]:
    body = {
        "host": access.host,
        "port": access.port,
        "username": access.username,
        "password": access.password,
    }
    subscriber = subprocess.Popen(
        [sys.executable, "-c", _SUBSCRIBER, json.dumps(body)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )
    assert subscriber.stdout is not None
    if subscriber.stdout.readline().strip() != "ready":
        subscriber.kill()
        raise RuntimeError("subscriber did not start")
    return subscriber


def stop_subscriber(subscriber: subprocess.Popen[str]) -> int:
    subscriber.send_signal(signal.SIGTERM)
    out, _ = subscriber.communicate(timeout=15)
    return int(out.strip().splitlines()[-1])


async def pipeline(access: BrokerAccess, boards: int, seconds: float) -> dict[str, Any]:
    fleet = simulated_boards(
        NODE, boards, inertial_hz=INERTIAL_HZ, environmental_hz=ENVIRONMENTAL_HZ
    )
    radio = SimulatedRadio()
    for _, board in fleet:
        radio.add_board(board)
    publisher = MqttPublisher(access, capacity=100_000, backoff=lambda: Backoff(0.1, 1.0))
    mapper = Mapper(
        MapperSettings(node=NODE, all_boards=True, link=LinkSettings()),
        backends=BleBackends(scanner_backend(radio), client_backend(radio)),
        publisher=publisher,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(mapper.run(stop))
    try:
        async with asyncio.timeout(30):
            while sum(link.connected for link in mapper.links.values()) < boards:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # settle
        readings0, published0 = mapper.readings, publisher.stats.published
        notifications0 = sum(link.stats.notifications for link in mapper.links.values())
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        readings = mapper.readings - readings0
        published = publisher.stats.published - published0
        notifications = (
            sum(link.stats.notifications for link in mapper.links.values()) - notifications0
        )
        rss = rss_kib()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    # The simulated boards run in this process too: price their frame generation alone.
    sample_board = {model: board for model, board in fleet}
    frames_per_board = {
        model: list(board.characteristics.items()) for model, board in sample_board.items()
    }
    generated = 0
    sim0 = time.process_time()
    for _ in range(200):
        for model, board in sample_board.items():
            for mask, _rate in frames_per_board[model]:
                board.notification(mask)
                generated += 1
    simulator_cpu_per_frame = (time.process_time() - sim0) / generated
    simulator_cpu = simulator_cpu_per_frame * notifications
    return {
        "boards": boards,
        "seconds": round(wall, 2),
        "notifications": notifications,
        "readings": readings,
        "published": published,
        "published_total": publisher.stats.published,
        "dropped": publisher.stats.dropped,
        "malformed": sum(link.stats.malformed for link in mapper.links.values()),
        "readings_per_second": round(readings / wall, 1),
        "expected_readings_per_second": round(expected_rate(fleet), 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_utilisation": round(cpu / wall, 3),
        "readings_per_cpu_second": round(readings / cpu, 1) if cpu else None,
        "simulator_cpu_seconds_estimate": round(simulator_cpu, 3),
        "readings_per_cpu_second_without_simulator": round(readings / (cpu - simulator_cpu), 1)
        if cpu > simulator_cpu
        else None,
        "rss_mib": round(rss / 1024, 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def expected_rate(fleet: list[tuple[str, Any]]) -> float:
    total = 0.0
    for _, board in fleet:
        for mask, rate in board.characteristics.items():
            total += rate * bin(mask).count("1")
    return total


def decode_reference(seconds: float) -> dict[str, Any]:
    """The decoder alone, and decoder + Reading encoding, on frames the simulator made."""
    fleet = simulated_boards(NODE, 2, inertial_hz=INERTIAL_HZ, environmental_hz=ENVIRONMENTAL_HZ)
    frames = [
        (mask, board.notification(mask))
        for _ in range(200)
        for _, board in fleet
        for mask in board.characteristics
    ]
    result: dict[str, Any] = {}
    for label, encode in (("decode_only", False), ("decode_and_encode", True)):
        samples = 0
        cpu0 = time.process_time()
        while time.process_time() - cpu0 < seconds:
            for seq, (mask, frame) in enumerate(frames):
                decoded = decode_notification(mask, frame)
                samples += len(decoded)
                if encode:
                    for sample in decoded:
                        Reading(
                            namespace="default",
                            device="bench",
                            sensor=sensor_segment(sample.sensor),
                            quantity=quantity_of(sample.sensor),
                            unit=sample.unit,
                            values=sample.values,
                            node=NODE,
                            seq=seq,
                            received_at=time.time(),
                            device_time=sample.timestamp * 0.01,
                        ).encode()
        cpu = time.process_time() - cpu0
        result[f"{label}_readings_per_cpu_second"] = round(samples / cpu, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mapper-") as tmp:
        broker, access = start_mosquitto(Path(tmp))
        subscriber = None
        try:
            subscriber = start_subscriber(access)
            result = asyncio.run(pipeline(access, args.boards, args.seconds))
            time.sleep(0.5)  # let the last messages reach the subscriber
            result["received_by_subscriber"] = stop_subscriber(subscriber)
            subscriber = None
        finally:
            for process in (subscriber, broker):
                if process is not None and process.poll() is None:
                    process.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(10)
                    if process.poll() is None:
                        process.kill()
                        process.wait()
    output = {
        "benchmark": "mapper",
        "cpu": os.cpu_count(),
        "python": sys.version.split()[0],
        "config": {
            "boards": args.boards,
            "inertial_hz": INERTIAL_HZ,
            "environmental_hz": ENVIRONMENTAL_HZ,
            "battery_hz": 1.0,
            "broker": "mosquitto, loopback, password auth, QoS 0",
        },
        "pipeline": result,
        "reference": decode_reference(3.0),
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()

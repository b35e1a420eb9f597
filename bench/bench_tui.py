"""TUI benchmark, headless (`App.run_test()`); prints JSON.

1. Startup against the testbed: from creating the app to the first frame, and to every
   cluster connected with its objects in the tables (the running testbed, or one it starts).
2. 10,000 flavors fed to the data layer (no API: this measures the TUI): initial fill, 1,000
   changed flavors in one batch, one change among 10,000, a filter over 10,000, removing
   1,000, and the longest time the UI thread spent applying one batch.

    .venv/bin/python bench/bench_tui.py [--flavors 10000] [--changes 1000] [--no-testbed]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluidos_sensors.flavor import ObservedPerformance, Price, ProviderConfig, build_flavor
from fluidos_sensors.sensor import DeviceRef, parse_sensor_entry
from tui.app import SensorsApp
from tui.data.rows.cells import object_key, row_key
from tui.data.store import Kind, Phase, Store

SIZE = (160, 44)
KINDS = [("temperature", "°C"), ("humidity", "%RH"), ("pressure", "hPa"), ("acceleration", "mg")]
MAKERS = [("STMicroelectronics", "HTS221"), ("Bosch", "BME280"), ("TDK", "ICM-42688")]


def flavor_objects(count: int) -> list[dict[str, Any]]:
    provider = ProviderConfig(
        node_id="provider-1",
        domain="fluidos.eu",
        ip="10.0.0.5",
        price=Price(amount="1", currency="EUR", period="hourly"),
    )
    objects = []
    for i in range(count):
        kind, unit = KINDS[i % len(KINDS)]
        maker, model = MAKERS[i % len(MAKERS)]
        spec, _ = parse_sensor_entry(
            {
                "name": f"{kind}-{i}",
                "model": model,
                "manufacturer": maker,
                "type": {"sensorCategory": "Environmental", "sensorType": [kind]},
                "samplingRate": str(1 + i % 20),
                "latency": str(5 + i % 30),
                "accuracy": ["0.5"],
                "properties": {"unit": {"measurement": [unit]}},
            }
        )
        assert spec is not None
        body = build_flavor(
            DeviceRef("default", f"board-{i // 4}"),
            f"edge-{i % 50}",
            spec,
            provider,
            available=i % 7 != 0,
            observed=ObservedPerformance(latency_ms=10.0, rate_hz=1.0),
        )
        body["metadata"]["resourceVersion"] = "1"
        objects.append(body)
    return objects


async def until(pilot: Any, check: Callable[[], bool], timeout: float = 120.0) -> float:
    """Seconds until `check` holds while the app runs."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark step did not finish")
        await pilot.pause(0.005)
    return time.perf_counter() - start


def in_thread(work: Callable[[], None]) -> None:
    """Writes come from watch threads in the real app; so they do here."""
    threading.Thread(target=work, daemon=True).start()


async def bench_flavors(count: int, changes: int) -> dict[str, Any]:
    objects = flavor_objects(count)
    store = Store()
    store.add_cluster("provider-1", "provider")
    app = SensorsApp(store)
    applies: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        table = main.flavor_table
        original = table._work

        def timed() -> None:
            start = time.perf_counter()
            original()
            applies.append(time.perf_counter() - start)

        table._work = timed  # type: ignore[method-assign]
        await pilot.pause(0.2)

        start, cpu = time.perf_counter(), time.process_time()
        in_thread(lambda: store.replace("provider-1", Kind.FLAVORS, objects))
        await until(pilot, lambda: table.pending == 0 and table.row_count == count)
        fill, fill_cpu = time.perf_counter() - start, time.process_time() - cpu
        fill_max_apply = max(applies)
        applies.clear()

        changed = [copy.deepcopy(o) for o in objects[:changes]]
        for obj in changed:
            obj["spec"]["flavorType"]["typeData"]["observed"]["latencyMs"] = 99.5
        last = row_key(object_key("provider-1", changed[-1]))

        def write_changes() -> None:
            for obj in changed:
                store.upsert("provider-1", Kind.FLAVORS, obj)

        start = time.perf_counter()
        in_thread(write_changes)
        await until(pilot, lambda: table.cell_texts(last)["observed_latency"] == "99.5 ms")
        update = time.perf_counter() - start

        one = copy.deepcopy(objects[count // 2])
        one["spec"]["flavorType"]["typeData"]["observed"]["latencyMs"] = 42.0
        one_key = row_key(object_key("provider-1", one))
        start = time.perf_counter()
        in_thread(lambda: store.upsert("provider-1", Kind.FLAVORS, one))
        await until(pilot, lambda: table.cell_texts(one_key)["observed_latency"] == "42 ms")
        single = time.perf_counter() - start
        update_max_apply = max(applies)

        start = time.perf_counter()
        main.apply_filter("type=humidity manufacturer=STMicroelectronics latency<=16")
        await until(pilot, lambda: table.pending == 0)
        filtered = time.perf_counter() - start
        shown = table.row_count
        start = time.perf_counter()
        main.apply_filter("")
        await until(pilot, lambda: table.pending == 0 and table.row_count == count)
        unfiltered = time.perf_counter() - start

        start = time.perf_counter()
        in_thread(lambda: store.replace("provider-1", Kind.FLAVORS, objects[changes:]))
        await until(pilot, lambda: table.pending == 0 and table.row_count == count - changes)
        removal = time.perf_counter() - start

        start = time.perf_counter()
        table.sort_by("latency")
        await pilot.pause()
        sort = time.perf_counter() - start
    return {
        "flavors": count,
        "fill_s": round(fill, 3),
        "fill_cpu_s": round(fill_cpu, 3),
        "fill_longest_ui_step_ms": round(fill_max_apply * 1000, 1),
        "changed_flavors": changes,
        "update_changed_s": round(update, 3),
        "one_change_among_all_ms": round(single * 1000, 1),
        "update_longest_ui_step_ms": round(update_max_apply * 1000, 1),
        "filter_s": round(filtered, 3),
        "filter_rows_shown": shown,
        "clear_filter_s": round(unfiltered, 3),
        "remove_changed_s": round(removal, 3),
        "sort_by_latency_s": round(sort, 3),
    }


async def bench_startup(state_dir: Path) -> dict[str, Any]:
    from testbed.state import running_clusters
    from tui.data.clusters import clusters_by_role
    from tui.data.watch import Watches

    start = time.perf_counter()
    clusters = clusters_by_role((c.name, c.kubeconfig, c.role) for c in running_clusters(state_dir))
    store = Store()
    app = SensorsApp(store, Watches(clusters, store))
    async with app.run_test(size=SIZE) as pilot:
        first_frame = time.perf_counter() - start

        def ready() -> bool:
            states = store.clusters()
            return all(s.phase is Phase.CONNECTED for s in states) and (
                app.main.device_table.row_count == store.count(Kind.DEVICES)
                and app.main.flavor_table.row_count == store.count(Kind.FLAVORS)
            )

        await until(pilot, ready, timeout=30)
        connected = time.perf_counter() - start
        devices = app.main.device_table.row_count
    return {
        "clusters": len(clusters),
        "first_frame_s": round(first_frame, 3),
        "connected_and_filled_s": round(connected, 3),
        "devices_shown": devices,
    }


def machine_load() -> float:
    """The 1-minute load average: benchmarks on a busy machine take longer."""
    import os

    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flavors", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--no-testbed", action="store_true", help="Skip the startup benchmark.")
    args = parser.parse_args()
    result: dict[str, Any] = {"cpus": __import__("os").cpu_count(), "load_before": machine_load()}
    if not args.no_testbed:
        from testbed import manager, paths
        from testbed.state import TestbedState
        from testbed.topology import default_topology

        running = TestbedState.read(paths.state_dir())
        if running and running.running and running.phase == "ready":
            result["startup"] = asyncio.run(bench_startup(paths.state_dir()))
        else:
            with tempfile.TemporaryDirectory() as folder:
                state_dir = Path(folder)
                manager.up(
                    default_topology(providers=1, consumers=1),
                    state_dir,
                    log=lambda _: None,
                    owner_pid=os.getpid(),  # a killed bench leaves nothing running
                )
                try:
                    result["startup"] = asyncio.run(bench_startup(state_dir))
                finally:
                    manager.down(state_dir, log=lambda _: None)
    result["flavors"] = asyncio.run(bench_flavors(args.flavors, args.changes))
    result["load_after"] = machine_load()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The mapper: BLE driver output -> readings on the broker and twins in DeviceStatus.

It decides which boards to serve (the Devices bound to its node, or every BlueST board in
range), runs one `BoardLink` per board, and turns each decoded notification into one
`Reading` per sensor. The publisher and the twin reporter know nothing of BLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluidos_sensors.files import write_json_atomic
from fluidos_sensors.limits import reading_time_problem
from fluidos_sensors.reading import Reading
from fluidos_sensors.twins import OFFLINE, ONLINE
from mapper.ble import BleBackends, BoardInfo, BoardLink, BoardScanner, LinkSettings, Sighting
from mapper.bluest import FEATURES, Sample
from mapper.dataplane.publisher import MqttPublisher
from mapper.dataplane.twins import DeviceKey, TwinReporter
from mapper.devices import DeviceProblem, bind_all
from mapper.kube import DeviceApi
from mapper.naming import quantity_of, sensor_segment

log = logging.getLogger(__name__)


@dataclass
class MapperSettings:
    node: str
    namespace: str = "default"
    """Where Devices are watched (unless `all_namespaces`) and simulated ones registered."""
    all_namespaces: bool = False
    all_boards: bool = False
    """Also serve BlueST boards in range that no Device names (topics under `namespace`)."""
    provider: str = ""
    resync_seconds: float = 10.0
    status_file: Path | None = None
    status_seconds: float = 2.0
    link: LinkSettings = field(default_factory=LinkSettings)


@dataclass(frozen=True)
class Binding:
    """Who a board is to the outside world."""

    key: DeviceKey
    uid: str | None
    report_cycle: float | None
    from_device: bool
    """True when a Device object names the board (so it has a twin)."""
    rate_bits: Mapping[str, int] = field(default_factory=dict)
    """Rate group -> the BlueST feature bits of its sensors."""
    rates: Mapping[int, float] = field(default_factory=dict)
    """Feature bit -> the rate (Hz) its characteristic should run."""


def board_rates(
    groups: Mapping[str, tuple[str, ...]], rates: Mapping[str, float]
) -> tuple[dict[str, int], dict[int, float]]:
    """A Device's rate groups in BlueST terms: group -> feature bits, feature bit -> Hz."""
    rate_bits: dict[str, int] = {}
    wanted: dict[int, float] = {}
    for group, keys in groups.items():
        bits = [f.mask for f in FEATURES if sensor_segment(f.sensor) in keys]
        rate_bits[group] = sum(bits)
        if group in rates:
            wanted |= dict.fromkeys(bits, rates[group])
    return rate_bits, wanted


def unbound_device_name(mac: str) -> str:
    """The device name of a board no Device names (`--all-boards`)."""
    return "bluest-" + mac.replace(":", "").lower()


class Mapper:
    """Serves the boards of one edge node until `run`'s stop event is set."""

    def __init__(
        self,
        settings: MapperSettings,
        *,
        backends: BleBackends,
        publisher: MqttPublisher,
        devices: DeviceApi | None = None,
        twins: TwinReporter | None = None,
        register: list[dict[str, Any]] | None = None,
    ) -> None:
        if devices is None and not settings.all_boards:
            raise ValueError("without Kubernetes the mapper only serves --all-boards")
        self.settings = settings
        self._backends = backends
        self.publisher = publisher
        self._devices = devices
        self.twins = twins
        self._to_register = list(register or [])
        self._scanner = BoardScanner(
            backends.scanner,
            always=settings.all_boards,
            on_sighting=self._sighted if settings.all_boards else None,
        )
        self._bindings: dict[str, Binding] = {}
        self.links: dict[str, BoardLink] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._discovered: set[str] = set()
        # Problems posted as Events (and logged): each once per mapper run.
        self._warned: set[tuple[DeviceKey, str | None, str]] = set()
        self._logged: set[tuple[DeviceKey, str | None, str]] = set()
        self._seq: dict[tuple[DeviceKey, str], int] = {}
        self._units: dict[str, Mapping[str, str] | None] = {}
        self._wake = asyncio.Event()
        self.readings = 0
        self.unset_clock = 0  # readings not published: the node's clock is outside the window
        self._unset_clock_log = -math.inf  # monotonic time of its last warning
        self.api_failures = 0
        self._api_failing = False
        self.started_at = time.monotonic()
        self.synced = asyncio.Event()
        """Set after the first successful look at the Devices (and registration)."""

    # ------------------------------------------------------------------------------------
    # Driver events (BoardListener)

    def board_online(self, info: BoardInfo) -> None:
        binding = self._bindings.get(info.mac)
        if binding is None:
            return
        log.info(
            "device=%s board=%s mac=%s uid=%s online",
            binding.key,
            info.board_name,
            info.mac,
            info.stm32_uid or "?",
        )
        if self.twins is not None and binding.from_device:
            link = self.links.get(info.mac)
            self.twins.set_state(
                binding.key,
                ONLINE,
                node=self.settings.node,
                mac=info.mac,
                board=info.board_name,
                localName=info.local_name or "",
                stm32Uid=info.stm32_uid or "",
                rssi=info.rssi,
                connects=link.stats.connects if link else 0,
                reason="",
            )

    def board_offline(self, mac: str, reason: str) -> None:
        binding = self._bindings.get(mac)
        if binding is None:
            return
        twin = self.twins.state_of(binding.key) if self.twins and binding.from_device else None
        if twin is None or twin.state == ONLINE:
            log.info("device=%s mac=%s offline: %s", binding.key, mac, reason)
        if twin is not None and self.twins is not None:
            self.twins.set_state(binding.key, OFFLINE, reason=reason)

    def board_rate(self, mac: str, mask: int, rate_hz: float, applied: bool) -> None:
        binding = self._bindings.get(mac)
        if binding is None or self.twins is None or not binding.from_device:
            return
        for group, bits in binding.rate_bits.items():
            if bits & mask:
                self.twins.set_rate(binding.key, group, rate_hz)

    def board_samples(
        self, mac: str, samples: list[Sample], device_time: float, received_at: float
    ) -> None:
        binding = self._bindings.get(mac)
        if binding is None:
            return
        # The edge agent would refuse them (the window is shared): say why here, where the
        # clock is, instead of publishing readings nobody can store.
        problem = reading_time_problem(received_at, received_at)
        if problem is not None:
            self.unset_clock += len(samples)
            if time.monotonic() - self._unset_clock_log > 60:
                self._unset_clock_log = time.monotonic()
                log.warning(
                    "not publishing: this node's time %s (%d so far)", problem, self.unset_clock
                )
            return
        key = binding.key
        twins = self.twins if binding.from_device else None
        for sample in samples:
            sensor = sensor_segment(sample.sensor)
            seq_key = (key, sensor)
            seq = self._seq.get(seq_key, -1) + 1
            self._seq[seq_key] = seq
            reading = Reading(
                namespace=key.namespace,
                device=key.name,
                sensor=sensor,
                quantity=quantity_of(sample.sensor),
                unit=sample.unit,
                values=sample.values,
                node=self.settings.node,
                seq=seq,
                received_at=received_at,
                device_time=device_time,
                provider=self.settings.provider,
                units=self._units_of(sample),
            )
            self.publisher.submit(reading.topic, reading.encode())
            if twins is not None:
                twins.update(key, reading)
        self.readings += len(samples)

    def _units_of(self, sample: Sample) -> Mapping[str, str] | None:
        if sample.sensor not in self._units:
            mixed = any(unit != sample.unit for unit in sample.units.values())
            self._units[sample.sensor] = dict(sample.units) if mixed else None
        return self._units[sample.sensor]

    def _sighted(self, sighting: Sighting) -> None:
        if sighting.mac not in self._discovered:
            self._discovered.add(sighting.mac)
            self._wake.set()

    # ------------------------------------------------------------------------------------
    # Which boards to serve

    async def _api(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await asyncio.to_thread(call, *args, **kwargs)
        except Exception as exc:
            self.api_failures += 1
            if not self._api_failing:
                self._api_failing = True
                log.warning(
                    "Kubernetes API unavailable (%s); serving the boards already known",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            raise
        if self._api_failing:
            self._api_failing = False
            log.info("Kubernetes API answers again")
        return result

    async def _register(self) -> None:
        assert self._devices is not None
        while self._to_register:
            body = self._to_register[0]
            await self._api(self._devices.apply_device, body)
            log.info(
                "registered Device %s/%s",
                body["metadata"]["namespace"],
                body["metadata"]["name"],
            )
            self._to_register.pop(0)

    async def _warn(self, problem: DeviceProblem) -> None:
        marker = (problem.key, problem.uid, str(problem))
        if marker in self._warned:
            return
        if marker not in self._logged:
            self._logged.add(marker)
            log.warning("%s; not serving it", problem)
        assert self._devices is not None
        try:
            await self._api(self._devices.warn, problem, node=self.settings.node)
        except Exception:
            return  # warn again at the next resync
        self._warned.add(marker)

    async def resync(self) -> None:
        """Look at the Devices (and the boards in range) and start or stop links to match."""
        desired: dict[str, Binding] = {}
        if self._devices is not None:
            await self._register()
            namespace = None if self.settings.all_namespaces else self.settings.namespace
            objects = await self._api(self._devices.list_devices, namespace)
            bound, problems = bind_all(objects, self.settings.node)
            for problem in problems:
                await self._warn(problem)
            for mac, device in bound.items():
                rate_bits, rates = board_rates(device.rate_groups, device.rates)
                desired[mac] = Binding(
                    device.key, device.uid, device.report_cycle, True, rate_bits, rates
                )
        if self.settings.all_boards:
            for mac in sorted(self._discovered):
                if mac not in desired:
                    key = DeviceKey(self.settings.namespace, unbound_device_name(mac))
                    desired[mac] = Binding(key, None, None, False)
        await self._apply(desired)
        self.synced.set()

    async def _apply(self, desired: dict[str, Binding]) -> None:
        for mac in [m for m in self._bindings if m not in desired]:
            await self._stop_link(mac)
        for mac, binding in desired.items():
            previous = self._bindings.get(mac)
            if previous is not None and previous.key != binding.key:
                await self._stop_link(mac)
                previous = None
            self._bindings[mac] = binding
            if self.twins is not None and binding.from_device:
                self.twins.track(binding.key, binding.uid, binding.report_cycle)
            if previous is None:
                self._start_link(mac, binding)
            self.links[mac].want_rates(dict(binding.rates))

    def _start_link(self, mac: str, binding: Binding) -> None:
        link = BoardLink(
            mac, self._scanner, self, backends=self._backends, settings=self.settings.link
        )
        self.links[mac] = link
        self._tasks[mac] = asyncio.create_task(link.run(), name=f"ble-link-{mac}")
        log.info("device=%s serving board %s", binding.key, mac)

    async def _stop_link(self, mac: str) -> None:
        binding = self._bindings.pop(mac, None)
        task = self._tasks.pop(mac, None)
        self.links.pop(mac, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if binding is not None:
            log.info("device=%s no longer served (board %s)", binding.key, mac)
            if self.twins is not None and binding.from_device:
                self.twins.untrack(binding.key)

    async def _resync_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # counted and logged by _api
                await self.resync()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.resync_seconds):
                    await self._wake.wait()

    # ------------------------------------------------------------------------------------
    # Reporting on itself

    def status(self) -> dict[str, Any]:
        """Counters and device states, as written to the status file."""
        publisher = self.publisher.stats
        devices = {}
        for mac, binding in sorted(self._bindings.items(), key=lambda item: item[1].key):
            link = self.links.get(mac)
            devices[str(binding.key)] = {
                "mac": mac,
                "connected": bool(link and link.connected),
                "connects": link.stats.connects if link else 0,
                "notifications": link.stats.notifications if link else 0,
                "malformed": link.stats.malformed if link else 0,
                "lastError": link.stats.last_error if link else "",
            }
        body: dict[str, Any] = {
            "node": self.settings.node,
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self.started_at, 1),
            "readings": self.readings,
            "published": publisher.published,
            "buffered": self.publisher.buffered,
            "dropped": publisher.dropped,
            "unsetClock": self.unset_clock,
            "brokerConnected": publisher.connected,
            "apiFailures": self.api_failures,
            "devices": devices,
        }
        if self.twins is not None:
            stats = self.twins.stats
            body["twins"] = {
                "writes": stats.writes,
                "failures": stats.failures,
                "skipped": stats.skipped,
            }
        return body

    def _write_status(self) -> None:
        path = self.settings.status_file
        if path is None:
            return
        write_json_atomic(path, self.status(), indent=1)

    async def _status_forever(self) -> None:
        await self.synced.wait()
        while True:
            with contextlib.suppress(OSError):
                self._write_status()
            await asyncio.sleep(self.settings.status_seconds)

    # ------------------------------------------------------------------------------------
    # Life cycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then say the devices went offline and flush."""
        if self.settings.status_file is not None:
            self.settings.status_file.parent.mkdir(parents=True, exist_ok=True)
        background = [
            asyncio.create_task(self.publisher.run(), name="mqtt-publisher"),
            asyncio.create_task(self._resync_forever(), name="device-resync"),
            asyncio.create_task(self._status_forever(), name="status-file"),
        ]
        if self.twins is not None:
            background.append(asyncio.create_task(self.twins.run(), name="twin-reporter"))
        try:
            await self._scanner.start()
            await stop.wait()
        finally:
            await self._shutdown(background)

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        log.info("stopping: %d board link(s)", len(self.links))
        for mac in list(self._tasks):
            binding = self._bindings.get(mac)
            await self._stop_link_only(mac)
            if binding is not None and self.twins is not None and binding.from_device:
                self.twins.set_state(binding.key, OFFLINE, reason="mapper stopped")
        await self._scanner.stop()
        if self.twins is not None:
            await self.twins.flush(timeout=3.0)
        await self.publisher.flush(timeout=2.0)
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(OSError):
            self._write_status()

    async def _stop_link_only(self, mac: str) -> None:
        task = self._tasks.pop(mac, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

"""One BleakScanner shared by every board link.

BlueZ forgets a board when it disconnects, so every reconnect starts with a fresh sighting.
The scanner runs only while some link waits for its board (or all the time when the mapper
discovers every board in range): scanning costs radio time the connected boards need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from mapper.bluest import BlueSTAdvertisement, parse_advertisement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sighting:
    """A BlueST board heard advertising."""

    mac: str
    device: BLEDevice
    advertisement: BlueSTAdvertisement
    local_name: str | None
    rssi: int | None
    at: float
    """time.monotonic() when heard."""


class BoardScanner:
    """Finds BlueST boards by MAC for the links that wait for them."""

    def __init__(
        self,
        backend: type[BaseBleakScanner] | None = None,
        *,
        always: bool = False,
        on_sighting: Callable[[Sighting], None] | None = None,
    ) -> None:
        """`always`: scan all the time (discovering every board); `on_sighting` hears
        every BlueST advertisement."""
        self._backend = backend
        self._always = always
        self._on_sighting = on_sighting
        self._waiters: dict[str, list[asyncio.Future[Sighting]]] = {}
        self._users = 0
        self._lock = asyncio.Lock()
        self._scanner: BleakScanner | None = None
        self.sightings = 0

    @property
    def scanning(self) -> bool:
        return self._scanner is not None

    async def start(self) -> None:
        if self._always:
            await self._acquire()

    async def stop(self) -> None:
        async with self._lock:
            self._users = 0
            await self._stop_scanner()

    async def find(self, mac: str, timeout: float) -> Sighting:
        """The next advertisement of `mac` heard from now on; TimeoutError after `timeout` s."""
        mac = mac.upper()
        future: asyncio.Future[Sighting] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(mac, []).append(future)
        try:
            await self._acquire()
            try:
                async with asyncio.timeout(timeout):
                    return await future
            finally:
                await self._release()
        finally:
            waiting = self._waiters.get(mac, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(mac, None)

    async def _acquire(self) -> None:
        async with self._lock:
            self._users += 1
            if self._scanner is None:
                scanner = BleakScanner(detection_callback=self._heard, backend=self._backend)
                await scanner.start()
                self._scanner = scanner
                log.debug("scanning started")

    async def _release(self) -> None:
        async with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                await self._stop_scanner()

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            with contextlib.suppress(
                Exception
            ):  # a scanner that will not stop is no reason to fail
                await scanner.stop()
            log.debug("scanning stopped")

    def _heard(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        parsed = parse_advertisement(advertisement.manufacturer_data)
        if parsed is None:
            return
        # BlueZ reports the MAC as the address; CoreBluetooth a UUID, so prefer the advertised MAC.
        mac = (parsed.mac or device.address).upper()
        sighting = Sighting(
            mac, device, parsed, advertisement.local_name, advertisement.rssi, time.monotonic()
        )
        self.sightings += 1
        for future in self._waiters.get(mac, []):
            if not future.done():
                future.set_result(sighting)
        if self._on_sighting is not None:
            try:
                self._on_sighting(sighting)
            except Exception:
                log.exception("sighting handler failed for %s", mac)

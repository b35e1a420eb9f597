"""One board's BLE life: find it, connect, read its UID, subscribe, decode; on loss, again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakError

from fluidos_sensors.backoff import Backoff
from mapper.ble.scanner import BoardScanner, Sighting
from mapper.bluest import (
    CONFIG_CHARACTERISTIC_UUID,
    CONSOLE_TERMINAL_UUID,
    FEATURE_SERVICE_UUID,
    UID_COMMAND,
    ConsoleLineReader,
    FrameError,
    Sample,
    Stm32Uid,
    TimestampUnwrapper,
    UnknownFeatureError,
    decode_notification,
    feature_mask,
    parse_uid_answer,
    unknown_bits,
)
from mapper.bluest.config import (
    ConfigFrameError,
    decode_rate_answer,
    encode_rate_command,
)

log = logging.getLogger(__name__)

_MALFORMED_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class BleBackends:
    """bleak backend classes; None means the platform's own (BlueZ on Linux)."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None


@dataclass(frozen=True)
class BoardInfo:
    """What the driver learnt about a board when it came online."""

    mac: str
    local_name: str | None
    board_id: int
    board_name: str
    stm32_uid: str | None
    characteristics: tuple[int, ...]
    """Masks of the feature characteristics it notifies on."""
    rssi: int | None = None


class BoardListener(Protocol):
    """Whoever consumes the driver's output (the mapper's data plane)."""

    def board_online(self, info: BoardInfo) -> None: ...

    def board_offline(self, mac: str, reason: str) -> None: ...

    def board_samples(
        self, mac: str, samples: list[Sample], device_time: float, received_at: float
    ) -> None:
        """One decoded notification: its samples, device seconds, Unix receive time."""

    def board_rate(self, mac: str, mask: int, rate_hz: float, applied: bool) -> None:
        """The board answered a rate command: characteristic `mask` runs at `rate_hz`
        (`applied` False: it refused the rate asked and kept this one)."""


@dataclass
class LinkSettings:
    scan_timeout: float = 10.0
    """Seconds to wait for the board's advertisement before trying again."""
    connect_timeout: float = 10.0
    uid_timeout: float = 2.0
    stable_after: float = 10.0
    """A connection that lasted this long resets the reconnect backoff."""
    backoff: Callable[[], Backoff] = field(default=lambda: Backoff(0.5, 30.0))


@dataclass
class LinkStats:
    connects: int = 0
    disconnects: int = 0
    notifications: int = 0
    samples: int = 0
    malformed: int = 0
    listener_errors: int = 0
    last_error: str = ""


class _SetupError(Exception):
    """The board connected but does not look like a BlueST board we can read."""


class BoardLink:
    """Keeps one board connected and streaming for as long as `run` runs."""

    def __init__(
        self,
        mac: str,
        scanner: BoardScanner,
        listener: BoardListener,
        *,
        backends: BleBackends,
        settings: LinkSettings | None = None,
    ) -> None:
        self.mac = mac.upper()
        self._scanner = scanner
        self._listener = listener
        self._backends = backends
        self.settings = settings or LinkSettings()
        self.stats = LinkStats()
        self.connected = False
        self.uid: Stm32Uid | None = None
        self._malformed_logged_at: float | None = None
        self._malformed_since_log = 0
        self.wanted_rates: dict[int, float] = {}
        """Feature bit -> the rate (Hz) its characteristic should run; set by `want_rates`."""
        self._rates_changed = asyncio.Event()

    def want_rates(self, rates: dict[int, float]) -> None:
        """Run each feature's characteristic at these rates (feature bit -> Hz): written to
        the board now when connected, else at the next connection (a board may forget)."""
        if rates != self.wanted_rates:
            self.wanted_rates = dict(rates)
            self._rates_changed.set()

    async def run(self) -> None:
        """Connect, stream, reconnect with capped exponential backoff; only cancellation ends it."""
        backoff = self.settings.backoff()
        while True:
            began = time.monotonic()
            try:
                sighting = await self._scanner.find(self.mac, self.settings.scan_timeout)
            except TimeoutError:
                reason = f"not heard advertising for {self.settings.scan_timeout:g} s"
            else:
                began = time.monotonic()
                try:
                    await self._session(sighting)
                    reason = "link lost"
                except (TimeoutError, BleakError, _SetupError, OSError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                except Exception as exc:
                    # A BLE stack surprise must not end this board's link for good.
                    log.exception("board=%s: unexpected failure", self.mac)
                    reason = f"{type(exc).__name__}: {exc}"
            self.connected = False
            self.stats.last_error = reason
            self._listener.board_offline(self.mac, reason)
            if time.monotonic() - began >= self.settings.stable_after:
                backoff.reset()
            delay = backoff.next()
            log.debug("board=%s offline (%s); retry in %.1f s", self.mac, reason, delay)
            await asyncio.sleep(delay)

    async def _session(self, sighting: Sighting) -> None:
        lost = asyncio.Event()
        client = BleakClient(
            sighting.device,
            disconnected_callback=lambda _client: lost.set(),
            timeout=self.settings.connect_timeout,
            backend=self._backends.client,
        )
        await client.connect()
        try:
            characteristics = self._feature_characteristics(client)
            if self.uid is None:
                self.uid = await self._read_uid(client)
            for characteristic, mask in characteristics:
                await client.start_notify(characteristic, self._on_notification(mask))
            self.connected = True
            self.stats.connects += 1
            advertised = sighting.advertisement
            self._listener.board_online(
                BoardInfo(
                    mac=self.mac,
                    local_name=sighting.local_name,
                    board_id=advertised.board_id,
                    board_name=advertised.board_name,
                    stm32_uid=self.uid.uid if self.uid else None,
                    characteristics=tuple(mask for _, mask in characteristics),
                    rssi=sighting.rssi,
                )
            )
            await self._configure_until(client, characteristics, lost)
            self.stats.disconnects += 1
        finally:
            self.connected = False
            if client.is_connected:
                with contextlib.suppress(Exception):  # going away anyway
                    await client.disconnect()

    async def _configure_until(
        self,
        client: BleakClient,
        characteristics: list[tuple[BleakGATTCharacteristic, int]],
        lost: asyncio.Event,
    ) -> None:
        """Write the wanted rates now and whenever they change, until the link is lost."""
        config = client.services.get_characteristic(CONFIG_CHARACTERISTIC_UUID)
        if config is not None and "notify" in config.properties:
            try:
                await client.start_notify(config, self._on_config)
            except BleakError as exc:  # rates are still written; only their answers are lost
                log.warning(
                    "board=%s: no answers from its config characteristic (%s)", self.mac, exc
                )
        self._rates_changed.set()  # a new connection: the board may have rebooted
        while not lost.is_set():
            if self._rates_changed.is_set():
                self._rates_changed.clear()
                await self._write_rates(client, config, [mask for _, mask in characteristics])
            waiters = [asyncio.ensure_future(e.wait()) for e in (lost, self._rates_changed)]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _write_rates(
        self, client: BleakClient, config: BleakGATTCharacteristic | None, masks: list[int]
    ) -> None:
        commands = characteristic_rates(self.wanted_rates, masks)
        if not commands:
            return
        if config is None:
            log.warning("board=%s has no config characteristic; its rate cannot be set", self.mac)
            return
        for mask, rate in sorted(commands.items()):
            log.info("board=%s: characteristic 0x%08x to %g Hz", self.mac, mask, rate)
            try:
                await client.write_gatt_char(
                    config, encode_rate_command(mask, rate), response=False
                )
            except BleakError as exc:
                # A board that takes no config writes keeps streaming at its own rate (the
                # twin says which); a lost link ends the session through `lost` anyway.
                log.warning("board=%s: rate not written (%s)", self.mac, exc)
                return

    def _on_config(self, _characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
        try:
            answer = decode_rate_answer(bytes(data))
        except ConfigFrameError as exc:
            self._malformed(exc)
            return
        if answer is None:
            return
        if not answer.applied:
            log.warning(
                "board=%s refused a rate for characteristic 0x%08x; it runs %g Hz",
                self.mac,
                answer.mask,
                answer.rate_hz,
            )
        self._listener.board_rate(self.mac, answer.mask, answer.rate_hz, answer.applied)

    def _feature_characteristics(
        self, client: BleakClient
    ) -> list[tuple[BleakGATTCharacteristic, int]]:
        service = client.services.get_service(FEATURE_SERVICE_UUID)
        if service is None:
            raise _SetupError(f"{self.mac} has no BlueST feature service")
        found = []
        for characteristic in service.characteristics:
            mask = feature_mask(characteristic.uuid)
            if mask is None or "notify" not in characteristic.properties:
                continue
            if unknown_bits(mask):
                log.info(
                    "board=%s skipping characteristic %s: feature bits 0x%08x unknown",
                    self.mac,
                    characteristic.uuid,
                    unknown_bits(mask),
                )
                continue
            found.append((characteristic, mask))
        if not found:
            raise _SetupError(f"{self.mac} notifies no feature this mapper can decode")
        return found

    async def _read_uid(self, client: BleakClient) -> Stm32Uid | None:
        """The STM32 96-bit UID through the console's `uid` command; None if it does not say."""
        terminal = client.services.get_characteristic(CONSOLE_TERMINAL_UUID)
        if terminal is None:
            return None
        reader = ConsoleLineReader()
        answer: asyncio.Future[Stm32Uid] = asyncio.get_running_loop().create_future()

        def on_console(_characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
            for line in reader.feed(data):
                with contextlib.suppress(ValueError):  # echo, prompts, other output
                    uid = parse_uid_answer(line)
                    if not answer.done():
                        answer.set_result(uid)

        try:
            await client.start_notify(terminal, on_console)
            await client.write_gatt_char(terminal, UID_COMMAND, response=True)
            async with asyncio.timeout(self.settings.uid_timeout):
                return await answer
        except (TimeoutError, BleakError) as exc:
            log.info("board=%s did not tell its STM32 UID (%s)", self.mac, exc or "timeout")
            return None
        finally:
            if client.is_connected:
                with contextlib.suppress(BleakError):
                    await client.stop_notify(terminal)

    def _on_notification(self, mask: int) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        # One unwrapper per characteristic and connection: a reconnect may follow a reboot.
        unwrapper = TimestampUnwrapper()
        stats = self.stats

        def on_notification(_characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
            received_at = time.time()
            stats.notifications += 1
            try:
                samples = decode_notification(mask, data)
            except (FrameError, UnknownFeatureError, ValueError) as exc:
                self._malformed(exc)
                return
            device_time = unwrapper.unwrap(samples[0].timestamp, time.monotonic())
            stats.samples += len(samples)
            try:
                self._listener.board_samples(self.mac, samples, device_time, received_at)
            except Exception:
                # Whatever the data plane does wrong, the BLE stream keeps going.
                stats.listener_errors += 1
                if stats.listener_errors == 1:
                    log.exception("board=%s: handling a reading failed", self.mac)

        return on_notification

    def _malformed(self, exc: Exception) -> None:
        self.stats.malformed += 1
        self._malformed_since_log += 1
        now = time.monotonic()
        if self._malformed_logged_at is None or now - self._malformed_logged_at >= (
            _MALFORMED_LOG_SECONDS
        ):
            log.warning(
                "board=%s dropped %d malformed frame(s) (%d in total); latest: %s",
                self.mac,
                self._malformed_since_log,
                self.stats.malformed,
                exc,
            )
            self._malformed_logged_at = now
            self._malformed_since_log = 0


def characteristic_rates(wanted: dict[int, float], masks: list[int]) -> dict[int, float]:
    """Characteristic mask -> the rate to write, from the rates wanted per feature bit.

    A characteristic carrying features wanted at different rates (a misdeclared Device: its
    `samplingRateGroup`s split what the board samples together) runs the highest of them.
    """
    rates: dict[int, float] = {}
    for mask in masks:
        asked = [rate for bit, rate in wanted.items() if mask & bit]
        if asked:
            rates[mask] = max(asked)
    return rates

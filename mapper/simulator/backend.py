"""bleak backends over a SimulatedRadio, for `BleakScanner(backend=...)` and
`BleakClient(backend=...)`: the mapper runs the same code path as on real BlueZ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_16

from mapper.bluest.config import (
    ConfigFrameError,
    decode_rate_command,
    encode_rate_answer,
)
from mapper.bluest.features import (
    CONFIG_CHARACTERISTIC_UUID,
    CONFIG_SERVICE_UUID,
    CONSOLE_SERVICE_UUID,
    CONSOLE_STDERR_UUID,
    CONSOLE_TERMINAL_UUID,
    FEATURE_SERVICE_UUID,
    feature_characteristic_uuid,
)
from mapper.simulator.board import SimulatedBoard
from mapper.simulator.radio import SimulatedRadio

logger = logging.getLogger(__name__)

_CCCD_UUID = normalize_uuid_16(0x2902)


def _radio_for(cls: type, radio: SimulatedRadio | None) -> SimulatedRadio:
    chosen = radio if radio is not None else getattr(cls, "radio", None)
    if chosen is None:
        raise BleakError(
            f"{cls.__name__} has no SimulatedRadio: pass backend=scanner_backend(radio) "
            "or backend=client_backend(radio)"
        )
    return chosen


class SimulatedScanner(BaseBleakScanner):
    """Receives the advertisements of the boards on a SimulatedRadio."""

    radio: ClassVar[SimulatedRadio | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        radio: SimulatedRadio | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio = _radio_for(type(self), radio)
        self._listening: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.stop()
        self.seen_devices = {}
        self._listening = asyncio.create_task(self._listen(), name="simulated-ble-scan")

    async def stop(self) -> None:
        task, self._listening = self._listening, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        while True:
            for board in self._radio.advertising_boards():
                self._receive(board)
            await asyncio.sleep(self._radio.advertising_interval)

    def _receive(self, board: SimulatedBoard) -> None:
        advertisement = AdvertisementData(
            local_name=board.local_name,
            manufacturer_data=board.manufacturer_data(),
            service_data={},
            # ST firmware advertises no service UUIDs, so a UUID filter hides it (as on BlueZ).
            service_uuids=[],
            tx_power=None,
            rssi=board.rssi + random.randint(-4, 4),
            platform_data=(),
        )
        if not self.is_allowed_uuid(advertisement.service_uuids):
            return
        self._radio.heard(board.mac)
        device = self.create_or_update_device(
            board.mac, board.mac, board.local_name, board, advertisement
        )
        self.call_detection_callbacks(device, advertisement)


@dataclass(frozen=True)
class _Attribute:
    """What a simulated GATT characteristic is, kept in its `obj`."""

    kind: Literal["feature", "terminal", "stderr", "config"]
    mask: int = 0


def _gatt_table(board: SimulatedBoard) -> BleakGATTServiceCollection:
    """The board's services as ST firmware lays them out: features, console, config."""
    table = BleakGATTServiceCollection()
    handle = 0

    def mtu_payload() -> int:
        return board.mtu - 3

    def service(uuid: str) -> BleakGATTService:
        nonlocal handle
        handle += 1
        added = BleakGATTService(None, handle, uuid)
        table.add_service(added)
        return added

    def characteristic(
        owner: BleakGATTService,
        uuid: str,
        properties: list[CharacteristicPropertyName],
        attribute: _Attribute,
    ) -> None:
        nonlocal handle
        handle += 2  # declaration, then value
        added = BleakGATTCharacteristic(attribute, handle, uuid, properties, mtu_payload, owner)
        table.add_characteristic(added)
        if "notify" in properties:
            handle += 1
            table.add_descriptor(BleakGATTDescriptor(None, handle, _CCCD_UUID, added))

    features = service(FEATURE_SERVICE_UUID)
    for mask in board.characteristics:
        characteristic(
            features,
            feature_characteristic_uuid(mask),
            ["read", "notify"],
            _Attribute("feature", mask),
        )
    console = service(CONSOLE_SERVICE_UUID)
    characteristic(
        console,
        CONSOLE_TERMINAL_UUID,
        ["read", "write-without-response", "write", "notify"],
        _Attribute("terminal"),
    )
    characteristic(console, CONSOLE_STDERR_UUID, ["read", "notify"], _Attribute("stderr"))
    config = service(CONFIG_SERVICE_UUID)
    characteristic(
        config,
        CONFIG_CHARACTERISTIC_UUID,
        ["write-without-response", "notify"],
        _Attribute("config"),
    )
    return table


def _attribute(characteristic: BleakGATTCharacteristic) -> _Attribute:
    if not isinstance(characteristic.obj, _Attribute):
        raise BleakError(f"{characteristic.uuid} does not belong to a simulated board")
    return characteristic.obj


class SimulatedClient(BaseBleakClient):
    """A GATT connection to a board on a SimulatedRadio."""

    radio: ClassVar[SimulatedRadio | None] = None

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        radio: SimulatedRadio | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, **kwargs)
        self.address = self.address.upper()
        self._radio = _radio_for(type(self), radio)
        # Like BlueZ: a bare address makes connect() scan; a BLEDevice must still be known.
        self._scan_first = not isinstance(address_or_ble_device, BLEDevice)
        self._board: SimulatedBoard | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callbacks: dict[int, NotifyCallback] = {}
        self._streams: dict[int, asyncio.Task[None]] = {}

    @property
    def name(self) -> str:
        board = self._board or self._radio.boards.get(self.address)
        return board.local_name if board is not None else self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._board.mtu if self._board is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._board is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._board is not None:
            return
        self._loop = asyncio.get_running_loop()
        board = await self._radio.open_link(
            self, self.address, scan_first=self._scan_first, timeout=self._timeout
        )
        self._board = board
        self.services = _gatt_table(board)

    async def disconnect(self) -> None:
        board = self._board
        if board is None:
            return
        self._radio.close_link(board.mac, self)
        self._drop_link()
        # BlueZ runs the disconnected callback before disconnect() returns.
        await asyncio.sleep(0)

    def link_lost(self) -> None:
        """Called by the radio when the link drops without us asking."""
        self._drop_link()

    def _drop_link(self) -> None:
        for task in self._streams.values():
            task.cancel()
        self._streams.clear()
        self._callbacks.clear()
        self._board = None
        self.services = None
        if self._disconnected_callback is not None and self._loop is not None:
            self._loop.call_soon(self._disconnected_callback)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        logger.debug("simulated boards need no pairing")

    async def unpair(self) -> None:
        await self.disconnect()
        self._radio.forget(self.address)

    def _connected_board(self) -> SimulatedBoard:
        if self._board is None:
            raise BleakError("Not connected")
        return self._board

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        board = self._connected_board()
        attribute = _attribute(characteristic)
        if attribute.kind == "feature":
            return bytearray(board.notification(attribute.mask))
        if attribute.kind == "config":
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED)
        return bytearray()

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        self._connected_board()
        notifying = descriptor.characteristic_handle in self._callbacks
        return bytearray(b"\x01\x00" if notifying else b"\x00\x00")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        board = self._connected_board()
        attribute = _attribute(characteristic)
        if attribute.kind == "terminal":
            answer = board.console_answer(bytes(data))
            self._send_chunked(characteristic.handle, answer, board.mtu - 3)
        elif attribute.kind == "config":
            self._configure(board, characteristic.handle, bytes(data))
        else:
            raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)

    def _configure(self, board: SimulatedBoard, handle: int, frame: bytes) -> None:
        """A config command, as the firmware takes it: the rate command sets a feature
        characteristic's rate when the firmware offers it; anything else is ignored."""
        try:
            command = decode_rate_command(frame)
        except ConfigFrameError as exc:
            logger.debug("%s ignores config command %s (%s)", board.mac, frame.hex(), exc)
            return
        if command.mask not in board.characteristics:
            logger.debug("%s has no characteristic 0x%08x", board.mac, command.mask)
            return
        try:
            board.set_rate(command.mask, command.rate_hz)
            applied = True
        except ValueError as exc:
            logger.info("%s", exc)
            applied = False
        answer = encode_rate_answer(
            board.ticks(), command.mask, applied, board.rate_hz(command.mask)
        )
        assert self._loop is not None
        self._loop.call_soon(self._notify, handle, answer)

    def _send_chunked(self, handle: int, payload: bytes, chunk: int) -> None:
        # The firmware answers after the write completes, one notification per MTU chunk;
        # nobody hears it unless notifications are on.
        assert self._loop is not None
        for start in range(0, len(payload), chunk):
            self._loop.call_soon(self._notify, handle, payload[start : start + chunk])

    def _notify(self, handle: int, payload: bytes) -> None:
        callback = self._callbacks.get(handle)
        if callback is None:
            return
        try:
            callback(bytearray(payload))
        except Exception:
            # A real stack logs and carries on; so do we, so one bad frame cannot stop a stream.
            logger.exception("notification callback for handle %d failed", handle)

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        self._connected_board()
        raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._connected_board()
        if "notify" not in characteristic.properties:
            raise BleakError(f"{characteristic.uuid} does not notify")
        self._callbacks[characteristic.handle] = callback
        attribute = _attribute(characteristic)
        if attribute.kind == "feature" and characteristic.handle not in self._streams:
            self._streams[characteristic.handle] = asyncio.create_task(
                self._stream(characteristic.handle, attribute.mask),
                name=f"simulated-notify-{self.address}-{attribute.mask:08x}",
            )

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._callbacks.pop(characteristic.handle, None)
        task = self._streams.pop(characteristic.handle, None)
        if task is not None:
            task.cancel()

    async def _stream(self, handle: int, mask: int) -> None:
        board = self._connected_board()
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._board is board:
            period = 1.0 / board.rate_hz(mask)  # read each time: the rate may change
            due += period
            now = loop.time()
            if due < now - period:
                due = now  # a stalled host skips frames rather than bursting them
            await asyncio.sleep(max(0.0, due - now))
            if self._board is not board:
                return
            self._notify(handle, board.notification(mask))


def scanner_backend(radio: SimulatedRadio) -> type[SimulatedScanner]:
    """The class to pass as `BleakScanner(backend=...)` to scan `radio`."""
    bound: type[SimulatedScanner] = type("SimulatedScanner", (SimulatedScanner,), {"radio": radio})
    return bound


def client_backend(radio: SimulatedRadio) -> type[SimulatedClient]:
    """The class to pass as `BleakClient(backend=...)` to connect through `radio`."""
    bound: type[SimulatedClient] = type("SimulatedClient", (SimulatedClient,), {"radio": radio})
    return bound

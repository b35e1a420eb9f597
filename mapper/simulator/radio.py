"""The air between simulated boards and the host, and what the host adapter remembers.

Like BlueZ, the adapter only connects to devices it has seen advertising, and forgets a
(non-bonded) device when it disconnects: after any disconnect, scan again first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from bleak.exc import BleakDeviceNotFoundError, BleakError

from mapper.simulator.board import SimulatedBoard

logger = logging.getLogger(__name__)


class _Central(Protocol):
    """The client end of a link, told when the radio drops it."""

    def link_lost(self) -> None: ...


class SimulatedRadio:
    """Boards on the air by MAC, shared by the simulated scanner and client backends."""

    def __init__(self, *, advertising_interval: float = 0.05, connect_delay: float = 0.01) -> None:
        """`advertising_interval`: seconds between a board's advertisements;
        `connect_delay`: seconds a connection takes to come up."""
        self.advertising_interval = advertising_interval
        self.connect_delay = connect_delay
        self._boards: dict[str, SimulatedBoard] = {}
        self._known: set[str] = set()
        self._links: dict[str, _Central] = {}

    # Test and operator controls

    def add_board(self, board: SimulatedBoard) -> SimulatedBoard:
        """Power a board on: it starts advertising."""
        if board.mac in self._boards:
            raise ValueError(f"a board with MAC {board.mac} is already on this radio")
        self._boards[board.mac] = board
        return board

    def remove_board(self, mac: str) -> SimulatedBoard:
        """Power a board off, dropping its connection if it has one."""
        self.force_disconnect(mac)
        return self._boards.pop(mac.upper())

    @property
    def boards(self) -> Mapping[str, SimulatedBoard]:
        return MappingProxyType(self._boards)

    def board(self, mac: str) -> SimulatedBoard:
        return self._boards[mac.upper()]

    def is_known(self, mac: str) -> bool:
        """Whether the host adapter would connect to `mac` without scanning first."""
        return mac.upper() in self._known

    def is_connected(self, mac: str) -> bool:
        return mac.upper() in self._links

    def forget(self, mac: str) -> None:
        """Drop `mac` from the adapter's cache, like `bluetoothctl remove`."""
        self._known.discard(mac.upper())

    def force_disconnect(self, mac: str) -> bool:
        """Drop the link to `mac` as if the board went out of range; False if not connected.

        The client's disconnected callback fires and the adapter forgets the board.
        """
        central = self._links.pop(mac.upper(), None)
        if central is None:
            return False
        self.forget(mac)
        logger.info("simulated link to %s lost", mac.upper())
        central.link_lost()
        return True

    # Used by the bleak backends

    def advertising_boards(self) -> list[SimulatedBoard]:
        """Boards advertising now: powered on and not connected (ST firmware stops
        advertising while a central is connected)."""
        return [board for mac, board in self._boards.items() if mac not in self._links]

    def heard(self, mac: str) -> None:
        """A scanner received an advertisement from `mac`: the adapter now knows it."""
        self._known.add(mac.upper())

    async def open_link(
        self, central: _Central, address: str, *, scan_first: bool, timeout: float
    ) -> SimulatedBoard:
        """Connect `central` to the board at `address`.

        With `scan_first` (bleak was given an address, not a BLEDevice) the adapter scans
        for it, as BlueZ does; otherwise it must already know the device.
        """
        mac = address.upper()
        if not scan_first and mac not in self._known:
            raise BleakDeviceNotFoundError(
                mac,
                f"Device with address {mac} was not found. It may have been removed from "
                "BlueZ when it disconnected; scan again before connecting.",
            )
        try:
            async with asyncio.timeout(timeout):
                while mac not in self._boards or mac in self._links:
                    await asyncio.sleep(self.advertising_interval)
        except TimeoutError:
            if scan_first:
                raise BleakDeviceNotFoundError(
                    mac, f"Device with address {mac} was not found."
                ) from None
            raise TimeoutError(f"{mac} did not answer within {timeout:g} s") from None
        self._known.add(mac)
        await asyncio.sleep(self.connect_delay)
        if mac not in self._boards or mac in self._links:
            raise BleakError(f"{mac}: connection attempt failed (board went away)")
        self._links[mac] = central
        return self._boards[mac]

    def close_link(self, mac: str, central: _Central) -> None:
        """The central disconnected on purpose; the adapter forgets the board."""
        if self._links.get(mac.upper()) is central:
            del self._links[mac.upper()]
            self.forget(mac)

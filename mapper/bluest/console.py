"""The BlueST debug console: commands and their answers.

Commands are written to the console characteristic; answers come back as notifications
on it, cut into chunks of at most MTU - 3 bytes (20 with BLE's default MTU), so a line
can span several notifications.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UID_COMMAND = b"uid\n"

# ST firmware prints the 96-bit UID as three 32-bit words, then "_" and the MCU device id
# (DBGMCU_IDCODE & 0xFFF, e.g. 482 for an STM32U585); older firmware omits the suffix.
_UID_ANSWER = re.compile(r"^(?P<uid>[0-9A-Fa-f]{24})(?:_(?P<mcu>[0-9A-Fa-f]{3}))?$")


@dataclass(frozen=True)
class Stm32Uid:
    """The board's STM32 unique id as its console reports it."""

    uid: str
    """24 upper-case hex digits."""
    mcu_device_id: int | None


def parse_uid_answer(line: str) -> Stm32Uid:
    """Parse the console's answer line to `uid`; ValueError if it is not one."""
    match = _UID_ANSWER.match(line.strip())
    if match is None:
        raise ValueError(f"console answer {line!r} is not an STM32 UID")
    mcu = match.group("mcu")
    return Stm32Uid(match.group("uid").upper(), int(mcu, 16) if mcu is not None else None)


class ConsoleLineReader:
    """Reassembles console notifications into text lines."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes | bytearray) -> list[str]:
        """Add one notification; return the lines it completed (without line endings)."""
        self._pending += chunk
        *lines, rest = self._pending.split(b"\n")
        self._pending = bytearray(rest)
        return [line.rstrip(b"\r").decode("ascii", errors="replace") for line in lines]

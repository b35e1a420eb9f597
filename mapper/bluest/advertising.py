"""Recognising BlueST boards from their advertisement's manufacturer data.

Current firmware advertises manufacturer data of company 0x0030 (STMicroelectronics):
`sdk_version | board_id | 4 bytes | MAC (6, optional)`, where the 4 bytes are the feature
mask (big-endian) for SDK v1 and `firmware_id | 3 option bytes` for SDK v2.

Legacy v1 firmware puts `0x01 | board_id | mask (4, BE) | MAC (6, optional)` in the
manufacturer-specific field with no company id; bleak still splits off the first two
bytes as a little-endian "company id", so we stitch them back on.

The MAC is sent most significant byte first (firmware writes the controller's
little-endian address reversed), i.e. already in display order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ST_COMPANY_ID = 0x0030
_SDK_V1 = 0x01
_SDK_V2 = 0x02
_MAC_LENGTH = 6
_BODY_LENGTH = 6
"""sdk_version | board_id | 4 bytes."""

# Board ids from ST's BlueST SDK (Boards.getModelFromIdentifier), identical for SDK v1 and v2.
BOARD_NAMES: Mapping[int, str] = {
    0x00: "generic BlueST node",
    0x01: "STEVAL-WESU1",
    0x02: "SensorTile (STEVAL-STLKT01V1)",
    0x03: "BlueCoin (STEVAL-BCNKT01V1)",
    0x04: "BlueNRG-2 (STEVAL-IDB008V)",
    0x05: "BlueNRG-Tile (STEVAL-BCN002V1B)",
    0x06: "SensorTile.box (STEVAL-MKSBOX1V1)",
    0x07: "Discovery IoT01A",
    0x08: "STWIN (STEVAL-STWINKT1)",
    0x09: "STWIN rev B (STEVAL-STWINKT1B)",
    0x0A: "B-L475E-IOT01A",
    0x0B: "B-U585I-IOT02A",
    0x0C: "ASTRA1",
    0x0D: "SensorTile.box PRO (STEVAL-MKBOXPRO)",
    0x0E: "STWIN.box (STEVAL-STWINBX1)",
    0x0F: "Proteus",
    0x10: "STDES-CBMLoRaBLE",
    0x11: "SensorTile.box PRO rev B",
    0x12: "STWIN.box rev B",
    0x13: "SensorTile.box PRO rev C",
    0x7A: "NUCLEO-U5A5ZJ-Q",
    0x7B: "NUCLEO-U575ZI-Q",
    0x7C: "NUCLEO-F446RE",
    0x7D: "NUCLEO-L053R8",
    0x7E: "NUCLEO-L476RG",
    0x7F: "NUCLEO-F401RE",
    0x80: "NUCLEO",
}


def board_name(board_id: int) -> str:
    """Human name of a BlueST board id; unknown ids read "unknown (0xNN)"."""
    return BOARD_NAMES.get(board_id, f"unknown (0x{board_id:02X})")


@dataclass(frozen=True)
class BlueSTAdvertisement:
    """What a BlueST advertisement says about the board."""

    board_id: int
    board_name: str
    sdk_version: int
    feature_mask: int | None
    """SDK v1 only: features the board exports."""
    firmware_id: int | None
    """SDK v2 only: key into ST's firmware catalog together with board_id."""
    mac: str | None
    """"AA:BB:CC:DD:EE:FF", when the board includes it."""


def _parse_body(body: bytes) -> BlueSTAdvertisement | None:
    if len(body) not in (_BODY_LENGTH, _BODY_LENGTH + _MAC_LENGTH):
        return None
    sdk_version, board_id = body[0], body[1]
    if sdk_version == _SDK_V1:
        feature_mask: int | None = int.from_bytes(body[2:6], "big")
        firmware_id: int | None = None
    elif sdk_version == _SDK_V2:
        feature_mask, firmware_id = None, body[2]
    else:
        return None
    mac_bytes = body[_BODY_LENGTH:]
    mac = ":".join(f"{b:02X}" for b in mac_bytes) if mac_bytes else None
    return BlueSTAdvertisement(
        board_id, board_name(board_id), sdk_version, feature_mask, firmware_id, mac
    )


def parse_advertisement(manufacturer_data: Mapping[int, bytes]) -> BlueSTAdvertisement | None:
    """The BlueST content of bleak's `AdvertisementData.manufacturer_data`, or None."""
    st_body = manufacturer_data.get(ST_COMPANY_ID)
    if st_body is not None:
        parsed = _parse_body(bytes(st_body))
        if parsed is not None:
            return parsed
    for company_id, value in manufacturer_data.items():
        # Legacy layout: the "company id" bleak saw is `0x01 | board_id`.
        if company_id == ST_COMPANY_ID or company_id & 0xFF != _SDK_V1:
            continue
        parsed = _parse_body(company_id.to_bytes(2, "little") + bytes(value))
        if parsed is not None:
            return parsed
    return None

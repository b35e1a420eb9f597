"""Parsing BlueST manufacturer data as bleak hands it over (company id split off)."""

from __future__ import annotations

from mapper.bluest import BlueSTAdvertisement, board_name, parse_advertisement

MAC = bytes.fromhex("C08A11223344")


def test_v2_with_mac() -> None:
    adv = parse_advertisement({0x0030: bytes([0x02, 0x0E, 0x07, 0xAA, 0xBB, 0xCC]) + MAC})
    assert adv == BlueSTAdvertisement(
        board_id=0x0E,
        board_name="STWIN.box (STEVAL-STWINBX1)",
        sdk_version=2,
        feature_mask=None,
        firmware_id=0x07,
        mac="C0:8A:11:22:33:44",
    )


def test_v2_without_mac_rev_b() -> None:
    adv = parse_advertisement({0x0030: bytes([0x02, 0x12, 0x01, 0, 0, 0])})
    assert adv is not None
    assert adv.board_name == "STWIN.box rev B"
    assert adv.mac is None
    assert adv.firmware_id == 1


def test_v1_with_company_id_carries_big_endian_mask() -> None:
    adv = parse_advertisement({0x0030: bytes([0x01, 0x0E, 0x00, 0xF6, 0x00, 0x00]) + MAC})
    assert adv is not None
    assert adv.sdk_version == 1
    assert adv.feature_mask == 0x00F60000
    assert adv.firmware_id is None
    assert adv.mac == "C0:8A:11:22:33:44"


def test_legacy_v1_without_company_id() -> None:
    raw = bytes([0x01, 0x02, 0x00, 0xFE, 0x00, 0x00]) + MAC
    # bleak reads the first two bytes as a little-endian company id.
    as_bleak = {int.from_bytes(raw[:2], "little"): raw[2:]}
    assert list(as_bleak) == [0x0201]
    adv = parse_advertisement(as_bleak)
    assert adv == BlueSTAdvertisement(
        0x02, "SensorTile (STEVAL-STLKT01V1)", 1, 0x00FE0000, None, "C0:8A:11:22:33:44"
    )


def test_legacy_v1_without_mac() -> None:
    adv = parse_advertisement({0x0601: bytes([0x00, 0xE0, 0x00, 0x00])})
    assert adv is not None
    assert (adv.board_id, adv.feature_mask, adv.mac) == (0x06, 0x00E00000, None)


def test_non_bluest_is_none() -> None:
    assert parse_advertisement({}) is None
    assert parse_advertisement({0x004C: bytes.fromhex("0215" + "00" * 21)}) is None  # iBeacon
    # ST company id but neither SDK version 1 nor 2.
    assert parse_advertisement({0x0030: bytes([0x03, 0x0E, 0, 0, 0, 0])}) is None
    # ST company id, wrong length.
    assert parse_advertisement({0x0030: bytes([0x02, 0x0E, 0, 0])}) is None
    # Looks like legacy (low byte 0x01) but wrong length.
    assert parse_advertisement({0x0E01: bytes(7)}) is None


def test_st_entry_wins_over_other_manufacturers() -> None:
    adv = parse_advertisement({0x0059: b"\x01\x02", 0x0030: bytes([0x02, 0x0E, 0x01, 0, 0, 0])})
    assert adv is not None and adv.board_id == 0x0E


def test_unknown_board_id_name() -> None:
    assert board_name(0x55) == "unknown (0x55)"
    adv = parse_advertisement({0x0030: bytes([0x02, 0x55, 0x01, 0, 0, 0])})
    assert adv is not None and adv.board_name == "unknown (0x55)"

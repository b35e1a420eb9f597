"""Bounded decoding and echoing of input we do not control."""

from __future__ import annotations

import json
import sys

import pytest

from fluidos_sensors.limits import (
    ECHO_MAX_LENGTH,
    ELLIPSIS,
    JSONInputError,
    OversizedNumber,
    TooDeep,
    as_float,
    clip,
    has_control_characters,
    load_json,
    preview,
)


def nested(depth: int, inner: object = 1) -> object:
    """A value nested ``depth`` arrays deep, built without recursion."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def test_clip_marks_the_cut() -> None:
    assert clip("short") == "short"
    assert clip("x" * 41) == "x" * 40 + ELLIPSIS
    assert clip("abcdef", 3) == "abc" + ELLIPSIS


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("fast", '"fast"'),
        (None, "null"),
        (True, "true"),
        (15, "15"),
        (1.5, "1.5"),
        (float("nan"), "NaN"),
        ([1, "a", {"b": None}], '[1, "a", {"b": null}]'),
        (OversizedNumber("1e999"), "1e999"),
        (TooDeep(32), "<nested deeper than 32 levels>"),
        (object(), "<object>"),
    ],
)
def test_preview_shows_json(value: object, shown: str) -> None:
    assert preview(value) == shown


@pytest.mark.parametrize(
    "value",
    [
        "n" * 1_000_000,
        10**5000,  # str() of it raises: Python's 4300-digit limit
        -(10**400),
        OversizedNumber("9" * 5001),
        nested(100_000),  # json.dumps and repr of it raise RecursionError
        {str(i): i for i in range(100_000)},
        list(range(100_000)),
    ],
    ids=["1MB-text", "5001-digit-int", "401-digit-int", "oversized", "deep", "wide-dict", "long"],
)
def test_preview_is_short_whatever_the_value(value: object) -> None:
    shown = preview(value)
    assert 0 < len(shown) <= ECHO_MAX_LENGTH + 1


def test_preview_of_huge_int_says_its_size() -> None:
    assert preview(10**5000) == "<a number of about 5001 digits>"


def test_control_characters_and_lone_surrogates_are_found() -> None:
    assert has_control_characters("red\x1b[31m")
    assert has_control_characters("a\nb")
    assert has_control_characters("\ud800")
    assert not has_control_characters("±0.5 °C, 80 µA, 湿度")


def test_load_json_decodes_ordinary_json() -> None:
    assert load_json('[{"a": 1, "b": [1.5, "x", null, true]}]') == [
        {"a": 1, "b": [1.5, "x", None, True]}
    ]
    assert load_json(b'{"a": "\xc2\xb0C"}') == {"a": "°C"}


def test_numbers_beyond_float_range_are_kept_as_text() -> None:
    digits = "1" * 5001  # int() refuses this many digits
    value = load_json(f"[{digits}, -{'9' * 400}, 1e999, 123, 1e308]")
    assert value[0] == OversizedNumber(digits)
    assert value[1] == OversizedNumber("-" + "9" * 400)
    assert value[2] == OversizedNumber("1e999")
    assert value[3:] == [123, 1e308]
    assert len(repr(value[0])) < 80


def test_deep_nesting_becomes_a_stand_in_at_the_bound() -> None:
    text = '{"keep": [[1]], "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert sys.getrecursionlimit() < 100_000  # json.loads alone would raise RecursionError
    value = load_json(text, max_depth=4)
    assert value["keep"] == [[1]]
    assert value["deep"] == [[[TooDeep(4)]]]


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"name": "[[[[[[[[[[{{{{{{{{{{", "quote": 'a\\"[[[[[[[[[['})
    assert load_json(text, max_depth=2) == json.loads(text)


def test_a_forged_stand_in_is_just_an_object() -> None:
    text = '[{"0123456789abcdef0123456789abcdef": 0}, [[[[1]]]]]'
    value = load_json(text, max_depth=2)
    assert value[0] == {"0123456789abcdef0123456789abcdef": 0}
    assert value[1] == [TooDeep(2)]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[{", "is not valid JSON"),
        ("[" * 50, "is not valid JSON"),
        ("]" * 50, "is not valid JSON"),
        ('"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', "is not valid JSON"),
        (b"\xff\xfe[1]", "is not UTF-8 text"),
        (12, "is not text"),
    ],
)
def test_bad_json_raises_only_its_own_error(payload: object, message: str) -> None:
    with pytest.raises(JSONInputError, match=message):
        load_json(payload, max_depth=3)  # type: ignore[arg-type]


def test_size_bound_counts_utf8_bytes() -> None:
    assert load_json('"°"', max_bytes=4) == "°"  # 4 bytes: quote, 2-byte degree sign, quote
    with pytest.raises(JSONInputError, match="is 5 bytes long; at most 4"):
        load_json('"°C"', max_bytes=4)


def test_as_float_never_raises() -> None:
    assert as_float(3) == 3.0
    assert as_float(10**400) is None
    assert as_float(float("inf")) is None
    assert as_float(float("nan")) is None
    assert as_float(True) is None
    assert as_float("1") is None

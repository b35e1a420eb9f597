"""Numbers and units as sensor descriptions write them: numbers, numeric strings and numbers
with a unit ("15 ms", "1 kHz", "±0.5"), latency normalised to ms, sampling rate to Hz and
consumption to mW or mA; `format_number` writes a number back the way FLUIDOS does."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from fluidos_sensors.limits import (
    NUMBER_TEXT_MAX_LENGTH,
    OversizedNumber,
    clip,
    has_control_characters,
    preview,
)

LATENCY_UNIT = "ms"
SAMPLING_RATE_UNIT = "Hz"
POWER_UNIT = "mW"
CURRENT_UNIT = "mA"

_MICRO = ("u", "\u00b5", "\u03bc")  # ASCII u, MICRO SIGN, GREEK SMALL LETTER MU


def _scaled(
    base: str, canonical: str, prefixes: Mapping[str, float]
) -> dict[str, tuple[float, str]]:
    return {f"{prefix}{base}": (factor, canonical) for prefix, factor in prefixes.items()}


_SI_SMALL = {"n": 1e-6, **dict.fromkeys(_MICRO, 1e-3), "m": 1.0, "": 1e3}
TIME_UNITS = {
    **_scaled("s", LATENCY_UNIT, _SI_SMALL),
    "sec": (1e3, LATENCY_UNIT),
    "min": (6e4, LATENCY_UNIT),
}
RATE_UNITS = {
    **_scaled("Hz", SAMPLING_RATE_UNIT, {"m": 1e-3, "": 1.0, "k": 1e3, "K": 1e3, "M": 1e6}),
    "hz": (1.0, SAMPLING_RATE_UNIT),
    "HZ": (1.0, SAMPLING_RATE_UNIT),
    "khz": (1e3, SAMPLING_RATE_UNIT),
}
CONSUMPTION_UNITS = {
    **_scaled("W", POWER_UNIT, {"n": 1e-6, **dict.fromkeys(_MICRO, 1e-3), "m": 1.0, "": 1e3}),
    **_scaled("A", CURRENT_UNIT, {"n": 1e-6, **dict.fromkeys(_MICRO, 1e-3), "m": 1.0, "": 1e3}),
}
TIME_HINT = "ns, us, ms, s"
RATE_HINT = "mHz, Hz, kHz, MHz"
CONSUMPTION_HINT = "uW, mW, W for power or uA, mA, A for current"

# Matched against stripped text only: anchored, no nested quantifiers, so it runs in linear
# time. ASCII digits only, as FLUIDOS's Go reader (strconv.ParseFloat) expects.
_NUMBER = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>[^\s0-9.+-].*)?$"
)
_PLUS_MINUS = ("\u00b1", "+/-", "+-")


class QuantityError(ValueError):
    """A value is not a number in an accepted unit; the message names what was expected."""


def show(value: object) -> str:
    """A value as it appears in JSON, for error messages: short, whatever its size or depth."""
    return preview(value)


def format_number(value: float) -> str:
    """The FLUIDOS string form of a number: "1" not "1.0", shortest round-trip otherwise."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _tidy(value: float) -> float:
    # Unit scaling makes 1.1 * 1000 == 1100.0000000000002; keep what a human wrote.
    return float(f"{value:.12g}")


def _number(value: object, expected: str) -> tuple[float, str | None]:
    """(number, the unit written after it or None) from a JSON number or a numeric string.

    Raises QuantityError(``expected`` + why) for anything else, including numbers no float
    can hold (10**400, "1e999") and NaN.
    """
    out_of_range = QuantityError(f"{expected} (out of range)")
    if isinstance(value, OversizedNumber):
        raise out_of_range
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QuantityError(expected)
    unit: str | None = None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > NUMBER_TEXT_MAX_LENGTH:
            raise QuantityError(f"{expected} (longer than {NUMBER_TEXT_MAX_LENGTH} characters)")
        match = _NUMBER.match(text)
        if not match or has_control_characters(text):
            raise QuantityError(expected)
        number, unit = float(match["num"]), match["unit"]
    else:
        try:
            number = float(value)
        except OverflowError:  # an int past 1.8e308
            raise out_of_range from None
    if math.isnan(number):
        raise QuantityError(expected)
    if math.isinf(number):
        raise out_of_range
    return number, unit


def _quantity(
    value: object,
    *,
    units: Mapping[str, tuple[float, str]],
    default_unit: str,
    hint: str,
    positive: bool = False,
) -> tuple[float, str]:
    expected = f"must be a number of {default_unit}, got {show(value)}"
    number, written_unit = _number(value, expected)
    unit = written_unit or default_unit
    if unit not in units:
        raise QuantityError(f'{expected} (unknown unit "{clip(unit)}"; use {hint})')
    if number < 0 or (positive and number == 0):
        raise QuantityError(
            f"must be {'greater than zero' if positive else 'zero or more'}, got {show(value)}"
        )
    factor, canonical = units[unit]
    scaled = _tidy(number * factor)
    if math.isinf(scaled):  # 1e308 min is a finite number of minutes but no float of ms
        raise QuantityError(f"{expected} (out of range)")
    if positive and scaled == 0:  # 1e-320 mHz underflows to 0 Hz
        raise QuantityError(f"must be greater than zero, got {show(value)} (too small)")
    return scaled, canonical


def parse_latency_ms(value: object, default_unit: str = LATENCY_UNIT) -> float:
    """A latency in ms from 15, "15", "15 ms", "0.1 s", "200us"; bare numbers in default_unit."""
    return _quantity(value, units=TIME_UNITS, default_unit=default_unit, hint=TIME_HINT)[0]


# Numbers as format_number (so our REAR client) writes them, for OpenAPI patterns: exponents
# bounded so that every value a pattern admits is a finite number in every unit.
_EXPONENT = r"([eE][+-]?[0-9]{1,2})?"
NUMBER_PATTERN = r"[0-9]{1,17}(\.[0-9]{1,17})?" + _EXPONENT
# A sampling rate is more than zero (parse_rate_hz): a digit 1-9 somewhere.
POSITIVE_NUMBER_PATTERN = (
    r"(0{0,16}[1-9][0-9]{0,16}(\.[0-9]{1,17})?|0{1,17}\.0{0,16}[1-9][0-9]{0,16})" + _EXPONENT
)
# A sampling rate as a string: a positive number, in Hz unless one of RATE_UNITS' spellings of
# mHz, Hz, kHz or MHz follows.
RATE_PATTERN = f"^{POSITIVE_NUMBER_PATTERN}( ?(mHz|Hz|kHz|MHz))?$"


def parse_rate_hz(value: object, default_unit: str = SAMPLING_RATE_UNIT) -> float:
    """A sampling rate in Hz from 20, "20", "20 Hz", "1 kHz"; bare numbers are in default_unit."""
    return _quantity(
        value, units=RATE_UNITS, default_unit=default_unit, hint=RATE_HINT, positive=True
    )[0]


def parse_consumption(value: object, default_unit: str = POWER_UNIT) -> tuple[float, str]:
    """A consumption as (number, "mW") for power or (number, "mA") for current."""
    return _quantity(
        value, units=CONSUMPTION_UNITS, default_unit=default_unit, hint=CONSUMPTION_HINT
    )


def parse_plain_number(value: object, what: str = "a number") -> float:
    """A finite number, zero or more, from a JSON number or a numeric string (no unit)."""
    expected = f"must be {what}, got {show(value)}"
    number, unit = _number(value, expected)
    if unit or number < 0:
        raise QuantityError(expected)
    return number


def parse_accuracy(value: object, measurement_unit: str) -> tuple[float, str]:
    expected = f"must be a number (optionally ±, optionally with a unit), got {show(value)}"
    if isinstance(value, str):
        text = value.strip()
        for sign in _PLUS_MINUS:
            if text.startswith(sign):
                text = text[len(sign) :].lstrip()
                break
        if text.startswith(("+", "-")):
            raise QuantityError(expected)
        number, unit = _number(text, expected)
    else:
        number, unit = _number(value, expected)
    if number < 0:
        raise QuantityError(expected)
    return number, unit or measurement_unit

"""Bounds on input we do not control, and the safe ways to read and echo it.

Devices, DeviceModels, Flavors of other providers, filter queries and MQTT readings come from
people we do not trust. Every limit on them is defined here once, with its reason, and the
helpers below never raise anything but their own documented error on any input:

- ``load_json`` decodes JSON with a size bound, stands ``TooDeep`` in for what nests deeper
  than a bound and keeps numbers too large for a float as ``OversizedNumber`` (``json.loads``
  recurses once per nesting level, ``int()`` refuses more than 4300 digits and ``float()``
  overflows past 1.8e308);
- ``preview`` and ``clip`` echo a value into a message in at most ``ECHO_MAX_LENGTH``
  characters, whatever its size or depth, so an Event or an error stays readable;
- ``allow_kubernetes_nesting`` lets a process that watches or lists the API server decode
  every object it may be handed, however deeply a hostile writer nested it.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

# Kubernetes caps the total of an object's annotations at 256 KiB (TotalAnnotationSizeLimitB),
# so this accepts every `sensors` annotation the API server can store and nothing larger.
# A STWIN.box describes ~10 sensors in ~8 KiB of base64; SENSORS_PER_DEVICE_MAX full entries
# fit comfortably.
ANNOTATION_MAX_BYTES = 256 * 1024
# The deepest a sensor description nests is 5 (array > entry > properties > unit >
# measurement); a reading nests 2. Anything past this is not our format.
JSON_MAX_DEPTH = 32
# The API server refuses JSON nested deeper than this (its decoder's limit), so every object
# a watch can deliver nests at most this deep; an operator must be able to decode them all.
KUBERNETES_JSON_MAX_DEPTH = 10_000
# A board with more sensors than this is not a board; each sensor is one Flavor in etcd.
SENSORS_PER_DEVICE_MAX = 128
# Quantities one sensor measures (sensorType[], accuracy[], measurement[]): an inertial unit
# has 3 to 9; each one becomes a Flavor label.
QUANTITIES_PER_SENSOR_MAX = 16
# Sampling rates a sensor offers (``samplingRates``): firmware offers a handful per sensor.
RATES_PER_SENSOR_MAX = 32
# Free text that names something (name, uid, model, manufacturer, market, node, access.*):
# the longest Kubernetes name (a DNS-1123 subdomain), which a node name must fit anyway.
TEXT_MAX_LENGTH = 253
# A term (sensor category, measured quantity, unit): a Kubernetes label value, which the
# category and quantities become on a Flavor.
TERM_MAX_LENGTH = 63
# A number written as text ("15 ms", "-1.5e-3 kHz"): no real one needs more.
NUMBER_TEXT_MAX_LENGTH = 64
# Digits beyond which a JSON integer is kept as text: no finite float has more (1.8e308).
INT_MAX_DIGITS = 309
# How much of a value a message echoes: enough to recognise it.
ECHO_MAX_LENGTH = 40
ELLIPSIS = "\u2026"
# The window of times a reading may carry (its mapper's receive time, Unix seconds), shared by
# the mapper (which does not publish outside it) and the edge agent (which refuses outside it).
# Before 2000-01-01T00:00:00Z: a clock that was never set (a board without a real-time clock
# boots at 1970) or a forged reading; InfluxDB would store it, and -1 or 1e12 make Telegraf
# refuse the whole batch it is in.
READING_TIME_MIN = 946_684_800.0
# Ahead of the checking clock: mapper and agent share their node's clock, so a genuine reading
# is ahead only by a clock step between stamping and checking (NTP correcting a clock that ran
# fast). Five minutes, the clock skew Kerberos and Kubernetes token checks tolerate; a reading
# further ahead would sit at the top of every "latest value" query until its time came.
READING_TIME_AHEAD_MAX = 300.0


class JSONInputError(ValueError):
    """JSON that is not acceptable input; the message says why (it never echoes the input)."""


@dataclass(frozen=True)
class OversizedNumber:
    """A JSON number outside the float range, kept as the text it was written as."""

    text: str

    def __str__(self) -> str:
        return clip(self.text)

    def __repr__(self) -> str:
        return f"OversizedNumber({clip(self.text)!r})"


@dataclass(frozen=True)
class TooDeep:
    """Stands in for a JSON array or object nested deeper than ``depth`` levels."""

    depth: int

    def __str__(self) -> str:
        return f"<nested deeper than {self.depth} levels>"


def clip(text: str, limit: int = ECHO_MAX_LENGTH) -> str:
    """``text`` cut to ``limit`` characters, "…" marking the cut."""
    return text if len(text) <= limit else text[:limit] + ELLIPSIS


def _render_int(value: int) -> str:
    # str() of an int is refused past 4300 digits (and quadratic): say how big it is instead.
    if value.bit_length() <= 14_000:  # about 4200 digits
        return str(value)
    digits = int(value.bit_length() * math.log10(2)) + 1
    return f"{'-' if value < 0 else ''}<a number of about {digits} digits>"


def preview(value: object, limit: int = ECHO_MAX_LENGTH) -> str:
    """``value`` as JSON shows it, in at most ``limit`` characters (+ "…"); never raises.

    Iterative and budgeted, so a huge or deeply nested value costs O(limit²) at most.
    """
    out: list[str] = []
    size = 0
    stack: list[tuple[bool, object]] = [(False, value)]  # (is literal text, item)
    while stack and size <= limit:
        literal, item = stack.pop()
        if literal:
            text = str(item)
        elif isinstance(item, str):
            text = json.dumps(item[: limit + 1], ensure_ascii=False)
        elif item is None or isinstance(item, bool):
            text = json.dumps(item)
        elif isinstance(item, int):
            text = _render_int(item)
        elif isinstance(item, float):
            text = json.dumps(item)  # NaN, Infinity, 1e+300
        elif isinstance(item, OversizedNumber):
            text = item.text[: limit + 1]
        elif isinstance(item, TooDeep):
            text = str(item)
        elif isinstance(item, Mapping | list | tuple):
            is_map = isinstance(item, Mapping)
            # Each element shows at least one character: more than `limit` never fit.
            elements = list(islice(item.items() if is_map else item, limit + 1))  # type: ignore[union-attr]
            stack.append((True, "}" if is_map else "]"))
            for position in range(len(elements) - 1, -1, -1):
                element = elements[position]
                if is_map:
                    key, element = element
                    stack.append((False, element))
                    stack.append((True, ": "))
                    stack.append((False, key))
                else:
                    stack.append((False, element))
                if position:
                    stack.append((True, ", "))
            text = "{" if is_map else "["
        else:
            text = f"<{type(item).__name__}>"
        out.append(text)
        size += len(text)
    return clip("".join(out), limit)


# A JSON string (closed or running to the end of the text), or one structural bracket.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?|[\[\]{}]')


def _cut_deeper_than(text: str, max_depth: int, stand_in: str) -> tuple[str, bool]:
    """``text`` with every array/object deeper than ``max_depth`` replaced by ``stand_in``.

    Linear time: a regex steps over strings and brackets only. Unbalanced input stays
    unbalanced, so invalid JSON stays invalid.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return text, False
    pieces: list[str] = []
    depth = 0
    start: int | None = None
    done = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth == max_depth + 1:
                start = match.start()
        elif token in ("]", "}"):
            if depth == max_depth + 1 and start is not None:
                pieces += (text[done:start], stand_in)
                done, start = match.end(), None
            depth -= 1
    if start is not None:  # never closed: the text is invalid JSON whatever we do
        pieces += (text[done:start], stand_in)
        done = len(text)
    pieces.append(text[done:])
    return "".join(pieces), True


def byte_size(payload: str | bytes | bytearray) -> int:
    """Size in bytes as the API server counts it (UTF-8), for str and bytes alike."""
    if isinstance(payload, bytes | bytearray):
        return len(payload)
    return len(payload.encode("utf-8", "surrogatepass"))


# C0 and C1 control characters and lone surrogates: they garble Events and terminals, and
# the API server rewrites lone surrogates, so text holding them would never read back equal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds control characters or lone surrogates."""
    return _UNPRINTABLE.search(text) is not None


def reading_time_problem(seconds: float, now: float) -> str | None:
    """Why a reading stamped `seconds` (Unix) is outside the window at `now`, or None."""
    if seconds < READING_TIME_MIN:
        return f"is before 2000-01-01 ({seconds!r} s): the clock was not set"
    if seconds > now + READING_TIME_AHEAD_MAX:
        ahead = seconds - now
        return (
            f"is {ahead:.0f} s ahead of this node's clock "
            f"(at most {READING_TIME_AHEAD_MAX:.0f} s): the clock is wrong"
        )
    return None


def _parse_int(text: str) -> int | OversizedNumber:
    if len(text.lstrip("-")) > INT_MAX_DIGITS:
        return OversizedNumber(text)
    return int(text)


def _parse_float(text: str) -> float | OversizedNumber:
    number = float(text)
    return number if math.isfinite(number) else OversizedNumber(text)


def load_json(
    payload: str | bytes | bytearray,
    *,
    max_bytes: int | None = None,
    max_depth: int = JSON_MAX_DEPTH,
) -> Any:
    """Decode untrusted JSON (bytes must be UTF-8), bounded in size and depth.

    An array or object nested deeper than ``max_depth`` comes back as ``TooDeep``, so the
    caller can say which field holds it; numbers outside the float range come back as
    ``OversizedNumber``; ``NaN`` and ``Infinity`` as floats (callers wanting finite numbers
    check). Raises only JSONInputError (too large, not UTF-8, not JSON).
    """
    if not isinstance(payload, str | bytes | bytearray):
        raise JSONInputError(f"is not text but {type(payload).__name__}")
    if max_bytes is not None and (size := byte_size(payload)) > max_bytes:
        raise JSONInputError(f"is {size} bytes long; at most {max_bytes}")
    if isinstance(payload, bytes | bytearray):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as err:
            raise JSONInputError(f"is not UTF-8 text (byte {err.start})") from None
    else:
        text = payload
    # The stand-in is an object whose only key is a fresh random token: input cannot forge it.
    token = secrets.token_hex(16)
    text, cut = _cut_deeper_than(text, max_depth, f'{{"{token}":0}}')
    too_deep = TooDeep(max_depth)

    def stand_in(obj: dict[str, Any]) -> Any:
        return too_deep if len(obj) == 1 and token in obj else obj

    try:
        return json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_hook=stand_in if cut else None,
        )
    except json.JSONDecodeError as err:
        raise JSONInputError(
            f"is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except RecursionError:  # not after the cut; kept in case the caller's stack is deep
        raise JSONInputError(f"nests deeper than {max_depth} levels") from None


def as_float(value: object) -> float | None:
    """A JSON number (not a bool) as a finite float; None for anything else, never raises."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def allow_kubernetes_nesting() -> None:
    """Let this process decode and copy any object the API server stores, however nested.

    Objects may carry arbitrary JSON where a CRD preserves unknown fields (a KubeEdge Device's
    status, a Flavor's typeData), nested up to KUBERNETES_JSON_MAX_DEPTH. Python's json
    decoder recurses once per level and deep copies twice, so at the default recursion limit
    (1000) one such object fails a whole watch or list. Measured: the C decoder and encoder,
    repr, == and deepcopy of 20k levels fit an 8 MiB thread stack; Python frames are on the
    heap. Call it once, early, in a process that talks to the API server.
    """
    wanted = 4 * KUBERNETES_JSON_MAX_DEPTH
    if sys.getrecursionlimit() < wanted:
        sys.setrecursionlimit(wanted)

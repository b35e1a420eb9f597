"""The one reading format: what the mapper publishes on the edge broker, what the router parses.

One MQTT message per sensor per notification, on ``broker_topic(namespace, device, sensor)``,
its payload compact JSON (no spaces), self-describing::

    {"v":1,"ns":"default","device":"stwin-1","sensor":"acceleration",
     "quantity":"acceleration","unit":"mg","values":{"x":-3.0,"y":12.0,"z":1001.0},
     "node":"provider-1-edge","seq":41,"deviceTime":12.34,"receivedAt":1767225600.123456}

- ``v``: schema version; readers accept every payload with ``v`` <= ``SCHEMA_VERSION`` and
  ignore keys they do not know (later versions only add keys).
- ``sensor``: the topic segment (``sensor_key`` of the sensor's name); ``quantity``: the
  physical quantity measured (two temperature sensors share ``quantity`` "temperature").
- ``values``: every field of one notification together (x/y/z; battery level/voltage/...),
  numbers or null for "the board does not know"; ``unit`` is the unit of every field unless
  ``units`` (optional) gives a unit per field.
- ``seq``: per (device, sensor), +1 per message, kept across BLE reconnects; it restarts at 0
  only when the mapper restarts.
- ``deviceTime``: seconds on the board's own clock, unwrapped from its 10 ms tick counter
  (monotonic within one BLE connection; null when unknown); ``receivedAt``: Unix seconds when
  the mapper received the notification.
- ``provider`` (optional): the provider cluster, when the mapper is told.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, TypeGuard

import msgspec
from msgspec import Meta

from fluidos_sensors.limits import (
    TEXT_MAX_LENGTH,
    JSONInputError,
    as_float,
    clip,
    has_control_characters,
    load_json,
    preview,
    reading_time_problem,
)
from fluidos_sensors.topics import broker_topic

SCHEMA_VERSION = 1
READING_MAX_DEPTH = 4  # a reading nests 2 levels ("values", "units")
FAST_MAX_BRACKETS = 64  # payloads with more go to the careful path (see Reading.decode_fast)
SEQ_MAX = 2**63 - 1  # an int64, as line protocol and every reader downstream store it
INT64 = Meta(ge=-(2**63), le=2**63 - 1)
# What the fast decoder takes; `from_json` says why anything else is refused (or takes it:
# its rules are the reference and may be wider, e.g. integer values past 64 bits).
Value = Annotated[int, INT64] | float | None
Text = Annotated[str, Meta(min_length=1, max_length=TEXT_MAX_LENGTH)]
TextOrEmpty = Annotated[str, Meta(max_length=TEXT_MAX_LENGTH)]


class ReadingError(ValueError):
    """A payload that is not a reading; the message names the field."""


_JSON = msgspec.json.Encoder()


class Reading(
    msgspec.Struct,
    frozen=True,
    rename={"namespace": "ns", "received_at": "receivedAt", "device_time": "deviceTime"},
):
    """One sensor's values from one notification, as published on the edge broker.

    A msgspec Struct: the edge agent decodes every reading it routes, and msgspec checks a
    valid payload's fields (the annotations below) in C as it parses: 1.7 µs per reading
    against 10.7 µs for parsing plus `from_json`. Do not mutate `values` or `units`:
    readings are shared (msgspec cannot give read-only mappings).
    """

    namespace: Text
    device: Text
    sensor: Text
    quantity: Text
    unit: TextOrEmpty
    values: Annotated[Mapping[str, Value], Meta(min_length=1)]
    node: TextOrEmpty
    seq: Annotated[int, Meta(ge=0, le=SEQ_MAX)]
    received_at: float
    device_time: float | None = None
    provider: TextOrEmpty = ""
    units: Mapping[str, str] | None = None
    """Per-field units, only when the fields do not all share ``unit``."""

    @property
    def topic(self) -> str:
        """The broker topic this reading is published on."""
        return broker_topic(self.namespace, self.device, self.sensor)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "ns": self.namespace,
            "device": self.device,
            "sensor": self.sensor,
            "quantity": self.quantity,
            "unit": self.unit,
            "values": dict(self.values),
        }
        if self.units:
            body["units"] = dict(self.units)
        body["node"] = self.node
        if self.provider:
            body["provider"] = self.provider
        body["seq"] = self.seq
        body["deviceTime"] = None if self.device_time is None else round(self.device_time, 3)
        body["receivedAt"] = round(self.received_at, 6)
        return body

    def encode(self) -> bytes:
        """The MQTT payload: compact JSON, UTF-8, written by msgspec in a tenth of the time of
        `json.dumps` (the mapper encodes every reading). ValueError for NaN or infinity, which
        JSON cannot carry (msgspec would write them as null)."""
        numbers = (self.received_at, self.device_time, *self.values.values())
        if not all(n is None or math.isfinite(n) for n in numbers):
            raise ValueError(f"reading {self.topic}: NaN or infinity in its values or times")
        return _JSON.encode(self.to_json())

    @classmethod
    def decode(cls, payload: bytes | bytearray | str) -> Reading:
        """Parse a payload (UTF-8 JSON); ReadingError, and nothing else, says what is wrong."""
        try:
            return cls.decode_fast(payload)
        except (msgspec.MsgspecError, ValueError, TypeError):
            # The careful path says why, or takes what msgspec is stricter about.
            return cls.decode_carefully(payload)

    @classmethod
    def decode_fast(cls, payload: bytes | bytearray | str) -> Reading:
        """`decode` by msgspec alone, raising its own errors (not always naming the field).

        Only for payloads with at most FAST_MAX_BRACKETS arrays and objects: msgspec recurses
        in C once per nesting level, bounded only by Python's recursion limit, which processes
        that read Kubernetes objects raise (`allow_kubernetes_nesting`), so a deeply nested
        payload would overflow the C stack.
        """
        if not _shallow(payload):
            raise ValueError(f"more than {FAST_MAX_BRACKETS} arrays and objects, or not text")
        _VERSION.decode(payload)
        return _READING.decode(payload)

    @classmethod
    def decode_carefully(cls, payload: bytes | bytearray | str) -> Reading:
        """`decode` by Python's checks, whose errors name the field."""
        body = None
        if _shallow(payload):
            with contextlib.suppress(msgspec.MsgspecError, ValueError, TypeError):
                body = msgspec.json.decode(payload)
        if not isinstance(body, dict):
            # Deep, not JSON, not UTF-8, NaN, numbers past a float's range: load_json takes
            # what it can (deep parts as TooDeep) or says what is wrong.
            try:
                body = load_json(payload, max_depth=READING_MAX_DEPTH)
            except JSONInputError as err:
                raise ReadingError(f"reading {err}") from None
        if not isinstance(body, dict):
            raise ReadingError("reading must be a JSON object")
        return cls.from_json(body)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Reading:
        """A reading from its decoded JSON object; ReadingError names the wrong field."""
        version = body.get("v")
        if not _is_int(version) or version < 1:
            raise ReadingError(f'"v" must be a schema version (1..), got {preview(version)}')
        if version > SCHEMA_VERSION:
            raise ReadingError(
                f"reading schema v{preview(version)} is newer than this reader (v{SCHEMA_VERSION})"
            )
        seq = body.get("seq")
        if not _is_int(seq) or not 0 <= seq <= SEQ_MAX:
            raise ReadingError(f'"seq" must be an integer 0..2**63-1, got {preview(seq)}')
        received_at = body.get("receivedAt")
        if not _is_number(received_at):
            raise ReadingError(
                f'"receivedAt" must be a number of Unix seconds, got {preview(received_at)}'
            )
        device_time = body.get("deviceTime")
        if device_time is not None and not _is_number(device_time):
            raise ReadingError(
                f'"deviceTime" must be a number of seconds, got {preview(device_time)}'
            )
        return cls(
            namespace=_text(body, "ns"),
            device=_text(body, "device"),
            sensor=_text(body, "sensor"),
            quantity=_text(body, "quantity"),
            unit=_text(body, "unit", allow_empty=True),
            values=_values(body.get("values")),
            node=_text(body, "node", allow_empty=True),
            seq=seq,
            received_at=float(received_at),
            device_time=None if device_time is None else float(device_time),
            provider=_text(body, "provider", allow_empty=True, required=False),
            units=_units(body.get("units")),
        )

    def unit_of(self, field_name: str) -> str:
        """The unit of one field of ``values``."""
        if self.units and field_name in self.units:
            return self.units[field_name]
        return self.unit


def refusal(reading: Reading, topic: tuple[str, str, str] | None, now: float) -> str | None:
    """Why a well-formed reading must not be routed, naming the field, or None.

    `topic` is the (namespace, device, sensor) of the topic it came by (`split_broker_topic`;
    None: not a readings topic), `now` the checking clock. Decoding says whether a payload is
    a reading; this says whether to believe it: a mapper publishes a reading only on its own
    topic (so the broker's ACL on topics also vouches for the names in it), stamped inside the
    window of `reading_time_problem`, and names that become line-protocol tags and fields
    hold no control characters (a newline or NUL would make a new series, or break a batch),
    nor what line protocol cannot carry (a leading "#", an empty field key).
    """
    if topic is None:
        return "its topic is not <namespace>/fluidos-sensors/<device>/<sensor>"
    if (reading.namespace, reading.device, reading.sensor) != topic:
        for key, value, expected in zip(
            ("ns", "device", "sensor"),
            (reading.namespace, reading.device, reading.sensor),
            topic,
            strict=True,
        ):
            if value != expected:
                return f'"{key}" is {preview(value)}, its topic says {preview(expected)}'
    when = reading_time_problem(reading.received_at, now)
    if when is not None:
        return f'"receivedAt" {when}'
    # Names line protocol cannot carry: a line starting with "#" is a comment (the target
    # answers 2xx and drops the reading unseen), an empty field key a malformed line.
    if reading.quantity.startswith("#"):
        return '"quantity" starts with "#": line protocol would read the reading as a comment'
    if "" in reading.values:
        return 'a key of "values" is empty'
    names = [reading.quantity, reading.unit, reading.node, reading.provider, *reading.values]
    if reading.units:
        names += [*reading.units, *reading.units.values()]
    joined = "".join(names)
    # isprintable() is one fast scan that is true only without control characters (and
    # without other invisible ones, which may stay): the usual reading is checked by it alone.
    if not joined.isprintable() and has_control_characters(joined):
        for field, value in (
            ('"quantity"', reading.quantity),
            ('"unit"', reading.unit),
            ('"node"', reading.node),
            ('"provider"', reading.provider),
            *(('a key of "values"', name) for name in reading.values),
            *(('a key of "units"', name) for name in reading.units or {}),
            *(
                (f'"units" of {_escaped(name)}', unit)
                for name, unit in (reading.units or {}).items()
            ),
        ):
            if has_control_characters(value):
                return f"{field} holds control characters: {_escaped(value)}"
    return None


def _escaped(text: str) -> str:
    """`text` quoted, clipped, every control character as an escape (never raw in a message)."""
    return json.dumps(clip(text))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return as_float(value) is not None


def _text(
    body: Mapping[str, Any], key: str, *, allow_empty: bool = False, required: bool = True
) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (not allow_empty and not value):
        raise ReadingError(f'"{key}" must be a non-empty string, got {preview(value)}')
    if len(value) > TEXT_MAX_LENGTH:
        raise ReadingError(f'"{key}" is {len(value)} characters long; at most {TEXT_MAX_LENGTH}')
    return value


def _values(value: object) -> Mapping[str, Value]:
    if not isinstance(value, dict) or not value:
        raise ReadingError(f'"values" must be a non-empty object of numbers, got {preview(value)}')
    for key, item in value.items():
        if item is not None and not _is_number(item):
            raise ReadingError(
                f'"values.{clip(key)}" must be a number or null, got {preview(item)}'
            )
    return dict(value)


def _units(value: object) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(u, str) for u in value.values()):
        raise ReadingError(f'"units" must be an object of unit strings, got {preview(value)}')
    return dict(value)


def _shallow(payload: object) -> bool:
    """Text with at most FAST_MAX_BRACKETS arrays and objects, so nested no deeper. Cheap: a
    reading has two or three; brackets inside strings only make the bound safer."""
    if isinstance(payload, bytes | bytearray):
        return payload.count(b"{") + payload.count(b"[") <= FAST_MAX_BRACKETS
    if isinstance(payload, str):
        return payload.count("{") + payload.count("[") <= FAST_MAX_BRACKETS
    return False


class _Version(msgspec.Struct):
    """A payload's schema version: the one key of a reading that is not one of its fields."""

    v: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)]


_VERSION = msgspec.json.Decoder(_Version)
_READING = msgspec.json.Decoder(Reading)

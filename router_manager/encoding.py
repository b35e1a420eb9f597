"""Readings as consumers receive them: InfluxDB line protocol (the default) or JSON.

Line protocol, one line per reading::

    <quantity>,device=<d>,node=<n>,provider=<p>,sensor=<s>,unit=<u> \
        <values>,device_time=<s>,seq=<n>i <ns>

- values are float fields named as in the reading (``value``; ``x``/``y``/``z``; ...); a value
  the board does not know (null) is left out;
- ``seq`` (integer) and ``device_time`` (seconds on the board's clock, when known) let a
  consumer see gaps and order; ``unit`` is a tag only when all fields share one unit;
- the timestamp is the mapper's receive time in ns: a re-delivered reading lands on the same
  series and timestamp, so InfluxDB stores it once.

Escaping is influxdb-client's (`Point`): it escapes each distinct measurement+tag set and each
field key once, and the encoder caches the result, because building a whole Point per reading
costs tens of microseconds and these parts repeat for every reading of a sensor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from influxdb_client import Point

from fluidos_sensors.reading import Reading

_PROBE_FIELD = "probe"
_PROBE_SUFFIX = f" {_PROBE_FIELD}=1i"
_CACHE_MAX = 65_536


def _number(value: float) -> str:
    # influxdb-client's float form: str(), without the ".0" of whole numbers.
    text = str(float(value))
    return text[:-2] if text.endswith(".0") else text


class LineProtocolEncoder:
    """Reading -> one line of InfluxDB line protocol (bytes, no newline)."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, ...], str] = {}
        self._keys: dict[str, str] = {}

    def _prefix(self, reading: Reading) -> str:
        unit = "" if reading.units else reading.unit
        key: tuple[str, ...] = (
            reading.quantity,
            reading.device,
            reading.node,
            reading.provider,
            reading.sensor,
        )
        key += (unit,)
        prefix = self._prefixes.get(key)
        if prefix is None:
            point = Point(reading.quantity).tag("device", reading.device)
            point.tag("sensor", reading.sensor)
            for name, value in (("node", reading.node), ("provider", reading.provider)):
                if value:
                    point.tag(name, value)
            if unit:
                point.tag("unit", unit)
            line = point.field(_PROBE_FIELD, 1).to_line_protocol()
            prefix = line[: -len(_PROBE_SUFFIX)]
            if len(self._prefixes) >= _CACHE_MAX:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def _key(self, name: str) -> str:
        escaped = self._keys.get(name)
        if escaped is None:
            line = Point("m").field(name, 1).to_line_protocol()
            escaped = line[len("m ") : -len("=1i")]
            if len(self._keys) >= _CACHE_MAX:
                self._keys.clear()
            self._keys[name] = escaped
        return escaped

    def encode(self, reading: Reading) -> bytes:
        fields = {
            name: _number(value) for name, value in reading.values.items() if value is not None
        }
        if reading.device_time is not None:
            fields["device_time"] = _number(reading.device_time)
        fields["seq"] = f"{reading.seq}i"
        # Sorted by key, as influxdb-client writes them.
        field_set = ",".join(f"{self._key(name)}={fields[name]}" for name in sorted(fields))
        timestamp = round(reading.received_at * 1e6) * 1000
        return f"{self._prefix(reading)} {field_set} {timestamp}".encode()


def json_payload(reading: Reading) -> bytes:
    """The reading as the mapper published it (compact JSON)."""
    return reading.encode()


def batch_body(format_name: str, items: Iterable[bytes]) -> tuple[bytes, str]:
    """The HTTP body and content type of a batch of encoded readings."""
    if format_name == "json":
        return b"[" + b",".join(items) + b"]", "application/json"
    return b"\n".join(items) + b"\n", "text/plain; charset=utf-8"


def decode_json_batch(body: bytes) -> list[Reading]:
    """A JSON batch back into readings (for consumers and tests)."""
    return [Reading.from_json(item) for item in json.loads(body)]

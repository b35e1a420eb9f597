"""Readings as consumers receive them: InfluxDB line protocol (the default), JSON, or
CloudEvents.

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

CloudEvents 1.0 (JSON event format), one event per reading::

    {"specversion":"1.0","id":"temperature:41:1767225600123456",
     "source":"/providers/provider-1/nodes/provider-1-edge/namespaces/default/devices/stwin-1",
     "type":"eu.fluidos.sensors.temperature","subject":"temperature",
     "time":"2026-01-01T00:00:00.123456Z","datacontenttype":"application/json",
     "data":{"values":{"value":21.5},"unit":"°C","seq":41,"deviceTime":12.34}}

- ``id`` is made from the sensor, ``seq`` and the receive time of the stored reading, so a
  retried delivery carries the same id (consumers deduplicate at-least-once delivery by
  ``source`` + ``id``) and a restarted mapper (``seq`` from 0 again) makes new ones;
- ``source`` names provider, node and device (a path, each name percent-encoded; a part the
  reading does not know is left out), ``subject`` the sensor, ``type`` the quantity;
- ``time`` is the mapper's receive time, ``data`` the values, their unit (``units`` per field
  when they differ), ``seq`` and ``deviceTime`` as in the reading.

Events are written here with msgspec, not with the CloudEvents SDK, whose writer validates and
serialises through the standard library per event (see the README's benchmark section); the
tests parse what is written here with the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import msgspec
from influxdb_client import Point

from fluidos_sensors.endpoints import DeliveryFormat
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


CLOUDEVENT_TYPE_PREFIX = "eu.fluidos.sensors."
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"
CLOUDEVENT_BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
_EVENTS = msgspec.json.Encoder()


class CloudEventEncoder:
    """A stored reading (the mapper's JSON payload) -> one CloudEvent 1.0, JSON format."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, str, str, str], str] = {}

    def source(self, reading: Reading) -> str:
        key = (reading.provider, reading.node, reading.namespace, reading.device)
        source = self._sources.get(key)
        if source is None:
            parts = zip(("providers", "nodes", "namespaces", "devices"), key, strict=True)
            source = "".join(f"/{kind}/{quote(name, safe='')}" for kind, name in parts if name)
            if len(self._sources) >= _CACHE_MAX:
                self._sources.clear()
            self._sources[key] = source
        return source

    def event(self, reading: Reading) -> dict[str, Any]:
        """The event's attributes and data (what `encode` writes)."""
        data: dict[str, Any] = {"values": reading.values, "unit": reading.unit}
        if reading.units:
            data["units"] = reading.units
        data["seq"] = reading.seq
        if reading.device_time is not None:
            data["deviceTime"] = round(reading.device_time, 3)
        micros = round(reading.received_at * 1e6)
        return {
            "specversion": "1.0",
            "id": f"{reading.sensor}:{reading.seq}:{micros}",
            "source": self.source(reading),
            "type": CLOUDEVENT_TYPE_PREFIX + reading.quantity,
            "subject": reading.sensor,
            "time": datetime.fromtimestamp(micros / 1e6, UTC),
            "datacontenttype": "application/json",
            "data": data,
        }

    def encode(self, payload: bytes) -> bytes:
        """One event from a stored reading. Stored readings were decoded when they arrived,
        so this one decodes again (ReadingError only if the store was tampered with)."""
        return _EVENTS.encode(self.event(Reading.decode(payload)))


def stored_encoding(format_name: str) -> str:
    """Which stored encoding of a reading ("line" or "json") a format's batches are made
    from (and its queue bound counts)."""
    return "line" if format_name == DeliveryFormat.INFLUX else "json"


def readings_per_request(format_name: str, batch_size: int) -> int:
    """At most this many readings in one request: structured CloudEvents carry one."""
    return 1 if format_name == DeliveryFormat.CLOUDEVENTS else batch_size


def batch_body(
    format_name: str, items: Sequence[bytes], events: CloudEventEncoder | None = None
) -> tuple[bytes, str]:
    """The HTTP body and content type of a batch of stored readings (each in the encoding
    `stored_encoding` names for the format)."""
    if format_name == DeliveryFormat.JSON:
        return b"[" + b",".join(items) + b"]", "application/json"
    if format_name in (DeliveryFormat.CLOUDEVENTS, DeliveryFormat.CLOUDEVENTS_BATCH):
        encoder = events or CloudEventEncoder()
        if format_name == DeliveryFormat.CLOUDEVENTS:
            if len(items) != 1:
                raise ValueError(f"structured CloudEvents carry one reading, not {len(items)}")
            return encoder.encode(items[0]), CLOUDEVENT_CONTENT_TYPE
        body = b"[" + b",".join(encoder.encode(item) for item in items) + b"]"
        return body, CLOUDEVENT_BATCH_CONTENT_TYPE
    return b"\n".join(items) + b"\n", "text/plain; charset=utf-8"


def decode_json_batch(body: bytes) -> list[Reading]:
    """A JSON batch back into readings (for consumers and tests)."""
    return [Reading.from_json(item) for item in json.loads(body)]

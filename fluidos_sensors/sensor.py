"""The Sensor model every part shares, and the FLUIDOS edge ``sensors`` annotation codec.

A KubeEdge Device describes its sensors in annotation ``sensors``: base64 of a JSON array,
one object per sensor, in the FLUIDOS edge format (otto-tom/fluidos-node-edge,
``pkg/utils/models/flavor-sensor-models.go``). FLUIDOS writes every number as a string
(``"samplingRate": "1"``, ``"accuracy": ["0.1", "0.5"]``) with the units beside it in
``properties.unit``; we read numbers, numeric strings and numbers with a unit ("15 ms",
"1 kHz"; `fluidos_sensors.units` reads them), normalise latency to ms and sampling rate to
Hz, and write strings back.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from fluidos_sensors.api import SENSORS_ANNOTATION
from fluidos_sensors.limits import (
    ANNOTATION_MAX_BYTES,
    QUANTITIES_PER_SENSOR_MAX,
    RATES_PER_SENSOR_MAX,
    SENSORS_PER_DEVICE_MAX,
    TERM_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    JSONInputError,
    OversizedNumber,
    TooDeep,
    byte_size,
    clip,
    has_control_characters,
    load_json,
)
from fluidos_sensors.units import (
    CONSUMPTION_HINT,
    CONSUMPTION_UNITS,
    LATENCY_UNIT,
    POWER_UNIT,
    RATE_HINT,
    RATE_UNITS,
    SAMPLING_RATE_UNIT,
    TIME_HINT,
    TIME_UNITS,
    QuantityError,
    format_number,
    parse_accuracy,
    parse_consumption,
    parse_latency_ms,
    parse_rate_hz,
    show,
)

DEFAULT_ACCESS_TYPE = "MQTT"
ANNOTATION_SOURCE = f'annotation "{SENSORS_ANNOTATION}"'
_KEY_JUNK = re.compile(r"[^a-z0-9]+")
KEY_MAX_LENGTH = 63
_T = TypeVar("_T")


@dataclass(frozen=True)
class DeviceRef:
    """A KubeEdge Device by namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> DeviceRef:
        """The reference of a Device object (a dict as the API server returns it)."""
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        namespace, name = meta.get("namespace"), meta.get("name")
        return cls(
            namespace if isinstance(namespace, str) and namespace else "default",
            name if isinstance(name, str) else "",
        )


@dataclass(frozen=True)
class Accuracy:
    """The accuracy (± magnitude) of one measured quantity, in that quantity's unit."""

    quantity: str
    value: float
    unit: str = ""


@dataclass(frozen=True)
class SensorUnits:
    """Units of a sensor's numbers; sampling rate and latency are always normalised."""

    measurement: tuple[str, ...] = ()
    consumption: str = POWER_UNIT
    sampling_rate: str = SAMPLING_RATE_UNIT
    latency: str = LATENCY_UNIT


@dataclass(frozen=True)
class AccessResource:
    topic: str = ""
    node: str = ""


@dataclass(frozen=True)
class SensorAccess:
    """How the data is reached, as the device author declared it (FLUIDOS ``access``)."""

    type: str = DEFAULT_ACCESS_TYPE
    source: str = ""
    resource: AccessResource = field(default_factory=AccessResource)


@dataclass(frozen=True, kw_only=True)
class SensorSpec:
    """One sensor of a device, with every number in its canonical unit.

    ``types[i]`` is measured in ``units.measurement[i]`` with accuracy ``accuracy[i]``
    (when those are given). ``key`` names the sensor in topics and Flavor names.
    """

    key: str
    uid: str
    name: str
    model: str
    manufacturer: str
    category: str
    types: tuple[str, ...]
    market: str = ""
    sampling_rate_hz: float | None = None
    sampling_rates_hz: tuple[float, ...] = ()
    """Rates a buyer may set (``samplingRates``); empty: the rate cannot be set."""
    rate_group: str = ""
    """Sensors of the device sampled together, so sharing one rate (``samplingRateGroup``);
    empty: the sensor alone (see `fluidos_sensors.rates`)."""
    accuracy: tuple[Accuracy, ...] = ()
    consumption: float | None = None
    latency_ms: float | None = None
    units: SensorUnits = field(default_factory=SensorUnits)
    access: SensorAccess = field(default_factory=SensorAccess)

    def measurement_unit(self, quantity: str) -> str:
        """The unit of one of ``types`` (case-insensitive), or "" when not declared."""
        for index, kind in enumerate(self.types):
            if kind.casefold() == quantity.casefold() and index < len(self.units.measurement):
                return self.units.measurement[index]
        return ""


@dataclass(frozen=True)
class SensorProblem:
    """Why (part of) a device's sensor description was not usable, naming where."""

    device: str
    message: str
    field: str | None = None
    entry: int | None = None
    sensor: str | None = None
    source: str = ANNOTATION_SOURCE
    item: str = "entry"

    def __str__(self) -> str:
        parts = [f"Device {self.device}", self.source]
        if self.entry is not None:
            label = f" ({clip(self.sensor)})" if self.sensor else ""
            parts.append(f"{self.item} {self.entry}{label}")
        parts.append(f'"{self.field}" {self.message}' if self.field else self.message)
        return ": ".join(parts)


class EntryError(NamedTuple):
    """One field of one sensor description that is wrong (field None: the whole entry)."""

    field: str | None
    message: str


def json_kind(value: object) -> str:
    """What kind of JSON value this is, for error messages ("an object", "a string", ...)."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | OversizedNumber):
        return "a number"
    if isinstance(value, TooDeep):
        return f"a value nested deeper than {value.depth} levels"
    return "null" if value is None else type(value).__name__


# ---------------------------------------------------------------------------------------
# Keys


def sensor_key(name: str, uid: str = "") -> str:
    """The DNS-label-safe key of a sensor, from its name, else its uid; "" if neither has any."""
    for text in (name, uid):
        key = _KEY_JUNK.sub("-", text.lower()).strip("-")[:KEY_MAX_LENGTH].rstrip("-")
        if key:
            return key
    return ""


# ---------------------------------------------------------------------------------------
# One entry of the FLUIDOS edge format


class _Entry:
    """Reads one sensor object, collecting every field error instead of stopping at the first."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.entry = entry
        self.errors: list[EntryError] = []

    def fail(self, field_name: str | None, message: str) -> None:
        self.errors.append(EntryError(field_name, message))

    def missing(self, path: str, container: Mapping[str, Any], extra: str = "") -> None:
        leaf = path.rsplit(".", 1)[-1]
        near = [key for key in container if isinstance(key, str) and key.lower() == leaf.lower()]
        hint = f' (keys are case-sensitive; found "{near[0]}")' if near else ""
        self.fail(path, f"is required{extra}{hint}")

    def text(
        self,
        container: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        limit: int = TEXT_MAX_LENGTH,
    ) -> str:
        value = container.get(key)
        if value is None:
            if required:
                self.missing(path, container)
            return ""
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {show(value)}")
            return ""
        value = value.strip()
        if not self.fits(path, value, limit):
            return ""
        if required and not value:
            self.fail(path, "must not be empty")
        return value

    def fits(self, path: str, value: str, limit: int) -> bool:
        """Whether text can be echoed into Events and Flavors; the reason when not."""
        if len(value) > limit:
            self.fail(path, f"is {len(value)} characters long; at most {limit}")
            return False
        if has_control_characters(value):
            self.fail(path, f"must not contain control characters, got {show(value)}")
            return False
        return True

    def obj(self, container: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = container.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be an object, got {show(value)}")
            return {}
        return value

    def texts(self, container: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = container.get(key)
        if value is None:
            return ()
        if isinstance(value, str):  # an early FLUIDOS format had a single string here
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item.strip() for item in value
        ):
            self.fail(path, f"must be a list of non-empty strings, got {show(value)}")
            return ()
        if len(value) > QUANTITIES_PER_SENSOR_MAX:
            self.fail(path, f"has {len(value)} items; at most {QUANTITIES_PER_SENSOR_MAX}")
            return ()
        items = tuple(item.strip() for item in value)
        if not all(
            self.fits(f"{path}[{index}]", item, TERM_MAX_LENGTH) for index, item in enumerate(items)
        ):
            return ()
        return items

    def unit(
        self,
        container: Mapping[str, Any],
        key: str,
        path: str,
        units: Mapping[str, tuple[float, str]],
        default: str,
        hint: str,
    ) -> str:
        unit = self.text(container, key, path, limit=TERM_MAX_LENGTH) or default
        if unit not in units:
            self.fail(path, f"must be one of {hint}, got {show(unit)}")
            return default
        return unit

    def quantity(
        self, key: str, parse: Callable[[object, str], _T], default_unit: str
    ) -> _T | None:
        value = self.entry.get(key)
        if value is None or value == "":
            return None
        try:
            return parse(value, default_unit)
        except QuantityError as err:
            self.fail(key, str(err))
            return None


def parse_sensor_entry(entry: object) -> tuple[SensorSpec | None, list[EntryError]]:
    """One sensor object in the FLUIDOS edge format; None and the reasons when unusable."""
    if not isinstance(entry, Mapping):
        return None, [EntryError(None, f"must be a JSON object, got {json_kind(entry)}")]
    read = _Entry(entry)
    uid = read.text(entry, "uid", "uid")
    name = read.text(entry, "name", "name")
    if not uid and not name and not read.errors:
        if "uid" in entry or "name" in entry:
            read.fail("name", 'must not be empty (or give a "uid")')
        else:
            read.missing("name", entry, ' (or "uid")')
    model = read.text(entry, "model", "model", required=True)
    manufacturer = read.text(entry, "manufacturer", "manufacturer", required=True)
    market = read.text(entry, "market", "market")

    category = ""
    types: tuple[str, ...] = ()
    if "type" not in entry:
        read.missing("type", entry)
    elif isinstance(entry["type"], Mapping):
        kind = entry["type"]
        category = read.text(
            kind, "sensorCategory", "type.sensorCategory", required=True, limit=TERM_MAX_LENGTH
        )
        types = read.texts(kind, "sensorType", "type.sensorType")
        if "sensorType" not in kind:
            read.missing("type.sensorType", kind)
        elif kind["sensorType"] == []:
            read.fail("type.sensorType", "must name at least one measured quantity")
    else:
        read.fail(
            "type", f"must be an object {{sensorCategory, sensorType[]}}, got {show(entry['type'])}"
        )

    unit = read.obj(read.obj(entry, "properties", "properties"), "unit", "properties.unit")
    measurement = read.texts(unit, "measurement", "properties.unit.measurement")
    if measurement and types and len(measurement) != len(types):
        read.fail(
            "properties.unit.measurement",
            f"has {len(measurement)} unit(s) for {len(types)} sensor type(s) "
            f"({clip(', '.join(types))}); give one unit per type, in the same order",
        )
    rate_unit = read.unit(
        unit, "samplingRate", "properties.unit.samplingRate", RATE_UNITS, "Hz", RATE_HINT
    )
    latency_unit = read.unit(
        unit, "latency", "properties.unit.latency", TIME_UNITS, "ms", TIME_HINT
    )
    consumption_unit = read.unit(
        unit,
        "consumption",
        "properties.unit.consumption",
        CONSUMPTION_UNITS,
        POWER_UNIT,
        CONSUMPTION_HINT,
    )

    rate = read.quantity("samplingRate", parse_rate_hz, rate_unit)
    rates = _read_rates(read, rate_unit)
    rate_group = read.text(entry, "samplingRateGroup", "samplingRateGroup", limit=TERM_MAX_LENGTH)
    if rate_group and not sensor_key(rate_group, ""):
        read.fail("samplingRateGroup", "needs at least one ASCII letter or digit")
    latency = read.quantity("latency", parse_latency_ms, latency_unit)
    consumption = read.quantity("consumption", parse_consumption, consumption_unit)
    accuracy = _read_accuracy(read, types, measurement)

    access = read.obj(entry, "access", "access")
    resource = read.obj(access, "resource", "access.resource")
    spec_access = SensorAccess(
        type=read.text(access, "type", "access.type") or DEFAULT_ACCESS_TYPE,
        source=read.text(access, "source", "access.source"),
        resource=AccessResource(
            topic=read.text(resource, "topic", "access.resource.topic"),
            node=read.text(resource, "node", "access.resource.node"),
        ),
    )

    key = sensor_key(name, uid)
    if (name or uid) and not key:
        read.fail(
            "name" if name else "uid",
            "cannot name a topic or Flavor: it needs at least one ASCII letter or digit",
        )
    if read.errors:
        return None, read.errors
    _, canonical_consumption_unit = CONSUMPTION_UNITS[consumption_unit]
    return SensorSpec(
        key=key,
        uid=uid,
        name=name or uid,
        model=model,
        manufacturer=manufacturer,
        market=market,
        category=category,
        types=types,
        sampling_rate_hz=rate,
        sampling_rates_hz=rates,
        rate_group=sensor_key(rate_group, "") if rate_group else "",
        accuracy=accuracy,
        consumption=consumption[0] if consumption else None,
        latency_ms=latency,
        units=SensorUnits(
            measurement=measurement,
            consumption=consumption[1] if consumption else canonical_consumption_unit,
        ),
        access=spec_access,
    ), []


def _read_rates(read: _Entry, unit: str) -> tuple[float, ...]:
    """``samplingRates``: the rates a buyer may ask for, ascending, each once."""
    value = read.entry.get("samplingRates")
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        read.fail("samplingRates", f"must be a list of rates, got {show(value)}")
        return ()
    if len(value) > RATES_PER_SENSOR_MAX:
        read.fail("samplingRates", f"has {len(value)} rates; at most {RATES_PER_SENSOR_MAX}")
        return ()
    rates = set()
    for index, item in enumerate(value):
        try:
            rate = parse_rate_hz(item, unit)
        except QuantityError as err:
            read.fail(f"samplingRates[{index}]", str(err))
            continue
        if rate <= 0:
            read.fail(f"samplingRates[{index}]", f"must be above 0 Hz, got {show(item)}")
            continue
        rates.add(rate)
    return tuple(sorted(rates))


def _read_accuracy(
    read: _Entry, types: tuple[str, ...], measurement: tuple[str, ...]
) -> tuple[Accuracy, ...]:
    value = read.entry.get("accuracy")
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        value = [value]
    if len(value) > QUANTITIES_PER_SENSOR_MAX:
        read.fail("accuracy", f"has {len(value)} values; at most {QUANTITIES_PER_SENSOR_MAX}")
        return ()
    if types and len(value) != len(types):
        read.fail(
            "accuracy",
            f"has {len(value)} value(s) for {len(types)} sensor type(s) "
            f"({clip(', '.join(types))}); give one per type, in the same order",
        )
        return ()
    result = []
    for index, item in enumerate(value):
        unit = measurement[index] if index < len(measurement) else ""
        try:
            number, unit = parse_accuracy(item, unit)
        except QuantityError as err:
            read.fail(f"accuracy[{index}]", str(err))
            continue
        quantity = types[index] if index < len(types) else ""
        result.append(Accuracy(quantity=quantity, value=number, unit=unit))
    return tuple(result)


def sensor_entry(spec: SensorSpec, *, node: str = "", topic: str | None = None) -> dict[str, Any]:
    """A sensor in the FLUIDOS edge format, numbers as strings the way FLUIDOS writes them.

    ``node`` fills ``node`` and ``access.resource.node``; ``topic`` (when given) replaces the
    declared ``access.resource.topic``. Unknown numbers are left out (FLUIDOS: omitempty).
    """
    entry: dict[str, Any] = {
        "uid": spec.uid,
        "node": node,
        "name": spec.name,
        "model": spec.model,
        "manufacturer": spec.manufacturer,
        "market": spec.market,
        "type": {"sensorCategory": spec.category, "sensorType": list(spec.types)},
    }
    if spec.sampling_rate_hz is not None:
        entry["samplingRate"] = format_number(spec.sampling_rate_hz)
    if spec.sampling_rates_hz:
        entry["samplingRates"] = [format_number(rate) for rate in spec.sampling_rates_hz]
    if spec.rate_group:
        entry["samplingRateGroup"] = spec.rate_group
    if spec.accuracy:
        entry["accuracy"] = [
            format_number(item.value)
            if item.unit == spec.measurement_unit(item.quantity)
            else f"{format_number(item.value)} {item.unit}"
            for item in spec.accuracy
        ]
    if spec.consumption is not None:
        entry["consumption"] = format_number(spec.consumption)
    if spec.latency_ms is not None:
        entry["latency"] = format_number(spec.latency_ms)
    entry["properties"] = {
        "unit": {
            "measurement": list(spec.units.measurement),
            "consumption": spec.units.consumption,
            "samplingRate": spec.units.sampling_rate,
            "latency": spec.units.latency,
        }
    }
    entry["access"] = {
        "type": spec.access.type,
        "source": spec.access.source,
        "resource": {
            "topic": spec.access.resource.topic if topic is None else topic,
            "node": node or spec.access.resource.node,
        },
    }
    return entry


# ---------------------------------------------------------------------------------------
# The whole annotation


def encode_sensors_annotation(specs: list[SensorSpec]) -> str:
    """The ``sensors`` annotation value (base64 of the JSON array) describing ``specs``."""
    payload = json.dumps([sensor_entry(spec) for spec in specs], ensure_ascii=False)
    return base64.b64encode(payload.encode("utf-8")).decode("ascii")


def parse_sensors_annotation(
    raw: str, *, device: str
) -> tuple[list[SensorSpec], list[SensorProblem]]:
    """The sensors a Device's ``sensors`` annotation describes, and what was wrong with it.

    Bad entries are skipped (each reason a problem); an undecodable annotation gives one
    problem and no sensors. A plain JSON array (not base64) is accepted too.
    """

    def whole(message: str) -> tuple[list[SensorSpec], list[SensorProblem]]:
        return [], [SensorProblem(device, message)]

    if isinstance(raw, str) and (size := byte_size(raw)) > ANNOTATION_MAX_BYTES:
        return whole(
            f"is {size} bytes long; at most {ANNOTATION_MAX_BYTES} (256 KiB, what Kubernetes "
            "allows for all annotations of an object together)"
        )
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return whole("is empty; expected base64 of a JSON array of sensors")
    if text.startswith("["):  # '[' is not base64: somebody wrote the JSON directly
        payload = text
    else:
        try:
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            return whole("is not valid base64 (expected base64 of a JSON array of sensors)")
        try:
            payload = data.decode("utf-8")
        except UnicodeDecodeError:
            return whole("does not decode from base64 to UTF-8 text")
    try:
        entries = load_json(payload)
    except JSONInputError as err:
        return whole(str(err))
    if not isinstance(entries, list):
        return whole(f"must be a JSON array of sensors, got {json_kind(entries)}")
    if len(entries) > SENSORS_PER_DEVICE_MAX:
        return whole(
            f"describes {len(entries)} sensors; a Device may have at most {SENSORS_PER_DEVICE_MAX}"
        )

    parsed: list[tuple[int, SensorSpec]] = []
    problems: list[SensorProblem] = []
    for index, entry in enumerate(entries):
        spec, errors = parse_sensor_entry(entry)
        label = _entry_label(entry)
        problems.extend(
            SensorProblem(device, e.message, field=e.field, entry=index, sensor=label)
            for e in errors
        )
        if spec is not None:
            parsed.append((index, spec))
    specs, duplicates = unique_keys(parsed, device=device)
    return specs, problems + duplicates


def _entry_label(entry: object) -> str | None:
    if isinstance(entry, Mapping):
        for key in ("name", "uid"):
            value = entry.get(key)
            if isinstance(value, str) and value.strip():
                return clip(value.strip())
    return None


def unique_keys(
    parsed: list[tuple[int, SensorSpec]],
    *,
    device: str,
    source: str = ANNOTATION_SOURCE,
    item: str = "entry",
) -> tuple[list[SensorSpec], list[SensorProblem]]:
    """Keep the first sensor of each key; a later one with the same key is a problem."""
    seen: dict[str, int] = {}
    specs: list[SensorSpec] = []
    problems: list[SensorProblem] = []
    for index, spec in parsed:
        if spec.key in seen:
            field_name = "name" if sensor_key(spec.name) == spec.key else "uid"
            problems.append(
                SensorProblem(
                    device=device,
                    message=f'gives sensor key "{spec.key}", already used by {item} '
                    f"{seen[spec.key]}; each sensor of a device needs a distinct name",
                    field=field_name,
                    entry=index,
                    sensor=spec.name or None,
                    source=source,
                    item=item,
                )
            )
            continue
        seen[spec.key] = index
        specs.append(spec)
    return specs, problems

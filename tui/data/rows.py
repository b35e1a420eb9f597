"""What the tables show, built from API objects: pure functions, no I/O and no Textual.

Every row knows its cells (text plus a sort value and a tone the widgets map to CSS
component classes), the facts the detail pane lists and the objects it came from.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fluidos_sensors.delivery import FAILING_STATES
from fluidos_sensors.filters import FilterError, describe, from_request_filter
from fluidos_sensors.flavor import FlavorError, SensorFlavor, sensor_from_flavor
from fluidos_sensors.sensor import format_number
from fluidos_sensors.twins import BATTERY, EXTENSIONS_KEY, OFFLINE, ONLINE

ObjectKey = tuple[str, str, str]
"""(cluster, namespace, name) of one object."""

# Tones: what a value means to an operator; the stylesheet gives each its colour.
GOOD, BAD, WARN, DIM = "good", "bad", "warn", "dim"

# Route target states an edge agent may report for a target that does not deliver. Whatever
# the state says, a last error newer than the last success also marks the target as failing.
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16


def row_key(key: ObjectKey, part: str | None = None) -> str:
    """The DataTable row key of an object (and of one part of it, e.g. a route target)."""
    text = "/".join(key)
    return text if part is None else f"{text}#{part}"


def object_key(cluster: str, obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (cluster, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


@dataclass(frozen=True)
class Cell:
    """One table cell: what it says, how it sorts (unknowns last) and its tone."""

    text: str
    sort: tuple[Any, ...]
    tone: str = ""


def cell(text: object, sort: Any = None, tone: str = "") -> Cell:
    """A cell sorting by `sort` (its text when None); empty cells sort last."""
    shown = "" if text is None else str(text)
    if sort is None:
        sort = shown.casefold()
    return Cell(shown or "-", (0, sort) if shown else (1, ""), tone)


def number_cell(value: float | None, unit: str = "", tone: str = "") -> Cell:
    if value is None:
        return cell(None)
    text = format_number(round(value, 3)) + (f" {unit}" if unit else "")
    return cell(text, float(value), tone)


def count_cell(value: object, tone: str = "") -> Cell:
    number = as_number(value)
    if number is None:
        return cell(None)
    return cell(format_number(number), number, tone if number else "")


def as_number(value: object) -> float | None:
    """A finite number from a JSON value, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 time (as the API server writes it), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def short_time(value: object) -> str:
    """ "2025-03-01T12:00:03Z" -> "03-01 12:00:03" (UTC); unparsable text is kept."""
    parsed = parse_time(value)
    if parsed is None:
        return str(value) if value else ""
    return parsed.astimezone(dt.UTC).strftime("%m-%d %H:%M:%S")


def time_cell(value: object) -> Cell:
    parsed = parse_time(value)
    return cell(short_time(value), parsed.timestamp() if parsed else None)


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters scaled to their maximum ("" when none)."""
    recent = [max(0.0, v) for v in values[-width:]]
    if not recent:
        return ""
    top = max(recent)
    if top <= 0:
        return SPARK_BLOCKS[0] * len(recent)
    last = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[min(last, round(v / top * last))] for v in recent)


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def _ref(key: ObjectKey) -> str:
    return f"{key[1]}/{key[2]}" if key[1] else key[2]


def _join(values: Iterable[str]) -> str:
    return ", ".join(v for v in values if v)


# ---------------------------------------------------------------------------------------
# Flavors

FLAVOR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("node", "Node"),
    ("type", "Type"),
    ("unit", "Unit"),
    ("manufacturer", "Manufacturer"),
    ("model", "Model"),
    ("latency", "Latency"),
    ("accuracy", "Accuracy"),
    ("observed_latency", "Obs. latency"),
    ("observed_rate", "Obs. rate"),
    ("available", "Avail."),
    ("consumers", "Consumers"),
    ("name", "Flavor"),
)


def parse_flavor(obj: Mapping[str, Any]) -> SensorFlavor | str:
    """The Sensor flavor of a Flavor object, or why it is not one (the error message)."""
    try:
        return sensor_from_flavor(obj)
    except (FlavorError, ValueError) as exc:
        return str(exc)


@dataclass(frozen=True)
class FlavorRow:
    """One Flavor; `flavor` is None when the object is not a usable Sensor flavor."""

    key: ObjectKey
    obj: Mapping[str, Any]
    flavor: SensorFlavor | None
    error: str | None = None
    consumers: int = 0

    @property
    def flavor_ref(self) -> str:
        return _ref(self.key)

    def cells(self) -> dict[str, Cell]:
        flavor = self.flavor
        if flavor is None:
            return {
                "cluster": cell(self.key[0]),
                "type": cell("(invalid)", tone=BAD),
                "consumers": count_cell(self.consumers),
                "name": cell(self.key[2]),
            }
        sensor = flavor.sensor
        accuracy = _join(f"±{format_number(a.value)} {a.unit}".strip() for a in sensor.accuracy)
        first_accuracy = sensor.accuracy[0].value if sensor.accuracy else None
        return {
            "cluster": cell(self.key[0]),
            "node": cell(flavor.node),
            "type": cell(_join(sensor.types)),
            "unit": cell(_join(sensor.units.measurement)),
            "manufacturer": cell(sensor.manufacturer),
            "model": cell(sensor.model),
            "latency": number_cell(sensor.latency_ms, "ms"),
            "accuracy": cell(accuracy, first_accuracy),
            "observed_latency": number_cell(flavor.observed_latency_ms, "ms"),
            "observed_rate": number_cell(flavor.observed_rate_hz, "Hz"),
            "available": cell(
                "yes" if flavor.availability else "no",
                tone=GOOD if flavor.availability else BAD,
            ),
            "consumers": count_cell(self.consumers, GOOD),
            "name": cell(self.key[2]),
        }

    def facts(self) -> list[tuple[str, str]]:
        facts = [("Flavor", self.flavor_ref), ("Cluster", self.key[0])]
        if self.flavor is None:
            return [*facts, ("Problem", self.error or "not a Sensor flavor")]
        flavor, sensor = self.flavor, self.flavor.sensor
        units = sensor.units

        def num(value: float | None, unit: str) -> str:
            return "-" if value is None else f"{format_number(value)} {unit}"

        facts += [
            ("Provider", flavor.provider_id),
            ("Node", flavor.node),
            ("Device", flavor.device or "-"),
            ("Sensor", f"{sensor.name} (key {sensor.key})"),
            ("Category", sensor.category),
            ("Measures", _join(f"{t} [{sensor.measurement_unit(t) or '?'}]" for t in sensor.types)),
            ("Manufacturer / model", f"{sensor.manufacturer} / {sensor.model}"),
            ("Market", sensor.market or "-"),
            ("Sampling rate", num(sensor.sampling_rate_hz, "Hz")),
            ("Latency (declared)", num(sensor.latency_ms, "ms")),
            (
                "Accuracy",
                _join(f"{a.quantity} ±{format_number(a.value)} {a.unit}" for a in sensor.accuracy)
                or "-",
            ),
            ("Consumption", num(sensor.consumption, units.consumption)),
            ("Observed latency", num(flavor.observed_latency_ms, "ms")),
            ("Observed rate", num(flavor.observed_rate_hz, "Hz")),
            ("Observed at", (flavor.observed.updated if flavor.observed else None) or "-"),
            ("Available", "yes" if flavor.availability else "no"),
            ("Topic", f"{sensor.access.resource.topic} on {sensor.access.resource.node}"),
            ("Consumers", str(self.consumers)),
        ]
        if flavor.price:
            price = flavor.price
            facts.append(("Price", f"{price.amount} {price.currency} {price.period}"))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("Flavor", self.obj)]


def flavor_row(
    key: ObjectKey, obj: Mapping[str, Any], parsed: SensorFlavor | str, consumers: int
) -> FlavorRow:
    if isinstance(parsed, str):
        return FlavorRow(key, obj, None, parsed, consumers)
    return FlavorRow(key, obj, parsed, None, consumers)


# ---------------------------------------------------------------------------------------
# Devices (KubeEdge Device + the DeviceStatus the mapper writes)

DEVICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("node", "Node"),
    ("device", "Device"),
    ("state", "State"),
    ("last_seen", "Last seen"),
    ("board", "Board"),
    ("battery", "Battery"),
    ("rssi", "RSSI"),
    ("values", "Latest values"),
)
LOW_BATTERY_PERCENT = 20.0


@dataclass(frozen=True)
class TwinValue:
    """The latest reported value of one device property."""

    name: str
    value: str
    unit: str
    time: str

    @property
    def fields(self) -> dict[str, Any] | None:
        """Several fields (compact JSON) as a dict; None for a single number."""
        if not self.value.startswith("{"):
            return None
        try:
            parsed = json.loads(self.value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def text(self) -> str:
        fields = self.fields
        if fields is None:
            return f"{self.value} {self.unit}".strip()
        shown = " ".join(f"{k}={_short(v)}" for k, v in fields.items() if v is not None)
        return f"{shown} {self.unit}".strip()


def _short(value: object) -> str:
    number = as_number(value)
    return format_number(round(number, 2)) if number is not None else str(value)


def twin_values(status: Mapping[str, Any] | None) -> list[TwinValue]:
    """The reported twins of a DeviceStatus (`status.twins[]`), by property name."""
    twins = ((status or {}).get("status") or {}).get("twins") or []
    values = []
    for twin in twins:
        if not isinstance(twin, Mapping) or not twin.get("propertyName"):
            continue
        reported = twin.get("reported") or {}
        metadata = reported.get("metadata") or {}
        stamp = as_number(metadata.get("timestamp"))
        when = (
            dt.datetime.fromtimestamp(stamp / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if stamp is not None
            else ""
        )
        values.append(
            TwinValue(
                name=str(twin["propertyName"]),
                value=str(reported.get("value", "")),
                unit=str(metadata.get("unit") or ""),
                time=when,
            )
        )
    return sorted(values, key=lambda v: v.name)


@dataclass(frozen=True)
class DeviceRow:
    """One device: its Device object and the DeviceStatus named like it (either may lack)."""

    key: ObjectKey
    device: Mapping[str, Any] | None
    status: Mapping[str, Any] | None

    @property
    def state(self) -> str:
        return str(((self.status or {}).get("status") or {}).get("state") or "unknown")

    @property
    def extensions(self) -> Mapping[str, Any]:
        status = (self.status or {}).get("status") or {}
        return (status.get("extensions") or {}).get(EXTENSIONS_KEY) or {}

    @property
    def node(self) -> str:
        spec = (self.device or {}).get("spec") or {}
        return str(spec.get("nodeName") or self.extensions.get("node") or "")

    @property
    def battery_percent(self) -> float | None:
        """The battery level the board reports (its battery twin), else the mapper's extension."""
        for twin in twin_values(self.status):
            if twin.name == BATTERY:
                fields = twin.fields
                return as_number(fields.get("level") if fields else twin.value)
        return as_number(self.extensions.get("battery"))

    def cells(self) -> dict[str, Cell]:
        state = self.state
        tone = GOOD if state == ONLINE else BAD if state == OFFLINE else DIM
        battery = self.battery_percent
        values = [t for t in twin_values(self.status) if t.name != BATTERY]
        board = self.extensions.get("board") or self.extensions.get("localName") or ""
        return {
            "cluster": cell(self.key[0]),
            "node": cell(self.node),
            "device": cell(_ref(self.key)),
            "state": cell(state, tone=tone),
            "last_seen": time_cell(((self.status or {}).get("status") or {}).get("lastOnlineTime")),
            "board": cell(board),
            "battery": number_cell(
                battery,
                "%",
                tone=BAD if battery is not None and battery < LOW_BATTERY_PERCENT else "",
            ),
            "rssi": number_cell(as_number(self.extensions.get("rssi")), "dBm"),
            "values": cell("; ".join(f"{t.name} {t.text()}" for t in values)),
        }

    def facts(self) -> list[tuple[str, str]]:
        status = (self.status or {}).get("status") or {}
        ext = self.extensions
        facts = [
            ("Device", _ref(self.key)),
            ("Cluster", self.key[0]),
            ("Node", self.node or "-"),
            ("State", self.state),
            ("Last online", str(status.get("lastOnlineTime") or "-")),
        ]
        protocol = ((self.device or {}).get("spec") or {}).get("protocol") or {}
        if protocol.get("protocolName"):
            facts.append(("Protocol", str(protocol["protocolName"])))
        for label, name in (
            ("Board", "board"),
            ("MAC", "mac"),
            ("STM32 UID", "stm32Uid"),
            ("RSSI", "rssi"),
            ("Connects", "connects"),
            ("Last offline reason", "reason"),
        ):
            if ext.get(name) not in (None, ""):
                facts.append((label, str(ext[name])))
        battery = self.battery_percent
        if battery is not None:
            facts.append(("Battery", f"{format_number(round(battery, 1))} %"))
        for twin in twin_values(self.status):
            facts.append((f"  {twin.name}", f"{twin.text()}  @ {twin.time or '?'}"))
        if self.device is None:
            facts.append(("Note", "DeviceStatus without a Device"))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        found: list[tuple[str, Mapping[str, Any]]] = []
        if self.device is not None:
            found.append(("Device", self.device))
        if self.status is not None:
            found.append(("DeviceStatus", self.status))
        return found


# ---------------------------------------------------------------------------------------
# Routes (one row per target)

ROUTE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("node", "Node"),
    ("topic", "Topic"),
    ("target", "Target"),
    ("state", "State"),
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("queued", "Queued"),
    ("dropped", "Dropped"),
    ("rate", "Rate"),
    ("spark", "Rate history"),
    ("last_error", "Last error"),
    ("url", "URL"),
)


def target_failing(status: Mapping[str, Any] | None) -> bool:
    """Whether a target's status says it does not deliver now."""
    if not status:
        return False
    if str(status.get("state") or "") in FAILING_STATES:
        return True
    error_time = parse_time(status.get("lastErrorTime"))
    if error_time is None:
        return False
    success = parse_time(status.get("lastSuccess"))
    return success is None or error_time > success


def route_target_statuses(route: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    targets = ((route.get("status") or {}).get("targets")) or []
    return {str(t["id"]): t for t in targets if isinstance(t, Mapping) and t.get("id")}


@dataclass(frozen=True)
class RouteTargetRow:
    """One target of a SensorRoute (target None: a route without targets)."""

    key: ObjectKey
    route: Mapping[str, Any]
    target: Mapping[str, Any] | None
    status: Mapping[str, Any] | None
    history: tuple[float, ...] = ()

    @property
    def target_id(self) -> str | None:
        return str(self.target["id"]) if self.target else None

    @property
    def failing(self) -> bool:
        return target_failing(self.status)

    def cells(self) -> dict[str, Cell]:
        spec = self.route.get("spec") or {}
        status = self.status or {}
        failing = self.failing
        state = str(status.get("state") or ("" if self.target is None else "pending"))
        bad = BAD if failing else ""
        return {
            "cluster": cell(self.key[0]),
            "node": cell(spec.get("node")),
            "topic": cell(spec.get("topic")),
            "target": cell(self.target_id or "(no targets)", tone="" if self.target else DIM),
            "state": cell(state, tone=BAD if failing else GOOD if status else DIM),
            "delivered": count_cell(status.get("delivered")),
            "failed": count_cell(status.get("failed"), BAD),
            "queued": count_cell(status.get("queued"), WARN),
            "dropped": count_cell(status.get("dropped"), BAD),
            "rate": number_cell(as_number(status.get("rateHz")), "Hz"),
            "spark": cell(sparkline(self.history), self.history[-1] if self.history else None),
            "last_error": cell(status.get("lastError"), tone=bad),
            "url": cell((self.target or {}).get("url")),
        }

    def facts(self) -> list[tuple[str, str]]:
        spec = self.route.get("spec") or {}
        route_status = self.route.get("status") or {}
        facts = [
            ("Route", _ref(self.key)),
            ("Cluster", self.key[0]),
            ("Node", str(spec.get("node") or "-")),
            ("Topic", str(spec.get("topic") or "-")),
            ("Flavor", str(spec.get("flavor") or "-")),
            ("Agent", str(route_status.get("agent") or "-")),
            ("Subscribed", str(route_status.get("subscribed", "-"))),
            ("Targets", str(len(spec.get("targets") or []))),
        ]
        if self.target is None:
            return facts
        target, status = self.target, self.status or {}
        origin = target.get("origin") or {}
        facts += [
            ("Target", str(target.get("id"))),
            ("URL", str(target.get("url") or "-")),
            ("Format", str(target.get("format") or "influx")),
            (
                "Origin",
                f"{origin.get('kind', '?')} {origin.get('namespace', '')}/{origin.get('name', '')}"
                if origin
                else "-",
            ),
            ("Auth", str((target.get("auth") or {}).get("type") or "none")),
            ("State", str(status.get("state") or "-") + ("  (FAILING)" if self.failing else "")),
        ]
        for label, name in (
            ("Delivered", "delivered"),
            ("Failed", "failed"),
            ("Rejected", "rejected"),
            ("Dropped", "dropped"),
            ("Queued", "queued"),
            ("Queued bytes", "queuedBytes"),
            ("Rate (Hz)", "rateHz"),
            ("Latency p50 (ms)", "latencyP50Ms"),
            ("Latency p99 (ms)", "latencyP99Ms"),
            ("Last success", "lastSuccess"),
            ("Last error", "lastError"),
            ("Last error at", "lastErrorTime"),
        ):
            if status.get(name) not in (None, ""):
                facts.append((label, str(status[name])))
        if self.history:
            facts.append(("Rate history", sparkline(self.history, 32)))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("SensorRoute", self.route)]


def route_rows(
    key: ObjectKey, route: Mapping[str, Any], histories: Mapping[str, Sequence[float]]
) -> list[RouteTargetRow]:
    """One row per target of a route, with its status and rate history."""
    statuses = route_target_statuses(route)
    targets = [
        t
        for t in ((route.get("spec") or {}).get("targets") or [])
        if isinstance(t, Mapping) and t.get("id")
    ]
    if not targets:
        return [RouteTargetRow(key, route, None, None)]
    return [
        RouteTargetRow(
            key,
            route,
            target,
            statuses.get(str(target["id"])),
            tuple(histories.get(str(target["id"]), ())),
        )
        for target in targets
    ]


# ---------------------------------------------------------------------------------------
# Requests and providers (consumer side)

REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("request", "Request"),
    ("phase", "Phase"),
    ("matched", "Matched"),
    ("contracts", "Contracts"),
    ("first_data", "First data"),
    ("count", "Count"),
    ("filter", "Filter"),
    ("endpoint", "Endpoint"),
)
PROVIDER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cluster", "Cluster"),
    ("provider", "Provider"),
    ("url", "URL"),
    ("reachable", "Reachable"),
    ("flavors", "Flavors"),
    ("last_contact", "Last contact"),
    ("message", "Message"),
)
GOOD_PHASES = frozenset({"ready", "active", "delivering", "fulfilled", "bound"})
BAD_PHASES = frozenset({"failed", "error", "rejected"})


def phase_tone(phase: str) -> str:
    folded = phase.casefold()
    if folded in GOOD_PHASES:
        return GOOD
    if folded in BAD_PHASES:
        return BAD
    return WARN if folded else DIM


@dataclass(frozen=True)
class RequestRow:
    key: ObjectKey
    obj: Mapping[str, Any]

    @property
    def filter_text(self) -> str:
        try:
            return describe(
                from_request_filter((self.obj.get("spec") or {}).get("filter"), "SensorRequest")
            )
        except FilterError as exc:
            return f"invalid: {exc}"

    def cells(self) -> dict[str, Cell]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        phase = str(status.get("phase") or "")
        return {
            "cluster": cell(self.key[0]),
            "request": cell(_ref(self.key)),
            "phase": cell(phase or "(new)", tone=phase_tone(phase)),
            "matched": count_cell(status.get("matched")),
            "contracts": count_cell(status.get("contractCount"), GOOD),
            "first_data": time_cell(status.get("firstData")),
            "count": count_cell(spec.get("count", 1)),
            "filter": cell(self.filter_text),
            "endpoint": cell((spec.get("endpoint") or {}).get("url")),
        }

    def facts(self) -> list[tuple[str, str]]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        endpoint = spec.get("endpoint") or {}
        facts = [
            ("Request", _ref(self.key)),
            ("Cluster", self.key[0]),
            ("Filter", self.filter_text),
            ("Count", str(spec.get("count", 1))),
            ("Providers", _join(spec.get("providers") or []) or "all known"),
            ("Endpoint", f"{endpoint.get('url', '-')} ({endpoint.get('format', 'influx')})"),
            ("Phase", str(status.get("phase") or "(not handled yet)")),
            ("Message", str(status.get("message") or "-")),
            ("Matched", str(status.get("matched", "-"))),
            ("Contracts", str(status.get("contractCount", "-"))),
            ("First data", str(status.get("firstData") or "-")),
        ]
        for index, candidate in enumerate(status.get("candidates") or []):
            facts.append((f"Candidate {index + 1}", _summary(candidate)))
        for index, contract in enumerate(status.get("contracts") or []):
            facts.append((f"Contract {index + 1}", _summary(contract)))
        return facts

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("SensorRequest", self.obj)]


def _summary(item: object) -> str:
    """A free-form status entry (candidates, contracts) as "key=value" pairs."""
    if not isinstance(item, Mapping):
        return str(item)
    return ", ".join(
        f"{k}={v}" for k, v in item.items() if not isinstance(v, Mapping | list) and v != ""
    )


@dataclass(frozen=True)
class ProviderRow:
    key: ObjectKey
    obj: Mapping[str, Any]

    def cells(self) -> dict[str, Cell]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        reachable = status.get("reachable")
        return {
            "cluster": cell(self.key[0]),
            "provider": cell(_ref(self.key)),
            "url": cell(spec.get("url")),
            "reachable": cell(
                "" if reachable is None else "yes" if reachable else "no",
                tone=GOOD if reachable else BAD,
            ),
            "flavors": count_cell(status.get("flavors")),
            "last_contact": time_cell(status.get("lastContact")),
            "message": cell(status.get("message")),
        }

    def facts(self) -> list[tuple[str, str]]:
        spec = self.obj.get("spec") or {}
        status = self.obj.get("status") or {}
        return [
            ("Provider", _ref(self.key)),
            ("Cluster", self.key[0]),
            ("URL", str(spec.get("url") or "-")),
            ("Token secret", str((spec.get("tokenSecret") or {}).get("name") or "-")),
            ("Reachable", str(status.get("reachable", "-"))),
            ("Flavors", str(status.get("flavors", "-"))),
            ("Last contact", str(status.get("lastContact") or "-")),
            ("Message", str(status.get("message") or "-")),
        ]

    def objects(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [("SensorProvider", self.obj)]


# ---------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class EventRow:
    """One Event (core/v1 or events.k8s.io/v1) as the log shows it."""

    cluster: str
    uid: str
    time: str
    type: str
    reason: str
    kind: str
    namespace: str
    name: str
    message: str
    count: int = 1
    sort_time: float = field(default=0.0, compare=False)

    @property
    def involved(self) -> str:
        ref = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {ref}"


def event_row(cluster: str, obj: Mapping[str, Any]) -> EventRow:
    meta = _meta(obj)
    # core/v1 and events.k8s.io/v1 name the same facts differently.
    series = obj.get("series") or {}
    when = (
        obj.get("lastTimestamp")
        or obj.get("deprecatedLastTimestamp")
        or series.get("lastObservedTime")
        or obj.get("eventTime")
        or obj.get("firstTimestamp")
        or obj.get("deprecatedFirstTimestamp")
        or meta.get("creationTimestamp")
    )
    parsed = parse_time(when)
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    count = as_number(obj.get("count") or obj.get("deprecatedCount") or series.get("count"))
    return EventRow(
        cluster=cluster,
        uid=str(meta.get("uid") or meta.get("name") or ""),
        time=short_time(when),
        type=str(obj.get("type") or "Normal"),
        reason=str(obj.get("reason") or ""),
        kind=str(involved.get("kind") or ""),
        namespace=str(involved.get("namespace") or ""),
        name=str(involved.get("name") or ""),
        message=str(obj.get("message") or obj.get("note") or "").strip(),
        count=int(count) if count else 1,
        sort_time=parsed.timestamp() if parsed else 0.0,
    )


AnyRow = FlavorRow | DeviceRow | RouteTargetRow | RequestRow | ProviderRow

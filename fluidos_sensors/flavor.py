"""A sensor as a FLUIDOS ``Flavor`` (``nodecore.fluidos.eu/v1alpha1``), and back.

The body follows the unmodified FLUIDOS CRD: ``spec.flavorType`` is
``{typeIdentifier: "Sensor", typeData: {characteristics: {...}}}`` with the FLUIDOS edge
characteristics (numbers as strings, units in ``properties.unit``), so FLUIDOS's own Go
types (``SensorFlavor``) read what we write. ``typeData.observed`` (ours, optional) carries
the latency and rate measured on the data path; FLUIDOS ignores it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fluidos_sensors.api import (
    FLAVOR,
    FLAVOR_TYPE_SENSOR,
    FLUIDOS_NAMESPACE,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
)
from fluidos_sensors.limits import (
    TERM_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    as_float,
    clip,
    has_control_characters,
)
from fluidos_sensors.sensor import (
    KEY_MAX_LENGTH,
    DeviceRef,
    SensorSpec,
    json_kind,
    parse_sensor_entry,
    sensor_entry,
)
from fluidos_sensors.topics import broker_topic, source_topic
from fluidos_sensors.units import QuantityError, format_number, parse_plain_number, show

# Our label and annotation keys on Flavors (one definition; import them).
SENSORS_PREFIX = "sensors.fluidos.eu"
DEVICE_NAMESPACE_LABEL = f"{SENSORS_PREFIX}/device-namespace"
DEVICE_NAME_LABEL = f"{SENSORS_PREFIX}/device-name"
SENSOR_KEY_LABEL = f"{SENSORS_PREFIX}/sensor"
NODE_LABEL = f"{SENSORS_PREFIX}/node"
CATEGORY_LABEL = f"{SENSORS_PREFIX}/category"
TYPE_LABEL_PREFIX = f"{SENSORS_PREFIX}/type-"  # + slug of each sensor type, value "true"
DEVICE_ANNOTATION = f"{SENSORS_PREFIX}/device"  # "namespace/name": labels cap values at 63
SENSOR_KEY_ANNOTATION = f"{SENSORS_PREFIX}/sensor"

DEFAULT_FLAVOR_NAMESPACE = FLUIDOS_NAMESPACE  # where the FLUIDOS node keeps its Flavors
NAME_MAX_LENGTH = 63
_HASH_LENGTH = 8
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


class FlavorError(ValueError):
    """A Flavor is not a usable Sensor flavor; the message names the Flavor and the field."""


@dataclass(frozen=True, kw_only=True)
class Price:
    """FLUIDOS price model; every field is a string in the CRD."""

    amount: str
    currency: str
    period: str


@dataclass(frozen=True, kw_only=True)
class Location:
    """Where the provider's sensors are; FLUIDOS keeps latitude/longitude as strings."""

    city: str | None = None
    country: str | None = None
    latitude: str | None = None
    longitude: str | None = None
    additional_notes: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    """Who offers the Flavors and on what terms (FLUIDOS ``owner``, ``price``, ``location``)."""

    node_id: str
    domain: str
    ip: str
    price: Price
    provider_id: str = ""  # empty: the owner's node id, as FLUIDOS does
    location: Location | None = None
    namespace: str = DEFAULT_FLAVOR_NAMESPACE

    def __post_init__(self) -> None:
        for name in ("node_id", "domain", "ip", "namespace"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"provider configuration: {name} must not be empty")
        for name in ("amount", "currency", "period"):
            value = getattr(self.price, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"provider configuration: price.{name} must be a non-empty string")

    @property
    def provider(self) -> str:
        return self.provider_id or self.node_id


@dataclass(frozen=True, kw_only=True)
class ObservedPerformance:
    """Latency and rate measured on the data path (not declared by the device)."""

    latency_ms: float | None = None
    rate_hz: float | None = None
    updated: str | None = None  # RFC 3339 time of the measurement


@dataclass(frozen=True, kw_only=True)
class SensorFlavor:
    """What a buyer sees of one Sensor Flavor: where it is, whether it is offered, the sensor."""

    name: str
    provider_id: str
    node: str
    availability: bool
    sensor: SensorSpec
    namespace: str | None = None
    device: str | None = None  # "namespace/name"; only known on the provider's own Flavors
    price: Price | None = None
    observed: ObservedPerformance | None = None

    @property
    def observed_latency_ms(self) -> float | None:
        return self.observed.latency_ms if self.observed else None

    @property
    def observed_rate_hz(self) -> float | None:
        return self.observed.rate_hz if self.observed else None

    @property
    def reference(self) -> str:
        """ "namespace/name" of the Flavor object (what Routes and Contracts point at)."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def broker_topic(self) -> str | None:
        """The edge broker topic the sensor's readings are published on; known only on the
        provider's own Flavors (they name the Device)."""
        if not self.device or "/" not in self.device:
            return None
        namespace, name = self.device.split("/", 1)
        try:
            return broker_topic(namespace, name, self.sensor.key)
        except ValueError:
            return None


# ---------------------------------------------------------------------------------------
# Building


def stable_name(readable: str, identity: str) -> str:
    """A DNS-1123 label ``<readable>-<hash of identity>`` of at most 63 characters.

    The hash keeps names unique when the readable part is truncated or when different
    identities read alike ("a-b"+"c" vs "a"+"b-c").
    """
    digest = hashlib.sha256(identity.encode()).hexdigest()[:_HASH_LENGTH]
    readable = re.sub("-+", "-", _NOT_DNS.sub("-", readable.lower()))
    readable = readable[: NAME_MAX_LENGTH - _HASH_LENGTH - 1].strip("-")
    return f"{readable}-{digest}" if readable else digest


def flavor_name(device: DeviceRef, sensor_key: str) -> str:
    """Stable ``sensor-<device>-<sensor>-<hash>``; the hash covers namespace, device and key,
    so devices of the same name in different namespaces never collide."""
    return stable_name(
        f"sensor-{device.name}-{sensor_key}", f"{device.namespace}/{device.name}/{sensor_key}"
    )


def label_safe(value: str) -> bool:
    """Whether a string can be a Kubernetes label value."""
    return len(value) <= NAME_MAX_LENGTH and bool(_LABEL_VALUE.match(value))


def _slug(text: str) -> str:
    return re.sub("-+", "-", _NOT_DNS.sub("-", text.lower())).strip("-")[:40].rstrip("-")


def flavor_labels(device: DeviceRef, node: str, sensor: SensorSpec) -> dict[str, str]:
    """Labels to select Flavors by; a value that cannot be a label value is left out."""
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        DEVICE_NAMESPACE_LABEL: device.namespace,
        DEVICE_NAME_LABEL: device.name,
        SENSOR_KEY_LABEL: sensor.key,
        NODE_LABEL: node,
        CATEGORY_LABEL: _slug(sensor.category),
    }
    for kind in sensor.types:
        if slug := _slug(kind):
            labels[f"{TYPE_LABEL_PREFIX}{slug}"] = "true"
    return {key: value for key, value in labels.items() if label_safe(value)}


def _location(location: Location) -> dict[str, str]:
    fields = {
        "city": location.city,
        "country": location.country,
        "latitude": location.latitude,
        "longitude": location.longitude,
        "additionalNotes": location.additional_notes,
    }
    return {key: str(value) for key, value in fields.items() if value is not None}


def observed_body(observed: ObservedPerformance) -> dict[str, Any]:
    """``typeData.observed`` of a Flavor (keys only for what is known)."""
    body: dict[str, Any] = {}
    if observed.latency_ms is not None:
        body["latencyMs"] = observed.latency_ms
    if observed.rate_hz is not None:
        body["samplingRateHz"] = observed.rate_hz
    if observed.updated:
        body["updated"] = observed.updated
    return body


def build_flavor(
    device: DeviceRef,
    node: str,
    sensor: SensorSpec,
    provider: ProviderConfig,
    *,
    available: bool,
    node_uid: str | None = None,
    observed: ObservedPerformance | None = None,
) -> dict[str, Any]:
    """The Flavor body advertising one sensor of ``device`` read on edge node ``node``.

    ``access.resource`` is always our topic scheme and the edge node, whatever the device
    annotation declared. With ``node_uid`` the Node owns the Flavor (as in FLUIDOS).
    """
    metadata: dict[str, Any] = {
        "name": flavor_name(device, sensor.key),
        "namespace": provider.namespace,
        "labels": flavor_labels(device, node, sensor),
        "annotations": {DEVICE_ANNOTATION: str(device), SENSOR_KEY_ANNOTATION: sensor.key},
    }
    if node_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
        ]
    type_data: dict[str, Any] = {
        "characteristics": sensor_entry(
            sensor, node=node, topic=source_topic(device.name, sensor.key)
        )
    }
    if observed is not None and (body := observed_body(observed)):
        type_data["observed"] = body
    spec: dict[str, Any] = {
        "availability": available,
        "flavorType": {"typeIdentifier": FLAVOR_TYPE_SENSOR, "typeData": type_data},
        "owner": {"domain": provider.domain, "ip": provider.ip, "nodeID": provider.node_id},
        "price": {
            "amount": provider.price.amount,
            "currency": provider.price.currency,
            "period": provider.price.period,
        },
        "providerID": provider.provider,
    }
    if provider.location is not None and (location := _location(provider.location)):
        spec["location"] = location
    return {
        "apiVersion": FLAVOR.api_version,
        "kind": FLAVOR.kind,
        "metadata": metadata,
        "spec": spec,
    }


# ---------------------------------------------------------------------------------------
# Reading back


# Other providers' Flavors (REAR items, Flavors a FLUIDOS node copied) are input we do not
# control: every field is checked for shape and size, and only FlavorError comes out.

_ERRORS_SHOWN = 3  # of a broken characteristics object: the first few say enough
_UPDATED_MAX_LENGTH = 64  # an RFC 3339 time is ~30 characters
_DEVICE_REF_MAX_LENGTH = TERM_MAX_LENGTH + 1 + TEXT_MAX_LENGTH  # "namespace/name"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _quoted(value: object) -> str:
    return repr(clip(value)) if isinstance(value, str) else show(value)


def is_sensor_flavor(obj: object) -> bool:
    """Whether a Flavor object (or REAR flavor item) offers a sensor; never raises."""
    if not isinstance(obj, Mapping):
        return False
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        flavor_type = spec.get("flavorType")
        return (
            isinstance(flavor_type, Mapping)
            and flavor_type.get("typeIdentifier") == FLAVOR_TYPE_SENSOR
        )
    kind = obj.get("type")
    name = kind.get("name") if isinstance(kind, Mapping) else None
    return isinstance(name, str) and name.casefold() == "sensor"


def sensor_from_flavor(obj: object) -> SensorFlavor:
    """The buyer's view of a Sensor Flavor object or of a REAR ``/flavors`` item.

    Raises FlavorError (and nothing else, whatever ``obj`` holds) naming the Flavor and the
    field when it is not a usable Sensor flavor.
    """
    if not isinstance(obj, Mapping):
        raise FlavorError(f"not a Flavor: expected an object, got {json_kind(obj)}")
    if isinstance(obj.get("spec"), Mapping):
        return _from_kubernetes(obj)
    if "flavorID" in obj:
        return _from_rear(obj)
    raise FlavorError("not a Flavor: neither a Kubernetes object with spec nor a REAR item")


def _text(
    where: str, path: str, value: object, *, limit: int = TEXT_MAX_LENGTH, number: bool = False
) -> str:
    """A string field ("" when absent); FlavorError when it is not text we can show."""
    if value is None:
        return ""
    if number and not isinstance(value, bool) and (as_number := as_float(value)) is not None:
        return format_number(as_number)  # FLUIDOS writes prices as strings; tolerate numbers
    if not isinstance(value, str):
        raise FlavorError(f"{where}: {path} must be a string, got {show(value)}")
    if len(value) > limit:
        raise FlavorError(f"{where}: {path} is {len(value)} characters long; at most {limit}")
    if has_control_characters(value):
        raise FlavorError(f"{where}: {path} must not contain control characters")
    return value


def _from_kubernetes(obj: Mapping[str, Any]) -> SensorFlavor:
    meta = _mapping(obj.get("metadata"))
    where = "Flavor"
    name = _text(where, "metadata.name", meta.get("name"))
    namespace = _text(where, "metadata.namespace", meta.get("namespace"), limit=TERM_MAX_LENGTH)
    where = f"Flavor {namespace}/{name}" if namespace else f"Flavor {name}"
    spec = obj["spec"]
    flavor_type = spec.get("flavorType")
    if not isinstance(flavor_type, Mapping):
        raise FlavorError(f"{where}: spec.flavorType is missing")
    if flavor_type.get("typeIdentifier") != FLAVOR_TYPE_SENSOR:
        raise FlavorError(
            f"{where}: spec.flavorType.typeIdentifier is "
            f"{_quoted(flavor_type.get('typeIdentifier'))}, not {FLAVOR_TYPE_SENSOR!r}"
        )
    annotations = _mapping(meta.get("annotations"))
    labels = _mapping(meta.get("labels"))
    view = _view(
        where,
        "spec.flavorType.typeData",
        flavor_type.get("typeData"),
        name=name,
        namespace=namespace or None,
        provider_id=_text(where, "spec.providerID", spec.get("providerID")),
        availability=spec.get("availability") is True,
        price=_price(where, "spec.price", spec.get("price")),
        device=_text(
            where,
            f"metadata.annotations.{DEVICE_ANNOTATION}",
            annotations.get(DEVICE_ANNOTATION),
            limit=_DEVICE_REF_MAX_LENGTH,
        )
        or None,
    )
    key = _text(
        where,
        f"metadata.annotations.{SENSOR_KEY_ANNOTATION}",
        annotations.get(SENSOR_KEY_ANNOTATION),
        limit=KEY_MAX_LENGTH,
    ) or _text(
        where,
        f"metadata.labels.{SENSOR_KEY_LABEL}",
        labels.get(SENSOR_KEY_LABEL),
        limit=KEY_MAX_LENGTH,
    )
    if key and key != view.sensor.key:
        view = replace(view, sensor=replace(view.sensor, key=key))
    return view


def _from_rear(obj: Mapping[str, Any]) -> SensorFlavor:
    name = _text("Flavor", "flavorID", obj.get("flavorID"))
    where = f"Flavor {name}"
    kind = obj.get("type")
    if not isinstance(kind, Mapping):
        raise FlavorError(f"{where}: type must be an object {{name, data}}, got {show(kind)}")
    kind_name = kind.get("name")
    if not isinstance(kind_name, str) or kind_name.casefold() != "sensor":
        raise FlavorError(f"{where}: type.name is {_quoted(kind_name)}, not 'sensor'")
    return _view(
        where,
        "type.data",
        kind.get("data"),
        name=name,
        namespace=None,
        provider_id=_text(where, "providerID", obj.get("providerID")),
        availability=obj.get("availability") is True,
        price=_price(where, "price", obj.get("price")),
        device=None,
    )


def _view(where: str, path: str, type_data: object, **fields: Any) -> SensorFlavor:
    if not isinstance(type_data, Mapping) or not isinstance(
        type_data.get("characteristics"), Mapping
    ):
        raise FlavorError(f"{where}: {path}.characteristics is missing")
    characteristics = type_data["characteristics"]
    sensor, errors = parse_sensor_entry(characteristics)
    if sensor is None:
        details = "; ".join(
            f'"{error.field}" {error.message}' if error.field else error.message
            for error in errors[:_ERRORS_SHOWN]
        )
        more = len(errors) - _ERRORS_SHOWN
        raise FlavorError(
            f"{where}: {path}.characteristics: {details}"
            + (f" (and {more} more problem(s))" if more > 0 else "")
        )
    node = _text(where, f"{path}.characteristics.node", characteristics.get("node"))
    return SensorFlavor(
        node=node or sensor.access.resource.node,
        sensor=sensor,
        observed=_read_observed(type_data.get("observed")),
        **fields,
    )


def _price(where: str, path: str, value: object) -> Price | None:
    if not isinstance(value, Mapping):
        return None
    return Price(
        amount=_text(where, f"{path}.amount", value.get("amount"), number=True),
        currency=_text(where, f"{path}.currency", value.get("currency"), limit=TERM_MAX_LENGTH),
        period=_text(where, f"{path}.period", value.get("period"), limit=TERM_MAX_LENGTH),
    )


def _number(value: object) -> float | None:
    try:
        return parse_plain_number(value)
    except QuantityError:
        return None


def _read_observed(value: object) -> ObservedPerformance | None:
    if not isinstance(value, Mapping):
        return None
    updated = value.get("updated")
    return ObservedPerformance(
        latency_ms=_number(value.get("latencyMs")),
        rate_hz=_number(value.get("samplingRateHz")),
        updated=updated
        if isinstance(updated, str)
        and len(updated) <= _UPDATED_MAX_LENGTH
        and not has_control_characters(updated)
        else None,
    )

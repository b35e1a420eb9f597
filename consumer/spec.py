"""What a `SensorRequest` and a `SensorProvider` say, read and checked (no I/O).

A request's filter is read by `fluidos_sensors.filters` (the gateway applies the same filter:
the consumer never matches flavors itself); its endpoint by `fluidos_sensors.endpoints`.
Every problem is a `SpecError` naming the object and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.api import SENSOR_PROVIDER, SENSOR_REQUEST
from fluidos_sensors.endpoints import AuthType, DeliveryFormat, EndpointError, check_endpoint_url
from fluidos_sensors.filters import FilterError, SensorFilter
from fluidos_sensors.limits import clip
from fluidos_sensors.shaping import Shaping, ShapingError, parse_shaping
from fluidos_sensors.units import QuantityError, parse_rate_hz, show

COUNT_MAX = 100  # as the CRD's schema says
PROVIDERS_MAX = 64
DEFAULT_TOKEN_KEY = "token"
DEFAULT_CA_KEY = "ca.crt"
# A purchase carries this intent so the provider's Contract names the request it serves: the
# operator finds its contracts again after a restart (FLUIDOS intents link a purchase to the
# consumer-side intent it solves).
_INTENT_PREFIX = f"{SENSOR_REQUEST.plural}.{SENSOR_REQUEST.group}"


class SpecError(ValueError):
    """A request or provider object cannot be used; ``field`` is the offending path."""

    def __init__(self, where: str, field: str, message: str) -> None:
        self.where = where
        self.field = field
        super().__init__(f"{where}: {field} {message}" if field else f"{where}: {message}")


@dataclass(frozen=True, kw_only=True)
class EndpointAuth:
    """Credentials for the consumer's endpoint: a Secret of the request's namespace."""

    type: AuthType
    secret_name: str


@dataclass(frozen=True, kw_only=True)
class RequestSpec:
    """A SensorRequest's spec, checked."""

    filter: SensorFilter
    count: int
    providers: tuple[str, ...]  # empty: every known provider
    endpoint: str
    format: DeliveryFormat
    auth: EndpointAuth | None
    shape: Shaping | None = None  # window aggregates or downsampling at the edge
    rate_hz: float | None = None  # the sampling rate to set on each sensor bought


@dataclass(frozen=True, kw_only=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True, kw_only=True)
class ProviderSpec:
    """A SensorProvider: a REAR gateway and where this consumer keeps its token and CA."""

    name: str
    url: str
    token: SecretKeyRef
    ca: SecretKeyRef | None


def request_intent(namespace: str, name: str, uid: str) -> str:
    """The intent a purchase for this request carries (and its Contract keeps)."""
    return f"{_INTENT_PREFIX}/{namespace}/{name}/{uid}"


def _where(kind: str, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}"


def _text(where: str, field: str, value: object, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise SpecError(where, field, f"must be non-empty text, got {show(value)}")
    return value.strip()


def parse_request(obj: Mapping[str, Any]) -> RequestSpec:
    """The checked spec of a SensorRequest object; SpecError names the field."""
    where = _where(SENSOR_REQUEST.kind, obj)
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError(where, "spec", "is missing")
    try:
        sensor_filter = SensorFilter.from_request_spec(spec.get("filter"))
    except FilterError as exc:
        raise SpecError(where, "", str(exc)) from None
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= COUNT_MAX:
        raise SpecError(
            where, "spec.count", f"must be a whole number 1..{COUNT_MAX}, got {show(count)}"
        )
    providers = spec.get("providers") or []
    if not isinstance(providers, Sequence) or isinstance(providers, str):
        raise SpecError(where, "spec.providers", f"must be a list of names, got {show(providers)}")
    if len(providers) > PROVIDERS_MAX:
        raise SpecError(where, "spec.providers", f"names at most {PROVIDERS_MAX} providers")
    names: list[str] = []
    for index, name in enumerate(providers):
        name = _text(where, f"spec.providers[{index}]", name)
        if name not in names:
            names.append(name)
    endpoint = spec.get("endpoint")
    if not isinstance(endpoint, Mapping):
        raise SpecError(where, "spec.endpoint", "is missing")
    try:
        url = check_endpoint_url(endpoint.get("url"))
    except EndpointError as exc:
        raise SpecError(where, "spec.endpoint.url", str(exc)) from None
    raw_format = endpoint.get("format") or DeliveryFormat.INFLUX.value
    try:
        delivery_format = DeliveryFormat(raw_format)
    except ValueError:
        raise SpecError(
            where,
            "spec.endpoint.format",
            f"must be one of {', '.join(DeliveryFormat)}, got {show(raw_format)}",
        ) from None
    auth = None
    raw_auth = endpoint.get("auth")
    if raw_auth is not None:
        if not isinstance(raw_auth, Mapping):
            raise SpecError(where, "spec.endpoint.auth", f"must be an object, got {show(raw_auth)}")
        raw_type = raw_auth.get("type")
        try:
            if not isinstance(raw_type, str):
                raise ValueError(raw_type)
            auth_type = AuthType(raw_type)
        except ValueError:
            raise SpecError(
                where,
                "spec.endpoint.auth.type",
                f"must be one of {', '.join(AuthType)}, got {show(raw_auth.get('type'))}",
            ) from None
        secret = _text(where, "spec.endpoint.auth.secretName", raw_auth.get("secretName"))
        auth = EndpointAuth(type=auth_type, secret_name=secret)
    try:
        shape = parse_shaping(endpoint.get("shape"), "spec.endpoint.shape")
    except ShapingError as exc:
        field, _, message = str(exc).partition(": ")
        raise SpecError(where, field, message) from None
    rate = None
    if spec.get("rate") is not None:
        try:
            rate = parse_rate_hz(spec["rate"])
        except QuantityError as exc:
            raise SpecError(where, "spec.rate", str(exc)) from None
    return RequestSpec(
        filter=sensor_filter,
        count=count,
        providers=tuple(names),
        endpoint=url,
        format=delivery_format,
        auth=auth,
        shape=shape,
        rate_hz=rate,
    )


def _key_ref(where: str, field: str, value: object, default_key: str) -> SecretKeyRef:
    if not isinstance(value, Mapping):
        raise SpecError(where, field, f"must be an object {{name, key}}, got {show(value)}")
    name = _text(where, f"{field}.name", value.get("name"))
    key = _text(where, f"{field}.key", value.get("key"), required=False) or default_key
    return SecretKeyRef(name=name, key=key)


def parse_provider(obj: Mapping[str, Any]) -> ProviderSpec:
    """The checked spec of a SensorProvider object; SpecError names the field."""
    where = _where(SENSOR_PROVIDER.kind, obj)
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise SpecError(where, "metadata.name", "is missing")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError(where, "spec", "is missing")
    url = spec.get("url")
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise SpecError(where, "spec.url", f"must be an http(s) URL, got {show(url)}")
    try:
        check_endpoint_url(url)
    except EndpointError as exc:
        raise SpecError(where, "spec.url", str(exc)) from None
    token = _key_ref(where, "spec.tokenSecret", spec.get("tokenSecret"), DEFAULT_TOKEN_KEY)
    ca = None
    if spec.get("caSecret") is not None:
        ca = _key_ref(where, "spec.caSecret", spec.get("caSecret"), DEFAULT_CA_KEY)
    return ProviderSpec(name=name, url=url.rstrip("/"), token=token, ca=ca)


def provider_order(wanted: Sequence[str], known: Sequence[str]) -> tuple[list[str], list[str]]:
    """(providers to ask, in preference order; wanted names that are not known).

    No wanted names: every known provider, by name.
    """
    if not wanted:
        return sorted(known), []
    known_set = set(known)
    return [n for n in wanted if n in known_set], [clip(n) for n in wanted if n not in known_set]

"""The REAR v2 marketplace protocol's wire format as the sensor gateway speaks it: paths, the
bodies as pydantic models, and Flavor objects and identities converted to and from them.

Bodies follow the FLUIDOS node's gateway (camelCase JSON, ``pkg/utils/models`` of
fluidos-project/node): a reservation is ``{flavorID, buyerID{ID, IP, domain,
additionalInformation}, configuration?}`` and answers a transaction; a purchase carries
``ingressTelemetryEndpoint{endpoint, intents[]}`` and answers the contract; flavor lists are
``{flavorID, providerID, type{name, data}, owner, price, location, availability, timestamp}``
items whose ``type.data`` is the Flavor's ``spec.flavorType.typeData`` (so
``fluidos_sensors.flavor.sensor_from_flavor`` reads an item back).

Our extensions (FLUIDOS ignores unknown keys): ``ingressTelemetryEndpoint.format`` ("influx",
the default, "json", "cloudevents" or "cloudevents-batch"), ``ingressTelemetryEndpoint.shape``
(window aggregates or downsampling at the edge, `fluidos_sensors.shaping`) and
``ingressTelemetryEndpoint.authorization`` (the credentials the provider uses to deliver to the
consumer's endpoint; never echoed back in an answer); and
``GET/DELETE /api/v2/contracts[/{id}]`` to list and release a consumer's contracts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from fluidos_sensors.endpoints import URL_MAX_LENGTH, AuthType, DeliveryFormat, check_endpoint_url
from fluidos_sensors.flavor import SENSORS_PREFIX
from fluidos_sensors.shaping import (
    AGGREGATES,
    EVERY_MAX,
    WINDOW_MS_MAX,
    WINDOW_MS_MIN,
    Aggregate,
    Shaping,
)
from fluidos_sensors.units import RATE_PATTERN

API_PREFIX = "/api/v2"
FLAVORS_PATH = f"{API_PREFIX}/flavors"
SENSOR_FLAVORS_PATH = f"{API_PREFIX}/flavors/sensors"
RESERVATIONS_PATH = f"{API_PREFIX}/reservations"
PURCHASE_PATH = API_PREFIX + "/transactions/{transaction_id}/purchase"
CONTRACTS_PATH = f"{API_PREFIX}/contracts"
CONTRACT_PATH = API_PREFIX + "/contracts/{contract_id}"

SENSOR_TYPE_NAME = "sensor"  # type.name of a Sensor flavor item, as FLUIDOS names it
UNKNOWN_TIMESTAMP = "0001-01-01T00:00:00Z"  # Go's zero time.Time: what FLUIDOS writes for none

# A provider's REAR consumers: Secrets in the gateway's namespace labeled with this key (value:
# the consumer id), holding the consumer's bearer token under CONSUMER_TOKEN_KEY.
REAR_CONSUMER_LABEL = f"{SENSORS_PREFIX}/rear-consumer"
CONSUMER_TOKEN_KEY = "token"

_ID_MAX = 253
_TEXT_MAX = 1024
_INTENTS_MAX = 32

Identifier = Annotated[str, Field(min_length=1, max_length=_ID_MAX)]
Text = Annotated[str, Field(max_length=_TEXT_MAX)]


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys are ignored, as in FLUIDOS."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The JSON body of this model (aliases, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ------------------------------------------------------------------------------- identities


class AdditionalInformation(_Wire):
    liqo_id: Text | None = Field(default=None, alias="liqoID")


class NodeIdentity(_Wire):
    """A FLUIDOS node: buyer, seller or flavor owner."""

    node_id: Identifier = Field(alias="ID")
    ip: Text = Field(alias="IP")
    domain: Text
    additional_information: AdditionalInformation | None = Field(
        default=None, alias="additionalInformation"
    )


class Price(_Wire):
    amount: Text
    currency: Text
    period: Text


class Location(_Wire):
    latitude: Text | None = None
    longitude: Text | None = None
    country: Text | None = None
    city: Text | None = None
    additional_notes: Text | None = Field(default=None, alias="additionalNotes")


class FlavorType(_Wire):
    name: Text
    data: dict[str, Any]


class FlavorItem(_Wire):
    """One flavor as ``GET /api/v2/flavors[/sensors]`` lists it."""

    flavor_id: Identifier = Field(alias="flavorID")
    provider_id: Text = Field(alias="providerID")
    type: FlavorType
    network_property_type: Text | None = Field(default=None, alias="networkPropertyType")
    timestamp: Text
    location: Location | None = None
    price: Price
    owner: NodeIdentity
    availability: bool


class Configuration(_Wire):
    """FLUIDOS flavor configuration (a sensor flavor needs none)."""

    type: Annotated[str, Field(min_length=1, max_length=63)]
    data: dict[str, Any]


# ------------------------------------------------------------------------------- reserve


class SensorConfigurationData(_Wire):
    """What a buyer sets on a sensor: its sampling rate (`fluidos_sensors.rates`)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)
    sampling_rate: Annotated[str, Field(max_length=64, pattern=RATE_PATTERN)] | None = Field(
        default=None, alias="samplingRate"
    )


class SensorConfiguration(_Wire):
    """A reservation's ``configuration`` for a Sensor flavor (strict: the gateway reads every
    key, so a key it does not know is refused, not ignored)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)
    type: Literal["Sensor"]
    data: SensorConfigurationData


class ReservationRequest(_Wire):
    """``POST /api/v2/reservations``."""

    flavor_id: Identifier = Field(alias="flavorID")
    buyer: NodeIdentity = Field(alias="buyerID")
    configuration: SensorConfiguration | None = None


class TransactionAnswer(_Wire):
    """A reservation: purchase it before ``expirationTime`` (RFC 3339). FLUIDOS's gateway
    answers no ``startTime``: None then (nothing reads it but a person)."""

    transaction_id: Identifier = Field(alias="transactionID")
    flavor_id: Identifier = Field(alias="flavorID")
    buyer: NodeIdentity
    cluster_id: Text = Field(alias="clusterID")
    expiration_time: Text = Field(alias="expirationTime")
    start_time: Text | None = Field(default=None, alias="startTime")
    configuration: Configuration | None = None


# ------------------------------------------------------------------------------- purchase


class DeliveryAuthorization(_Wire):
    """Credentials the provider presents to the consumer's endpoint (ours, not FLUIDOS's).

    ``bearer`` and ``token`` need ``token``; ``basic`` needs ``username`` and ``password``.
    Secret values are masked in ``repr`` and logs and only revealed in the JSON body.
    """

    type: AuthType
    token: SecretStr | None = Field(default=None, max_length=4096)
    username: Annotated[str, Field(min_length=1, max_length=_TEXT_MAX)] | None = None
    password: SecretStr | None = Field(default=None, max_length=4096)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # A key given as null is a key given: the published schema (AUTHORIZATION_SCHEMA)
        # says which keys each type takes, and the server must refuse what it refuses.
        if isinstance(data, Mapping):
            for key in ("token", "username", "password"):
                if key in data and data[key] is None:
                    raise ValueError(f'"{key}" must be a string, not null')
        return data

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.type in (AuthType.BEARER, AuthType.TOKEN):
            if self.token is None or not self.token.get_secret_value():
                raise ValueError(f'type "{self.type}" needs a non-empty "token"')
            if self.username is not None or self.password is not None:
                raise ValueError(f'type "{self.type}" takes a "token", not username/password')
        else:
            if not self.username or self.password is None or not self.password.get_secret_value():
                raise ValueError('type "basic" needs "username" and a non-empty "password"')
            if ":" in self.username:
                raise ValueError('"username" must not contain ":" (HTTP basic authentication)')
            if self.token is not None:
                raise ValueError('type "basic" takes username/password, not a "token"')
        return self

    @field_serializer("token", "password", when_used="json")
    def _reveal(self, value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None


# DeliveryAuthorization as the OpenAPI publishes it: which keys each type needs and refuses.
_SECRET_TEXT = {"type": "string", "minLength": 1, "maxLength": 4096}
AUTHORIZATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": [str(t) for t in AuthType]},
        "token": _SECRET_TEXT,
        "username": {
            "type": "string",
            "minLength": 1,
            "maxLength": _TEXT_MAX,
            "pattern": "^[^:]*$",
        },
        "password": _SECRET_TEXT,
    },
    "required": ["type"],
    "oneOf": [
        {
            "properties": {"type": {"enum": [str(AuthType.BEARER), str(AuthType.TOKEN)]}},
            "required": ["token"],
            "not": {"anyOf": [{"required": ["username"]}, {"required": ["password"]}]},
        },
        {
            "properties": {"type": {"enum": [str(AuthType.BASIC)]}},
            "required": ["username", "password"],
            "not": {"required": ["token"]},
        },
    ],
    "description": DeliveryAuthorization.__doc__,
}


class TelemetryEndpoint(_Wire):
    """Where the provider sends the readings (``ingressTelemetryEndpoint``)."""

    endpoint: str = Field(
        max_length=URL_MAX_LENGTH,
        description=(
            "http:// or https:// URL with a valid host, no user:password@, no #fragment, no "
            "whitespace; and allowed by the provider's delivery policy for this consumer"
        ),
        json_schema_extra={"format": "uri", "examples": ["http://telegraf.example:8186/telegraf"]},
    )
    intents: list[Annotated[str, Field(max_length=_TEXT_MAX)]] = Field(
        default_factory=list, max_length=_INTENTS_MAX
    )
    format: DeliveryFormat = DeliveryFormat.INFLUX
    shape: DeliveryShape | None = None
    authorization: DeliveryAuthorization | None = None

    @field_validator("endpoint")
    @classmethod
    def _deliverable(cls, value: str) -> str:
        return check_endpoint_url(value)


class _Shape(_Wire):
    # Strict: the two kinds of shape exclude each other, in the OpenAPI as in validation.
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class WindowShape(_Shape):
    """Aggregates over tumbling windows at the edge (`fluidos_sensors.shaping`)."""

    aggregate: list[Aggregate] = Field(min_length=1, max_length=len(AGGREGATES))
    window_ms: int = Field(alias="windowMs", ge=WINDOW_MS_MIN, le=WINDOW_MS_MAX)

    def shaping(self) -> Shaping:
        return Shaping(tuple(a for a in AGGREGATES if a in self.aggregate), self.window_ms)


class EveryShape(_Shape):
    """Every reading whose seq is a multiple of `every` (`fluidos_sensors.shaping`)."""

    every: int = Field(ge=2, le=EVERY_MAX)

    def shaping(self) -> Shaping:
        return Shaping(every=self.every)


# Window aggregates or downsampling at the edge instead of every reading.
DeliveryShape = WindowShape | EveryShape


def delivery_shape(shaping: Shaping | None) -> DeliveryShape | None:
    """A shape as the wire says it."""
    if shaping is None:
        return None
    if shaping.every:
        return EveryShape(every=shaping.every)
    return WindowShape(aggregate=list(shaping.aggregates), window_ms=shaping.window_ms)


class PurchaseRequest(_Wire):
    """``POST /api/v2/transactions/{id}/purchase``; FLUIDOS's ``liqoCredentials`` is ignored."""

    ingress_telemetry_endpoint: TelemetryEndpoint = Field(alias="ingressTelemetryEndpoint")


class AuthorizationSummary(_Wire):
    """What an answer tells about delivery credentials: their kind, never their value."""

    type: AuthType


class TelemetryEndpointAnswer(_Wire):
    endpoint: str
    intents: list[str] = Field(default_factory=list)
    format: DeliveryFormat = DeliveryFormat.INFLUX
    shape: DeliveryShape | None = None
    authorization: AuthorizationSummary | None = None

    @classmethod
    def of(cls, sent: TelemetryEndpoint) -> TelemetryEndpointAnswer:
        """What a gateway answers for the endpoint a purchase sent (the credentials' kind)."""
        auth = sent.authorization
        return cls(
            endpoint=sent.endpoint,
            intents=list(sent.intents),
            format=sent.format,
            shape=sent.shape,
            authorization=AuthorizationSummary(type=auth.type) if auth else None,
        )


class PeeringCredentials(_Wire):
    """FLUIDOS's Liqo peering credentials: always empty for sensors (clusters share none)."""

    cluster_id: str = Field(default="", alias="clusterID")
    kubeconfig: str = ""


class ContractAnswer(_Wire):
    """A purchased sensor flavor (FLUIDOS's contract model, plus ``startTime`` and
    ``ingressTelemetryEndpoint``, which FLUIDOS's own gateway does not answer)."""

    contract_id: Identifier = Field(alias="contractID")
    transaction_id: Identifier = Field(alias="transactionID")
    flavor: FlavorItem
    buyer: NodeIdentity = Field(alias="buyerID")
    buyer_cluster_id: Text = Field(alias="buyerClusterID")
    seller: NodeIdentity
    peering_target_credentials: PeeringCredentials = Field(
        default_factory=PeeringCredentials, alias="peeringTargetCredentials"
    )
    expiration_time: Text | None = Field(default=None, alias="expirationTime")
    start_time: Text | None = Field(default=None, alias="startTime")
    configuration: Configuration | None = None
    ingress_telemetry_endpoint: TelemetryEndpointAnswer | None = Field(
        default=None, alias="ingressTelemetryEndpoint"
    )

    @property
    def intents(self) -> list[str]:
        """The purchase's intents: which request bought it (none known without an endpoint)."""
        endpoint = self.ingress_telemetry_endpoint
        return endpoint.intents if endpoint is not None else []


class ErrorAnswer(_Wire):
    """Every error answer: what is wrong and, for bad input, which field or parameter."""

    error: str
    field: str | None = None


# ------------------------------------------------------------------------------- Flavor -> item


def flavor_item(flavor: Mapping[str, Any]) -> dict[str, Any]:
    """The REAR item (JSON-ready dict) listing a Flavor object (``nodecore.fluidos.eu``).

    ``type.name`` is the lower-cased ``typeIdentifier`` ("sensor", "k8slice", ...), as FLUIDOS
    names its flavor types; ``type.data`` is ``typeData`` unchanged. Raises ValueError naming
    the Flavor and field when a required field is missing.
    """
    meta = flavor.get("metadata") or {}
    name = meta.get("name")
    where = f"Flavor {meta.get('namespace', '')}/{name}"
    spec = flavor.get("spec")
    if not isinstance(name, str) or not name or not isinstance(spec, Mapping):
        raise ValueError(f"{where}: metadata.name and spec are required")
    flavor_type = spec.get("flavorType")
    if not isinstance(flavor_type, Mapping) or not isinstance(
        flavor_type.get("typeIdentifier"), str
    ):
        raise ValueError(f"{where}: spec.flavorType.typeIdentifier is missing")
    type_data = flavor_type.get("typeData")
    owner = spec.get("owner")
    price = spec.get("price")
    if not isinstance(owner, Mapping):
        raise ValueError(f"{where}: spec.owner is missing")
    if not isinstance(price, Mapping):
        raise ValueError(f"{where}: spec.price is missing")
    item: dict[str, Any] = {
        "flavorID": name,
        "providerID": str(spec.get("providerID") or ""),
        "type": {
            "name": flavor_type["typeIdentifier"].lower(),
            "data": dict(type_data) if isinstance(type_data, Mapping) else {},
        },
        "timestamp": rfc3339_timestamp(meta.get("creationTimestamp")),
        "price": {key: str(price.get(key, "")) for key in ("amount", "currency", "period")},
        "owner": node_identity(owner),
        "availability": spec.get("availability") is True,
    }
    if isinstance(spec.get("networkPropertyType"), str):
        item["networkPropertyType"] = spec["networkPropertyType"]
    location = spec.get("location")
    if isinstance(location, Mapping):
        item["location"] = {
            key: str(location[key])
            for key in ("latitude", "longitude", "country", "city", "additionalNotes")
            if location.get(key) is not None
        }
    return item


def rfc3339_timestamp(value: object) -> str:
    """An RFC 3339 UTC time for a flavor item's ``timestamp``: ``value`` when it is one,
    else Go's zero time. FLUIDOS decodes the field into a Go ``time.Time``: an empty or
    malformed string fails the whole list there, the zero time reads as "unknown"."""
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return UNKNOWN_TIMESTAMP
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return UNKNOWN_TIMESTAMP


def node_identity(identity: Mapping[str, Any]) -> dict[str, Any]:
    """A Kubernetes NodeIdentity ``{nodeID, ip, domain, ...}`` as REAR writes it."""
    wire: dict[str, Any] = {
        "ID": str(identity.get("nodeID", "")),
        "IP": str(identity.get("ip", "")),
        "domain": str(identity.get("domain", "")),
    }
    extra = identity.get("additionalInformation")
    if isinstance(extra, Mapping) and extra.get("liqoID"):
        wire["additionalInformation"] = {"liqoID": str(extra["liqoID"])}
    return wire


def with_liqo_id(buyer: NodeIdentity) -> NodeIdentity:
    """The buyer as a reservation names it. FLUIDOS's gateway refuses a reservation without
    ``additionalInformation.liqoID`` (its Liqo cluster id); clusters here share no Liqo
    peering, so the node id stands in unless the buyer gave one."""
    extra = buyer.additional_information
    if extra is not None and extra.liqo_id:
        return buyer
    return buyer.model_copy(
        update={"additional_information": AdditionalInformation(liqo_id=buyer.node_id)}
    )


def kubernetes_identity(identity: NodeIdentity) -> dict[str, Any]:
    """A REAR NodeIdentity as the FLUIDOS CRDs store it (``nodeID``, ``ip``, ``domain``)."""
    body: dict[str, Any] = {
        "nodeID": identity.node_id,
        "ip": identity.ip,
        "domain": identity.domain,
    }
    extra = identity.additional_information
    if extra is not None and extra.liqo_id:
        body["additionalInformation"] = {"liqoID": extra.liqo_id}
    return body

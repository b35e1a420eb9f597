"""The FLUIDOS objects a sale creates (Transaction, Contract, Allocation, delivery Secret), built
from plain values, and the REAR answers read back from them. No I/O.

Every body follows the unmodified upstream CRDs (``reservation.fluidos.eu`` and
``nodecore.fluidos.eu`` v1alpha1): the API server prunes what a schema does not declare, so
what the gateway needs beyond the schema (the consumer, the delivery format and credentials'
kind, the MQTT topic) travels in labels and annotations (fluidos_sensors.contract).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fluidos_sensors.api import (
    ALLOCATION,
    CONTRACT,
    FLAVOR,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ROUTE_NAMESPACE,
    TRANSACTION,
)
from fluidos_sensors.contract import (
    AUTH_NONE,
    CONSUMER_LABEL,
    DELIVERY_AUTH_ANNOTATION,
    DELIVERY_FORMAT_ANNOTATION,
    DELIVERY_SHAPE_ANNOTATION,
    SECRET_PASSWORD_KEY,
    SECRET_TOKEN_KEY,
    SECRET_USERNAME_KEY,
    contract_annotations,
    selection_labels,
)
from fluidos_sensors.endpoints import AuthType, DeliveryFormat, DeliveryPolicy
from fluidos_sensors.flavor import DEVICE_ANNOTATION, SENSOR_KEY_ANNOTATION
from fluidos_sensors.limits import JSONInputError, load_json
from fluidos_sensors.rates import RATE_SCOPE_LABEL
from fluidos_sensors.rear.wire import (
    UNKNOWN_TIMESTAMP,
    AuthorizationSummary,
    Configuration,
    ContractAnswer,
    DeliveryAuthorization,
    DeliveryShape,
    FlavorItem,
    PeeringCredentials,
    ReservationRequest,
    TelemetryEndpoint,
    TelemetryEndpointAnswer,
    TransactionAnswer,
    delivery_shape,
    flavor_item,
    node_identity,
    rfc3339_timestamp,
)
from fluidos_sensors.shaping import parse_shaping
from fluidos_sensors.topics import broker_topic

_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
CONTRACT_PREFIX = "contract-"
ALLOCATION_PREFIX = "allocation-"


@dataclass(frozen=True, kw_only=True)
class Seller:
    """This provider's FLUIDOS node identity, as Contracts name the seller."""

    node_id: str
    domain: str
    ip: str

    def body(self) -> dict[str, str]:
        return {"nodeID": self.node_id, "domain": self.domain, "ip": self.ip}


@dataclass(frozen=True)
class DeliverySource:
    """Where a Sensor flavor's readings are published: broker topic on an edge node."""

    broker_topic: str
    node: str


def is_object_name(value: str) -> bool:
    """Whether a path parameter can name a Kubernetes object (DNS-1123 subdomain)."""
    return bool(_OBJECT_NAME.match(value))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _managed(consumer: str, **values: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, **selection_labels(consumer=consumer, **values)}


def owner(obj: Mapping[str, Any]) -> str | None:
    """The consumer a gateway-made object belongs to; None for objects not made by the gateway."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        return None
    consumer = labels.get(CONSUMER_LABEL)
    return consumer if isinstance(consumer, str) and consumer else None


# ------------------------------------------------------------------------------- names


def new_transaction_id() -> str:
    """An unguessable transaction id (also the Transaction's name)."""
    return f"tx-{secrets.token_hex(12)}"


def contract_name(transaction_id: str) -> str:
    """The Contract bought with a transaction: one per transaction, so retries are idempotent."""
    return CONTRACT_PREFIX + hashlib.sha256(transaction_id.encode()).hexdigest()[:24]


def allocation_name(contract: str) -> str:
    return ALLOCATION_PREFIX + contract.removeprefix(CONTRACT_PREFIX)


# ------------------------------------------------------------------------------- reservation


def transaction_body(
    *,
    transaction_id: str,
    consumer: str,
    request: ReservationRequest,
    namespace: str,
    now: datetime,
    ttl_seconds: float,
) -> dict[str, Any]:
    """A FLUIDOS Transaction holding a reservation until ``now + ttl`` (whole seconds, up)."""
    buyer = request.buyer
    extra = buyer.additional_information
    # FLUIDOS takes the buyer's Liqo cluster id; sensors need no peering, so the node id will do.
    cluster_id = extra.liqo_id if extra is not None and extra.liqo_id else consumer
    expires = now + timedelta(seconds=math.ceil(ttl_seconds))
    spec: dict[str, Any] = {
        "flavorID": request.flavor_id,
        "buyer": _buyer(request, consumer),
        "clusterID": cluster_id,
        "expirationTime": rfc3339(expires),
    }
    if request.configuration is not None:
        spec["configuration"] = request.configuration.wire()
    return {
        "apiVersion": TRANSACTION.api_version,
        "kind": TRANSACTION.kind,
        "metadata": {
            "name": transaction_id,
            "namespace": namespace,
            "labels": _managed(consumer, flavor=request.flavor_id),
        },
        "spec": spec,
    }


def _buyer(request: ReservationRequest, consumer: str) -> dict[str, Any]:
    buyer = request.buyer
    # The token's consumer, never what the body claims (Marketplace.reserve refuses a mismatch;
    # this keeps the Contract, which copies it, right even if that check were bypassed).
    body: dict[str, Any] = {"nodeID": consumer, "ip": buyer.ip, "domain": buyer.domain}
    extra = buyer.additional_information
    if extra is not None and extra.liqo_id:
        body["additionalInformation"] = {"liqoID": extra.liqo_id}
    return body


def expiration(transaction: Mapping[str, Any]) -> datetime | None:
    return parse_time((transaction.get("spec") or {}).get("expirationTime"))


def expired(transaction: Mapping[str, Any], now: datetime) -> bool:
    """Whether a reservation is over (one without a readable expiry is over too)."""
    expires = expiration(transaction)
    return expires is None or expires <= now


def transaction_answer(transaction: Mapping[str, Any]) -> TransactionAnswer:
    meta = transaction.get("metadata") or {}
    spec = transaction.get("spec") or {}
    configuration = spec.get("configuration")
    return TransactionAnswer(
        transaction_id=meta["name"],
        flavor_id=spec["flavorID"],
        buyer=node_identity(spec.get("buyer") or {}),
        cluster_id=str(spec.get("clusterID", "")),
        expiration_time=str(spec.get("expirationTime", "")),
        start_time=str(meta.get("creationTimestamp") or ""),
        configuration=Configuration.model_validate(configuration) if configuration else None,
    )


# ------------------------------------------------------------------------------- purchase


def delivery_source(flavor: Mapping[str, Any]) -> DeliverySource:
    """The broker topic and edge node of a Sensor Flavor published by the resource manager.

    Raises ValueError naming the Flavor and the field when they cannot be known.
    """
    meta = flavor.get("metadata") or {}
    where = f"Flavor {meta.get('namespace', '')}/{meta.get('name', '')}"
    annotations = meta.get("annotations") or {}
    device = annotations.get(DEVICE_ANNOTATION)
    sensor = annotations.get(SENSOR_KEY_ANNOTATION)
    if not isinstance(device, str) or device.count("/") != 1:
        raise ValueError(f'{where}: annotation "{DEVICE_ANNOTATION}" must be "namespace/name"')
    if not isinstance(sensor, str) or not sensor:
        raise ValueError(f'{where}: annotation "{SENSOR_KEY_ANNOTATION}" is missing')
    characteristics = (
        ((flavor.get("spec") or {}).get("flavorType") or {}).get("typeData") or {}
    ).get("characteristics") or {}
    node = characteristics.get("node")
    if not isinstance(node, str) or not node:
        raise ValueError(f"{where}: spec.flavorType.typeData.characteristics.node is missing")
    device_namespace, device_name = device.split("/")
    try:
        topic = broker_topic(device_namespace, device_name, sensor)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return DeliverySource(broker_topic=topic, node=node)


def flavor_copy(flavor: Mapping[str, Any]) -> dict[str, Any]:
    """The Flavor as a Contract's ``spec.flavor`` keeps it (what its schema declares)."""
    meta = flavor.get("metadata") or {}
    copied_meta = {
        key: meta[key] for key in ("name", "namespace", "labels", "annotations") if meta.get(key)
    }
    return {
        "apiVersion": flavor.get("apiVersion", FLAVOR.api_version),
        "kind": flavor.get("kind", FLAVOR.kind),
        "metadata": copied_meta,
        "spec": flavor["spec"],
    }


def contract_body(
    *,
    name: str,
    namespace: str,
    transaction: Mapping[str, Any],
    flavor: Mapping[str, Any],
    source: DeliverySource,
    seller: Seller,
    telemetry: TelemetryEndpoint,
    consumer: str,
    secret_name: str | None,
    policy: DeliveryPolicy,
) -> dict[str, Any]:
    """The FLUIDOS Contract of a purchase; delivery details in its annotations."""
    tx_spec = transaction["spec"]
    transaction_id = transaction["metadata"]["name"]
    authorization = telemetry.authorization
    spec: dict[str, Any] = {
        "buyer": {**tx_spec["buyer"], "nodeID": consumer},  # the token's consumer, always
        "buyerClusterID": tx_spec["clusterID"],
        "flavor": flavor_copy(flavor),
        "seller": seller.body(),
        "transactionID": transaction_id,
        "ingressTelemetryEndpoint": {
            "endpoint": telemetry.endpoint,
            "intents": list(telemetry.intents),
        },
        # Clusters never share credentials: a sensor needs no Liqo peering.
        "peeringTargetCredentials": {"kubeconfig": "", "liqoID": ""},
    }
    if tx_spec.get("configuration"):
        spec["configuration"] = tx_spec["configuration"]
    flavor_name = flavor["metadata"]["name"]
    return {
        "apiVersion": CONTRACT.api_version,
        "kind": CONTRACT.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _managed(consumer, flavor=flavor_name, transaction=transaction_id)
            | _rate_scope(transaction),
            "annotations": contract_annotations(
                broker_topic=source.broker_topic,
                node=source.node,
                format=telemetry.format,
                auth_type=authorization.type if authorization else None,
                secret_name=secret_name,
                consumer=consumer,
                policy=policy,
                shape=telemetry.shape.shaping() if telemetry.shape else None,
            ),
        },
        "spec": spec,
    }


def _rate_scope(transaction: Mapping[str, Any]) -> dict[str, str]:
    """The rate-scope label a reservation holding a rate passes on to its Contract."""
    scope = ((transaction.get("metadata") or {}).get("labels") or {}).get(RATE_SCOPE_LABEL)
    return {RATE_SCOPE_LABEL: scope} if isinstance(scope, str) and scope else {}


def allocation_body(contract: Mapping[str, Any]) -> dict[str, Any]:
    """The FLUIDOS Allocation that marks a Contract's sensor as allocated to its buyer."""
    meta = contract["metadata"]
    consumer = owner(contract) or ""
    flavor_name = contract["spec"]["flavor"]["metadata"]["name"]
    return {
        "apiVersion": ALLOCATION.api_version,
        "kind": ALLOCATION.kind,
        "metadata": {
            "name": allocation_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": _managed(consumer, flavor=flavor_name, contract=meta["name"]),
        },
        "spec": {
            "contract": {
                "apiVersion": CONTRACT.api_version,
                "kind": CONTRACT.kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
            },
            "forwarding": False,
        },
    }


def secret_body(
    *, name: str, consumer: str, authorization: DeliveryAuthorization
) -> dict[str, Any]:
    """The Secret holding the credentials for a Contract's endpoint (ROUTE_NAMESPACE)."""
    if authorization.type is AuthType.BASIC:
        assert authorization.username is not None and authorization.password is not None
        data = {
            SECRET_USERNAME_KEY: authorization.username,
            SECRET_PASSWORD_KEY: authorization.password.get_secret_value(),
        }
    else:
        assert authorization.token is not None
        data = {SECRET_TOKEN_KEY: authorization.token.get_secret_value()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ROUTE_NAMESPACE,
            "labels": _managed(consumer, contract=name),
        },
        "type": "Opaque",
        "stringData": data,
    }


def contract_answer(contract: Mapping[str, Any]) -> ContractAnswer:
    """What a consumer is told of its Contract (never the delivery credentials)."""
    meta = contract.get("metadata") or {}
    spec = contract.get("spec") or {}
    annotations = meta.get("annotations") or {}
    item = flavor_item(spec["flavor"])
    if item["timestamp"] == UNKNOWN_TIMESTAMP:  # the Contract's copy keeps no creationTimestamp
        item["timestamp"] = rfc3339_timestamp(meta.get("creationTimestamp"))
    endpoint = spec.get("ingressTelemetryEndpoint") or {}
    auth = annotations.get(DELIVERY_AUTH_ANNOTATION, AUTH_NONE)
    configuration = spec.get("configuration")
    peering = spec.get("peeringTargetCredentials") or {}
    return ContractAnswer(
        contract_id=meta["name"],
        transaction_id=spec.get("transactionID", ""),
        flavor=FlavorItem.model_validate(item),
        buyer=node_identity(spec.get("buyer") or {}),
        buyer_cluster_id=str(spec.get("buyerClusterID", "")),
        seller=node_identity(spec.get("seller") or {}),
        peering_target_credentials=PeeringCredentials(
            cluster_id=str(peering.get("liqoID", "")), kubeconfig=""
        ),
        expiration_time=spec.get("expirationTime"),
        start_time=meta.get("creationTimestamp"),
        configuration=Configuration.model_validate(configuration) if configuration else None,
        ingress_telemetry_endpoint=TelemetryEndpointAnswer(
            endpoint=str(endpoint.get("endpoint", "")),
            intents=list(endpoint.get("intents") or []),
            format=_format(annotations.get(DELIVERY_FORMAT_ANNOTATION)),
            shape=_shape(annotations.get(DELIVERY_SHAPE_ANNOTATION)),
            authorization=(
                AuthorizationSummary(type=AuthType(auth)) if auth in set(AuthType) else None
            ),
        ),
    )


def _shape(value: object) -> DeliveryShape | None:
    """The shape a Contract's annotation holds (None when absent or not one)."""
    try:
        return delivery_shape(parse_shaping(load_json(str(value)))) if value else None
    except (JSONInputError, ValueError):
        return None


def _format(value: object) -> DeliveryFormat:
    try:
        return DeliveryFormat(str(value))
    except ValueError:
        return DeliveryFormat.INFLUX

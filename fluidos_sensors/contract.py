"""What a sold sensor's FLUIDOS ``Contract`` says about delivery, in one place.

The REAR gateway writes these annotations and labels on every Contract it creates; the router
manager reads them back with :func:`delivery_target` to turn a Contract into a route target.
The upstream Contract CRD has no field for "which MQTT topic on which edge node" nor for the
delivery format and credentials, so they travel as annotations (the CRD prunes unknown spec
fields); the credentials themselves never do: they live in a Secret in
``fluidos_sensors.api.ROUTE_NAMESPACE`` named after the Contract.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluidos_sensors.api import ROUTE_NAMESPACE
from fluidos_sensors.endpoints import (
    AuthType,
    DeliveryFormat,
    DeliveryPolicy,
    EndpointError,
    check_endpoint_url,
)
from fluidos_sensors.flavor import SENSORS_PREFIX, label_safe
from fluidos_sensors.limits import JSONInputError, load_json
from fluidos_sensors.shaping import Shaping, ShapingError, parse_shaping

# Annotations on a Contract (values are free text).
DELIVERY_FORMAT_ANNOTATION = f"{SENSORS_PREFIX}/delivery-format"
DELIVERY_AUTH_ANNOTATION = f"{SENSORS_PREFIX}/delivery-auth"
DELIVERY_SECRET_ANNOTATION = f"{SENSORS_PREFIX}/delivery-secret"
# Window aggregates or downsampling the buyer asked for (`fluidos_sensors.shaping`, as JSON);
# absent: every reading.
DELIVERY_SHAPE_ANNOTATION = f"{SENSORS_PREFIX}/delivery-shape"
CONSUMER_ANNOTATION = f"{SENSORS_PREFIX}/consumer"
BROKER_TOPIC_ANNOTATION = f"{SENSORS_PREFIX}/broker-topic"
EDGE_NODE_ANNOTATION = f"{SENSORS_PREFIX}/edge-node"
# Where the buyer may have data delivered (endpoints.DeliveryPolicy, comma-separated). The
# provider writes it on a consumer's REAR token Secret; the gateway copies the policy it
# checked a purchase against onto the Contract, and the router manager onto the route target,
# so that the edge agent checks the URL again before it connects.
DELIVERY_POLICY_ANNOTATION = f"{SENSORS_PREFIX}/delivery-allowed"

# Labels to select Contracts, Allocations, Transactions and delivery Secrets by (only set
# when the value is a valid label value; consumer ids always are, see rear/wire.py).
CONSUMER_LABEL = f"{SENSORS_PREFIX}/consumer"
FLAVOR_LABEL = f"{SENSORS_PREFIX}/flavor"
CONTRACT_LABEL = f"{SENSORS_PREFIX}/contract"
TRANSACTION_LABEL = f"{SENSORS_PREFIX}/transaction"

# Keys of the delivery Secret (namespace ROUTE_NAMESPACE, name = the Contract's name).
SECRET_TOKEN_KEY = "token"
SECRET_USERNAME_KEY = "username"
SECRET_PASSWORD_KEY = "password"

AUTH_NONE = "none"  # the DELIVERY_AUTH_ANNOTATION value when the endpoint takes no credentials


class ContractError(ValueError):
    """A Contract cannot be delivered; the message names the Contract and the field."""


@dataclass(frozen=True, kw_only=True)
class ContractDelivery:
    """Where and how one sold sensor's readings go: one route target."""

    contract: str
    namespace: str
    flavor: str
    node: str  # edge node whose broker carries the readings
    broker_topic: str  # MQTT topic on that broker
    endpoint: str  # consumer's URL (http or https)
    format: DeliveryFormat
    auth_type: AuthType | None  # None: no credentials
    secret_name: str | None  # in secret_namespace; set exactly when auth_type is
    consumer: str
    policy: DeliveryPolicy  # what the provider allowed this consumer at purchase
    secret_namespace: str = ROUTE_NAMESPACE
    shape: Shaping | None = None  # None: every reading


def contract_annotations(
    *,
    broker_topic: str,
    node: str,
    format: DeliveryFormat,
    auth_type: AuthType | None,
    secret_name: str | None,
    consumer: str,
    policy: DeliveryPolicy,
    shape: Shaping | None = None,
) -> dict[str, str]:
    """The delivery annotations the gateway puts on a Contract (read by delivery_target)."""
    annotations = {
        BROKER_TOPIC_ANNOTATION: broker_topic,
        EDGE_NODE_ANNOTATION: node,
        DELIVERY_FORMAT_ANNOTATION: str(format),
        DELIVERY_AUTH_ANNOTATION: str(auth_type) if auth_type else AUTH_NONE,
        CONSUMER_ANNOTATION: consumer,
        DELIVERY_POLICY_ANNOTATION: policy.text(),
    }
    if secret_name:
        annotations[DELIVERY_SECRET_ANNOTATION] = secret_name
    if shape is not None:
        annotations[DELIVERY_SHAPE_ANNOTATION] = json.dumps(shape.body(), separators=(",", ":"))
    return annotations


def selection_labels(**values: str) -> dict[str, str]:
    """Labels by keyword (consumer=, flavor=, contract=, transaction=), label-safe ones only."""
    keys = {
        "consumer": CONSUMER_LABEL,
        "flavor": FLAVOR_LABEL,
        "contract": CONTRACT_LABEL,
        "transaction": TRANSACTION_LABEL,
    }
    return {keys[name]: value for name, value in values.items() if label_safe(value)}


def delivery_target(contract: Mapping[str, Any]) -> ContractDelivery:
    """The route target a Contract written by the REAR gateway describes.

    Raises ContractError naming the Contract and the field when something is missing or wrong.
    """
    meta = contract.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "")
    where = f"Contract {namespace}/{name}" if namespace else f"Contract {name or '(unnamed)'}"
    if not name:
        raise ContractError(f"{where}: metadata.name is missing")
    annotations = meta.get("annotations")
    annotations = annotations if isinstance(annotations, Mapping) else {}
    spec = contract.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}

    def annotation(key: str) -> str:
        value = annotations.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ContractError(f'{where}: annotation "{key}" is missing')
        return value.strip()

    flavor = spec.get("flavor")
    flavor_meta = flavor.get("metadata") if isinstance(flavor, Mapping) else None
    flavor_name = flavor_meta.get("name") if isinstance(flavor_meta, Mapping) else None
    if not isinstance(flavor_name, str) or not flavor_name:
        raise ContractError(f"{where}: spec.flavor.metadata.name is missing")

    endpoint_spec = spec.get("ingressTelemetryEndpoint")
    endpoint = endpoint_spec.get("endpoint") if isinstance(endpoint_spec, Mapping) else None
    if endpoint is None:
        raise ContractError(f"{where}: spec.ingressTelemetryEndpoint.endpoint is missing")
    try:
        check_endpoint_url(endpoint)
    except ValueError as exc:
        raise ContractError(f"{where}: spec.ingressTelemetryEndpoint.endpoint {exc}") from None
    if DELIVERY_POLICY_ANNOTATION not in annotations:  # older than the policy: buy again
        raise ContractError(f'{where}: annotation "{DELIVERY_POLICY_ANNOTATION}" is missing')
    policy, _ = DeliveryPolicy.parse(str(annotations[DELIVERY_POLICY_ANNOTATION]))
    try:
        policy.check(endpoint)
    except EndpointError as exc:
        raise ContractError(f"{where}: spec.ingressTelemetryEndpoint.endpoint {exc}") from None

    raw_format = annotation(DELIVERY_FORMAT_ANNOTATION)
    try:
        delivery_format = DeliveryFormat(raw_format)
    except ValueError:
        raise ContractError(
            f'{where}: annotation "{DELIVERY_FORMAT_ANNOTATION}" must be one of '
            f"{', '.join(DeliveryFormat)}, got {raw_format!r}"
        ) from None
    raw_auth = annotation(DELIVERY_AUTH_ANNOTATION)
    auth_type: AuthType | None = None
    if raw_auth != AUTH_NONE:
        try:
            auth_type = AuthType(raw_auth)
        except ValueError:
            raise ContractError(
                f'{where}: annotation "{DELIVERY_AUTH_ANNOTATION}" must be one of '
                f"{', '.join([AUTH_NONE, *AuthType])}, got {raw_auth!r}"
            ) from None
    secret_name = None
    if auth_type is not None:
        secret_name = annotation(DELIVERY_SECRET_ANNOTATION)
    shape = None
    if DELIVERY_SHAPE_ANNOTATION in annotations:
        try:
            shape = parse_shaping(load_json(str(annotations[DELIVERY_SHAPE_ANNOTATION])))
        except (JSONInputError, ShapingError) as exc:
            raise ContractError(
                f'{where}: annotation "{DELIVERY_SHAPE_ANNOTATION}": {exc}'
            ) from None
    return ContractDelivery(
        contract=name,
        namespace=namespace,
        flavor=flavor_name,
        node=annotation(EDGE_NODE_ANNOTATION),
        broker_topic=annotation(BROKER_TOPIC_ANNOTATION),
        endpoint=endpoint,
        format=delivery_format,
        auth_type=auth_type,
        secret_name=secret_name,
        consumer=annotation(CONSUMER_ANNOTATION),
        policy=policy,
        shape=shape,
    )

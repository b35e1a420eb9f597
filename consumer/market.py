"""The consumer's side of REAR: reach each provider's gateway, discover, buy, release.

Tokens, gateway CAs and the endpoint's credentials come from Secrets of the consumer's
namespace (read one by one: the operator may `get` Secrets, never list them). Nothing here
logs or returns a secret value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import SecretStr, ValidationError

from consumer.plan import HeldContract
from consumer.ranking import Candidate, candidate, readable_candidates
from consumer.spec import EndpointAuth, ProviderSpec, RequestSpec
from fluidos_sensors.contract import SECRET_PASSWORD_KEY, SECRET_TOKEN_KEY, SECRET_USERNAME_KEY
from fluidos_sensors.endpoints import AuthType
from fluidos_sensors.filters import SensorFilter
from fluidos_sensors.flavor import FlavorError
from fluidos_sensors.kube import REQUEST_TIMEOUT, get_or_none
from fluidos_sensors.limits import clip
from fluidos_sensors.rates import rate_configuration
from fluidos_sensors.rear.client import AsyncRearClient, RearError
from fluidos_sensors.rear.wire import (
    ContractAnswer,
    DeliveryAuthorization,
    NodeIdentity,
    SensorConfiguration,
    TelemetryEndpoint,
    delivery_shape,
)

# Answers that say "this sensor, not this provider": try the next candidate.
_TAKEN = (404, 409, 410)


class ProviderProblem(Exception):
    """A provider cannot be used now; the message names it and says why."""


class EndpointProblem(Exception):
    """The request's endpoint credentials cannot be read; the message names the Secret."""


class Secrets:
    """Secrets of one namespace, read one at a time (decoded)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._core = client.CoreV1Api(api)
        self.namespace = namespace

    def _read(self, name: str) -> dict[str, str] | None:
        secret = get_or_none(
            self._core.read_namespaced_secret,
            name,
            self.namespace,
            _request_timeout=REQUEST_TIMEOUT,
        )
        if secret is None:
            return None
        values = {}
        for key, value in (secret.data or {}).items():
            try:
                values[key] = base64.b64decode(value).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue  # not text: no key we read is binary
        return values

    async def get(self, name: str) -> dict[str, str] | None:
        """The Secret's keys and values, or None when it does not exist."""
        return await asyncio.to_thread(self._read, name)


async def _secret_value(secrets: Secrets, name: str, key: str, whose: str) -> str:
    try:
        values = await secrets.get(name)
    except ApiException as exc:
        raise ProviderProblem(
            f"{whose}: cannot read Secret {name}: {exc.status} {exc.reason}"
        ) from None
    if values is None:
        raise ProviderProblem(f"{whose}: Secret {secrets.namespace}/{name} not found")
    value = values.get(key, "").strip()
    if not value:
        raise ProviderProblem(f'{whose}: Secret {secrets.namespace}/{name} has no key "{key}"')
    return value


async def open_provider(
    secrets: Secrets, provider: ProviderSpec, *, timeout: float = 10.0
) -> AsyncRearClient:
    """A REAR client of the provider's gateway with this consumer's token, trusting its CA."""
    whose = f"provider {provider.name}"
    token = await _secret_value(secrets, provider.token.name, provider.token.key, whose)
    verify: bool | ssl.SSLContext = True
    if provider.ca is not None:
        pem = await _secret_value(secrets, provider.ca.name, provider.ca.key, whose)
        try:
            verify = ssl.create_default_context(cadata=pem)
        except (ssl.SSLError, ValueError) as exc:
            raise ProviderProblem(
                f'{whose}: Secret {provider.ca.name} key "{provider.ca.key}" is not a PEM CA: {exc}'
            ) from None
    return AsyncRearClient(provider.url, token, verify=verify, timeout=timeout)


async def endpoint_authorization(
    secrets: Secrets, auth: EndpointAuth | None
) -> DeliveryAuthorization | None:
    """The credentials the providers present to the request's endpoint (from its Secret)."""
    if auth is None:
        return None
    where = f"spec.endpoint.auth.secretName: Secret {secrets.namespace}/{auth.secret_name}"
    try:
        values = await secrets.get(auth.secret_name)
    except ApiException as exc:
        raise EndpointProblem(f"{where} cannot be read: {exc.status} {exc.reason}") from None
    if values is None:
        raise EndpointProblem(f"{where} not found")
    keys = (
        (SECRET_USERNAME_KEY, SECRET_PASSWORD_KEY)
        if auth.type is AuthType.BASIC
        else (SECRET_TOKEN_KEY,)
    )
    missing = [key for key in keys if not values.get(key)]
    if missing:
        raise EndpointProblem(f'{where} has no key "{missing[0]}" (auth type {auth.type})')
    try:
        if auth.type is AuthType.BASIC:
            return DeliveryAuthorization(
                type=auth.type,
                username=values[SECRET_USERNAME_KEY],
                password=SecretStr(values[SECRET_PASSWORD_KEY]),
            )
        return DeliveryAuthorization(type=auth.type, token=SecretStr(values[SECRET_TOKEN_KEY]))
    except ValidationError as exc:  # the message, never the input (it holds the secret)
        raise EndpointProblem(f"{where}: {exc.errors()[0]['msg']}") from None


def telemetry(
    spec: RequestSpec, intent: str, authorization: DeliveryAuthorization | None
) -> TelemetryEndpoint:
    """The purchase's `ingressTelemetryEndpoint` for a request."""
    return TelemetryEndpoint(
        endpoint=spec.endpoint,
        intents=[intent],
        format=spec.format,
        shape=delivery_shape(spec.shape),
        authorization=authorization,
    )


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, RearError | ProviderProblem) else type(exc).__name__


def provider_problem(provider: str, exc: BaseException, retry_in: float) -> str:
    """A provider's failure as the status says it; one that is not ready (503) is asked again
    in `retry_in` seconds rather than at the next resync."""
    if isinstance(exc, RearError) and exc.not_ready:  # short: status messages clip problems
        return (
            f"provider {provider} is not ready, asking again in {retry_in:.0f}s "
            f"(HTTP {exc.status}: {clip(exc.message, 80)})"
        )
    return f"provider {provider}: {_why(exc)}"


@dataclass
class Discovery:
    """What one pass learned from the providers."""

    candidates: list[Candidate] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)  # offer read
    reachable: set[str] = field(default_factory=set)  # contracts read
    contracts: dict[str, list[ContractAnswer]] = field(default_factory=dict)  # ours, by provider
    problems: list[str] = field(default_factory=list)
    not_ready: set[str] = field(default_factory=set)  # answered 503: ask again soon
    retry_hint: float | None = None  # the longest Retry-After they asked for


async def discover(
    clients: Mapping[str, AsyncRearClient],
    asked: Sequence[str],
    sensor_filter: SensorFilter,
    intent: str,
    retry_in: float,
) -> Discovery:
    """Ask every provider in `clients` for this request's contracts and, those `asked`, for
    their offer matching the filter; a provider that fails is skipped with its reason (one
    that is not ready: asked again in `retry_in` seconds)."""
    found = Discovery()
    rank_of = {name: index for index, name in enumerate(asked)}

    def failed(name: str, exc: RearError) -> None:
        found.problems.append(provider_problem(name, exc, retry_in))
        if exc.not_ready:
            found.not_ready.add(name)
            if exc.retry_after is not None:
                found.retry_hint = max(found.retry_hint or 0.0, exc.retry_after)

    async def one(name: str, rear: AsyncRearClient) -> None:
        try:
            contracts = await rear.list_contracts()
        except RearError as exc:
            failed(name, exc)
            return
        found.reachable.add(name)
        found.contracts[name] = [c for c in contracts if intent in c.intents]
        if name not in rank_of:
            return
        try:
            items = await rear.list_flavors(sensor_filter)
        except RearError as exc:
            failed(name, exc)
            return
        found.listed.add(name)
        candidates, unreadable = readable_candidates(
            name, rank_of[name], (item.wire() for item in items), sensor_filter.sensor_type
        )
        found.candidates.extend(candidates)
        found.problems.extend(unreadable)

    await asyncio.gather(*(one(name, rear) for name, rear in clients.items()))
    return found


def held_from_answer(
    provider: str,
    answer: ContractAnswer,
    generation: int,
    known: Candidate | None = None,
    bought: str | None = None,
) -> HeldContract:
    """What the status remembers of a contract the provider answered."""
    item = known
    if item is None:
        try:
            item = candidate(provider, 0, answer.flavor.wire(), ())
        except FlavorError:
            item = None
    return HeldContract(
        provider=provider,
        flavor_id=answer.flavor.flavor_id,
        contract_id=answer.contract_id,
        transaction_id=answer.transaction_id,
        node=item.node if item else "",
        sensor_types=item.sensor_types if item else (),
        device=item.device if item else None,
        sensor=item.sensor if item else None,
        since=answer.start_time,
        bought=bought,
        generation=generation,
    )


class Refused(Exception):
    """This sensor cannot be bought now (sold out, gone, expired): try the next one."""


async def buy(
    rear: AsyncRearClient,
    flavor_id: str,
    buyer: NodeIdentity,
    endpoint: TelemetryEndpoint,
    rate_hz: float | None = None,
) -> ContractAnswer:
    """Reserve (at `rate_hz`, when given) then purchase one flavor. Refused for this sensor;
    RearError for the provider."""
    configuration = (
        SensorConfiguration.model_validate(rate_configuration(rate_hz))
        if rate_hz is not None
        else None
    )
    try:
        transaction = await rear.reserve(flavor_id, buyer, configuration)
        return await rear.purchase(transaction.transaction_id, endpoint)
    except RearError as exc:
        if exc.status in _TAKEN:
            raise Refused(exc.message) from None
        raise


def rear_problem(exc: RearError) -> str:
    """A REAR failure as a status message shows it."""
    return _why(exc)


def release_problem(provider: str, contract_id: str, exc: BaseException) -> str:
    return f"contract {contract_id} at provider {provider}: {_why(exc)}"


def snapshot(value: Any) -> Any:
    """A plain copy of a (kopf) mapping: dicts and lists all the way down."""
    if isinstance(value, Mapping):
        return {str(key): snapshot(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [snapshot(item) for item in value]
    return value

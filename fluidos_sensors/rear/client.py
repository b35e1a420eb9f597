"""Clients of a REAR v2 gateway (ours or a FLUIDOS node's): `RearClient` (sync) and
`AsyncRearClient`, sharing request building and answer reading; `RearError` for what fails.
The bodies they send and read are `fluidos_sensors.rear.wire`'s models."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import (
    BaseModel,
    ValidationError,
)

from fluidos_sensors.filters import SensorFilter
from fluidos_sensors.rear.wire import (
    CONTRACT_PATH,
    CONTRACTS_PATH,
    FLAVORS_PATH,
    PURCHASE_PATH,
    RESERVATIONS_PATH,
    SENSOR_FLAVORS_PATH,
    ContractAnswer,
    FlavorItem,
    NodeIdentity,
    PurchaseRequest,
    ReservationRequest,
    SensorConfiguration,
    TelemetryEndpoint,
    TelemetryEndpointAnswer,
    TransactionAnswer,
    with_liqo_id,
)

NOT_READY = 503  # a gateway (ours or FLUIDOS's) that is starting or cannot reach its cluster


class RearError(Exception):
    """A REAR call failed: ``status`` (None when the gateway was not reached) and its message;
    ``retry_after``: the seconds a 429 or 503 answer asked to wait (Retry-After), if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        field: str | None = None,
        where: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.field = field
        self.where = where
        self.retry_after = retry_after
        shown = f"{where}: " if where else ""
        code = f"HTTP {status}: " if status is not None else ""
        suffix = f" (field {field})" if field else ""
        super().__init__(f"{shown}{code}{message}{suffix}")

    @property
    def not_ready(self) -> bool:
        """The gateway is up but not ready: ask again later, nothing is wrong with the call."""
        return self.status == NOT_READY


Verify = bool | str | ssl.SSLContext  # a str is the path of a CA bundle to trust


def _tls(verify: Verify) -> bool | ssl.SSLContext:
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


class _Calls:
    """Request building and answer reading shared by the sync and async clients."""

    def __init__(self, base_url: str, token: str) -> None:
        if not token:
            raise ValueError("a REAR client needs the consumer's bearer token")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def __repr__(self) -> str:  # never show the token
        return f"{type(self).__name__}({self.base_url!r})"

    @staticmethod
    def flavors_request(
        sensor_filter: SensorFilter | None, sensors_only: bool
    ) -> tuple[str, list[tuple[str, str]]]:
        if sensor_filter is None and not sensors_only:
            return FLAVORS_PATH, []
        return SENSOR_FLAVORS_PATH, (sensor_filter.to_query() if sensor_filter else [])

    @staticmethod
    def error(response: httpx.Response, where: str) -> RearError:
        message, field = response.reason_phrase or "error", None
        try:
            body = response.json()
            if isinstance(body, Mapping):
                message = str(body.get("error") or body.get("detail") or message)
                field = body.get("field") if isinstance(body.get("field"), str) else None
        except ValueError:
            text = response.text.strip()
            if text:
                message = text[:500]
        return RearError(
            message,
            status=response.status_code,
            field=field,
            where=where,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    def read(self, response: httpx.Response, where: str) -> Any:
        if response.status_code >= 400:
            raise self.error(response, where)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RearError(
                "answer is not JSON", status=response.status_code, where=where
            ) from None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (its HTTP-date form is not used by any gateway we talk to)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86_400 else None


def _parse(model: type[BaseModel], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RearError(
            f"unexpected answer: {exc.errors()[0]['msg']}", status=200, where=where
        ) from None


def _flavors(data: Any, where: str) -> list[FlavorItem]:
    if data is None:  # FLUIDOS answers 204 for "no flavors"
        return []
    if not isinstance(data, list):
        raise RearError("unexpected answer: not a list", status=200, where=where)
    return [_parse(FlavorItem, item, where) for item in data]


def _contract_id(contract: str | ContractAnswer) -> str:
    return contract.contract_id if isinstance(contract, ContractAnswer) else contract


def _telemetry(endpoint: TelemetryEndpoint | str) -> TelemetryEndpoint:
    return (
        endpoint
        if isinstance(endpoint, TelemetryEndpoint)
        else TelemetryEndpoint(endpoint=endpoint)
    )


def _reservation(
    flavor_id: str, buyer: NodeIdentity, configuration: SensorConfiguration | None
) -> dict[str, Any]:
    return ReservationRequest(
        flavor_id=flavor_id, buyer=with_liqo_id(buyer), configuration=configuration
    ).wire()


def _contract(data: Any, where: str, sent: TelemetryEndpoint) -> ContractAnswer:
    answer: ContractAnswer = _parse(ContractAnswer, data, where)
    if answer.ingress_telemetry_endpoint is None:  # FLUIDOS's gateway does not echo it
        answer = answer.model_copy(
            update={"ingress_telemetry_endpoint": TelemetryEndpointAnswer.of(sent)}
        )
    return answer


class RearClient(_Calls):
    """Blocking REAR client of one provider's gateway, authenticated as one consumer."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        verify: Verify = True,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self._headers,
            verify=_tls(verify),
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        where = f"{method} {self.base_url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RearError(f"gateway unreachable: {exc}", status=None, where=where) from exc
        return self.read(response, where), where

    def list_flavors(
        self, filter: SensorFilter | None = None, *, sensors_only: bool = False
    ) -> list[FlavorItem]:
        """Available flavors; with a filter (or sensors_only), Sensor flavors matching it."""
        path, params = self.flavors_request(filter, sensors_only)
        data, where = self._call("GET", path, params=params)
        return _flavors(data, where)

    def reserve(
        self,
        flavor_id: str,
        buyer: NodeIdentity,
        configuration: SensorConfiguration | None = None,
    ) -> TransactionAnswer:
        """Reserve a flavor; purchase the answered transaction before it expires."""
        data, where = self._call(
            "POST", RESERVATIONS_PATH, json=_reservation(flavor_id, buyer, configuration)
        )
        return _parse(TransactionAnswer, data, where)

    def purchase(self, transaction_id: str, endpoint: TelemetryEndpoint | str) -> ContractAnswer:
        """Buy a reserved flavor: its readings go to ``endpoint``."""
        path = PURCHASE_PATH.format(transaction_id=quote(transaction_id, safe=""))
        sent = _telemetry(endpoint)
        body = PurchaseRequest(ingress_telemetry_endpoint=sent).wire()
        data, where = self._call("POST", path, json=body)
        return _contract(data, where, sent)

    def get_contract(self, contract_id: str) -> ContractAnswer:
        data, where = self._call(
            "GET", CONTRACT_PATH.format(contract_id=quote(contract_id, safe=""))
        )
        return _parse(ContractAnswer, data, where)

    def list_contracts(self) -> list[ContractAnswer]:
        data, where = self._call("GET", CONTRACTS_PATH)
        return [_parse(ContractAnswer, item, where) for item in data or []]

    def release(self, contract: str | ContractAnswer) -> None:
        """End a contract (idempotent): its data stops flowing to the endpoint."""
        self._call(
            "DELETE", CONTRACT_PATH.format(contract_id=quote(_contract_id(contract), safe=""))
        )


class AsyncRearClient(_Calls):
    """The asyncio REAR client, with the same methods as RearClient."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        verify: Verify = True,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            verify=_tls(verify),
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        where = f"{method} {self.base_url}{path}"
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RearError(f"gateway unreachable: {exc}", status=None, where=where) from exc
        return self.read(response, where), where

    async def list_flavors(
        self, filter: SensorFilter | None = None, *, sensors_only: bool = False
    ) -> list[FlavorItem]:
        """Available flavors; with a filter (or sensors_only), Sensor flavors matching it."""
        path, params = self.flavors_request(filter, sensors_only)
        data, where = await self._call("GET", path, params=params)
        return _flavors(data, where)

    async def reserve(
        self,
        flavor_id: str,
        buyer: NodeIdentity,
        configuration: SensorConfiguration | None = None,
    ) -> TransactionAnswer:
        """Reserve a flavor; purchase the answered transaction before it expires."""
        data, where = await self._call(
            "POST", RESERVATIONS_PATH, json=_reservation(flavor_id, buyer, configuration)
        )
        return _parse(TransactionAnswer, data, where)

    async def purchase(
        self, transaction_id: str, endpoint: TelemetryEndpoint | str
    ) -> ContractAnswer:
        """Buy a reserved flavor: its readings go to ``endpoint``."""
        path = PURCHASE_PATH.format(transaction_id=quote(transaction_id, safe=""))
        sent = _telemetry(endpoint)
        body = PurchaseRequest(ingress_telemetry_endpoint=sent).wire()
        data, where = await self._call("POST", path, json=body)
        return _contract(data, where, sent)

    async def get_contract(self, contract_id: str) -> ContractAnswer:
        data, where = await self._call(
            "GET", CONTRACT_PATH.format(contract_id=quote(contract_id, safe=""))
        )
        return _parse(ContractAnswer, data, where)

    async def list_contracts(self) -> list[ContractAnswer]:
        data, where = await self._call("GET", CONTRACTS_PATH)
        return [_parse(ContractAnswer, item, where) for item in data or []]

    async def release(self, contract: str | ContractAnswer) -> None:
        """End a contract (idempotent): its data stops flowing to the endpoint."""
        await self._call(
            "DELETE", CONTRACT_PATH.format(contract_id=quote(_contract_id(contract), safe=""))
        )

"""The REAR v2 HTTP API of a provider (FastAPI): routes, authentication, errors, OpenAPI.

Every path, ``/openapi.json`` and ``/docs`` included, needs ``Authorization: Bearer <token>``
of a known consumer, except the kubelet's probes ``/healthz`` and ``/readyz`` (``ok`` or
``not ready``, nothing else). Errors are ``{"error": ..., "field"?: ...}``: 400 for bad input
(naming the field or query parameter), 401, 404 (also for another consumer's objects), 409,
410, 413, and 503 while the Kubernetes API server is unreachable or the gateway is still
starting.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluidos_sensors.filters import MATCH_FILTERS, RANGE_FILTERS, FilterError, SensorFilter
from fluidos_sensors.limits import preview
from fluidos_sensors.rear.wire import (
    AUTHORIZATION_SCHEMA,
    CONTRACT_PATH,
    CONTRACTS_PATH,
    FLAVORS_PATH,
    PURCHASE_PATH,
    RESERVATIONS_PATH,
    SENSOR_FLAVORS_PATH,
    ContractAnswer,
    ErrorAnswer,
    FlavorItem,
    PurchaseRequest,
    ReservationRequest,
    TransactionAnswer,
)
from fluidos_sensors.units import NUMBER_PATTERN, POSITIVE_NUMBER_PATTERN
from resource_manager.gateway.auth import ConsumerTokens
from resource_manager.gateway.errors import GatewayError, Unavailable
from resource_manager.gateway.market import Marketplace

log = logging.getLogger("resource_manager.gateway.http")

MAX_BODY_BYTES = 64 * 1024
_FILTER_NAME = re.compile(r"filter\[([^\[\]]*)\]")

Ready = Callable[[], bool]

# The kubelet's probes: no token (the kubelet has none), and they tell nothing but a state.
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"


def _error(status: int, message: str, field: str | None = None, **headers: str) -> JSONResponse:
    return JSONResponse(
        ErrorAnswer(error=message, field=field).wire(), status_code=status, headers=headers
    )


# ------------------------------------------------------------------------------ middleware


class _Probes:
    """``/healthz`` (the process serves HTTP) and ``/readyz`` (consumers' tokens loaded and
    the flavor index synced), answered before authentication and revealing nothing else."""

    def __init__(self, app: ASGIApp, *, ready: Ready) -> None:
        self.app = app
        self.ready = ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in (HEALTH_PATH, READY_PATH):
            await self.app(scope, receive, send)
            return
        headers = {"Cache-Control": "no-store"}
        if scope["method"] not in ("GET", "HEAD"):
            headers["Allow"] = "GET, HEAD"
            response = PlainTextResponse("method not allowed\n", 405, headers=headers)
        elif path == HEALTH_PATH or self.ready():
            response = PlainTextResponse("ok\n", 200, headers=headers)
        else:
            response = PlainTextResponse("not ready\n", 503, headers=headers)
        await response(scope, receive, send)


class _Guard:
    """Authenticates every request (consumer id into ``scope["state"]``) and bounds bodies."""

    def __init__(
        self, app: ASGIApp, *, tokens: ConsumerTokens, tokens_ready: Ready, max_body: int
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.tokens_ready = tokens_ready
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.tokens_ready():
            response = _error(503, "the gateway is starting; try again in a moment")
            await response(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        consumer = self.tokens.consumer_for(header)
        if consumer is None:
            response = _error(
                401,
                "a valid bearer token is required (Authorization: Bearer <token>)",
                **{"WWW-Authenticate": 'Bearer realm="REAR"'},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["consumer"] = consumer

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await _error(413, f"request body larger than {self.max_body} bytes")(
                scope, receive, send
            )
            return
        # Read the (small) body here so an undeclared or lying length cannot exceed the bound.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _error(413, f"request body larger than {self.max_body} bytes")(
                    scope, receive, send
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# ------------------------------------------------------------------------------ helpers


def sensor_filter(pairs: Iterable[tuple[str, str]]) -> SensorFilter:
    """The filter of a ``/flavors/sensors`` query; GatewayError 400 naming the parameter."""
    pairs = list(pairs)
    for key, _ in pairs:
        if not key.startswith("filter"):  # a typo must not silently widen the query
            raise GatewayError(
                400, f"unknown query parameter {preview(key)}: only filter[...] is taken", key
            )
    for key, value in pairs:
        schema = _QUERY_SCHEMAS.get(key)
        problem = _schema_problem(value, schema) if schema is not None else None
        if problem is not None:
            raise GatewayError(400, f"{key} {problem}, got {preview(value)}", key)
    try:
        return SensorFilter.from_query(pairs)
    except FilterError as exc:
        message = str(exc)
        field = next((key for key, _ in pairs if f'"{key}"' in message), None)
        if field is None:
            found = _FILTER_NAME.search(message)
            field = f"filter[{found.group(1)}]" if found else "filter"
        raise GatewayError(400, message, field) from None


def _json_list(items: list[bytes]) -> Response:
    return Response(b"[" + b",".join(items) + b"]", media_type="application/json")


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if not errors:
        return _error(400, "invalid request")
    first = errors[0]
    location = [str(part) for part in first.get("loc", ())]
    if location and location[0] in ("body", "query", "path"):
        location = location[1:]
    field = ".".join(location) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return _error(400, "the request body is not valid JSON")
    if kind == "missing" and field is None:
        return _error(400, "a JSON request body is required")
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return _error(400, f"{field}: {message}" if field else message, field)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Bad input; `field` names the body field or query parameter",
        401: "Missing or unknown bearer token",
        403: "The body names another consumer than the bearer token's (`buyerID.ID`)",
        404: "Unknown (or another consumer's) flavor, transaction or contract",
        409: "Not available, sold out, or already held by this consumer",
        410: "The reservation expired; reserve again",
        413: f"Request body larger than {MAX_BODY_BYTES} bytes",
        503: "The provider's Kubernetes API server is unreachable, or the gateway is starting",
    }
    return {code: {"model": ErrorAnswer, "description": texts[code]} for code in codes}


_UNITS = {  # the units each range filter takes after its number (fluidos_sensors.sensor)
    "latency": ("ns", "us", "µs", "ms", "s", "sec", "min"),
    "observed_latency": ("ns", "us", "µs", "ms", "s", "sec", "min"),
    "sampling_rate": ("mHz", "Hz", "kHz", "MHz"),
    "consumption": ("nW", "uW", "µW", "mW", "W", "nA", "uA", "µA", "mA", "A"),
    "accuracy": (),
}
_DEFAULT_UNITS = {"latency": "ms", "observed_latency": "ms", "sampling_rate": "Hz"}
_DEFAULT_UNITS["consumption"] = "mW"


def _filter_parameters() -> list[dict[str, Any]]:
    """The filter[...] query parameters, flat (deepObject nesting is not expressible)."""
    parameters: list[dict[str, Any]] = []
    for name in MATCH_FILTERS:
        parameters.append(
            {
                "name": f"filter[{name}][match]",
                "in": "query",
                "required": False,
                "description": f"{name} equals this, case-insensitively (repeat: all must hold)",
                "schema": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": r"\S"},
            }
        )
    for name in RANGE_FILTERS:
        units = _UNITS[name]
        number = POSITIVE_NUMBER_PATTERN if name == "sampling_rate" else NUMBER_PATTERN
        pattern = f"^{number}" + (f"( ?({'|'.join(units)}))?$" if units else "$")
        unit_note = f" in {_DEFAULT_UNITS[name]} unless a unit follows" if units else ""
        if name == "sampling_rate":
            unit_note += ", more than zero"
        if name == "consumption":
            unit_note += "; the bounds of one query are all power (W) or all current (A)"
        for form, what in (
            ("[exact]", "equals"),
            ("[range][min]", "is at least"),
            ("[range][max]", "is at most (not less than [range][min]: 400 otherwise)"),
        ):
            parameters.append(
                {
                    "name": f"filter[{name}]{form}",
                    "in": "query",
                    "required": False,
                    "description": f"{name} {what} this number{unit_note}",
                    "schema": {"type": "string", "pattern": pattern},
                }
            )
    return parameters


_QUERY_SCHEMAS = {p["name"]: p["schema"] for p in _filter_parameters()}


def _schema_problem(value: str, schema: dict[str, Any]) -> str | None:
    """Why a query value breaks its published schema (so the server refuses exactly what the
    OpenAPI calls invalid), or None."""
    if len(value) < schema.get("minLength", 0):
        return "must not be empty"
    if len(value) > schema.get("maxLength", len(value)):
        return f"must be at most {schema['maxLength']} characters"
    pattern: str | None = schema.get("pattern")
    if pattern is None:
        return None
    if pattern.startswith("^") and pattern.endswith("$"):  # ECMA "$" is Python's \Z here
        found = re.fullmatch(pattern[1:-1], value)
    else:
        found = re.search(pattern, value)
    return None if found else f"must match {pattern}"


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at this request's path."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


# ------------------------------------------------------------------------------ the app


def create_app(
    market: Marketplace,
    tokens: ConsumerTokens,
    *,
    index_ready: Ready,
    tokens_ready: Ready,
    max_body_bytes: int = MAX_BODY_BYTES,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The gateway's ASGI app over a Marketplace and the consumers' tokens."""
    app = FastAPI(
        title="fluidos-sensors REAR gateway",
        version="2.0.0",
        description=(
            "REAR v2 (FLUIDOS) for Sensor flavors of one provider: discovery with filters, "
            "reservation, purchase, and our extensions to list and release contracts. "
            "Every path needs `Authorization: Bearer <token>`."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(_Guard, tokens=tokens, tokens_ready=tokens_ready, max_body=max_body_bytes)
    # Added last, so outermost: the probes never reach the token check.
    app.add_middleware(_Probes, ready=lambda: tokens_ready() and index_ready())

    def consumer_of(request: Request) -> str:
        return request.state.consumer

    def need_index() -> None:
        if not index_ready():
            raise Unavailable("the flavor index is still loading; try again in a moment")

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the first route's methods only
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return _error(exc.status_code, str(exc.detail), **headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return _error(500, "internal error of the gateway (logged)")

    @app.get(
        FLAVORS_PATH,
        summary="List all available flavors",
        operation_id="listFlavors",
        tags=["Discovery"],
        response_model=list[FlavorItem],
        responses=_responses(401, 503),
    )
    def list_flavors() -> Response:
        need_index()
        return _json_list(market.flavors())

    @app.get(
        SENSOR_FLAVORS_PATH,
        summary="List available Sensor flavors matching every filter",
        description=(
            "Filters use the deepObject form: match filters compare case-insensitively, "
            "range filters compare numbers in their units with inclusive bounds, and all "
            "filters must hold (AND). Sensor types: every given type must be measured."
        ),
        operation_id="listFlavorsSensors",
        tags=["Discovery"],
        response_model=list[FlavorItem],
        responses=_responses(400, 401, 503),
        openapi_extra={"parameters": _filter_parameters()},
    )
    def list_sensor_flavors(request: Request) -> Response:
        wanted = sensor_filter(request.query_params.multi_items())
        need_index()
        return _json_list(market.sensor_flavors(wanted))

    @app.post(
        RESERVATIONS_PATH,
        summary="Reserve a Sensor flavor",
        operation_id="reserveFlavor",
        tags=["Reservation"],
        response_model=TransactionAnswer,
        response_model_by_alias=True,
        response_model_exclude_none=True,
        responses=_responses(400, 401, 403, 404, 409, 413, 503),
    )
    def reserve(body: ReservationRequest, request: Request) -> TransactionAnswer:
        need_index()
        return market.reserve(consumer_of(request), body)

    @app.post(
        PURCHASE_PATH,
        summary="Purchase a reserved Sensor flavor",
        description=(
            "`ingressTelemetryEndpoint.endpoint` is where the readings go (http/https). "
            'Extensions: `format` ("influx", default, "json", "cloudevents" or '
            '"cloudevents-batch") and `authorization` '
            "(credentials for that endpoint; stored in a Secret, never echoed)."
        ),
        operation_id="purchaseFlavor",
        tags=["Purchase"],
        response_model=ContractAnswer,
        response_model_by_alias=True,
        response_model_exclude_none=True,
        responses=_responses(400, 401, 404, 409, 410, 413, 503),
    )
    def purchase(transaction_id: str, body: PurchaseRequest, request: Request) -> ContractAnswer:
        consumer = consumer_of(request)
        return market.purchase(consumer, transaction_id, body, tokens.policy_for(consumer))

    @app.get(
        CONTRACTS_PATH,
        summary="This consumer's contracts (extension)",
        operation_id="listContracts",
        tags=["Contracts"],
        response_model=list[ContractAnswer],
        response_model_by_alias=True,
        response_model_exclude_none=True,
        responses=_responses(401, 503),
    )
    def list_contracts(request: Request) -> list[ContractAnswer]:
        return market.contracts(consumer_of(request))

    @app.get(
        CONTRACT_PATH,
        summary="One of this consumer's contracts (extension)",
        operation_id="getContract",
        tags=["Contracts"],
        response_model=ContractAnswer,
        response_model_by_alias=True,
        response_model_exclude_none=True,
        responses=_responses(401, 404, 503),
    )
    def get_contract(contract_id: str, request: Request) -> ContractAnswer:
        return market.contract(consumer_of(request), contract_id)

    @app.delete(
        CONTRACT_PATH,
        summary="Release one of this consumer's contracts (extension; idempotent)",
        operation_id="releaseContract",
        tags=["Contracts"],
        status_code=204,
        response_class=Response,
        responses=_responses(401, 404, 503),
    )
    def release(contract_id: str, request: Request) -> Response:
        market.release(consumer_of(request), contract_id)
        return Response(status_code=204)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # Bad input is answered 400 with ErrorAnswer, never FastAPI's 422.
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.setdefault("components", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(name, None)
            # What the model validator enforces beyond the fields, where generated clients and
            # schema-driven tests see it.
            components["schemas"]["DeliveryAuthorization"] = {
                "title": "DeliveryAuthorization",
                **AUTHORIZATION_SCHEMA,
            }
            components["securitySchemes"] = {"BearerAuth": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"BearerAuth": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

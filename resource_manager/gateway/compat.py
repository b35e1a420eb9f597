"""The FLUIDOS-compatibility listener: what an unmodified FLUIDOS node's REAR client asks for.

Upstream's consumer (fluidos-project/node) sends no bearer token, speaks plain HTTP, aborts
discovery at *every* provider when ``/api/v2/flavors`` lists a Sensor item ("sensor flavor not
implemented"), and lists ``/api/v2/flavors/k8slice`` and ``/service``, which 404 on the REAR
listener. So a mixed federation keeps working, this opt-in listener (its own port, meant for a
restricted network) serves read-only listings without Sensor items:

- ``GET /api/v2/flavors``: every available flavor except Sensor ones, unfiltered;
- ``GET /api/v2/flavors/{k8slice,k8slices,vm,service}``: the available flavors of that type
  (query filters ignored), normally ``[]``: this gateway sells sensors only.

Nothing else: no sensors, no reservations, purchases or contracts (those need a token, on the
REAR listener), no OpenAPI document. Other paths answer 404, other methods 405 with ``Allow``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fluidos_sensors.rear.wire import FLAVORS_PATH, ErrorAnswer
from resource_manager.gateway.index import FlavorIndex

# The typed listings upstream's clients call (the OpenAPI spells K8Slice "k8slices").
TYPED_LISTINGS = {"k8slice": "k8slice", "k8slices": "k8slice", "vm": "vm", "service": "service"}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorAnswer(error=message).wire(), status_code=status, headers=headers)


def _listing(items: list[bytes]) -> Response:
    return Response(b"[" + b",".join(items) + b"]", media_type="application/json")


def create_compat_app(index: FlavorIndex, *, index_ready: Callable[[], bool]) -> FastAPI:
    """The read-only, unauthenticated listings for FLUIDOS peers, over the gateway's index."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def available() -> list[bytes] | Response:
        if not index_ready():
            return _error(503, "the flavor index is still loading; try again in a moment")
        return index.available_items(sensors=False)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "not served on the FLUIDOS-compatibility listener (read-only flavor listings)"
        shown = message if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, shown, exc.headers)

    @app.get(FLAVORS_PATH)
    def list_flavors() -> Response:
        found = available()
        return found if isinstance(found, Response) else _listing(found)

    def typed(type_name: str) -> Callable[[], Response]:
        def list_typed() -> Response:
            found = available()
            if isinstance(found, Response):
                return found
            # Non-sensor items are few on a sensor provider: decoding them here is cheap.
            return _listing([i for i in found if json.loads(i)["type"]["name"] == type_name])

        return list_typed

    for path, type_name in TYPED_LISTINGS.items():
        app.add_api_route(f"{FLAVORS_PATH}/{path}", typed(type_name), methods=["GET"])

    return app

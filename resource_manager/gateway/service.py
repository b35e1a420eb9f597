"""Wiring: the index and the consumers' tokens fed by watches, the reservation reaper, the app."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI
from kubernetes import client

from fluidos_sensors.api import FLAVOR
from fluidos_sensors.rear.wire import REAR_CONSUMER_LABEL
from fluidos_sensors.watch import Callbacks, ListWatch
from resource_manager.gateway.app import MAX_BODY_BYTES, create_app
from resource_manager.gateway.auth import ConsumerTokens
from resource_manager.gateway.compat import create_compat_app
from resource_manager.gateway.index import FlavorIndex
from resource_manager.gateway.market import Marketplace, MarketSettings
from resource_manager.gateway.store import MarketStore

log = logging.getLogger("resource_manager.gateway")


@dataclass
class Gateway:
    """A running gateway's parts (the app starts and stops the background ones)."""

    app: FastAPI
    market: Marketplace
    index: FlavorIndex
    tokens: ConsumerTokens
    flavors: ListWatch
    consumers: ListWatch
    compat_app: FastAPI  # the FLUIDOS-compatibility listener's (served only when asked)


def reap_interval(ttl: float) -> float:
    """How often expired reservations are looked for: a fraction of the TTL, 0.5 s to 10 s."""
    return min(10.0, max(0.5, ttl / 4))


def build_gateway(
    api: client.ApiClient,
    settings: MarketSettings,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    api_timeout: float = 10.0,
) -> Gateway:
    """Everything the gateway runs, over one Kubernetes API client."""
    index = FlavorIndex()
    tokens = ConsumerTokens()
    store = MarketStore(
        api, settings.namespace, secret_namespace=settings.secret_namespace, timeout=api_timeout
    )
    market = Marketplace(settings, store, index)
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    flavors = ListWatch(
        f"flavors in {settings.namespace}",
        functools.partial(
            custom.list_namespaced_custom_object,
            FLAVOR.group,
            FLAVOR.version,
            settings.namespace,
            FLAVOR.plural,
        ),
        Callbacks(
            index.replace,
            index.upsert,
            lambda obj: index.delete(str((obj.get("metadata") or {}).get("name", ""))),
        ),
        list_timeout=api_timeout,
    )
    consumers = ListWatch(
        f"REAR consumers in {settings.namespace}",
        functools.partial(core.list_namespaced_secret, settings.namespace),
        Callbacks(tokens.replace, tokens.upsert, tokens.delete),
        label_selector=REAR_CONSUMER_LABEL,
        list_timeout=api_timeout,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        flavors.start()
        consumers.start()
        reaper = asyncio.create_task(_reap(market, reap_interval(settings.reservation_ttl)))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await asyncio.to_thread(flavors.stop)
            await asyncio.to_thread(consumers.stop)

    app = create_app(
        market,
        tokens,
        index_ready=flavors.synced.is_set,
        tokens_ready=consumers.synced.is_set,
        max_body_bytes=max_body_bytes,
        lifespan=lifespan,
    )
    compat_app = create_compat_app(index, index_ready=flavors.synced.is_set)
    return Gateway(app, market, index, tokens, flavors, consumers, compat_app)


async def _reap(market: Marketplace, interval: float) -> None:
    """Release expired reservations, forever; API trouble is retried at the next round."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(market.expire_reservations)
        except Exception as exc:
            log.warning("expiring reservations failed: %s", exc)

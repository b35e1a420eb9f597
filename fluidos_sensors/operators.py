"""How every kopf operator of the project runs (resource manager, router manager, consumer).

Each operator builds its own `kopf.OperatorRegistry` of bound methods and its settings from
`operator_settings`; `run_operator` adds the login and runs it: our API client's credentials,
standalone (one replica, no peering), the ready file and kopf's liveness endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client

from fluidos_sensors.kube import kopf_login
from fluidos_sensors.limits import allow_kubernetes_nesting


def operator_settings(max_workers: int) -> kopf.OperatorSettings:
    """kopf settings every operator starts from; `max_workers` threads run sync handlers."""
    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING  # handler logs are not Events; we post our own
    # A watch the API server ends in 5 minutes; a silent connection is dropped soon after.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = max_workers
    return settings


async def run_operator(
    registry: kopf.OperatorRegistry,
    settings: kopf.OperatorSettings,
    api: client.ApiClient,
    *,
    default_namespace: str,
    namespaces: Collection[str] = (),
    ready_file: Path | None = None,
    liveness: str | None = None,
) -> None:
    """Run the handlers of `registry` until cancelled, as `api`'s user.

    Watches every namespace unless `namespaces` are given; `ready_file` is touched once the
    startup handlers have run; `liveness` is the URL of kopf's liveness endpoint (none when
    not given).
    """
    # kopf decodes and deep-copies every object it watches: one nested as deep as the API
    # server allows (where a CRD preserves unknown fields) must not stop a watch.
    allow_kubernetes_nesting()

    def login(**_: Any) -> kopf.ConnectionInfo:
        """kopf talks to the cluster with the same credentials as our own API calls."""
        return kopf_login(api, default_namespace)

    kopf.on.login(id="login", registry=registry)(login)
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if ready_file is not None:
        started.add_done_callback(lambda _: ready_file.touch())
    await kopf.operator(
        registry=registry,
        settings=settings,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        ready_flag=started,
    )

"""The consumer operator (kopf): SensorRequests -> REAR purchases at the known providers.

- A daemon per SensorRequest runs resolution passes (`resolver`): at once, after a spec change
  (generation), when a SensorProvider changes, and every `resync` seconds while the request is
  not settled for good; then, with the consumer's InfluxDB configured, it looks for the first
  reading of the request's contracts (`firstdata`).
- Deleting a request releases its contracts first (a finalizer), retrying with backoff while a
  provider cannot be reached.
- Every `resync` seconds each SensorProvider's status says whether its gateway answers and how
  many sensors it offers.

Handlers only do I/O; every decision lives in `spec`, `ranking`, `plan` and `status`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from consumer import status as st
from consumer.firstdata import FirstDataProbe, format_time
from consumer.market import ProviderProblem, Secrets, open_provider, snapshot
from consumer.resolver import ConsumerSettings, Event, Resolver
from consumer.spec import SpecError, parse_provider
from fluidos_sensors.api import SENSOR_PROVIDER, SENSOR_REQUEST, SENSORS_GROUP
from fluidos_sensors.kube import REQUEST_TIMEOUT, kopf_login
from fluidos_sensors.rear.client import RearError

log = logging.getLogger("consumer")

FINALIZER = f"{SENSORS_GROUP}/release-contracts"
_EVENT_MESSAGE_MAX = 1000  # the API server caps Event messages at 1 KiB
_TICK = 1.0  # how often a request's daemon looks at its (live) spec
_RELEASE_BACKOFF_MAX = 120.0
_CONTACT_REFRESH = 60.0  # lastContact is rewritten at most this often when nothing else changes
T = TypeVar("T")


def _now() -> str:
    return format_time(datetime.now(UTC))


def _post(body: Mapping[str, Any], event: Event) -> None:
    kopf.event(
        # kopf.event takes any object mapping (its annotation names only kopf's own Body).
        dict(body),  # type: ignore[arg-type]
        type=event.type,
        reason=event.reason,
        message=event.message[:_EVENT_MESSAGE_MAX],
    )


async def _unless_stopped(work: Awaitable[T], stopped: kopf.DaemonStopped) -> T | None:
    """`work`'s result, or None as soon as the daemon is stopped (deletion waits for it)."""

    async def until_stopped() -> None:
        await stopped.wait()

    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(until_stopped())
    try:
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


async def _nap(wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float) -> None:
    """Sleep until woken, stopped (so deletion is not held up) or `timeout` seconds."""

    async def until_stopped() -> None:
        await stopped.wait()

    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@dataclass
class _State:
    """What the handlers share: per request a lock (a pass and a release never overlap) and a
    wake-up; the SensorProviders as last seen."""

    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    wakeups: dict[str, asyncio.Event] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    provider_specs: dict[str, Any] = field(default_factory=dict)
    contacts: dict[str, float] = field(default_factory=dict)  # monotonic time of lastContact
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def wakeup(self, uid: str) -> asyncio.Event:
        return self.wakeups.setdefault(uid, asyncio.Event())

    def wake_all(self) -> None:
        for event in self.wakeups.values():
            event.set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background (cancelled when the operator stops)."""
        self.tasks = [task for task in self.tasks if not task.done()]
        self.tasks.append(asyncio.create_task(work))

    def forget(self, uid: str) -> None:
        self.locks.pop(uid, None)
        self.wakeups.pop(uid, None)


class _Writer:
    """Status writes of SensorRequests and SensorProviders (merge patches of /status)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def _patch(self, kind: str, name: str, status: dict[str, Any]) -> None:
        resource = SENSOR_REQUEST if kind == SENSOR_REQUEST.kind else SENSOR_PROVIDER
        try:
            self._custom.patch_namespaced_custom_object_status(
                resource.group,
                resource.version,
                self.namespace,
                resource.plural,
                name,
                {"status": status},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:  # gone: nothing to report on
                raise

    async def request(self, name: str, status: dict[str, Any]) -> None:
        await asyncio.to_thread(self._patch, SENSOR_REQUEST.kind, name, status)

    async def provider(self, name: str, status: dict[str, Any]) -> None:
        await asyncio.to_thread(self._patch, SENSOR_PROVIDER.kind, name, status)


def _providers(index: kopf.Index[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for name in index for obj in index[name]]


def build_registry(
    settings: ConsumerSettings, api: client.ApiClient, ready_file: Path | None = None
) -> kopf.OperatorRegistry:
    """The operator's handlers, bound to `settings` and the API client."""
    registry = kopf.OperatorRegistry()
    state = _State()
    writer = _Writer(api, settings.namespace)
    secrets = Secrets(api, settings.namespace)
    resolver = Resolver(settings, secrets)
    probe = FirstDataProbe(settings.influx) if settings.influx else None
    request_kind = (SENSOR_REQUEST.group, SENSOR_REQUEST.version, SENSOR_REQUEST.plural)
    provider_kind = (SENSOR_PROVIDER.group, SENSOR_PROVIDER.version, SENSOR_PROVIDER.plural)

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        """kopf talks to the cluster with the same credentials as our API client."""
        return kopf_login(api, settings.namespace)

    async def check_provider(name: str, obj: dict[str, Any]) -> None:
        """Record whether the provider's gateway answers this consumer and how many sensors
        it offers; a change wakes the requests up (the provider may satisfy them now)."""
        report: dict[str, Any]
        try:
            spec = parse_provider(obj)
            rear = await open_provider(secrets, spec, timeout=settings.rear_timeout)
            try:
                offered = await rear.list_flavors(sensors_only=True)
            finally:
                await rear.aclose()
            report = {"reachable": True, "flavors": len(offered), "message": ""}
        except (SpecError, ProviderProblem, RearError) as exc:
            report = {"reachable": False, "message": str(exc)[:_EVENT_MESSAGE_MAX]}
        current = obj.get("status") or {}
        worth = any(current.get(k) != v for k, v in report.items())
        now = time.monotonic()
        if report["reachable"] and (
            worth or now - state.contacts.get(name, 0.0) >= _CONTACT_REFRESH
        ):
            report["lastContact"] = _now()
            state.contacts[name] = now
        elif not worth:
            return
        await writer.provider(name, report)
        if worth:
            state.wake_all()

    async def watch_providers() -> None:
        """Every `resync` seconds, check each known provider (a plain task: a kopf timer would
        put a finalizer on SensorProviders, which this operator has no business holding)."""
        while True:
            for name, obj in sorted(state.providers.items()):
                try:
                    await check_provider(name, obj)
                except Exception:  # one provider's trouble must not stop the others' checks
                    log.exception("SensorProvider %s/%s: check failed", settings.namespace, name)
            await asyncio.sleep(settings.resync)

    @kopf.on.startup(registry=registry)
    async def _startup(**_: Any) -> None:
        state.spawn(watch_providers())
        if ready_file is not None:
            ready_file.touch()

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(**_: Any) -> None:
        for task in state.tasks:
            task.cancel()

    @kopf.index(*provider_kind, id="sensor_providers", registry=registry)
    def sensor_providers(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        return {name: snapshot(body)}

    @kopf.on.event(*provider_kind, id="provider_event", registry=registry)
    async def provider_event(event: kopf.RawEvent, name: str, body: kopf.Body, **_: Any) -> None:
        """Keep the providers for the checks; a new, changed or deleted one is checked at once
        and may satisfy (or fail) requests: they look again."""
        if event.get("type") == "DELETED":
            state.providers.pop(name, None)
            seen = None
        else:
            state.providers[name] = snapshot(body)
            seen = (body.get("metadata", {}).get("generation"), snapshot(body.get("spec")))
        if state.provider_specs.get(name, "unseen") != seen:
            state.provider_specs[name] = seen
            state.wake_all()
            if seen is not None:
                state.spawn(check_now(name))

    async def check_now(name: str) -> None:
        obj = state.providers.get(name)
        if obj is not None:
            try:
                await check_provider(name, obj)
            except Exception:  # reported like the periodic checks
                log.exception("SensorProvider %s/%s: check failed", settings.namespace, name)

    async def write_status(name: str, current: dict[str, Any], new: dict[str, Any]) -> dict:
        if not st.changed(current, new):
            return current
        new = {**new, "updated": _now()}
        await writer.request(name, new)
        return {**current, **new}

    # kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
    @kopf.daemon(  # type: ignore[arg-type]
        *request_kind, id="resolve", registry=registry, backoff=5.0, cancellation_backoff=10.0
    )
    async def request_daemon(
        body: kopf.Body,
        name: str,
        uid: str,
        stopped: kopf.DaemonStopped,
        sensor_providers: kopf.Index[str, dict[str, Any]],
        **_: Any,
    ) -> None:
        """Resolve the request until it is deleted; then find when its data started."""
        loop = asyncio.get_running_loop()
        wake = state.wakeup(uid)
        current: dict[str, Any] = snapshot(body.get("status") or {})
        next_pass: float | None = loop.time()
        next_probe = loop.time()
        not_ready_passes = 0  # passes in a row that met a provider answering 503
        while not stopped:
            now = loop.time()
            generation = body.get("metadata", {}).get("generation")
            if wake.is_set():
                wake.clear()
                # A provider changed: worth a pass unless the request is fulfilled, or cannot
                # be resolved until its spec changes (next_pass None).
                if current.get("phase") != st.FULFILLED and next_pass is not None:
                    next_pass = now
            if current.get("observedGeneration") != generation:
                next_pass = now
            if next_pass is not None and now >= next_pass:
                async with state.lock(uid):
                    if stopped:
                        break

                    async def report(phase: str, message: str) -> None:
                        nonlocal current
                        current = await write_status(
                            name, current, {"phase": phase, "message": message}
                        )

                    request = snapshot(body)
                    request["status"] = current
                    try:
                        result = await resolver.resolve(
                            request,
                            _providers(sensor_providers),
                            report=report,
                            stopping=lambda: bool(stopped),
                            not_ready_passes=not_ready_passes,
                        )
                    except Exception:  # a bug or an API outage costs this pass, not the daemon
                        log.exception("SensorRequest %s/%s: pass failed", settings.namespace, name)
                        next_pass = loop.time() + settings.resync
                        continue
                    for event in result.events:
                        _post(body, event)
                    try:
                        current = await write_status(name, current, result.status)
                    except ApiException as exc:
                        log.warning("SensorRequest %s: status not written: %s", name, exc.reason)
                    not_ready_passes = not_ready_passes + 1 if result.not_ready else 0
                    retry = result.retry_after
                    next_pass = None if retry is None else loop.time() + retry
            held = st.held_contracts(current)
            if probe and held and not current.get("firstData") and loop.time() >= next_probe:
                first = await _unless_stopped(probe.first_reading(held), stopped)
                next_probe = loop.time() + settings.first_data_interval
                if first is not None:
                    current = await write_status(name, current, {"firstData": format_time(first)})
                    _post(
                        body,
                        Event("Normal", "FirstData", f"first reading at {format_time(first)}"),
                    )
            timeout = _TICK
            if next_pass is not None:
                timeout = max(0.05, min(timeout, next_pass - loop.time()))
            await _nap(wake, stopped, timeout)

    # kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
    @kopf.on.delete(*request_kind, id="release", registry=registry)  # type: ignore[arg-type]
    async def release_contracts(
        body: kopf.Body,
        name: str,
        uid: str,
        retry: int,
        sensor_providers: kopf.Index[str, dict[str, Any]],
        **_: Any,
    ) -> None:
        """Release every contract of the request before it goes."""
        async with state.lock(uid):
            events, problems = await resolver.release_all(
                snapshot(body), _providers(sensor_providers)
            )
        for event in events:
            _post(body, event)
        if problems:
            delay = min(_RELEASE_BACKOFF_MAX, 2.0 * 2**retry)
            message = f"retrying in {delay:.0f}s: {'; '.join(problems)}"
            _post(body, Event("Warning", "ReleaseRetrying", message))
            raise kopf.TemporaryError(message, delay=delay)
        state.forget(uid)
        log.info("SensorRequest %s/%s: contracts released", settings.namespace, name)

    return registry


def operator_settings() -> kopf.OperatorSettings:
    """kopf settings: quiet Events, our finalizer, progress kept in annotations."""
    settings = kopf.OperatorSettings()
    settings.posting.level = logging.WARNING  # handler chatter is not an Event; we post our own
    settings.persistence.finalizer = FINALIZER
    # The status schema prunes what kopf would keep there; annotations keep it instead.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=SENSORS_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=SENSORS_GROUP)
    # Namespaced and least-privileged: no CRD or Namespace watching (it cannot list them).
    settings.scanning.disabled = True
    # Our own status writes interleave with kopf's patches; don't wait long for kopf's version.
    settings.persistence.consistency_timeout = 1.0
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 4
    return settings


async def run(
    settings: ConsumerSettings,
    api: client.ApiClient,
    ready_file: Path | None = None,
    *,
    liveness: str | None = None,
) -> None:
    """Run the consumer operator in its namespace until cancelled; `liveness` is the URL of
    kopf's liveness endpoint (none by default)."""
    await kopf.operator(
        registry=build_registry(settings, api, ready_file),
        settings=operator_settings(),
        namespaces=[settings.namespace],
        standalone=True,
        liveness_endpoint=liveness,
    )

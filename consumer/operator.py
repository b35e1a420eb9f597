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
from dataclasses import dataclass
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
from fluidos_sensors.kube import REQUEST_TIMEOUT
from fluidos_sensors.operators import operator_settings, run_operator
from fluidos_sensors.rear.client import RearError

log = logging.getLogger("consumer")

FINALIZER = f"{SENSORS_GROUP}/release-contracts"
_EVENT_MESSAGE_MAX = 1000  # the API server caps Event messages at 1 KiB
_TICK = 1.0  # how often a request's daemon looks at its (live) spec
_RELEASE_BACKOFF_MAX = 120.0
_CONTACT_REFRESH = 60.0  # lastContact is rewritten at most this often when nothing else changes
_MAX_WORKERS = 4
_REQUESTS = (SENSOR_REQUEST.group, SENSOR_REQUEST.version, SENSOR_REQUEST.plural)
_PROVIDERS = (SENSOR_PROVIDER.group, SENSOR_PROVIDER.version, SENSOR_PROVIDER.plural)
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


def _kopf_settings() -> kopf.OperatorSettings:
    """kopf settings: our finalizer, progress kept in annotations, no cluster-wide scans."""
    settings = operator_settings(_MAX_WORKERS)
    settings.persistence.finalizer = FINALIZER
    # The status schema prunes what kopf would keep there; annotations keep it instead.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=SENSORS_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=SENSORS_GROUP)
    # Namespaced and least-privileged: no CRD or Namespace watching (it cannot list them).
    settings.scanning.disabled = True
    # Our own status writes interleave with kopf's patches; don't wait long for kopf's version.
    settings.persistence.consistency_timeout = 1.0
    return settings


@dataclass
class _Progress:
    """What a request's daemon knows between its ticks."""

    status: dict[str, Any]  # as last written
    next_pass: float | None  # loop time of the next pass; None: not until the spec changes
    next_probe: float  # loop time of the next look for first data
    not_ready_passes: int = 0  # passes in a row that met a provider answering 503
    # The spec generation a pass was last started for: a new one gets a pass at once, once.
    # (Not the status's observedGeneration: a pass that fails before writing it would be
    # started again at once, in a tight loop, instead of after `resync`.)
    generation: object = None


class ConsumerOperator:
    """The handlers, and what they share: per request a lock (a pass and a release never
    overlap) and a wake-up; the SensorProviders as last seen; the background tasks."""

    def __init__(self, settings: ConsumerSettings, api: client.ApiClient) -> None:
        self.settings = settings
        self.api = api
        self.writer = _Writer(api, settings.namespace)
        self.secrets = Secrets(api, settings.namespace)
        self.resolver = Resolver(settings, self.secrets)
        self.probe = FirstDataProbe(settings.influx) if settings.influx else None
        self.locks: dict[str, asyncio.Lock] = {}
        self.wakeups: dict[str, asyncio.Event] = {}
        self.providers: dict[str, dict[str, Any]] = {}
        self.provider_specs: dict[str, Any] = {}
        self.contacts: dict[str, float] = {}  # monotonic time of lastContact
        self.tasks: list[asyncio.Task[None]] = []

    def registry(self) -> kopf.OperatorRegistry:
        """Every handler, bound to this operator; ids kept as they were (kopf persists them
        in each request's annotations)."""
        registry = kopf.OperatorRegistry()
        kopf.on.startup(registry=registry)(self.start)
        kopf.on.cleanup(registry=registry)(self.stop)
        kopf.index(*_PROVIDERS, id="sensor_providers", registry=registry)(self.sensor_providers)
        kopf.on.event(*_PROVIDERS, id="provider_event", registry=registry)(self.provider_event)
        # kopf passes indexes as extra keyword arguments, which its handler protocol cannot name.
        kopf.daemon(
            *_REQUESTS, id="resolve", backoff=5.0, cancellation_backoff=10.0, registry=registry
        )(self.request_daemon)  # type: ignore[arg-type]
        kopf.on.delete(*_REQUESTS, id="release", registry=registry)(self.release_contracts)  # type: ignore[arg-type]
        return registry

    async def run(self, ready_file: Path | None = None, liveness: str | None = None) -> None:
        """Serve the requests and providers of the settings' namespace until cancelled."""
        namespace = self.settings.namespace
        await run_operator(
            self.registry(),
            _kopf_settings(),
            self.api,
            default_namespace=namespace,
            namespaces=[namespace],
            ready_file=ready_file,
            liveness=liveness,
        )

    def _lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def _wakeup(self, uid: str) -> asyncio.Event:
        return self.wakeups.setdefault(uid, asyncio.Event())

    def _wake_all(self) -> None:
        for event in self.wakeups.values():
            event.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background (cancelled when the operator stops)."""
        self.tasks = [task for task in self.tasks if not task.done()]
        self.tasks.append(asyncio.create_task(work))

    # --------------------------------------------------------------------------- providers

    async def check_provider(self, name: str, obj: dict[str, Any]) -> None:
        """Record whether the provider's gateway answers this consumer and how many sensors
        it offers; a change wakes the requests up (the provider may satisfy them now)."""
        report: dict[str, Any]
        try:
            spec = parse_provider(obj)
            rear = await open_provider(self.secrets, spec, timeout=self.settings.rear_timeout)
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
            worth or now - self.contacts.get(name, 0.0) >= _CONTACT_REFRESH
        ):
            report["lastContact"] = _now()
            self.contacts[name] = now
        elif not worth:
            return
        await self.writer.provider(name, report)
        if worth:
            self._wake_all()

    async def _check_logged(self, name: str) -> None:
        obj = self.providers.get(name)
        if obj is None:
            return
        try:
            await self.check_provider(name, obj)
        except Exception:  # one provider's trouble must not stop the others' checks
            log.exception("SensorProvider %s/%s: check failed", self.settings.namespace, name)

    async def watch_providers(self) -> None:
        """Every `resync` seconds, check each known provider (a plain task: a kopf timer would
        put a finalizer on SensorProviders, which this operator has no business holding)."""
        while True:
            for name in sorted(self.providers):
                await self._check_logged(name)
            await asyncio.sleep(self.settings.resync)

    # ---------------------------------------------------------------------------- handlers

    async def start(self, **_: Any) -> None:
        self._spawn(self.watch_providers())

    async def stop(self, **_: Any) -> None:
        for task in self.tasks:
            task.cancel()

    def sensor_providers(self, name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        return {name: snapshot(body)}

    async def provider_event(
        self, event: kopf.RawEvent, name: str, body: kopf.Body, **_: Any
    ) -> None:
        """Keep the providers for the checks; a new, changed or deleted one is checked at once
        and may satisfy (or fail) requests: they look again."""
        if event.get("type") == "DELETED":
            self.providers.pop(name, None)
            seen = None
        else:
            self.providers[name] = snapshot(body)
            seen = (body.get("metadata", {}).get("generation"), snapshot(body.get("spec")))
        if self.provider_specs.get(name, "unseen") != seen:
            self.provider_specs[name] = seen
            self._wake_all()
            if seen is not None:
                self._spawn(self._check_logged(name))

    async def request_daemon(
        self,
        body: kopf.Body,
        name: str,
        uid: str,
        stopped: kopf.DaemonStopped,
        sensor_providers: kopf.Index[str, dict[str, Any]],
        **_: Any,
    ) -> None:
        """Resolve the request until it is deleted; then find when its data started."""
        loop = asyncio.get_running_loop()
        wake = self._wakeup(uid)
        progress = _Progress(snapshot(body.get("status") or {}), loop.time(), loop.time())
        while not stopped:
            now = loop.time()
            if wake.is_set():
                wake.clear()
                # A provider changed: worth a pass unless the request is fulfilled, or cannot
                # be resolved until its spec changes (next_pass None).
                if progress.status.get("phase") != st.FULFILLED and progress.next_pass is not None:
                    progress.next_pass = now
            generation = body.get("metadata", {}).get("generation")
            if progress.generation != generation:
                progress.generation = generation
                progress.next_pass = now
            if progress.next_pass is not None and now >= progress.next_pass:
                async with self._lock(uid):
                    if stopped:
                        break
                    if not await self._resolve(body, name, progress, stopped, sensor_providers):
                        continue
            await self._look_for_first_data(body, name, progress, stopped)
            timeout = _TICK
            if progress.next_pass is not None:
                timeout = max(0.05, min(timeout, progress.next_pass - loop.time()))
            await _nap(wake, stopped, timeout)

    async def _resolve(
        self,
        body: kopf.Body,
        name: str,
        progress: _Progress,
        stopped: kopf.DaemonStopped,
        providers: kopf.Index[str, dict[str, Any]],
    ) -> bool:
        """One pass: status and Events written, the next pass planned; False if it failed."""
        loop = asyncio.get_running_loop()

        async def report(phase: str, message: str) -> None:
            new = {"phase": phase, "message": message}
            progress.status = await self._write_status(name, progress.status, new)

        request = snapshot(body)
        request["status"] = progress.status
        try:
            result = await self.resolver.resolve(
                request,
                _providers(providers),
                report=report,
                stopping=lambda: bool(stopped),
                not_ready_passes=progress.not_ready_passes,
            )
        except Exception:  # a bug or an API outage costs this pass, not the daemon
            log.exception("SensorRequest %s/%s: pass failed", self.settings.namespace, name)
            progress.next_pass = loop.time() + self.settings.resync
            return False
        for event in result.events:
            _post(body, event)
        try:
            progress.status = await self._write_status(name, progress.status, result.status)
        except ApiException as exc:
            log.warning("SensorRequest %s: status not written: %s", name, exc.reason)
        progress.not_ready_passes = progress.not_ready_passes + 1 if result.not_ready else 0
        retry = result.retry_after
        progress.next_pass = None if retry is None else loop.time() + retry
        return True

    async def _look_for_first_data(
        self, body: kopf.Body, name: str, progress: _Progress, stopped: kopf.DaemonStopped
    ) -> None:
        """With InfluxDB configured: when the first reading of the request's contracts came."""
        held = st.held_contracts(progress.status)
        loop = asyncio.get_running_loop()
        if (
            self.probe is None
            or not held
            or progress.status.get("firstData")
            or loop.time() < progress.next_probe
        ):
            return
        first = await _unless_stopped(self.probe.first_reading(held), stopped)
        progress.next_probe = loop.time() + self.settings.first_data_interval
        if first is not None:
            when = format_time(first)
            progress.status = await self._write_status(name, progress.status, {"firstData": when})
            _post(body, Event("Normal", "FirstData", f"first reading at {when}"))

    async def _write_status(
        self, name: str, current: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        if not st.changed(current, new):
            return current
        new = {**new, "updated": _now()}
        await self.writer.request(name, new)
        return {**current, **new}

    async def release_contracts(
        self,
        body: kopf.Body,
        name: str,
        uid: str,
        retry: int,
        sensor_providers: kopf.Index[str, dict[str, Any]],
        **_: Any,
    ) -> None:
        """Release every contract of the request before it goes."""
        async with self._lock(uid):
            events, problems = await self.resolver.release_all(
                snapshot(body), _providers(sensor_providers)
            )
        for event in events:
            _post(body, event)
        if problems:
            delay = min(_RELEASE_BACKOFF_MAX, 2.0 * 2**retry)
            message = f"retrying in {delay:.0f}s: {'; '.join(problems)}"
            _post(body, Event("Warning", "ReleaseRetrying", message))
            raise kopf.TemporaryError(message, delay=delay)
        self.locks.pop(uid, None)
        self.wakeups.pop(uid, None)
        log.info("SensorRequest %s/%s: contracts released", self.settings.namespace, name)

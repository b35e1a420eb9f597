"""One resolution pass of a SensorRequest, and the release of its contracts (I/O, no kopf).

A pass reads the request and the known providers, asks the providers (REAR), decides with
`plan` and `ranking`, buys and releases, and answers the new status; the operator writes it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consumer import status as st
from consumer.firstdata import InfluxSettings, format_time
from consumer.market import (
    Discovery,
    EndpointProblem,
    ProviderProblem,
    Refused,
    Secrets,
    buy,
    discover,
    endpoint_authorization,
    held_from_answer,
    open_provider,
    provider_problem,
    release_problem,
    telemetry,
)
from consumer.plan import HeldContract, plan
from consumer.ranking import rank
from consumer.spec import (
    ProviderSpec,
    SpecError,
    parse_provider,
    parse_request,
    provider_order,
    request_intent,
)
from fluidos_sensors.backoff import Backoff
from fluidos_sensors.filters import describe
from fluidos_sensors.rates import describe_rate
from fluidos_sensors.rear.client import AsyncRearClient, RearError
from fluidos_sensors.rear.wire import NodeIdentity

log = logging.getLogger("consumer")

Report = Callable[[str, str], Awaitable[None]]

NOT_READY_FIRST_S = 1.0  # the first look again at a provider that answered 503


def not_ready_delay(attempt: int, resync: float, hint: float | None = None) -> float:
    """When to look again after `attempt` passes in a row met a provider that is not ready
    (503): 1 s, then doubling (with jitter, so requests do not knock in step), never later
    than the resync period; at least what its Retry-After asked for, within that period."""
    backoff = Backoff(NOT_READY_FIRST_S, max(resync, NOT_READY_FIRST_S))
    backoff.attempts = attempt
    return max(backoff.next(), min(hint or 0.0, resync))


@dataclass(frozen=True, kw_only=True)
class ConsumerSettings:
    """What `fluidos-sensors consumer run` configures."""

    namespace: str
    buyer: NodeIdentity
    resync: float = 20.0  # seconds between passes of a request that is not settled for good
    rear_timeout: float = 10.0
    influx: InfluxSettings | None = None
    first_data_interval: float = 2.0


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Pass:
    """What a pass decided: the status to write, when to look again, what to tell."""

    status: dict[str, Any]
    retry_after: float | None  # None: only when the spec changes
    events: list[Event] = field(default_factory=list)
    not_ready: bool = False  # a provider answered 503: the next pass backs off further


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def known_providers(
    objects: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, ProviderSpec], list[str]]:
    """Usable SensorProviders by name, and why the others are not usable."""
    found: dict[str, ProviderSpec] = {}
    problems: list[str] = []
    for obj in objects:
        try:
            spec = parse_provider(obj)
        except SpecError as exc:
            problems.append(str(exc))
            continue
        found[spec.name] = spec
    return found, problems


class Resolver:
    """Resolves requests of one namespace against its SensorProviders."""

    def __init__(self, settings: ConsumerSettings, secrets: Secrets) -> None:
        self.settings = settings
        self.secrets = secrets

    async def _open(
        self, providers: Mapping[str, ProviderSpec], names: Sequence[str], problems: list[str]
    ) -> dict[str, AsyncRearClient]:
        clients: dict[str, AsyncRearClient] = {}
        for name in names:
            try:
                clients[name] = await open_provider(
                    self.secrets, providers[name], timeout=self.settings.rear_timeout
                )
            except ProviderProblem as exc:
                problems.append(str(exc))
        return clients

    async def resolve(
        self,
        request: Mapping[str, Any],
        provider_objects: Sequence[Mapping[str, Any]],
        *,
        report: Report,
        stopping: Callable[[], bool] = lambda: False,
        not_ready_passes: int = 0,
    ) -> Pass:
        """One pass: discover, rank, release and buy; the request's new status.

        `not_ready_passes`: how many passes in a row met a provider that was not ready (503);
        the pass after this one comes that much later (`not_ready_delay`)."""
        meta = _meta(request)
        generation = int(meta.get("generation") or 0)
        status = request.get("status")
        current = status if isinstance(status, Mapping) else {}
        held = st.held_contracts(current)
        try:
            spec = parse_request(request)
        except SpecError as exc:
            return Pass(
                st.failed_status(str(exc), generation, held),
                retry_after=None,
                events=[Event("Warning", "InvalidSpec", str(exc))],
            )
        try:
            authorization = await endpoint_authorization(self.secrets, spec.auth)
        except EndpointProblem as exc:
            return Pass(
                st.failed_status(str(exc), generation, held),
                retry_after=self.settings.resync,  # the Secret may be created later
                events=[Event("Warning", "EndpointCredentials", str(exc))],
            )
        providers, problems = known_providers(provider_objects)
        asked, missing = provider_order(spec.providers, list(providers))
        problems += [
            f"SensorProvider {self.settings.namespace}/{name} not found" for name in missing
        ]
        # Progress phases show on the first pass of a spec only: later passes (resync) of a
        # request that is settled must not make its phase flap.
        first_pass = current.get("observedGeneration") != generation or current.get("phase") in (
            None,
            st.PENDING,
        )
        if first_pass:
            await report(st.SEARCHING, f"asking {', '.join(asked) or 'no provider'}")
        holding = [c.provider for c in held if c.provider in providers]
        names = list(dict.fromkeys([*asked, *holding]))
        intent = request_intent(
            str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
        )
        events: list[Event] = []
        retry_in = not_ready_delay(not_ready_passes, self.settings.resync)
        not_ready: set[str] = set()
        clients = await self._open(providers, names, problems)
        try:
            found = await discover(
                clients, [n for n in asked if n in clients], spec.filter, intent, retry_in
            )
            problems += found.problems
            not_ready |= found.not_ready
            if found.retry_hint is not None:
                retry_in = not_ready_delay(not_ready_passes, self.settings.resync, found.retry_hint)
            held = self._confirm(held, found, events)
            offered = found.candidates
            if spec.rate_hz is not None:  # only sensors that can run the rate asked
                offered = [c for c in offered if c.offers_rate(spec.rate_hz)]
            ranked = rank(offered)
            decision = plan(
                ranked=ranked,
                held=held,
                count=spec.count,
                generation=generation,
                asked=asked,
                listed=found.listed,
                reachable=found.reachable,
            )
            kept = list(decision.keep)
            for contract in decision.release:
                if await self._release(clients[contract.provider], contract, problems, events):
                    continue
                kept.append(contract)  # not released: still ours, tried again next pass
            if decision.missing and decision.buy and first_pass:
                await report(
                    st.PURCHASING,
                    f"buying {decision.missing} of {len(decision.buy)} matching sensor(s)",
                )
            if decision.missing and decision.buy:
                endpoint = telemetry(spec, intent, authorization)
                refused: set[str] = set()  # providers that failed this pass
                bought = 0
                for item in decision.buy:
                    if bought >= decision.missing or stopping():
                        break
                    if item.provider in refused:
                        continue
                    bought_at = format_time(datetime.now(UTC))
                    try:
                        answer = await buy(
                            clients[item.provider],
                            item.flavor_id,
                            self.settings.buyer,
                            endpoint,
                            spec.rate_hz,
                        )
                    except Refused as exc:
                        problems.append(f"{item.provider}/{item.flavor_id}: {exc}")
                        continue
                    except RearError as exc:
                        problems.append(provider_problem(item.provider, exc, retry_in))
                        refused.add(item.provider)
                        if exc.not_ready:
                            not_ready.add(item.provider)
                        continue
                    bought += 1
                    kept.append(
                        held_from_answer(item.provider, answer, generation, item, bought_at)
                    )
                    events.append(
                        Event(
                            "Normal",
                            "Purchased",
                            f"contract {answer.contract_id}: flavor {item.flavor_id} at "
                            f"provider {item.provider} (node {item.node})",
                        )
                    )
                    log.info(
                        "%s/%s: bought %s at %s (contract %s)",
                        meta.get("namespace"),
                        meta.get("name"),
                        item.flavor_id,
                        item.provider,
                        answer.contract_id,
                    )
        finally:
            for rear in clients.values():
                await rear.aclose()
        first_data = current.get("firstData") if kept else None
        result = st.outcome(
            count=spec.count,
            held=len(kept),
            matched=len(ranked),
            wanted=describe(spec.filter)
            + (f" at {describe_rate(spec.rate_hz)}" if spec.rate_hz is not None else ""),
            asked=asked,
            problems=problems,
            not_ready=sorted(not_ready),
        )
        return Pass(
            st.request_status(
                outcome=result,
                generation=generation,
                ranked=ranked,
                held=kept,
                first_data=first_data if isinstance(first_data, str) else None,
            ),
            retry_after=retry_in if not_ready else self.settings.resync,
            events=events,
            not_ready=bool(not_ready),
        )

    def _confirm(
        self, held: list[HeldContract], found: Discovery, events: list[Event]
    ) -> list[HeldContract]:
        """Held contracts as the reachable providers confirm them: ones they no longer have
        are dropped; ones they have for this request but the status lost are adopted."""
        confirmed: list[HeldContract] = []
        for contract in held:
            if contract.provider not in found.reachable:
                confirmed.append(contract)  # cannot tell now
                continue
            ids = {c.contract_id for c in found.contracts.get(contract.provider, [])}
            if contract.contract_id in ids:
                confirmed.append(contract)
            else:
                events.append(
                    Event(
                        "Warning",
                        "ContractGone",
                        f"contract {contract.contract_id} ({contract.flavor_id}) is no longer "
                        f"held at provider {contract.provider}",
                    )
                )
        known = {c.contract_id for c in confirmed}
        for provider, answers in sorted(found.contracts.items()):
            for answer in answers:
                if answer.contract_id not in known:
                    # Bought for this request by an earlier run that did not record it; an
                    # unknown generation makes the plan check it against the current spec.
                    confirmed.append(held_from_answer(provider, answer, generation=0))
        return confirmed

    async def _release(
        self,
        rear: AsyncRearClient,
        contract: HeldContract,
        problems: list[str],
        events: list[Event],
    ) -> bool:
        try:
            await rear.release(contract.contract_id)
        except RearError as exc:
            problems.append(release_problem(contract.provider, contract.contract_id, exc))
            return False
        events.append(
            Event(
                "Normal",
                "Released",
                f"contract {contract.contract_id}: flavor {contract.flavor_id} at provider "
                f"{contract.provider} no longer wanted",
            )
        )
        return True

    async def release_all(
        self, request: Mapping[str, Any], provider_objects: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Event], list[str]]:
        """Release every contract of a request being deleted: (events, problems left).

        Problems at a provider the request holds contracts at must be retried; a provider whose
        SensorProvider is gone cannot be reached any more and is reported, not retried.
        """
        meta = _meta(request)
        status = request.get("status") if isinstance(request.get("status"), Mapping) else {}
        held = st.held_contracts(status)
        intent = request_intent(
            str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
        )
        providers, _ = known_providers(provider_objects)
        events: list[Event] = []
        problems: list[str] = []
        for contract in held:
            if contract.provider not in providers:
                events.append(
                    Event(
                        "Warning",
                        "ReleaseAbandoned",
                        f"contract {contract.contract_id} at provider {contract.provider} not "
                        f"released: SensorProvider {contract.provider} is gone or unusable",
                    )
                )
        holding = {c.provider for c in held}
        open_problems: list[str] = []
        clients = await self._open(providers, sorted(providers), open_problems)
        problems += [p for p in open_problems if any(f"provider {h}:" in p for h in holding)]
        try:
            for name, rear in sorted(clients.items()):
                ids = {c.contract_id for c in held if c.provider == name}
                try:
                    answers = await rear.list_contracts()
                    ids |= {a.contract_id for a in answers if intent in a.intents}
                except RearError as exc:
                    if name in holding:
                        problems.append(f"provider {name}: {exc}")
                    continue
                for contract_id in sorted(ids):
                    try:
                        await rear.release(contract_id)
                    except RearError as exc:
                        problems.append(release_problem(name, contract_id, exc))
                        continue
                    events.append(
                        Event("Normal", "Released", f"contract {contract_id} at provider {name}")
                    )
        finally:
            for rear in clients.values():
                await rear.aclose()
        return events, problems

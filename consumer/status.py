"""A SensorRequest's status: phase, why, candidates and contracts (no I/O).

The status is the operator's memory: the contracts it lists are the ones the request holds
(the providers' contract lists, filtered by the request's intent, confirm them on each pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consumer.plan import HeldContract
from consumer.ranking import Candidate
from fluidos_sensors.limits import clip
from fluidos_sensors.units import format_number

PENDING = "Pending"
SEARCHING = "Searching"
PURCHASING = "Purchasing"
FULFILLED = "Fulfilled"
PARTIALLY_FULFILLED = "PartiallyFulfilled"
UNSATISFIABLE = "Unsatisfiable"
FAILED = "Failed"
PHASES = (
    PENDING,
    SEARCHING,
    PURCHASING,
    FULFILLED,
    PARTIALLY_FULFILLED,
    UNSATISFIABLE,
    FAILED,
)
SETTLED = (FULFILLED, PARTIALLY_FULFILLED, UNSATISFIABLE, FAILED)

CANDIDATES_SHOWN = 5
MESSAGE_MAX = 1000  # fits an Event too
_PROBLEMS_SHOWN = 4


@dataclass(frozen=True, kw_only=True)
class Outcome:
    phase: str
    message: str


def _fit(message: str) -> str:
    return clip(message, MESSAGE_MAX - 1)  # clip's "…" is one more character


def _problems(problems: Sequence[str]) -> str:
    shown = "; ".join(clip(problem, 160) for problem in problems[:_PROBLEMS_SHOWN])
    more = len(problems) - _PROBLEMS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")


def outcome(
    *,
    count: int,
    held: int,
    matched: int,
    wanted: str,
    asked: Sequence[str],
    problems: Sequence[str],
    not_ready: Sequence[str] = (),
) -> Outcome:
    """The phase a resolved request is in and a message that says why.

    `wanted` describes the filter; `asked` names the providers asked; `problems` are the
    providers skipped and the purchases refused on this pass; `not_ready` the providers that
    answered 503, asked again soon: while one is, a request short of sensors is still
    Searching (or PartiallyFulfilled), not Unsatisfiable.
    """
    trouble = f" ({_problems(problems)})" if problems else ""
    where = ", ".join(asked) if asked else "no provider"
    if held >= count:
        message = f"{held} of {count} sensor(s) under contract"
        return Outcome(phase=FULFILLED, message=_fit(message + trouble))
    if not asked:
        message = f"no provider to ask{trouble}; waiting for SensorProviders"
        return Outcome(phase=UNSATISFIABLE, message=_fit(message))
    if not_ready:
        message = f"waiting for provider(s) {', '.join(not_ready)}, not ready yet{trouble}"
        if held:
            message = f"{held} of {count} sensor(s) under contract: {message}"
        return Outcome(phase=PARTIALLY_FULFILLED if held else SEARCHING, message=_fit(message))
    if matched == 0:
        message = f"no available sensor matches {wanted} at {where}{trouble}; watching for new ones"
    elif matched <= held:
        message = f"only {matched} available sensor(s) match {wanted} at {where}{trouble}"
    else:
        message = (
            f"{matched} sensor(s) match {wanted} but only {held} could be bought{trouble}; retrying"
        )
    phase = PARTIALLY_FULFILLED if held else UNSATISFIABLE
    if held:
        message = f"{held} of {count} sensor(s) under contract: {message}"
    return Outcome(phase=phase, message=_fit(message))


def candidate_entry(item: Candidate) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "provider": item.provider,
        "flavorID": item.flavor_id,
        "node": item.node,
        "sensorType": ",".join(item.sensor_types),
    }
    if item.latency_ms is not None:
        entry["latencyMs"] = format_number(float(item.latency_ms))
    if item.accuracy is not None:
        entry["accuracy"] = format_number(float(item.accuracy))
    return entry


def contract_entry(contract: HeldContract) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "provider": contract.provider,
        "flavorID": contract.flavor_id,
        "contractID": contract.contract_id,
        "transactionID": contract.transaction_id,
        "node": contract.node,
        "sensorType": ",".join(contract.sensor_types),
        "matchedGeneration": contract.generation,
    }
    for key, value in (
        ("device", contract.device),
        ("sensor", contract.sensor),
        ("since", contract.since),
        ("boughtAt", contract.bought),
    ):
        if value:
            entry[key] = value
    return entry


def _text(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def held_contracts(status: Mapping[str, Any] | None) -> list[HeldContract]:
    """The contracts a status lists (entries that are not usable are left out)."""
    entries = (status or {}).get("contracts")
    found = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        provider, flavor, contract = (
            _text(entry, "provider"),
            _text(entry, "flavorID"),
            _text(entry, "contractID"),
        )
        if not (provider and flavor and contract):
            continue
        generation = entry.get("matchedGeneration")
        types = _text(entry, "sensorType")
        found.append(
            HeldContract(
                provider=provider,
                flavor_id=flavor,
                contract_id=contract,
                transaction_id=_text(entry, "transactionID"),
                node=_text(entry, "node"),
                sensor_types=tuple(t for t in types.split(",") if t),
                device=_text(entry, "device") or None,
                sensor=_text(entry, "sensor") or None,
                since=_text(entry, "since") or None,
                bought=_text(entry, "boughtAt") or None,
                generation=generation if isinstance(generation, int) else 0,
            )
        )
    return found


def request_status(
    *,
    outcome: Outcome,
    generation: int,
    ranked: Sequence[Candidate],
    held: Sequence[HeldContract],
    first_data: str | None,
) -> dict[str, Any]:
    """The status body of a resolved request (without `updated`, which the writer sets)."""
    return {
        "observedGeneration": generation,
        "phase": outcome.phase,
        "message": outcome.message,
        "matched": len(ranked),
        "candidates": [candidate_entry(item) for item in ranked[:CANDIDATES_SHOWN]],
        "contracts": [contract_entry(contract) for contract in held],
        "contractCount": len(held),
        "firstData": first_data,
    }


def failed_status(message: str, generation: int, held: Sequence[HeldContract]) -> dict[str, Any]:
    """The status of a request that cannot be resolved as it is written."""
    return {
        "observedGeneration": generation,
        "phase": FAILED,
        "message": _fit(message),
        "matched": 0,
        "candidates": [],
        "contracts": [contract_entry(contract) for contract in held],
        "contractCount": len(held),
    }


def changed(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing `new` would change what the status says (`updated` aside)."""
    current = current or {}
    return any(current.get(key) != value for key, value in new.items() if key != "updated")

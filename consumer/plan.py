"""What to buy and what to release, given the ranked offer and the contracts held (no I/O).

A request holds contracts; each remembers the spec generation it last matched. On every pass:

- a held contract whose flavor the provider still offers for the filter is kept (and now
  matches the current generation);
- one the provider does not list now is kept while the spec is unchanged (its sensor may be
  unavailable for a while: a flapping node must not make the consumer churn contracts);
- after a spec change, one that no longer matches, or sits at a provider the request no longer
  asks, is released, if that provider can be reached (else it is kept and decided later);
- beyond `count`, the worst held contracts are released (count went down);
- missing ones are bought from the best-ranked candidates not held yet; a better sensor that
  appears later does not replace a held one (stability over churn).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from consumer.ranking import Candidate


@dataclass(frozen=True, kw_only=True)
class HeldContract:
    """A contract bought for a request, as its status remembers it."""

    provider: str
    flavor_id: str
    contract_id: str
    transaction_id: str = ""
    node: str = ""
    sensor_types: tuple[str, ...] = ()
    device: str | None = None
    sensor: str | None = None
    since: str | None = None  # the contract's start time (RFC 3339, provider clock, seconds)
    bought: str | None = None  # when this operator reserved it (its own clock, milliseconds)
    generation: int = 0  # the spec generation it last matched

    @property
    def key(self) -> tuple[str, str]:
        return self.provider, self.flavor_id


@dataclass(frozen=True)
class Plan:
    keep: tuple[HeldContract, ...]
    release: tuple[HeldContract, ...]
    buy: tuple[Candidate, ...]  # try in this order until `missing` purchases succeed
    missing: int


def plan(
    *,
    ranked: Sequence[Candidate],
    held: Sequence[HeldContract],
    count: int,
    generation: int,
    asked: Collection[str],
    listed: Collection[str],
    reachable: Collection[str],
) -> Plan:
    """The purchases and releases that bring `held` to `count` sensors matching the request.

    `asked`: providers the request asks now; `listed`: those among them whose offer for the
    filter was read on this pass; `reachable`: providers whose contracts could be read (only
    there can a contract be released).
    """
    position = {item.key: index for index, item in enumerate(ranked)}
    matching: list[HeldContract] = []
    unknown: list[HeldContract] = []
    release: list[HeldContract] = []
    for contract in held:
        if contract.provider in listed and contract.key in position:
            matching.append(replace(contract, generation=generation))
            continue
        stale = contract.generation != generation
        no_longer_wanted = contract.provider not in asked or contract.provider in listed
        if stale and no_longer_wanted and contract.provider in reachable:
            release.append(contract)
        else:
            unknown.append(contract)
    matching.sort(key=lambda contract: position[contract.key])
    keep = matching + unknown
    # Beyond count the worst go (unknown ones are last); one that cannot be released now
    # stops the trimming: a better contract is never given up in its place.
    while len(keep) > count and keep[-1].provider in reachable:
        release.append(keep.pop())
    missing = max(0, count - len(keep))
    held_keys = {contract.key for contract in held}
    buy = [item for item in ranked if item.key not in held_keys] if missing else []
    return Plan(keep=tuple(keep), release=tuple(release), buy=tuple(buy), missing=missing)

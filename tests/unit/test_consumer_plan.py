"""Planning: what a request buys and releases given the ranked offer and what it holds."""

from __future__ import annotations

from typing import Any

from consumer.plan import HeldContract, Plan, plan
from consumer.ranking import Candidate


def cand(flavor: str, provider: str = "p1") -> Candidate:
    return Candidate(
        provider=provider,
        provider_rank=0,
        flavor_id=flavor,
        node="n",
        sensor_types=("humidity",),
        latency_ms=15,
        accuracy=1,
    )


def held(flavor: str, provider: str = "p1", generation: int = 1) -> HeldContract:
    return HeldContract(
        provider=provider, flavor_id=flavor, contract_id=f"c-{flavor}", generation=generation
    )


def run(**kwargs: object) -> Plan:
    args: dict[str, Any] = {
        "ranked": [],
        "held": [],
        "count": 1,
        "generation": 1,
        "asked": ["p1", "p2"],
        "listed": {"p1", "p2"},
        "reachable": {"p1", "p2"},
    }
    args.update(kwargs)
    return plan(**args)


def flavors(items: tuple[HeldContract, ...] | tuple[Candidate, ...]) -> list[str]:
    return [i.flavor_id for i in items]


def test_nothing_held_buys_in_rank_order() -> None:
    decision = run(ranked=[cand("a"), cand("b"), cand("c")], count=2)
    assert decision.missing == 2
    assert flavors(decision.buy) == ["a", "b", "c"]  # the rest are fallbacks for a 409
    assert decision.keep == () and decision.release == ()


def test_fulfilled_buys_nothing_and_keeps_all() -> None:
    decision = run(ranked=[cand("a"), cand("b")], held=[held("b")], count=1)
    assert decision.missing == 0 and decision.buy == ()
    assert flavors(decision.keep) == ["b"]  # a better sensor does not replace a held one


def test_missing_ones_come_from_candidates_not_held() -> None:
    decision = run(ranked=[cand("a"), cand("b"), cand("c")], held=[held("a")], count=2)
    assert decision.missing == 1
    assert flavors(decision.buy) == ["b", "c"]


def test_an_unlisted_contract_is_kept_while_the_spec_is_unchanged() -> None:
    """Its sensor may be unavailable for a while (node NotReady): no churn."""
    decision = run(ranked=[cand("b")], held=[held("a", generation=1)], generation=1)
    assert flavors(decision.keep) == ["a"] and decision.release == ()
    assert decision.missing == 0


def test_after_a_spec_change_a_contract_that_no_longer_matches_is_released() -> None:
    decision = run(ranked=[cand("b")], held=[held("a", generation=1)], generation=2)
    assert flavors(decision.release) == ["a"]
    assert decision.missing == 1 and flavors(decision.buy) == ["b"]


def test_a_contract_that_still_matches_takes_the_new_generation() -> None:
    decision = run(ranked=[cand("a")], held=[held("a", generation=1)], generation=2)
    assert decision.release == ()
    assert [c.generation for c in decision.keep] == [2]


def test_a_provider_no_longer_asked_loses_its_contracts() -> None:
    decision = run(
        ranked=[cand("b", "p2")],
        held=[held("a", "p1", generation=1)],
        generation=2,
        asked=["p2"],
        listed={"p2"},
    )
    assert [(c.provider, c.flavor_id) for c in decision.release] == [("p1", "a")]


def test_an_unreachable_provider_keeps_its_contracts_until_it_answers() -> None:
    decision = run(
        ranked=[cand("b", "p2")],
        held=[held("a", "p1", generation=1)],
        generation=2,
        listed={"p2"},
        reachable={"p2"},
    )
    assert decision.release == ()
    assert flavors(decision.keep) == ["a"] and decision.missing == 0


def test_count_down_releases_the_worst_first() -> None:
    ranked = [cand("a"), cand("b"), cand("c")]
    decision = run(ranked=ranked, held=[held("c"), held("a"), held("b")], count=2)
    assert flavors(decision.keep) == ["a", "b"]
    assert flavors(decision.release) == ["c"]


def test_count_down_releases_unlisted_ones_before_matching_ones() -> None:
    decision = run(ranked=[cand("a"), cand("b")], held=[held("gone"), held("b"), held("a")])
    assert flavors(decision.keep) == ["a"]
    assert sorted(flavors(decision.release)) == ["b", "gone"]


def test_count_down_waits_for_an_unreachable_provider() -> None:
    decision = run(
        ranked=[cand("a")],
        held=[held("a"), held("x", "p2")],
        listed={"p1"},
        reachable={"p1"},
    )
    # "x" is the worse one but cannot be released now; "a" is not given up in its place.
    assert flavors(decision.keep) == ["a", "x"] and decision.release == ()
    later = run(ranked=[cand("a")], held=list(decision.keep), listed={"p1"})
    assert flavors(later.keep) == ["a"] and flavors(later.release) == ["x"]


def test_nothing_matches_nothing_to_buy() -> None:
    decision = run(ranked=[], count=3)
    assert decision.missing == 3 and decision.buy == ()


def test_count_up_buys_more() -> None:
    decision = run(ranked=[cand("a"), cand("b"), cand("c")], held=[held("a")], count=3)
    assert decision.missing == 2 and flavors(decision.buy) == ["b", "c"]

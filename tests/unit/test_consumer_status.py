"""A SensorRequest's status: the phase and why, candidates, contracts read back; the first
data query; the CLI's filter options."""

from __future__ import annotations

import pytest

from consumer import status as st
from consumer.firstdata import first_data_query, format_time, parse_time
from consumer.plan import HeldContract
from consumer.ranking import Candidate
from fluidos_sensors.filters import FilterError, FilterOptions, SensorFilter


def outcome(**kwargs: object) -> st.Outcome:
    args: dict[str, object] = {
        "count": 1,
        "held": 0,
        "matched": 0,
        "wanted": "sensor_type=humidity",
        "asked": ["provider-1"],
        "problems": [],
    }
    args.update(kwargs)
    return st.outcome(**args)  # type: ignore[arg-type]


def test_fulfilled() -> None:
    result = outcome(held=2, count=2, matched=3)
    assert result.phase == st.FULFILLED
    assert result.message == "2 of 2 sensor(s) under contract"


def test_unsatisfiable_says_what_matched_nothing_where() -> None:
    result = outcome()
    assert result.phase == st.UNSATISFIABLE
    assert "no available sensor matches sensor_type=humidity at provider-1" in result.message
    assert "watching for new ones" in result.message


def test_unsatisfiable_when_matching_sensors_could_not_be_bought() -> None:
    result = outcome(matched=2, problems=["provider-1/f1: sold out", "provider-1/f2: sold out"])
    assert result.phase == st.UNSATISFIABLE
    assert "2 sensor(s) match sensor_type=humidity but only 0 could be bought" in result.message
    assert "provider-1/f1: sold out" in result.message


def test_partially_fulfilled() -> None:
    result = outcome(count=3, held=1, matched=1)
    assert result.phase == st.PARTIALLY_FULFILLED
    assert result.message.startswith("1 of 3 sensor(s) under contract: only 1 available")


def test_skipped_providers_are_named_even_when_fulfilled() -> None:
    result = outcome(held=1, matched=1, problems=["provider bad-token: HTTP 401: unknown token"])
    assert result.phase == st.FULFILLED
    assert "bad-token: HTTP 401" in result.message


def test_no_provider_at_all() -> None:
    result = outcome(asked=[], problems=["SensorProvider fluidos/p9 not found"])
    assert result.phase == st.UNSATISFIABLE
    assert "no provider to ask" in result.message and "p9 not found" in result.message


def test_many_problems_are_cut_short() -> None:
    result = outcome(problems=[f"provider p{i}: " + "x" * 500 for i in range(50)])
    assert len(result.message) <= st.MESSAGE_MAX
    assert "p0" in result.message


CONTRACT = HeldContract(
    provider="provider-1",
    flavor_id="sensor-a",
    contract_id="contract-1",
    transaction_id="tx-1",
    node="edge-1",
    sensor_types=("humidity",),
    device="board-1",
    sensor="hts221",
    since="2026-01-01T00:00:00Z",
    generation=3,
)
CANDIDATE = Candidate(
    provider="provider-1",
    provider_rank=0,
    flavor_id="sensor-a",
    node="edge-1",
    sensor_types=("temperature", "humidity"),
    latency_ms=15,
    accuracy=3.5,
)


def test_status_round_trips_its_contracts() -> None:
    body = st.request_status(
        outcome=outcome(held=1, matched=1),
        generation=3,
        ranked=[CANDIDATE] * 8,
        held=[CONTRACT],
        first_data=None,
    )
    assert body["phase"] == st.FULFILLED and body["observedGeneration"] == 3
    assert body["matched"] == 8 and len(body["candidates"]) == st.CANDIDATES_SHOWN
    assert body["candidates"][0] == {
        "provider": "provider-1",
        "flavorID": "sensor-a",
        "node": "edge-1",
        "sensorType": "temperature,humidity",
        "latencyMs": "15",
        "accuracy": "3.5",
    }
    assert body["contractCount"] == 1
    assert st.held_contracts(body) == [CONTRACT]


def test_unusable_contract_entries_are_ignored() -> None:
    status = {"contracts": [{"provider": "p"}, "junk", {**st.contract_entry(CONTRACT)}]}
    assert st.held_contracts(status) == [CONTRACT]
    assert st.held_contracts(None) == [] and st.held_contracts({"contracts": "x"}) == []


def test_failed_status_keeps_the_contracts() -> None:
    body = st.failed_status("bad filter", 4, [CONTRACT])
    assert body["phase"] == st.FAILED and body["message"] == "bad filter"
    assert body["contractCount"] == 1 and body["candidates"] == []


def test_changed_ignores_updated() -> None:
    current = {"phase": "Fulfilled", "message": "m", "updated": "t1"}
    assert not st.changed(current, {"phase": "Fulfilled", "updated": "t2"})
    assert st.changed(current, {"phase": "Unsatisfiable"})
    assert not st.changed({}, {"firstData": None})


# ------------------------------------------------------------------------------ first data


def test_first_data_query_asks_each_sensor_since_its_contract() -> None:
    other = HeldContract(
        provider="p",
        flavor_id="f",
        contract_id="c2",
        device='we"ird',
        sensor="s",
        since="2026-01-01T00:00:05+00:00",
    )
    no_tags = HeldContract(
        provider="p", flavor_id="g", contract_id="c3", since="2026-01-01T00:00:00Z"
    )
    flux = first_data_query("telegraf/autogen", [CONTRACT, other, no_tags])
    assert flux is not None
    assert flux.startswith(
        'from(bucket: "telegraf/autogen") |> range(start: time(v: "2026-01-01T00:00:00.000000Z"))'
    )
    assert (
        '(r.device == "board-1" and r.sensor == "hts221"'
        ' and r._time >= time(v: "2026-01-01T00:00:00.000000Z"))' in flux
    )
    assert 'r.device == "we\\"ird"' in flux  # quotes cannot end the string
    assert "|> first()" in flux and "|> limit(n: 1)" in flux
    assert first_data_query("b", [no_tags]) is None


def test_first_data_counts_from_the_later_of_contract_start_and_purchase() -> None:
    """The contract start has whole seconds: readings an earlier contract of the same sensor
    brought to the same endpoint within that second must not count."""
    bought = HeldContract(
        provider="p",
        flavor_id="f",
        contract_id="c",
        device="board-1",
        sensor="hts221",
        since="2026-01-01T00:00:07Z",
        bought="2026-01-01T00:00:07.640Z",
    )
    flux = first_data_query("b", [bought])
    assert flux is not None and '"2026-01-01T00:00:07.640000Z"' in flux
    assert '"2026-01-01T00:00:07.000000Z"' not in flux
    assert st.held_contracts({"contracts": [st.contract_entry(bought)]}) == [bought]


def test_times() -> None:
    moment = parse_time("2026-01-01T10:00:00.5Z")
    assert moment is not None and format_time(moment) == "2026-01-01T10:00:00.500Z"
    assert parse_time("2026-01-01T10:00:00") is not None  # no offset: UTC
    assert parse_time("soon") is None and parse_time(None) is None


# ------------------------------------------------------------------------------ CLI options


def test_cli_options_make_the_spec_filter() -> None:
    options = FilterOptions(
        (
            ("--type", "sensor_type", "match", "humidity"),
            ("--manufacturer", "sensor_manufacturer", "match", "STMicroelectronics"),
            ("--max-latency", "latency", "max", "16ms"),
            ("--min-rate", "sampling_rate", "min", "1 Hz"),
        )
    )
    spec = options.request_filter()
    assert spec == {
        "sensorType": ["humidity"],
        "sensorManufacturer": ["STMicroelectronics"],
        "latency": {"max": "16ms"},
        "samplingRate": {"min": "1 Hz"},
    }
    assert SensorFilter.from_request_spec(spec) == SensorFilter.from_options(
        sensor_type="humidity",
        sensor_manufacturer="STMicroelectronics",
        latency_max=16,
        sampling_rate_min=1,
    )
    assert options.sensor_filter() == SensorFilter.from_request_spec(spec)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ((("--max-latency", "latency", "max", "fast"),), '"--max-latency"'),
        (
            (
                ("--min-latency", "latency", "min", "20"),
                ("--max-latency", "latency", "max", "10"),
            ),
            "min 20 is greater than max 10",
        ),
    ],
)
def test_cli_option_errors_name_the_option(
    given: tuple[tuple[str, str, str, str], ...], message: str
) -> None:
    with pytest.raises(FilterError) as caught:
        FilterOptions(given).request_filter()
    assert message in str(caught.value)
    assert message in str(caught.value)

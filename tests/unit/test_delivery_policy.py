"""The provider's per-consumer delivery policy (issue 24.4): what each entry allows."""

from __future__ import annotations

import pytest

from fluidos_sensors.contract import DELIVERY_POLICY_ANNOTATION
from fluidos_sensors.endpoints import DeliveryPolicy, EndpointError
from fluidos_sensors.rear.wire import REAR_CONSUMER_LABEL
from resource_manager.gateway.auth import ConsumerTokens


def policy(text: str) -> DeliveryPolicy:
    parsed, problems = DeliveryPolicy.parse(text)
    assert problems == []
    return parsed


@pytest.mark.parametrize(
    ("entries", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8186/telegraf"),
        ("127.0.0.0/8", "http://127.0.0.9/x"),
        ("127.0.0.1", "http://[::ffff:127.0.0.1]/x"),  # an IPv4-mapped address is that address
        ("10.0.0.0/8", "https://10.2.3.4/write"),
        ("telegraf.example", "http://TELEGRAF.example:8186/t"),
        ("*.consumer-1.example", "http://a.consumer-1.example/t"),
        ("*", "http://8.8.8.8/t"),
        ("*", "https://influx.example.org/api/v2/write"),
        ("*, 192.168.0.0/16", "http://192.168.1.5/t"),
    ],
)
def test_allowed(entries: str, url: str) -> None:
    assert policy(entries).check(url) == url


@pytest.mark.parametrize(
    ("entries", "url", "why"),
    [
        ("", "http://8.8.8.8/t", "no delivery endpoint"),
        ("*", "http://127.0.0.1/t", "loopback"),
        ("*", "http://169.254.169.254/latest", "link-local"),
        ("*", "http://10.0.0.1/t", "private"),
        ("*", "http://[::1]/t", "loopback"),
        ("*", "http://[::ffff:127.0.0.1]/t", "loopback"),
        ("*", "http://0.0.0.0/t", "unspecified"),
        ("*", "http://localhost:8186/t", "never resolved"),
        ("*", "http://127.1/t", "numeric host"),
        ("*", "http://0x7f000001/t", "numeric host"),
        ("127.0.0.1", "http://127.0.0.2/t", "loopback"),
        ("127.0.0.1", "http://8.8.8.8/t", "is not in it"),
        ("*.consumer-1.example", "http://consumer-1.example/t", "is not in it"),
        ("telegraf.example", "http://evil.example/t", "is not in it"),
        ("telegraf.example", "gopher://telegraf.example/t", "http"),
    ],
)
def test_refused(entries: str, url: str, why: str) -> None:
    with pytest.raises(EndpointError) as refused:
        DeliveryPolicy.parse(entries)[0].check(url)
    assert why in str(refused.value)


def test_bad_entries_are_left_out_never_widening() -> None:
    parsed, problems = DeliveryPolicy.parse("10.0.0.0/33 ,127.1\n telegraf.example, *.x.org")
    assert parsed.entries == ("telegraf.example", "*.x.org")
    assert len(problems) == 2 and "10.0.0.0/33" in problems[0]
    assert DeliveryPolicy.parse(parsed.text())[0] == parsed


def test_a_consumer_may_deliver_where_any_of_its_secrets_allows() -> None:
    tokens = ConsumerTokens()

    def secret(name: str, consumer: str, allowed: str | None) -> dict[str, object]:
        meta: dict[str, object] = {
            "name": name,
            "labels": {REAR_CONSUMER_LABEL: consumer},
        }
        if allowed is not None:
            meta["annotations"] = {DELIVERY_POLICY_ANNOTATION: allowed}
        return {"metadata": meta, "data": {"token": "dG9rZW4tb2YtYXQtbGVhc3QtMTYtY2hhcnM="}}

    tokens.replace([secret("s1", "c1", "a.example"), secret("s2", "c1", "127.0.0.1")])
    tokens.upsert(secret("s3", "c2", None))
    assert tokens.policy_for("c1").entries == ("a.example", "127.0.0.1")
    assert tokens.policy_for("c2").entries == ()  # no annotation: nowhere
    tokens.delete({"metadata": {"name": "s2"}})
    assert tokens.policy_for("c1").entries == ("a.example",)

"""SensorRoute objects: building, parsing, per-target validation, endpoint URLs."""

from __future__ import annotations

import pytest

from fluidos_sensors.endpoints import EndpointError, check_endpoint_url, redact_url
from router_manager.route import (
    ORIGIN_CONTRACT,
    Route,
    RouteTarget,
    TargetAuth,
    body_of,
    manual_target_id,
    parse_route,
    route_body,
    route_name,
    with_target,
    without_target,
)

NODE = "provider-1-edge"
TOPIC = "default/fluidos-sensors/stwin-1/temperature"


def target(n: int = 1, **changes) -> RouteTarget:
    return RouteTarget(id=f"t{n}", url=f"http://127.0.0.1:{8000 + n}/telegraf", **changes)


def test_round_trip() -> None:
    targets = [
        target(2, format="json", batch_size=10, batch_delay_ms=0, queue_bytes=8192),
        target(
            1,
            auth=TargetAuth("basic", "cred"),
            origin_kind=ORIGIN_CONTRACT,
            origin_name="c",
            allowed_hosts=("127.0.0.1",),
        ),
    ]
    body = route_body(NODE, TOPIC, targets, flavor="fluidos/sensor-x")
    assert body["metadata"]["name"] == route_name(NODE, TOPIC)
    assert body["metadata"]["labels"]["sensors.fluidos.eu/node"] == NODE
    route, problems = parse_route(body)
    assert problems == []
    assert route is not None
    assert [t.id for t in route.targets] == ["t1", "t2"]
    assert route.target("t1") == targets[1]
    assert route.target("t2") == targets[0]
    assert route.flavor == "fluidos/sensor-x"
    assert body_of(route)["spec"] == body["spec"]


def test_route_names_are_stable_dns_labels_and_distinct() -> None:
    name = route_name(NODE, TOPIC)
    assert name == route_name(NODE, TOPIC)
    assert name.startswith("route-stwin-1-temperature-") and len(name) <= 63
    assert route_name("other-edge", TOPIC) != name
    long = route_name(NODE, "ns/fluidos-sensors/" + "d" * 200 + "/s")
    assert len(long) <= 63


def test_adding_the_same_url_twice_is_one_target() -> None:
    url = "http://127.0.0.1:9/telegraf"
    assert manual_target_id(url) == manual_target_id(url)
    route = Route("fluidos-routes", "r", NODE, TOPIC)
    first = RouteTarget(id=manual_target_id(url), url=url)
    twice = with_target(with_target(route, first), first)
    assert len(twice.targets) == 1
    assert without_target(twice, first.id).targets == ()


def test_a_bad_target_costs_only_itself() -> None:
    body = route_body(NODE, TOPIC, [target(1)])
    body["spec"]["targets"] += [
        {"id": "ftp", "url": "ftp://example.com/x"},
        {"id": "creds", "url": "http://user:hunter2@example.com/x"},
        {"id": "fmt", "url": "http://example.com/x", "format": "xml"},
        {"id": "batch", "url": "http://example.com/x", "batch": {"maxSize": 0}},
        {"id": "auth", "url": "http://example.com/x", "auth": {"type": "digest"}},
        {"id": "t1", "url": "http://example.com/dup"},
        "not an object",
    ]
    body["metadata"]["namespace"] = "fluidos-routes"
    route, problems = parse_route(body)
    assert route is not None and [t.id for t in route.targets] == ["t1"]
    text = [str(p) for p in problems]
    name = body["metadata"]["name"]
    assert text[0] == (
        f"SensorRoute fluidos-routes/{name}: spec.targets[1].url: "
        "must be an http:// or https:// URL, got scheme 'ftp'"
    )
    assert "spec.targets[2].url: must not carry credentials" in text[1]
    assert "hunter2" not in text[1]  # the password is never echoed
    assert "spec.targets[3].format" in text[2]
    assert "spec.targets[4].batch.maxSize" in text[3]
    assert "spec.targets[5].auth" in text[4]
    assert 'spec.targets[6].id: "t1" is used twice' in text[5]
    assert "spec.targets[7]: must be an object" in text[6]
    assert [p.target for p in problems[:6]] == ["ftp", "creds", "fmt", "batch", "auth", "t1"]


def test_a_route_without_node_or_with_a_wildcard_topic_is_unusable() -> None:
    for spec in ({"topic": TOPIC}, {"node": NODE, "topic": "default/#"}, {"node": NODE}):
        route, problems = parse_route({"metadata": {"name": "r"}, "spec": spec})
        assert route is None and problems


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://h/x", "scheme 'ftp'"),
        ("//h/x", "http:// or https://"),
        ("http:///x", "must name a host"),
        ("http://u:p@h/x", "credentials"),
        ("http://h/x#frag", "fragment"),
        ("http://h:99999/x", "not a valid URL"),
        ("http://h/ x", "whitespace"),
        ("http://h/" + "x" * 3000, "at most 2048"),
        (42, "must be a URL string"),
    ],
)
def test_endpoint_urls_that_are_refused(url: object, why: str) -> None:
    with pytest.raises(EndpointError, match=why):
        check_endpoint_url(url)


def test_allowed_hosts() -> None:
    allowed = ["127.0.0.1", "*.example.com", "10.0.0.0/8"]
    for url in ("http://127.0.0.1:1/x", "https://a.example.com/x", "http://10.1.2.3/x"):
        assert check_endpoint_url(url, allowed) == url
    for url in ("http://example.com/x", "http://evil.com/x", "http://11.0.0.1/x"):
        with pytest.raises(EndpointError, match="not in the allowed hosts"):
            check_endpoint_url(url, allowed)


def test_redacted_urls_keep_no_secrets() -> None:
    url = "https://u:pw@influx.example.com:8086/api/v2/write?org=o&token=secret"
    assert redact_url(url) == "https://influx.example.com:8086/api/v2/write?org=…&token=…"


def test_a_sold_target_is_held_to_its_buyers_delivery_policy() -> None:
    """The edge agent refuses a Contract's target whose URL its recorded policy does not
    allow, and one with no policy at all; a manual target needs none (issue 24.4)."""
    sold = {"origin_kind": ORIGIN_CONTRACT, "origin_name": "c"}
    targets = [
        target(1, **sold, allowed_hosts=("127.0.0.1",)),  # allowed
        target(2, **sold, allowed_hosts=("10.0.0.0/8", "*")),  # loopback not named
        target(3, **sold),  # no policy recorded
        target(4),  # manual
    ]
    route, problems = parse_route(route_body(NODE, TOPIC, targets))
    assert route is not None
    assert [t.id for t in route.targets] == ["t1", "t4"]
    assert {(p.target, p.field) for p in problems} == {
        ("t2", "spec.targets[1].url"),
        ("t3", "spec.targets[2].url"),
    }
    assert all("delivery policy" in p.message for p in problems)

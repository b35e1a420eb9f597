"""The data path on the testbed: routes, the edge agent, the router manager.

The testbed's edge node runs a real mosquitto, a mapper with simulated boards, and the edge
agent; its provider runs the resource manager and the router manager. Targets here are real
HTTP endpoints on loopback (see test_consumers.py for Telegraf and InfluxDB).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from typing import Any, cast

import httpx
import pytest
from kubernetes import client
from routing import (
    EDGE,
    Endpoint,
    agent_log,
    agent_status,
    cli,
    cloudevents_of,
    eventually,
    flavor_topic,
    line_records,
    route_of,
    running_pid,
    target_status,
    wait_for_flavor,
)

from fluidos_sensors import api as fs_api
from fluidos_sensors.flavor import sensor_from_flavor
from router_manager.kubeedge import EVENTBUS_ENDPOINT, REST_ENDPOINT, ROUTE_LABEL
from router_manager.route import (
    ORIGIN_CONTRACT,
    RouteTarget,
    manual_target_id,
    route_body,
    route_name,
)
from testbed import edge
from testbed.state import ClusterAccess, TestbedState

pytestmark = pytest.mark.integration


def rules_of(api: client.ApiClient, route: str) -> list[dict[str, Any]]:
    return cast(
        dict[str, Any],
        client.CustomObjectsApi(api).list_cluster_custom_object(
            fs_api.RULE.group,
            fs_api.RULE.version,
            fs_api.RULE.plural,
            label_selector=f"{ROUTE_LABEL}={route}",
        ),
    )["items"]


def delete_route(api: client.ApiClient, route: str) -> None:
    """Remove a route a test made, if it is still there."""
    if route_of(api, route) is not None:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            fs_api.SENSOR_ROUTE.group,
            fs_api.SENSOR_ROUTE.version,
            fs_api.ROUTE_NAMESPACE,
            fs_api.SENSOR_ROUTE.plural,
            route,
        )


def test_one_subscription_many_targets_in_order(
    provider: ClusterAccess, provider_api: client.ApiClient, testbed: TestbedState
) -> None:
    flavor = wait_for_flavor(provider_api, "stwin-box", "acceleration")
    name = flavor["metadata"]["name"]
    topic = flavor_topic(flavor)
    route = route_name(EDGE, topic)
    view = sensor_from_flavor(flavor)
    device = view.device.split("/", 1)[1]  # type: ignore[union-attr]
    with Endpoint() as a, Endpoint() as b, Endpoint() as c:
        try:
            for endpoint in (a, b, c):
                out = cli(
                    "routes",
                    "add",
                    "--flavor",
                    name,
                    "--target",
                    endpoint.url,
                    "--batch-delay-ms",
                    "50",
                    kubeconfig=provider.kubeconfig,
                )
                assert f"SensorRoute {fs_api.ROUTE_NAMESPACE}/{route}" in out.stdout
            # The same URL again is the same target, not a fourth.
            cli(
                "routes", "add", "--flavor", name, "--target", a.url, kubeconfig=provider.kubeconfig
            )
            obj = route_of(provider_api, route)
            assert obj is not None and len(obj["spec"]["targets"]) == 3
            eventually(
                lambda: all(len(e.seqs(device, "acceleration")) >= 30 for e in (a, b, c)),
                "30 readings at each of three targets",
                timeout=60,
            )
            status = agent_status(testbed, provider)
            assert status["topics"].count(topic) == 1  # one subscription, whatever the targets

            # Each target got the same readings, in order, without gaps.
            for endpoint in (a, b, c):
                seqs = endpoint.seqs(device, "acceleration")
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs[:20]
            common = set(a.seqs(device, "acceleration")) & set(b.seqs(device, "acceleration"))
            assert len(common) >= 20

            # Status tells what was delivered, per target.
            eventually(
                lambda: (
                    target_status(provider_api, route, manual_target_id(a.url)).get("delivered", 0)
                    >= 30
                ),
                "delivered counts in the route status",
            )
            listing = cli("routes", "list", "--node", EDGE, kubeconfig=provider.kubeconfig).stdout
            assert topic in listing and "Delivering" in listing

            # Removing one target stops its deliveries; the others go on.
            cli(
                "routes",
                "remove",
                "--flavor",
                name,
                "--target",
                c.url,
                kubeconfig=provider.kubeconfig,
            )
            eventually(
                lambda: (
                    manual_target_id(c.url)
                    not in agent_status(testbed, provider).get("targets", {}).__repr__()
                ),
                "the agent dropping the removed target",
            )
            stopped_at = len(c.requests)
            before_a = len(a.seqs(device, "acceleration"))
            eventually(lambda: len(a.seqs(device, "acceleration")) > before_a + 10, "more at a")
            assert len(c.requests) == stopped_at

            for endpoint in (a, b):
                cli(
                    "routes",
                    "remove",
                    "--flavor",
                    name,
                    "--target",
                    endpoint.url,
                    kubeconfig=provider.kubeconfig,
                )
            eventually(lambda: route_of(provider_api, route) is None, "the empty route deleted")
            eventually(
                lambda: topic not in agent_status(testbed, provider).get("topics", []),
                "the agent unsubscribing",
            )
        finally:
            custom = client.CustomObjectsApi(provider_api)
            if route_of(provider_api, route) is not None:
                custom.delete_namespaced_custom_object(
                    fs_api.SENSOR_ROUTE.group,
                    fs_api.SENSOR_ROUTE.version,
                    fs_api.ROUTE_NAMESPACE,
                    fs_api.SENSOR_ROUTE.plural,
                    route,
                )


def test_cloudevents_reach_a_consumer_that_reads_them_with_the_sdk(
    provider: ClusterAccess, provider_api: client.ApiClient, testbed: TestbedState
) -> None:
    """Structured mode (one event per request) and batch mode, read with the CloudEvents
    SDK's parser; a refused event comes again with the same id, so the consumer can
    deduplicate at-least-once delivery."""
    flavor = wait_for_flavor(provider_api, "stwin-box", "acceleration")
    name = flavor["metadata"]["name"]
    route = route_name(EDGE, flavor_topic(flavor))
    namespace, device = sensor_from_flavor(flavor).device.split("/", 1)  # type: ignore[union-attr]
    source = f"/providers/{provider.name}/nodes/{EDGE}/namespaces/{namespace}/devices/{device}"
    with Endpoint(status=503) as single, Endpoint() as batch:
        try:
            for endpoint, fmt in ((single, "cloudevents"), (batch, "cloudevents-batch")):
                cli(
                    "routes", "add", "--flavor", name, "--target", endpoint.url,
                    "--format", fmt, kubeconfig=provider.kubeconfig,
                )  # fmt: skip
            eventually(lambda: len(single.requests) >= 3, "the structured target refusing")
            single.status = 204

            def accepted(endpoint: Endpoint) -> list[Any]:
                return [r for r in list(endpoint.requests) if r.status < 300]

            def events(endpoint: Endpoint) -> list[Any]:
                return [event for r in accepted(endpoint) for event in cloudevents_of(r)]

            eventually(
                lambda: len(events(single)) >= 30 and len(events(batch)) >= 30,
                "30 events at each target",
                timeout=60,
            )
            refused = [r for r in list(single.requests) if r.status >= 300]
            assert {len(cloudevents_of(r)) for r in single.requests} == {1}
            assert {cloudevents_of(r)[0].get_id() for r in refused} == {
                events(single)[0].get_id()  # the refused event, retried: the same id
            }
            for endpoint, content_type in (
                (single, "application/cloudevents+json"),
                (batch, "application/cloudevents-batch+json"),
            ):
                assert {r.headers["Content-Type"] for r in accepted(endpoint)} == {content_type}
                got = events(endpoint)
                seqs = [event.get_data()["seq"] for event in got]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs[:20]
                assert len({event.get_id() for event in got}) == len(got)
                for event in got:
                    data = event.get_data()
                    assert event.get_specversion() == "1.0"
                    assert event.get_id().startswith(f"acceleration:{data['seq']}:")
                    assert event.get_source() == source
                    assert event.get_type() == "eu.fluidos.sensors.acceleration"
                    assert event.get_subject() == "acceleration"
                    assert event.get_datacontenttype() == "application/json"
                    assert abs(event.get_time().timestamp() - time.time()) < 300
                    assert set(data["values"]) == {"x", "y", "z"} and data["unit"] == "mg"
        finally:
            delete_route(provider_api, route)


def test_window_aggregates_are_shared_exact_and_survive_an_outage_and_a_kill(
    provider: ClusterAccess, provider_api: client.ApiClient, testbed: TestbedState
) -> None:
    """Raw readings to one target, 1 s windows (mean, max, count) to two (one of them down
    for a while), every 5th reading to a fourth; the agent is SIGKILLed in the middle. Every
    window comes, once or again identical (at least once, same series and timestamp), equal
    at both window targets (computed once) and to what the raw target got in that second."""
    flavor = wait_for_flavor(provider_api, "stwin-box", "acceleration")
    name = flavor["metadata"]["name"]
    route = route_name(EDGE, flavor_topic(flavor))
    device = sensor_from_flavor(flavor).device.split("/", 1)[1]  # type: ignore[union-attr]
    window = ("--aggregate", "mean,max,count", "--window", "1s")
    second = 1_000_000_000

    def add(endpoint: Endpoint, *options: str) -> None:
        cli(
            "routes", "add", "--flavor", name, "--target", endpoint.url, *options,
            kubeconfig=provider.kubeconfig,
        )  # fmt: skip

    def windows(endpoint: Endpoint) -> dict[int, dict[str, str]]:
        """Each window once; one sent again (after the kill) must be the same record."""
        found: dict[int, dict[str, str]] = {}
        for timestamp, fields in line_records(endpoint, device, "acceleration"):
            assert timestamp % second == 0, timestamp
            assert found.setdefault(timestamp, fields) == fields, timestamp
        return found

    with Endpoint() as raw, Endpoint() as means, Endpoint(status=503) as down, Endpoint() as few:
        try:
            add(raw)
            add(means, *window)
            add(down, *window, "--id", "means-down")
            add(few, "--every", "5")
            eventually(lambda: len(windows(means)) >= 4, "4 windows", timeout=60)
            agent = f"{provider.name}/{EDGE}/agent"
            pid = running_pid(testbed, agent)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            eventually(
                lambda: running_pid(testbed, agent) not in (None, pid), "the agent restarted", 60
            )
            killed_at = max(windows(means))
            eventually(lambda: max(windows(means)) >= killed_at + 4 * second, "4 more windows", 60)
            down.status = 204
            eventually(
                lambda: windows(down) and max(windows(down)) >= killed_at + 4 * second,
                "the windows kept for the target that was down",
                timeout=60,
            )
            got, kept = windows(means), windows(down)
            # No window lost: one per second from the first to the last, at both targets.
            for found in (got, kept):
                starts = sorted(found)
                assert starts == list(range(starts[0], starts[-1] + second, second))
            # Computed once: where both have a window, it is the same record.
            common = set(got) & set(kept)
            assert len(common) >= 6 and all(got[t] == kept[t] for t in common)
            # Exact: each whole second the raw target saw (dropping readings sent twice).
            readings: dict[int, list[float]] = {}
            for timestamp, fields in {
                (t, f["seq"]): (t, f) for t, f in line_records(raw, device, "acceleration")
            }.values():
                readings.setdefault(timestamp // second * second, []).append(float(fields["x"]))
            checked = 0
            for start in sorted(set(got) & set(readings))[1:-1]:
                xs, fields = readings[start], got[start]
                assert float(fields["x_count"]) == len(xs), start
                assert float(fields["x_max"]) == max(xs), start
                assert abs(float(fields["x_mean"]) - statistics.fmean(xs)) <= 1e-6 * max(
                    1.0, abs(statistics.fmean(xs))
                ), start
                checked += 1
            assert checked >= 6
            sampled = line_records(few, device, "acceleration")
            seqs = sorted({int(fields["seq"][:-1]) for _, fields in sampled})
            assert seqs and all(seq % 5 == 0 for seq in seqs)
            assert seqs == list(range(seqs[0], seqs[-1] + 5, 5))
            status = target_status(provider_api, route, manual_target_id(means.url))
            assert status.get("shape") == "mean,max,count@1000ms"
            assert status.get("late") == 0
        finally:
            delete_route(provider_api, route)


def test_bad_targets_cost_only_themselves(
    provider: ClusterAccess, provider_api: client.ApiClient, testbed: TestbedState
) -> None:
    flavor = wait_for_flavor(provider_api, "stwin-box", "pressure")
    topic = flavor_topic(flavor)
    device = sensor_from_flavor(flavor).device.split("/", 1)[1]  # type: ignore[union-attr]
    custom = client.CustomObjectsApi(provider_api)
    with Endpoint() as good, Endpoint(status=400) as refusing:
        body = route_body(
            EDGE,
            topic,
            [
                RouteTarget(id="good", url=good.url, batch_delay_ms=50),
                RouteTarget(id="refusing", url=refusing.url, batch_delay_ms=50),
            ],
        )
        # Passes the CRD's pattern, fails the agent's check: credentials in the URL.
        body["spec"]["targets"].append(
            {"id": "leaky", "url": "http://user:hunter2@127.0.0.1:9/telegraf"}
        )
        name = body["metadata"]["name"]
        custom.create_namespaced_custom_object(
            fs_api.SENSOR_ROUTE.group,
            fs_api.SENSOR_ROUTE.version,
            fs_api.ROUTE_NAMESPACE,
            fs_api.SENSOR_ROUTE.plural,
            body,
        )
        try:
            eventually(
                lambda: target_status(provider_api, name, "refusing").get("rejected", 0) >= 3,
                "rejections counted",
            )
            refused = target_status(provider_api, name, "refusing")
            assert refused["state"] == "Rejecting"
            assert refused["lastError"].startswith("HTTP 400: ")
            assert refused.get("delivered", 0) == 0
            leaky = target_status(provider_api, name, "leaky")
            assert leaky["state"] == "Invalid"
            assert "spec.targets[2].url" in leaky["lastError"]
            # The password in the bad URL is echoed neither in status nor in the log.
            assert "hunter2" not in str((route_of(provider_api, name) or {})["status"])
            assert "hunter2" not in agent_log(testbed, provider)
            # A refused batch is split down to single readings (the target may refuse only
            # some), each refused alone once and never retried.
            singles = [
                seq
                for request in list(refusing.requests)
                if len(request.body.splitlines()) == 1
                for seq in Endpoint(requests=[request]).seqs(device, "pressure", refused_too=True)
            ]
            assert singles and len(singles) == len(set(singles))
            assert refused["lastRejected"].startswith(f"{device}/pressure seq ")
            # The good target keeps delivering, in order.
            eventually(lambda: len(good.seqs(device, "pressure")) >= 5, "the good target")
            seqs = good.seqs(device, "pressure")
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert target_status(provider_api, name, "good")["state"] == "Delivering"
        finally:
            custom.delete_namespaced_custom_object(
                fs_api.SENSOR_ROUTE.group,
                fs_api.SENSOR_ROUTE.version,
                fs_api.ROUTE_NAMESPACE,
                fs_api.SENSOR_ROUTE.plural,
                name,
            )


def test_cli_refuses_bad_targets_naming_the_option(
    provider: ClusterAccess, provider_api: client.ApiClient
) -> None:
    flavor = wait_for_flavor(provider_api, "stwin-box", "temperature")
    name = flavor["metadata"]["name"]
    for url, why in (("ftp://127.0.0.1/x", "scheme"), ("http://u:p@127.0.0.1/x", "credentials")):
        out = cli(
            "routes",
            "add",
            "--flavor",
            name,
            "--target",
            url,
            kubeconfig=provider.kubeconfig,
            check=False,
        )
        assert out.returncode == 2
        assert out.stderr.startswith("error: --target ") and why in out.stderr
    out = cli(
        "routes",
        "add",
        "--flavor",
        "no-such-flavor",
        "--target",
        "http://127.0.0.1:9/x",
        kubeconfig=provider.kubeconfig,
        check=False,
    )
    assert out.returncode == 1 and "Flavor fluidos/no-such-flavor not found" in out.stderr
    assert route_of(provider_api, route_name(EDGE, flavor_topic(flavor))) is None


def test_kubeedge_rules_follow_the_route(
    provider: ClusterAccess, provider_api: client.ApiClient
) -> None:
    flavor = wait_for_flavor(provider_api, "sensortile", "humidity")
    name = flavor["metadata"]["name"]
    topic = flavor_topic(flavor)
    route = route_name(EDGE, topic)
    first, second = "http://127.0.0.1:18001/a", "http://127.0.0.1:18002/b"
    cli(
        "routes",
        "add",
        "--flavor",
        name,
        "--target",
        second,
        "--id",
        "b-second",
        kubeconfig=provider.kubeconfig,
    )
    rule = eventually(lambda: rules_of(provider_api, route), "the KubeEdge Rule")[0]
    namespace, source = topic.split("/", 1)
    assert rule["metadata"]["namespace"] == namespace
    assert rule["spec"] == {
        "source": EVENTBUS_ENDPOINT,
        "sourceResource": {"topic": source, "node_name": EDGE},
        "target": REST_ENDPOINT,
        "targetResource": {"resource": second},
    }
    endpoints = cast(
        dict[str, Any],
        client.CustomObjectsApi(provider_api).list_namespaced_custom_object(
            fs_api.RULE_ENDPOINT.group,
            fs_api.RULE_ENDPOINT.version,
            namespace,
            fs_api.RULE_ENDPOINT.plural,
        ),
    )["items"]
    kinds = {e["metadata"]["name"]: e["spec"]["ruleEndpointType"] for e in endpoints}
    assert kinds[EVENTBUS_ENDPOINT] == "eventbus" and kinds[REST_ENDPOINT] == "rest"

    # A change KubeEdge must see: the Rule is deleted and created again (new uid).
    cli(
        "routes",
        "add",
        "--flavor",
        name,
        "--target",
        first,
        "--id",
        "a-first",
        kubeconfig=provider.kubeconfig,
    )

    def recreated() -> dict[str, Any] | None:
        rules = rules_of(provider_api, route)
        if len(rules) == 1 and rules[0]["metadata"]["uid"] != rule["metadata"]["uid"]:
            return rules[0]
        return None

    again = eventually(recreated, "the Rule recreated")
    assert again["spec"]["targetResource"] == {"resource": first}
    assert again["metadata"]["annotations"]["sensors.fluidos.eu/targets"] == "2"

    for target in ("a-first", "b-second"):
        cli("routes", "remove", "--flavor", name, "--id", target, kubeconfig=provider.kubeconfig)
    eventually(lambda: not rules_of(provider_api, route), "the Rule removed with the route")


def test_observed_latency_reaches_the_flavor_and_filters(
    provider: ClusterAccess, provider_api: client.ApiClient
) -> None:
    flavor = wait_for_flavor(provider_api, "sensortile", "temperature")
    name = flavor["metadata"]["name"]
    with Endpoint() as endpoint:
        cli(
            "routes",
            "add",
            "--flavor",
            name,
            "--target",
            endpoint.url,
            "--batch-delay-ms",
            "20",
            kubeconfig=provider.kubeconfig,
        )
        try:

            def observed() -> Any:
                obj = client.CustomObjectsApi(provider_api).get_namespaced_custom_object(
                    fs_api.FLAVOR.group,
                    fs_api.FLAVOR.version,
                    fs_api.FLUIDOS_NAMESPACE,
                    fs_api.FLAVOR.plural,
                    name,
                )
                return sensor_from_flavor(obj).observed

            seen = eventually(observed, "observed latency on the Flavor", timeout=60)
            assert seen.latency_ms is not None and 0 < seen.latency_ms < 5000
            assert seen.rate_hz is not None and seen.rate_hz > 0
            # The declared values are untouched, and buyers can filter on the measured one.
            assert sensor_from_flavor(flavor).sensor.latency_ms is not None

            # The measured value moves (a restarted agent's first minute holds its backlog's
            # latencies): each try bounds the filter by the value the Flavor has then.
            def listed(factor: float, margin: float) -> bool:
                latency = observed().latency_ms
                query = f"filter[observed_latency][range][max]={latency * factor + margin}"
                out = cli(
                    "flavors", "list", "--query", query, "-o", "json",
                    kubeconfig=provider.kubeconfig,
                ).stdout  # fmt: skip
                return name in out

            eventually(lambda: listed(1, 1), "listed under a bound above its latency")
            eventually(lambda: not listed(0.01, 0), "not listed under a bound below it")
        finally:
            cli(
                "routes",
                "remove",
                "--flavor",
                name,
                "--target",
                endpoint.url,
                kubeconfig=provider.kubeconfig,
            )


def test_agent_metrics_need_the_token(provider: ClusterAccess, testbed: TestbedState) -> None:
    ports = testbed.config["edge"][EDGE]
    url = f"http://127.0.0.1:{ports[edge.AGENT_METRICS_PORT]}/metrics"
    token = edge.agent_metrics_token(testbed.directory / provider.name / "nodes" / EDGE)
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = httpx.get(url, headers={"Authorization": f"Bearer {token.read_text().strip()}"})
    assert answer.status_code == 200
    assert "fluidos_sensors_agent_broker_connected 1.0" in answer.text


def test_the_agent_holds_a_sold_target_to_its_buyers_delivery_policy(
    provider: ClusterAccess, provider_api: client.ApiClient
) -> None:
    """Issue 24.4, the edge's own check: a Contract's target goes only where the buyer's policy
    (recorded on the route by the router manager) allows, even if the route was written
    around the gateway; the node's --allow-host (loopback in the testbed) is not enough."""
    flavor = wait_for_flavor(provider_api, "stwin-box", "temperature")
    topic = flavor_topic(flavor)
    device = sensor_from_flavor(flavor).device.split("/", 1)[1]  # type: ignore[union-attr]
    custom = client.CustomObjectsApi(provider_api)
    sold: dict[str, Any] = {
        "origin_kind": ORIGIN_CONTRACT,
        "origin_name": "contract-x",
        "batch_delay_ms": 50,
    }
    with Endpoint() as allowed:
        outside = allowed.url.replace("127.0.0.1", "127.0.0.2")  # loopback, not in the policy
        body = route_body(
            EDGE,
            topic,
            [
                RouteTarget(id="allowed", url=allowed.url, allowed_hosts=("127.0.0.1",), **sold),
                RouteTarget(id="nopolicy", url=allowed.url, **sold),
                RouteTarget(id="outside", url=outside, allowed_hosts=("127.0.0.1",), **sold),
            ],
        )
        name = body["metadata"]["name"]
        custom.create_namespaced_custom_object(
            fs_api.SENSOR_ROUTE.group,
            fs_api.SENSOR_ROUTE.version,
            fs_api.ROUTE_NAMESPACE,
            fs_api.SENSOR_ROUTE.plural,
            body,
        )
        try:
            stored = route_of(provider_api, name) or {}
            kept = {t["id"]: t.get("allowedHosts") for t in stored["spec"]["targets"]}
            assert kept["allowed"] == ["127.0.0.1"]  # the CRD keeps the field
            eventually(lambda: len(allowed.seqs(device, "temperature")) >= 3, "the allowed target")
            for target_id, index in (("nopolicy", 1), ("outside", 2)):

                def target_state(t: str = target_id) -> dict[str, Any] | None:
                    return target_status(provider_api, name, t) or None

                status = eventually(target_state, f"status of {target_id}")
                assert status["state"] == "Invalid", status
                assert f"spec.targets[{index}].url" in status["lastError"]
                assert "delivery policy" in status["lastError"]
        finally:
            custom.delete_namespaced_custom_object(
                fs_api.SENSOR_ROUTE.group,
                fs_api.SENSOR_ROUTE.version,
                fs_api.ROUTE_NAMESPACE,
                fs_api.SENSOR_ROUTE.plural,
                name,
            )

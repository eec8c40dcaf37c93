"""The Prometheus client against a real Prometheus, and against a fake one that misbehaves."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from servicegraph.graph import (
    EdgeAttributes,
    NodeRole,
    Observation,
    ServiceDeclaration,
    SourceKind,
    analyse,
)
from servicegraph.observed import (
    ObservedSourceError,
    PollResult,
    PrometheusQuery,
    Reason,
    poll,
)
from tests.integration.conftest import DYNAMIC_PREFIX, NOISE, SAMPLE_EDGES, WINDOW, Stack
from tests.support.binaries import require_binary
from tests.support.prometheus import Edge, FakePrometheus, free_port, self_signed_certificate

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

TOKEN = "s3cr3t-t0ken-abc123"
TENANT = "tenant-7f3e"
SMALL = 64 * 1024


def by_edge(result: PollResult) -> dict[tuple[str, str], Observation]:
    return {(o.source, o.target): o for o in result.observations}


def pairs(edges: Iterable[Edge]) -> dict[tuple[str, str], list[Edge]]:
    grouped: dict[tuple[str, str], list[Edge]] = defaultdict(list)
    for edge in edges:
        grouped[(edge.client, edge.server)].append(edge)
    return dict(grouped)


async def poll_until(
    query: PrometheusQuery,
    done: Callable[[PollResult], bool],
    *,
    timeout: float = 20.0,
) -> PollResult:
    deadline = time.monotonic() + timeout
    while True:
        result = await poll(query, now=datetime.now(UTC))
        if done(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.3)


# --- a real Prometheus ---------------------------------------------------------------------


async def test_poll_reads_the_collectors_metrics_from_a_real_prometheus(stack: Stack) -> None:
    query = PrometheusQuery(
        stack.prometheus.url,
        headers=(("X-Scope-OrgID", TENANT),),  # Prometheus ignores both; Mimir would not
        bearer_token=TOKEN,
        window=WINDOW,
        timeout=5.0,
    )
    now = datetime.now(UTC)
    result = await poll(query, now=now)
    observed = by_edge(result)
    expected = pairs(SAMPLE_EDGES)
    assert set(observed) == set(expected)
    failing = sum(1 for e in SAMPLE_EDGES if e.failed_ratio > 0)
    assert result.series == len(SAMPLE_EDGES) + failing + len(SAMPLE_EDGES)

    # rate() under-counts while the window fills up, by the same factor for every series
    # (they all started together), so compare the rates with each other.
    reference = observed[("frontend", "cartservice")].traffic
    assert reference is not None
    factor = reference.request_rate / 8
    assert 0 < factor <= 1.05
    for pair, edges in expected.items():
        obs = observed[pair]
        traffic = obs.traffic
        assert traffic is not None
        assert obs.kind == SourceKind.OTEL and obs.last_seen == now
        total = sum(e.rate for e in edges)
        assert traffic.request_rate == pytest.approx(total * factor, rel=0.01), pair
        failures = sum(e.rate * e.failed_ratio for e in edges) / total
        assert traffic.error_rate == pytest.approx(failures, abs=0.002), pair
        assert traffic.p95_latency_ms == pytest.approx(max(e.p95_ms for e in edges), abs=0.1)
        busiest = max(edges, key=lambda e: e.rate)
        assert traffic.connection_type == busiest.connection_type, pair
        mode = "async" if busiest.connection_type == "messaging_system" else "sync"
        assert obs.attributes == EdgeAttributes(communication_mode=mode), pair

    email = observed[("checkoutservice", "emailservice")].traffic
    assert email is not None and email.p95_latency_ms == 390.0  # 0.3 s: bucket (0.2, 0.4]
    payments = observed[("checkoutservice", "api.payments.example")].traffic
    assert payments is not None and payments.error_rate == pytest.approx(0.5, abs=1e-3)
    assert payments.p95_latency_ms == 1380.0  # bucket (1, 1.4]


async def test_edges_under_the_minimum_request_rate_are_noise(stack: Stack) -> None:
    result = await poll(
        stack.query(stack.prometheus, min_request_rate=NOISE * 4), now=datetime.now(UTC)
    )
    observed = by_edge(result)
    assert ("loadgenerator", "frontend") not in observed
    assert set(observed) == set(pairs(SAMPLE_EDGES)) - {("loadgenerator", "frontend")}


async def test_observed_edges_merge_into_the_graph(stack: Stack) -> None:
    now = datetime.now(UTC)
    result = await poll(stack.query(stack.prometheus), now=now)
    grpc = EdgeAttributes(protocol="grpc", timeout_ms=500)
    declarations = [
        ServiceDeclaration(
            "frontend", depends_on=(("cartservice", grpc), ("shippingservice", grpc))
        ),
        ServiceDeclaration("cartservice"),
        ServiceDeclaration("checkoutservice"),
        ServiceDeclaration("emailservice"),
    ]
    graph = analyse(declarations, result.observations, now=now, observing=True)

    assert graph.nodes["redis-cart"].role == NodeRole.DATABASE
    assert graph.nodes["api.payments.example"].role == NodeRole.VIRTUAL
    assert graph.nodes["emailservice"].role == NodeRole.SERVICE  # declared: a service
    assert ("cartservice", "cartservice") not in graph.edges

    declared = graph.edges[("frontend", "cartservice")]
    assert declared.attributes == grpc  # the declaration wins the attributes...
    assert declared.traffic is not None  # ...the traffic comes from OpenTelemetry
    assert declared.traffic.error_rate == pytest.approx(0.25, abs=1e-3)
    assert set(declared.sources) == {SourceKind.MANUAL, SourceKind.OTEL}
    assert graph.edges[("checkoutservice", "emailservice")].attributes.communication_mode == "async"

    assert graph.unobserved == [("frontend", "shippingservice")]
    assert ("frontend", "cartservice") not in graph.undeclared
    assert ("checkoutservice", "emailservice") in graph.undeclared


async def test_edges_added_at_runtime_show_up_under_their_own_prefix(stack: Stack) -> None:
    query = stack.query(stack.prometheus, metric_prefix=DYNAMIC_PREFIX)
    stack.dynamic.add(Edge("shippingservice", "quoteservice", rate=5))
    stack.dynamic.add(Edge("shippingservice", "orders", "messaging_system", rate=2))
    wanted = {("shippingservice", "quoteservice"), ("shippingservice", "orders")}

    result = await poll_until(query, lambda r: wanted <= set(by_edge(r)))
    observed = by_edge(result)
    assert wanted <= set(observed)
    orders = observed[("shippingservice", "orders")]
    assert orders.attributes.communication_mode == "async"

    # the default prefix does not see them, nor the other way round
    default = by_edge(await poll(stack.query(stack.prometheus), now=datetime.now(UTC)))
    assert not wanted & set(default)
    assert not set(pairs(SAMPLE_EDGES)) & set(observed)


async def test_prometheus_down_then_back(stack: Stack) -> None:
    """A Prometheus restart: Unreachable while it is gone, then the same query works again."""
    server = stack.restartable
    query = stack.query(server)
    before = await poll(query, now=datetime.now(UTC))
    assert set(by_edge(before)) == set(pairs(SAMPLE_EDGES))

    server.stop()
    try:
        with pytest.raises(ObservedSourceError) as caught:
            await poll(query, now=datetime.now(UTC), attempts=2, backoff=0.01)
        assert caught.value.reason == Reason.UNREACHABLE
        assert f"127.0.0.1:{server.port}" in caught.value.message
        assert "after 2 attempts" in caught.value.message
    finally:
        server.start()  # the same port and data directory

    after = await poll(query, now=datetime.now(UTC))
    assert set(by_edge(after)) == set(pairs(SAMPLE_EDGES))


# --- a fake Prometheus that misbehaves -------------------------------------------------------


def fake_query(fake: FakePrometheus, **options: object) -> PrometheusQuery:
    settings: dict[str, object] = {
        "headers": (("X-Scope-OrgID", TENANT),),
        "bearer_token": TOKEN,
        "timeout": 0.5,
        "window": WINDOW,
        **options,
    }
    url = str(settings.pop("url", fake.url))
    return PrometheusQuery(url, **settings)  # type: ignore[arg-type]


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert TENANT not in text


FAULTS = [
    pytest.param("unauthorized", Reason.UNAUTHORIZED, 1, "HTTP 401", id="401"),
    pytest.param("forbidden", Reason.UNAUTHORIZED, 1, "HTTP 403", id="403"),
    pytest.param("error", Reason.BAD_RESPONSE, 3, "HTTP 500", id="500"),
    pytest.param("unavailable", Reason.BAD_RESPONSE, 3, "HTTP 503", id="503"),
    pytest.param("query_timeout", Reason.TIMEOUT, 3, "timed out", id="prometheus-timeout"),
    pytest.param("bad_query", Reason.BAD_RESPONSE, 1, "bad_data: parse error", id="400"),
    pytest.param("redirect", Reason.BAD_RESPONSE, 1, "redirect", id="302"),
    pytest.param("malformed", Reason.BAD_RESPONSE, 1, "malformed JSON", id="malformed-json"),
    pytest.param("not_success", Reason.BAD_RESPONSE, 1, "internal: boom", id="status-error"),
    pytest.param("matrix", Reason.BAD_RESPONSE, 1, "'matrix'", id="not-a-vector"),
    pytest.param("slow", Reason.TIMEOUT, 3, "within 0.5s", id="too-slow"),
    pytest.param("oversized", Reason.BAD_RESPONSE, 1, f"larger than {SMALL}", id="oversized"),
    pytest.param(
        "oversized_declared", Reason.BAD_RESPONSE, 1, f"larger than {SMALL}", id="oversized-length"
    ),
    pytest.param("drop", Reason.UNREACHABLE, 3, "cannot reach", id="connection-dropped"),
]


@pytest.mark.parametrize(("mode", "reason", "requests", "fragment"), FAULTS)
async def test_a_fault_is_classified_then_the_same_query_recovers(
    fake: FakePrometheus, mode: str, reason: Reason, requests: int, fragment: str
) -> None:
    query = fake_query(fake)
    fake.mode = mode
    started = time.monotonic()
    with pytest.raises(ObservedSourceError) as caught:
        await poll(query, now=datetime.now(UTC), attempts=3, backoff=0.01, max_bytes=SMALL)
    elapsed = time.monotonic() - started
    error = caught.value
    assert error.reason == reason
    assert fragment in error.message
    assert len(fake.requests) == requests  # retried only when it may help
    if requests > 1:
        assert f"after {requests} attempts" in error.message
    assert elapsed < 3 * query.timeout + 1.5  # the timeout holds per attempt
    assert_no_secrets(str(error), repr(error), error.message)

    fake.mode = "ok"
    result = await poll(query, now=datetime.now(UTC), attempts=1, max_bytes=SMALL)
    assert set(by_edge(result)) == set(pairs(SAMPLE_EDGES))


async def test_prometheus_down_is_unreachable_then_recovers(fake: FakePrometheus) -> None:
    query = fake_query(fake)
    port = fake.port
    fake.stop()
    with pytest.raises(ObservedSourceError) as caught:
        await poll(query, now=datetime.now(UTC), attempts=3, backoff=0.01)
    assert caught.value.reason == Reason.UNREACHABLE
    assert caught.value.message.startswith(f"cannot reach http://127.0.0.1:{port}: ConnectError")
    assert "after 3 attempts" in caught.value.message
    assert fake.requests == []

    fake.start()
    assert fake.port == port
    result = await poll(query, now=datetime.now(UTC))
    assert set(by_edge(result)) == set(pairs(SAMPLE_EDGES))


async def test_closed_port_is_unreachable() -> None:
    query = PrometheusQuery(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(ObservedSourceError) as caught:
        await poll(query, now=datetime.now(UTC), attempts=1)
    assert caught.value.reason == Reason.UNREACHABLE
    assert "(after" not in caught.value.message  # one attempt, as asked


async def test_transient_faults_are_retried_until_an_answer(fake: FakePrometheus) -> None:
    fake.script.extend(["error", "drop"])
    result = await poll(fake_query(fake), now=datetime.now(UTC), attempts=3, backoff=0.01)
    assert set(by_edge(result)) == set(pairs(SAMPLE_EDGES))
    assert len(fake.requests) == 2 + 3  # two failures, then the three queries


async def test_secrets_stay_out_of_messages_and_reprs(fake: FakePrometheus) -> None:
    fake.mode = "echo"  # a careless proxy that repeats the request headers in its 401 page
    query = fake_query(fake, url=f"http://ops:hunter2-pw@127.0.0.1:{fake.port}")
    with pytest.raises(ObservedSourceError) as caught:
        await poll(query, now=datetime.now(UTC))
    error = caught.value
    assert error.reason == Reason.UNAUTHORIZED
    assert "***" in error.message  # the echoed header values were there, and were scrubbed
    assert fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"  # the token wins
    for text in (str(error), repr(error), repr(query), str(query), query.display_url):
        assert_no_secrets(text)
        assert "hunter2" not in text
    assert repr(query).count("<hidden>") == 1


async def test_the_request_carries_headers_token_and_the_queries(fake: FakePrometheus) -> None:
    query = fake_query(fake, url=f"{fake.url}/prometheus/")  # Mimir serves under a path
    async with httpx.AsyncClient() as client:
        result = await poll(query, now=datetime.now(UTC), client=client)
        assert not client.is_closed  # a client of the caller stays open
    assert result.series == len(SAMPLE_EDGES) * 2 + sum(1 for e in SAMPLE_EDGES if e.failed_ratio)
    assert len(fake.requests) == 3
    for request in fake.requests:
        assert request.method == "POST"
        assert request.path == "/prometheus/api/v1/query"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["x-scope-orgid"] == TENANT
        assert request.headers["user-agent"].startswith("servicegraph-operator/")
        assert request.form["timeout"] == "0.5"
    assert sorted(r.form["query"] for r in fake.requests) == sorted(query.promql.values())


async def test_an_empty_answer_asks_nothing_more(fake: FakePrometheus) -> None:
    fake.serve([])
    result = await poll(fake_query(fake), now=datetime.now(UTC))
    assert result == PollResult([], 0)
    assert len(fake.requests) == 1


async def test_tls_is_verified_by_default_and_against_the_given_ca(tmp_path: Path) -> None:
    require_binary("openssl", "it makes the test's self-signed certificate")
    certificate = self_signed_certificate(tmp_path)
    assert certificate is not None
    with FakePrometheus(SAMPLE_EDGES, tls=certificate) as fake:
        assert fake.url.startswith("https://")
        with pytest.raises(ObservedSourceError) as caught:
            await poll(fake_query(fake), now=datetime.now(UTC), attempts=1)
        assert caught.value.reason == Reason.UNREACHABLE
        assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message

        trusted = fake_query(fake, ca_pem=certificate[0].read_text())
        result = await poll(trusted, now=datetime.now(UTC), attempts=1)
        assert set(by_edge(result)) == set(pairs(SAMPLE_EDGES))

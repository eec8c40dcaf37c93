"""The pure parts of the Prometheus client: validation, PromQL, answers, classification, edges.

The client against real servers is in tests/integration/test_observed.py; here, what needs no
socket (httpx.MockTransport stands in for the network where a request is the point).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from servicegraph.api import ObservedSource, PrometheusEndpoint, SecretKeyRef
from servicegraph.backoff import retry_delay
from servicegraph.graph import EdgeAttributes, SourceKind, Traffic
from servicegraph.observed import (
    MAX_BACKOFF_SECONDS,
    ObservedSourceError,
    PollResult,
    PrometheusQuery,
    Reason,
    classify_status,
    parse_vector,
    poll,
)
from servicegraph.otel_edges import observations_from_samples
from servicegraph.series import Sample

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TOKEN = "t0ken-Very-5ecret"
URL = "http://prometheus.monitoring:9090"


def sample(client: str, server: str, value: float, connection_type: str | None = "") -> Sample:
    labels = {"client": client, "server": server}
    if connection_type is not None:
        labels["connection_type"] = connection_type
    return Sample(labels, value, 1700000000.0)


# --- the query: built only from checked values -----------------------------------------------


def test_promql_of_the_default_query() -> None:
    assert PrometheusQuery(URL).promql == {
        "rate": "sum by (client, server, connection_type) "
        "(rate(traces_service_graph_request_total[1h]))",
        "failed": "sum by (client, server, connection_type) "
        "(rate(traces_service_graph_request_failed_total[1h]))",
        "latency": "histogram_quantile(0.95, sum by (client, server, connection_type, le) "
        "(rate(traces_service_graph_request_server_seconds_bucket[1h])))",
    }


def test_promql_uses_the_prefix_and_window() -> None:
    query = PrometheusQuery(URL, metric_prefix="servicegraph_traces_service_graph", window="1h30m")
    assert all("servicegraph_traces_service_graph_request_" in q for q in query.promql.values())
    assert all("[1h30m]" in q for q in query.promql.values())


def test_from_source_maps_the_spec() -> None:
    source = ObservedSource(
        prometheus=PrometheusEndpoint(
            url=URL,
            headers={"X-Scope-OrgID": "team-a", "A-First": "1"},
            bearer_token_secret_ref=SecretKeyRef(name="prom", key="token"),
            timeout="1m30s",
        ),
        metric_prefix="tempo_service_graph",
        window="15m",
        min_request_rate=0.5,
    )
    query = PrometheusQuery.from_source(source, bearer_token=f"  {TOKEN}\n")
    assert query == PrometheusQuery(
        url=URL,
        headers=(("A-First", "1"), ("X-Scope-OrgID", "team-a")),
        bearer_token=TOKEN,
        timeout=90.0,
        metric_prefix="tempo_service_graph",
        window="15m",
        min_request_rate=0.5,
        source_name="otel",  # spec.observed is the source named otel
    )


def test_from_source_defaults() -> None:
    query = PrometheusQuery.from_source(ObservedSource(prometheus=PrometheusEndpoint(url=URL)))
    assert (query.metric_prefix, query.window, query.timeout) == ("traces_service_graph", "1h", 30)
    assert (query.bearer_token, query.ca_pem, query.headers) == (None, None, ())


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ({"bearer_token_secret_ref": SecretKeyRef(name="p", key="t")}, "bearerTokenSecretRef"),
        ({"ca_secret_ref": SecretKeyRef(name="p", key="ca.crt")}, "caSecretRef"),
    ],
)
def test_from_source_refuses_an_unresolved_secret(endpoint: dict[str, Any], field: str) -> None:
    source = ObservedSource(prometheus=PrometheusEndpoint(url=URL, **endpoint))
    with pytest.raises(ValueError, match=field):
        PrometheusQuery.from_source(source)


@pytest.mark.parametrize(
    "prefix",
    [
        'traces{job="x"}',
        "traces) or vector(1",
        "traces_service_graph\n",
        "traces service graph",
        "1traces",
        "",
        "a" * 201,
    ],
)
def test_a_prefix_that_is_no_metric_name_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"^metricPrefix: "):
        PrometheusQuery(URL, metric_prefix=prefix)


@pytest.mark.parametrize(
    "window",
    ["1h]) or vector(1", "1h\n", "5", "-1h", "1.5h", "h", "", "0s", "0h0m", "1" * 40 + "s"],
)
def test_a_window_that_is_no_duration_is_refused(window: str) -> None:
    with pytest.raises(ValueError, match=r"^window: "):
        PrometheusQuery(URL, window=window)


@pytest.mark.parametrize("rate", [-1.0, float("nan"), float("inf")])
def test_a_minimum_rate_must_be_a_number_at_least_zero(rate: float) -> None:
    with pytest.raises(ValueError, match=r"^minRequestRate: "):
        PrometheusQuery(URL, min_request_rate=rate)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValueError, match=r"^prometheus\.timeout: "):
        PrometheusQuery(URL, timeout=timeout)


@pytest.mark.parametrize(
    "url", ["ftp://prometheus:21", "prometheus:9090", "http://", "http://pro metheus", "http://a\n"]
)
def test_a_url_must_be_http(url: str) -> None:
    with pytest.raises(ValueError, match=r"^prometheus\.url: "):
        PrometheusQuery(url)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("X-Scope-OrgID", "team-a\r\nX-Evil: 1", r"prometheus\.headers\[X-Scope-OrgID\]"),
        ("X Scope", "team-a", r"prometheus\.headers: 'X Scope'"),
        ("", "team-a", r"prometheus\.headers: ''"),
    ],
)
def test_headers_must_be_headers(name: str, value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        PrometheusQuery(URL, headers=((name, value),))
    assert "team-a" not in str(caught.value)


@pytest.mark.parametrize("token", ["", "two words", f"{TOKEN}\n", "tab\there"])
def test_a_token_with_whitespace_is_refused_without_showing_it(token: str) -> None:
    with pytest.raises(ValueError, match=r"^bearerToken: ") as caught:
        PrometheusQuery(URL, bearer_token=token)
    assert token.strip() == "" or token.strip().split()[0] not in str(caught.value)


@pytest.mark.parametrize("pem", ["", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_a_ca_must_be_a_pem_certificate(pem: str) -> None:
    with pytest.raises(ValueError, match=r"^ca: "):
        PrometheusQuery(URL, ca_pem=pem)


def test_tls_is_verified_by_default() -> None:
    assert PrometheusQuery(URL).verify() is True


def test_repr_hides_the_token_header_values_and_user_info() -> None:
    query = PrometheusQuery(
        "https://ops:pa55word@thanos.example:443/api/prom?tenant=x",
        headers=(("X-Scope-OrgID", "team-secret-a"),),
        bearer_token=TOKEN,
    )
    for text in (repr(query), str(query), f"{query}"):
        assert TOKEN not in text
        assert "team-secret-a" not in text
        assert "pa55word" not in text
        assert "bearer_token=<hidden>" in text
        assert "X-Scope-OrgID" in text
    assert query.display_url == "https://thanos.example/api/prom"  # 443 is the default


def test_endpoint_keeps_the_path_and_query_and_drops_user_info() -> None:
    assert PrometheusQuery(URL).endpoint == f"{URL}/api/v1/query"
    assert PrometheusQuery(f"{URL}/").endpoint == f"{URL}/api/v1/query"
    mimir = PrometheusQuery("http://u:p@mimir:8080/prometheus?x=1")
    assert mimir.endpoint == "http://mimir:8080/prometheus/api/v1/query?x=1"


def test_request_headers_the_token_wins() -> None:
    query = PrometheusQuery(
        "http://u:p@mimir:8080",
        headers=(("X-Scope-OrgID", "team-a"), ("authorization", "Basic old")),
        bearer_token=TOKEN,
    )
    headers = query.request_headers()
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in headers
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Accept"] == "application/json"


def test_request_headers_user_info_is_basic_authentication() -> None:
    headers = PrometheusQuery("http://ops:p%40ss@thanos:9090").request_headers()
    assert headers["Authorization"] == "Basic b3BzOnBAc3M="  # ops:p@ss


def test_scrub_removes_every_secret_and_keeps_it_short() -> None:
    query = PrometheusQuery(
        "http://ops:pa55word@thanos:9090", headers=(("X-Org", "team-a"),), bearer_token=TOKEN
    )
    text = f"Authorization: Bearer {TOKEN}\r\nX-Org: team-a\npassword pa55word"
    assert query.scrub(text) == "Authorization: Bearer ***  X-Org: *** password ***"
    assert len(query.scrub("x" * 1000)) == 200
    short = PrometheusQuery("http://thanos:9090", headers=(("X-Org", "c"),))
    assert short.scrub("Name or service not known") == "Name or service not known"


# --- answers ---------------------------------------------------------------------------------


def vector(*series: tuple[dict[str, str], str]) -> bytes:
    result = [{"metric": labels, "value": [1700000000.5, value]} for labels, value in series]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


def test_parse_vector() -> None:
    body = vector(({"client": "a", "server": "b"}, "1.5"), ({"client": "a", "server": "c"}, "NaN"))
    samples = parse_vector(body)
    assert samples[0] == Sample({"client": "a", "server": "b"}, 1.5, 1700000000.5)
    assert samples[1].value != samples[1].value  # NaN


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[]", "not a JSON object"),
        (b'{"status": "error", "errorType": "bad_data", "error": "x"}', "bad_data: x"),
        (b'{"status": "success", "data": {"resultType": "matrix"}}', "'matrix'"),
        (b'{"status": "success", "data": {"resultType": "vector"}}', "not a list"),
        (b'{"status": "success", "data": {"resultType": "vector", "result": [{}]}}', "no metric"),
        (
            b'{"status": "success", "data": {"resultType": "vector", '
            b'"result": [{"metric": {}, "value": [1, 2]}]}}',
            "no metric or value",
        ),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_an_answer_that_is_no_vector_is_a_bad_response(body: bytes, message: str) -> None:
    with pytest.raises(ObservedSourceError, match=message) as caught:
        parse_vector(body)
    assert caught.value.reason == Reason.BAD_RESPONSE


@pytest.mark.parametrize(
    ("status", "body", "reason", "retryable"),
    [
        (401, b"Unauthorized", Reason.UNAUTHORIZED, False),
        (403, b"", Reason.UNAUTHORIZED, False),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse"}',
            Reason.BAD_RESPONSE,
            False,
        ),
        (
            422,
            b'{"status":"error","errorType":"execution","error":"x"}',
            Reason.BAD_RESPONSE,
            False,
        ),
        (404, b"404 page not found", Reason.BAD_RESPONSE, False),
        (302, b"", Reason.BAD_RESPONSE, False),
        (429, b"slow down", Reason.BAD_RESPONSE, True),
        (500, b"oops", Reason.BAD_RESPONSE, True),
        (502, b"<html>bad gateway</html>", Reason.BAD_RESPONSE, True),
        (
            503,
            b'{"status":"error","errorType":"timeout","error":"timed out"}',
            Reason.TIMEOUT,
            True,
        ),
    ],
)
def test_classify_status(status: int, body: bytes, reason: Reason, retryable: bool) -> None:
    error = classify_status(status, body, URL)
    assert error is not None
    assert (error.reason, error.retryable) == (reason, retryable)
    assert error.message.startswith(URL)
    assert f"HTTP {status}" in error.message


def test_classify_status_ok_and_scrubbed() -> None:
    assert classify_status(200, b"", URL) is None
    error = classify_status(401, f"token {TOKEN} refused".encode(), URL, scrub=lambda t: "***")
    assert error is not None and TOKEN not in error.message


def test_backoff_is_full_jitter_doubling_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1))
        delays = [
            retry_delay(attempt, base=0.5, cap=MAX_BACKOFF_SECONDS, jitter=rng) for _ in range(200)
        ]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range
    assert retry_delay(3, base=0.0, jitter=rng) == 0.0


def test_backoff_never_undercuts_retry_after() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 7, 8)] == [1, 2, 4, 60, 60]
    assert retry_delay(1, 3.0) == 3.0
    assert retry_delay(1, 3600.0) == 60.0  # a server asking for an hour is capped
    assert retry_delay(1, 3.0, jitter=random.Random(1)) >= 3.0


def test_the_error_carries_reason_and_message() -> None:
    error = ObservedSourceError(Reason.TIMEOUT, "no answer")
    assert (error.reason, error.message, str(error)) == ("Timeout", "no answer", "no answer")
    assert repr(error) == "ObservedSourceError('Timeout', 'no answer')"


# --- edges from samples ----------------------------------------------------------------------


def test_one_observation_per_edge_with_its_traffic() -> None:
    observations = observations_from_samples(
        [sample("frontend", "cart", 10.0), sample("cart", "redis", 4.0, "database")],
        [sample("frontend", "cart", 2.5)],
        [sample("frontend", "cart", 0.04812), sample("cart", "redis", 0.0039)],
        now=NOW,
    )
    assert [(o.source, o.target) for o in observations] == [("cart", "redis"), ("frontend", "cart")]
    redis, cart = observations
    assert cart.kind == SourceKind.OTEL and cart.last_seen == NOW
    assert cart.attributes == EdgeAttributes()
    assert cart.traffic == Traffic(10.0, 0.25, 48.1, "")
    assert redis.traffic == Traffic(4.0, 0.0, 3.9, "database")


def test_messaging_is_async_and_virtual_nodes_are_kept() -> None:
    observations = observations_from_samples(
        [
            sample("checkout", "email", 1.0, "messaging_system"),
            sample("checkout", "api.stripe.com:443", 1.0, "virtual_node"),
            sample("user", "frontend", 1.0, "virtual_node"),
        ],
        now=NOW,
    )
    modes = {(o.source, o.target): o.attributes.communication_mode for o in observations}
    assert modes == {
        ("checkout", "email"): "async",
        ("checkout", "api.stripe.com:443"): "sync",
        ("user", "frontend"): "sync",
    }
    assert all(o.traffic and o.traffic.p95_latency_ms is None for o in observations)


def test_series_of_one_pair_add_up() -> None:
    (edge,) = observations_from_samples(
        [sample("a", "b", 3.0, ""), sample("a", "b", 1.0, "virtual_node")],
        [sample("a", "b", 1.0, "virtual_node")],
        [sample("a", "b", 0.02, ""), sample("a", "b", 0.5, "virtual_node")],
        now=NOW,
    )
    assert edge.traffic == Traffic(4.0, 0.25, 500.0, "")  # the busiest type, the highest p95


def test_a_missing_connection_type_is_empty_and_missing_names_are_skipped() -> None:
    observations = observations_from_samples(
        [
            sample("a", "b", 1.0, None),
            Sample({"client": "a"}, 1.0),
            Sample({"server": "b"}, 1.0),
            sample("a", "", 1.0),
            sample("a", "x\ny", 1.0),
            sample("a", "x" * 254, 1.0),
        ],
        now=NOW,
    )
    assert [
        (o.source, o.target, o.traffic and o.traffic.connection_type) for o in observations
    ] == [("a", "b", "")]


def test_an_odd_connection_type_is_unknown() -> None:
    (edge,) = observations_from_samples([sample("a", "b", 1.0, "x" * 64)], now=NOW)
    assert edge.traffic is not None and edge.traffic.connection_type == ""


def test_silent_and_noisy_edges_are_dropped() -> None:
    observations = observations_from_samples(
        [
            sample("a", "zero", 0.0),
            sample("a", "negative", -1.0),
            sample("a", "nan", float("nan")),
            sample("a", "inf", float("inf")),
            sample("a", "noise", 0.009),
            sample("a", "edge", 0.01),
            sample("a", "busy", 5.0),
        ],
        now=NOW,
        min_request_rate=0.01,
    )
    assert [o.target for o in observations] == ["busy", "edge"]


def test_self_calls_are_left_to_the_engine() -> None:
    (edge,) = observations_from_samples([sample("a", "a", 1.0)], now=NOW)
    assert (edge.source, edge.target) == ("a", "a")


def test_figures_are_rounded_so_snapshots_do_not_churn() -> None:
    (edge,) = observations_from_samples(
        [sample("a", "b", 123.456789)],
        [sample("a", "b", 0.123456789), sample("a", "c", 1.0)],  # a failure without requests
        [sample("a", "b", 0.0123456)],
        now=NOW,
    )
    assert edge.traffic == Traffic(123.5, 0.001, 12.3, "")
    (tiny,) = observations_from_samples(
        [sample("a", "b", 0.000123456)],
        [sample("a", "b", 1.0)],
        [sample("a", "b", float("nan"))],
        now=NOW,
    )
    assert tiny.traffic == Traffic(0.0001235, 1.0, None, "")  # error rate capped at 1


# --- poll over a mock transport --------------------------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


def answering(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving `responses` in turn (the last one again), and the requests it saw."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handle, seen


def ok(*series: tuple[dict[str, str], str]) -> httpx.Response:
    return httpx.Response(200, content=vector(*series))


async def polled(
    handler: Handler, query: PrometheusQuery | None = None, **options: Any
) -> PollResult:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await poll(query or PrometheusQuery(URL), now=NOW, client=client, **options)


@pytest.mark.asyncio
async def test_poll_asks_three_queries_at_one_instant() -> None:
    series = ({"client": "a", "server": "b", "connection_type": ""}, "2")
    handler, seen = answering(ok(series))
    result = await polled(handler, PrometheusQuery(URL, bearer_token=TOKEN, timeout=7.0))
    assert result.series == 3
    assert [(o.source, o.target) for o in result.observations] == [("a", "b")]
    forms = [dict(httpx.QueryParams(r.content.decode())) for r in seen]
    assert [r.method for r in seen] == ["POST"] * 3
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in seen)
    assert "time" not in forms[0]
    assert forms[1]["time"] == forms[2]["time"] == "1700000000.5"  # the first answer's instant
    assert {f["timeout"] for f in forms} == {"7"}


@pytest.mark.asyncio
async def test_poll_retries_transient_faults_only() -> None:
    handler, seen = answering(httpx.Response(502), httpx.ConnectError("refused"), ok())
    assert await polled(handler, backoff=0) == PollResult([], 0)
    assert len(seen) == 3

    handler, seen = answering(httpx.Response(401))
    with pytest.raises(ObservedSourceError) as caught:
        await polled(handler, backoff=0)
    assert caught.value.reason == Reason.UNAUTHORIZED and len(seen) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (httpx.ConnectError("refused"), Reason.UNREACHABLE),
        (httpx.ReadError("reset"), Reason.UNREACHABLE),
        (httpx.RemoteProtocolError("disconnected"), Reason.UNREACHABLE),
        (httpx.ReadTimeout("slow"), Reason.TIMEOUT),
        (httpx.ConnectTimeout("slow"), Reason.TIMEOUT),
        (httpx.DecodingError("bad gzip"), Reason.BAD_RESPONSE),
    ],
)
async def test_transport_faults_are_classified(fault: Exception, reason: Reason) -> None:
    handler, seen = answering(fault)
    with pytest.raises(ObservedSourceError) as caught:
        await polled(handler, attempts=2, backoff=0)
    assert caught.value.reason == reason
    assert len(seen) == (1 if reason == Reason.BAD_RESPONSE else 2)


@pytest.mark.asyncio
async def test_a_failing_second_query_fails_the_poll() -> None:
    series = ({"client": "a", "server": "b"}, "2")
    handler, _ = answering(ok(series), ok(series), httpx.Response(200, content=b"[oops"))
    with pytest.raises(ObservedSourceError, match="malformed JSON"):
        await polled(handler)


@pytest.mark.asyncio
async def test_poll_needs_an_attempt() -> None:
    with pytest.raises(ValueError, match="attempts"):
        await poll(PrometheusQuery(URL), now=NOW, attempts=0)

"""Observed dependencies, read from a Prometheus-compatible API.

What each source type's series are and how they become edges is its own module's
(`otel_edges`, `istio_edges`, `linkerd_edges`); `poll` asks that module's instant queries
and hands it the answers. It works against Prometheus, Thanos,
Mimir and Cortex (extra headers such as X-Scope-OrgID), verifies TLS by default, retries
transient faults with exponential backoff and full jitter, caps the size of an answer, and
reports every failure as an `ObservedSourceError` with a reason and a message that never holds
the bearer token or a header value.

PromQL is only ever built from a metric prefix and a window that passed their patterns here,
whatever the caller validated before.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import random
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import unquote_to_bytes

import httpx

from servicegraph import __version__, istio_edges, linkerd_edges, otel_edges
from servicegraph.api import (
    DEFAULT_METRIC_PREFIX,
    DURATION_PATTERN,
    METRIC_PREFIX_PATTERN,
    DiscoverySource,
    ObservedSource,
    SourceType,
    parse_duration,
)
from servicegraph.backoff import retry_delay
from servicegraph.graph import Observation
from servicegraph.series import CONTROL, EdgeSeries, Sample

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
MAX_BACKOFF_SECONDS: Final = 30.0
_JITTER = random.Random()
QUERY_PATH: Final = "/api/v1/query"
EDGE_SERIES: Final[dict[SourceType, EdgeSeries]] = {
    SourceType.OTEL: otel_edges,
    SourceType.ISTIO: istio_edges,
    SourceType.LINKERD: linkerd_edges,
}

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_TOKEN = re.compile(r"[\x21-\x7e]+")


class Reason(StrEnum):
    """Why a poll failed: the `reason` of the ObservedSourceHealthy condition."""

    UNREACHABLE = "Unreachable"
    UNAUTHORIZED = "Unauthorized"
    BAD_RESPONSE = "BadResponse"
    TIMEOUT = "Timeout"


class ObservedSourceError(Exception):
    """A poll that failed. `reason` is a Reason, `message` is safe for logs, status and events."""

    def __init__(self, reason: Reason, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ObservedSourceError({self.reason.value!r}, {self.message!r})"


@dataclass(frozen=True, eq=True)
class PrometheusQuery:
    """Everything a poll needs: where to ask, how to authenticate, what to ask for.

    Build it with `from_source` from a ServiceGraph's `spec.observed` and the token and CA the
    operator read from their Secrets. The token and header values stay out of `repr`.
    """

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    bearer_token: str | None = None
    ca_pem: str | None = None
    timeout: float = 30.0
    metric_prefix: str = DEFAULT_METRIC_PREFIX
    window: str = "1h"
    min_request_rate: float = 0.0
    source_type: SourceType = SourceType.OTEL
    source_name: str = ""  # what its observations are reported as (`Observation.source_name`)

    def __post_init__(self) -> None:
        if self.source_type not in EDGE_SERIES:
            raise ValueError(f"type: {self.source_type} is not read from Prometheus")
        _check_url(self.url)
        for name, value in self.headers:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"prometheus.headers: {name!r} is not an HTTP header name")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"prometheus.headers[{name}]: the value holds control characters")
        if self.bearer_token is not None and not _TOKEN.fullmatch(self.bearer_token):
            raise ValueError("bearerToken: empty, or holds whitespace or control characters")
        if self.ca_pem is not None:
            _ssl_context(self.ca_pem)
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"prometheus.timeout: must be a positive duration, not {self.timeout}")
        if len(self.metric_prefix) > 200 or not re.fullmatch(
            METRIC_PREFIX_PATTERN, self.metric_prefix
        ):
            raise ValueError(
                f"metricPrefix: {self.metric_prefix!r} is not a Prometheus metric name"
            )
        if len(self.window) > 32 or not re.fullmatch(DURATION_PATTERN, self.window):
            raise ValueError(f"window: {self.window!r} is not a duration such as 30s, 15m or 1h")
        if parse_duration(self.window) <= 0:
            raise ValueError(f"window: {self.window!r} must be longer than zero")
        if not (math.isfinite(self.min_request_rate) and self.min_request_rate >= 0):
            raise ValueError(
                f"minRequestRate: must be a number >= 0, not {self.min_request_rate!r}"
            )

    @classmethod
    def from_source(
        cls,
        source: ObservedSource | DiscoverySource,
        *,
        bearer_token: str | None = None,
        ca_pem: str | None = None,
    ) -> PrometheusQuery:
        """The query a ServiceGraph's source (`spec.observed` or one of `spec.sources`) asks
        for; token and CA read by the caller.

        Surrounding whitespace of the token is dropped (Secrets made from files often end with
        a newline). A Secret reference without its value is an error: TLS or authentication
        would silently be weaker than the spec says.
        """
        if isinstance(source, ObservedSource):
            source = DiscoverySource.from_observed(source)
        endpoint = source.prometheus
        if endpoint is None:
            raise ValueError(f"type: a {source.type} source reads no Prometheus")
        if endpoint.bearer_token_secret_ref is not None and bearer_token is None:
            raise ValueError("prometheus.bearerTokenSecretRef: the token was not resolved")
        if endpoint.ca_secret_ref is not None and ca_pem is None:
            raise ValueError("prometheus.caSecretRef: the CA certificate was not resolved")
        return cls(
            url=endpoint.url,
            headers=tuple(sorted(endpoint.headers.items())),
            bearer_token=None if bearer_token is None else bearer_token.strip(),
            ca_pem=ca_pem,
            timeout=endpoint.timeout_seconds,
            metric_prefix=source.metric_prefix or DEFAULT_METRIC_PREFIX,
            window=source.window,
            min_request_rate=source.min_request_rate,
            source_type=SourceType(source.type),
            source_name=source.name,
        )

    def __repr__(self) -> str:
        return (
            f"PrometheusQuery(url={self.display_url!r}, "
            f"headers={[name for name, _ in self.headers]!r}, "
            f"bearer_token={'<hidden>' if self.bearer_token else None}, "
            f"ca_pem={'<set>' if self.ca_pem else None}, timeout={self.timeout!r}, "
            f"metric_prefix={self.metric_prefix!r}, window={self.window!r}, "
            f"min_request_rate={self.min_request_rate!r}, source_type={str(self.source_type)!r}, "
            f"source_name={self.source_name!r})"
        )

    __str__ = __repr__

    @property
    def endpoint(self) -> str:
        """The instant-query URL; a path in `url` is kept (Mimir serves under /prometheus)."""
        parsed = httpx.URL(self.url)
        path = parsed.path.rstrip("/") + QUERY_PATH
        return str(parsed.copy_with(userinfo=b"", path=path))  # user info goes in a header

    @property
    def display_url(self) -> str:
        """The URL without user info or query string: fit for messages."""
        return _display_url(self.url)

    @property
    def series(self) -> EdgeSeries:
        """The module that knows this source type's metrics."""
        return EDGE_SERIES[self.source_type]

    @property
    def promql(self) -> dict[str, str]:
        """The instant queries, by what they measure (the first asked first)."""
        return self.series.queries(self.metric_prefix, self.window)

    def request_headers(self) -> dict[str, str]:
        """The bearer token wins over user info in the URL, which wins over an Authorization
        header."""
        headers = {
            "Accept": "application/json",
            "User-Agent": f"servicegraph-operator/{__version__}",
            **dict(self.headers),
        }
        parsed = httpx.URL(self.url)
        if self.bearer_token or parsed.userinfo:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif parsed.userinfo:  # http://user:password@host: basic authentication
            basic = base64.b64encode(unquote_to_bytes(parsed.userinfo.decode("ascii"))).decode()
            headers["Authorization"] = f"Basic {basic}"
        return headers

    def verify(self) -> ssl.SSLContext | bool:
        """TLS verification: against the given CA, or the system's trust store."""
        return True if self.ca_pem is None else _ssl_context(self.ca_pem)

    def client(self) -> httpx.AsyncClient:
        """An HTTP client fit for this query; `poll` makes one when it is given none."""
        return httpx.AsyncClient(
            verify=self.verify(), timeout=httpx.Timeout(self.timeout), follow_redirects=False
        )

    def scrub(self, text: str) -> str:
        """`text` (an answer or an exception of someone else) without secrets, made short."""
        secrets = [value for _, value in self.headers]
        secrets += [s for s in (self.bearer_token, httpx.URL(self.url).password) if s]
        # A value of a few characters is no secret (X-Scope-OrgID: a), and starring each of
        # its occurrences would garble the whole message.
        for secret in sorted(
            (s for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True
        ):
            text = text.replace(secret, "***")
        text = CONTROL.sub(" ", text).strip()
        return text if len(text) <= 200 else text[:199] + "…"


# Shorter header values, tokens and passwords are not hidden from messages; see `scrub`.
MIN_SECRET_LENGTH: Final = 4


@dataclass(frozen=True)
class PollResult:
    """What one poll saw: the edges, and how many series the answers held in all."""

    observations: list[Observation] = field(default_factory=list)
    series: int = 0


async def poll(
    query: PrometheusQuery,
    *,
    now: datetime,
    client: httpx.AsyncClient | None = None,
    attempts: int = 3,
    backoff: float = 0.5,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> PollResult:
    """Ask Prometheus for the service-graph edges of the last `query.window`.

    Each query is tried up to `attempts` times while the fault is transient (unreachable,
    timeout, HTTP 429 or 5xx), sleeping a random time up to `backoff * 2**n` seconds between
    tries. Raises ObservedSourceError. A given `client` is used as is (see `query.client()`).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    http = client if client is not None else query.client()
    try:
        promql = query.promql
        first, *others = promql

        async def ask(expression: str, at: float | None = None) -> list[Sample]:
            return await _query_with_retries(
                http,
                query,
                expression,
                at=at,
                attempts=attempts,
                backoff=backoff,
                max_bytes=max_bytes,
            )

        answers = {first: await ask(promql[first])}
        if not answers[first]:  # no requests: only what stands apart from them (TCP)
            others = [name for name in others if name in query.series.INDEPENDENT]
        # The same instant for all: while a window fills, rate() moves from one second to the next.
        at = answers[first][0].timestamp or None if answers[first] else None
        results = await asyncio.gather(
            *(ask(promql[name], at) for name in others), return_exceptions=True
        )
        for name, result in zip(others, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            answers[name] = result
    finally:
        if client is None:
            await http.aclose()
    return PollResult(
        query.series.observations(
            answers,
            now=now,
            min_request_rate=query.min_request_rate,
            source_name=query.source_name,
        ),
        series=sum(len(samples) for samples in answers.values()),
    )


def parse_vector(body: bytes, *, scrub: Callable[[str], str] = str) -> list[Sample]:
    """The samples of an instant-query answer; BadResponse when it is not one.

    `scrub` cleans text the server wrote before it goes into a message.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"malformed JSON: {str(exc)[:120]}") from None
    if not isinstance(document, dict):
        raise _bad("the answer is not a JSON object")
    if document.get("status") != "success":
        detail = _prometheus_error(document)
        raise _bad(scrub(detail) if detail else "the answer's status is not 'success'")
    data = document.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        kind = data.get("resultType") if isinstance(data, dict) else None
        raise _bad(f"expected an instant vector, got result type {scrub(repr(kind)[:40])}")
    result = data.get("result")
    if not isinstance(result, list):
        raise _bad("the answer's data.result is not a list")
    samples = []
    for item in result:
        try:
            labels, (at, text) = item["metric"], item["value"]
            if not isinstance(labels, dict) or not isinstance(text, str):
                raise TypeError
            value, timestamp = float(text), float(at)
        except (KeyError, TypeError, ValueError):
            raise _bad("a series of the answer has no metric or value") from None
        if not math.isfinite(timestamp):
            raise _bad("a series of the answer has no valid timestamp")
        samples.append(Sample({str(k): str(v) for k, v in labels.items()}, value, timestamp))
    return samples


def classify_status(
    status: int, body: bytes, where: str, *, scrub: Callable[[str], str] = str
) -> ObservedSourceError | None:
    """The error an HTTP status (and its body) stands for; None for 200.

    401/403 are Unauthorized and final; 429 and 5xx are retried; a query that Prometheus
    timed out (errorType timeout) is a Timeout; other 4xx and redirects are final.
    """
    if status == 200:
        return None
    detail = scrub(_prometheus_error_of(body))
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return ObservedSourceError(
            Reason.UNAUTHORIZED,
            f"{where} answered HTTP {status}{suffix} (check the bearer token and headers)",
        )
    if _error_type(body) == "timeout":
        return ObservedSourceError(
            Reason.TIMEOUT, f"{where} timed out the query (HTTP {status}){suffix}", retryable=True
        )
    if 300 <= status < 400:
        return _bad(f"{where} answered HTTP {status} (a redirect, not followed)")
    return ObservedSourceError(
        Reason.BAD_RESPONSE,
        f"{where} answered HTTP {status}{suffix}",
        retryable=status == 429 or status >= 500,
    )


# --- internals ---------------------------------------------------------------------------------


async def _query_with_retries(
    http: httpx.AsyncClient,
    query: PrometheusQuery,
    promql: str,
    *,
    at: float | None,
    attempts: int,
    backoff: float,
    max_bytes: int,
) -> list[Sample]:
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(query.timeout):
                return await _query_once(http, query, promql, at, max_bytes)
        except TimeoutError:
            error = ObservedSourceError(
                Reason.TIMEOUT,
                f"no answer from {query.display_url} within {query.timeout:g}s",
                retryable=True,
            )
        except ObservedSourceError as exc:
            error = exc
        if not error.retryable or attempt == attempts:
            if attempt > 1:
                raise ObservedSourceError(
                    error.reason, f"{error.message} (after {attempt} attempts)"
                ) from None
            raise error
        delay = retry_delay(attempt, base=backoff, cap=MAX_BACKOFF_SECONDS, jitter=_JITTER)
        log.debug(
            "Prometheus query failed (%s: %s), attempt %d of %d, retrying in %.2fs",
            error.reason.value,
            error.message,
            attempt,
            attempts,
            delay,
        )
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


async def _query_once(
    http: httpx.AsyncClient, query: PrometheusQuery, promql: str, at: float | None, max_bytes: int
) -> list[Sample]:
    where = query.display_url
    form = {"query": promql, "timeout": f"{query.timeout:g}"}
    if at is not None:
        form["time"] = repr(at)
    try:
        async with http.stream(
            "POST",
            query.endpoint,
            data=form,
            headers=query.request_headers(),
            timeout=httpx.Timeout(query.timeout),
        ) as response:
            body = await _read_capped(response, max_bytes)
            status = response.status_code
    except httpx.TimeoutException:
        raise ObservedSourceError(
            Reason.TIMEOUT, f"no answer from {where} within {query.timeout:g}s", retryable=True
        ) from None
    except httpx.TransportError as exc:
        raise ObservedSourceError(
            Reason.UNREACHABLE,
            f"cannot reach {where}: {_describe(exc, query)}",
            retryable=True,
        ) from None
    except httpx.HTTPError as exc:  # decoding errors, too many redirects
        raise _bad(f"unreadable answer from {where}: {_describe(exc, query)}") from None
    error = classify_status(status, body, where, scrub=query.scrub)
    if error is not None:
        raise error
    try:
        return parse_vector(body, scrub=query.scrub)
    except ObservedSourceError as exc:
        raise _bad(f"{where}: {exc.message}") from None


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _bad(f"answer larger than {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise _bad(f"answer larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _bad(message: str) -> ObservedSourceError:
    return ObservedSourceError(Reason.BAD_RESPONSE, message)


def _describe(exc: BaseException, query: PrometheusQuery) -> str:
    text = query.scrub(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _error_type(body: bytes) -> str | None:
    document = _json_object(body)
    value = document.get("errorType") if document else None
    return value if isinstance(value, str) else None


def _prometheus_error(document: Mapping[str, Any]) -> str | None:
    error, kind = document.get("error"), document.get("errorType")
    if not isinstance(error, str):
        return None
    return f"{kind}: {error}" if isinstance(kind, str) else error


def _prometheus_error_of(body: bytes) -> str:
    """Prometheus's own error text, or the start of a plain-text body."""
    document = _json_object(body)
    if document is not None:
        return _prometheus_error(document) or ""
    return body[:200].decode("utf-8", errors="replace")


def _display_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path.rstrip('/')}"


def _check_url(url: str) -> None:
    problem = "expected http(s)://host[:port][/path]"
    if any(ch.isspace() for ch in url) or CONTROL.search(url):
        raise ValueError(f"prometheus.url: {problem}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError(f"prometheus.url: {problem}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"prometheus.url: {problem}")


def _ssl_context(ca_pem: str) -> ssl.SSLContext:
    if "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise ValueError("ca: not a PEM certificate (no BEGIN CERTIFICATE line)")
    try:
        return ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(
            f"ca: not a usable PEM CA certificate ({exc.__class__.__name__})"
        ) from None

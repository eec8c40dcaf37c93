"""A ServiceGraph's poll of its observed source: Prometheus every `spec.observed.interval`.

Keeps the observation history (lastSeen per edge) across polls and failures: a broken
Prometheus never takes observed edges out of the graph, it only stops refreshing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from servicegraph.api import ObservedSource, SecretKeyRef, ServiceGraphSpec
from servicegraph.graph import Observation, merge_observations, prune_observations
from servicegraph.kube import Kube, KubeError
from servicegraph.observed import ObservedSourceError, PrometheusQuery, poll
from servicegraph.status import ObservedState, timestamp
from servicegraph.telemetry import METRICS, TRACER

INVALID_CONFIGURATION = "InvalidConfiguration"
IDLE_RECHECK = 30.0  # seconds between looks at a spec without an observed source


class ObservedPoller:
    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        spec: Callable[[], ServiceGraphSpec | None],
        kube: Kube,
        on_poll: Callable[[], Awaitable[None]],
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.spec = spec
        self.kube = kube
        self.on_poll = on_poll
        self.logger = logger
        self.observations: list[Observation] = []
        self.state = ObservedState(healthy=None, reason="Pending", message="no poll yet")
        self.wake = asyncio.Event()  # set when the spec changed: poll now, with the new one

    def restore(self, observations: list[Observation], previous: dict[str, Any]) -> None:
        """History from the last snapshot; the last success from the status, until a poll."""
        self.observations = observations
        self.state = ObservedState(
            healthy=None,
            reason="Pending",
            message="no poll since the operator started",
            last_poll_time=previous.get("lastPollTime"),
            last_success_time=previous.get("lastSuccessTime"),
            last_error=previous.get("lastError"),
            series=previous.get("series"),
        )

    def prune(self, now: datetime, retention: float) -> int:
        """Forget what no source has seen within `retention` seconds; how many were dropped."""
        self.observations, pruned = prune_observations(
            self.observations, now=now, retention=timedelta(seconds=retention)
        )
        return pruned

    async def run(self) -> None:
        while True:
            spec = self.spec()
            delay = IDLE_RECHECK
            if spec is not None and spec.observed is not None:
                await self.poll_once(spec.observed)
                await self.on_poll()
                delay = spec.observed.interval_seconds
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    async def poll_once(self, source: ObservedSource) -> None:
        attributes = {"servicegraph.namespace": self.namespace, "servicegraph.name": self.name}
        with (
            TRACER.start_as_current_span("servicegraph.poll", attributes=attributes) as span,
            METRICS.poll_seconds.labels(self.namespace, self.name).time(),
        ):
            await self._poll_once(source)
            span.set_attribute("servicegraph.healthy", bool(self.state.healthy))
            span.set_attribute("servicegraph.series", self.state.series or 0)
            if not self.state.healthy:
                span.set_attribute("servicegraph.error_reason", self.state.reason)
        METRICS.observed_healthy.labels(self.namespace, self.name).set(
            1 if self.state.healthy else 0
        )

    async def _poll_once(self, source: ObservedSource) -> None:
        now = datetime.now(UTC)
        previous = self.state
        try:
            query = PrometheusQuery.from_source(
                source,
                bearer_token=await self._secret(source.prometheus.bearer_token_secret_ref),
                ca_pem=await self._secret(source.prometheus.ca_secret_ref),
            )
            result = await poll(query, now=now)
        except (ObservedSourceError, ValueError, KubeError) as error:
            reason = (
                error.reason if isinstance(error, ObservedSourceError) else INVALID_CONFIGURATION
            )
            message = error.message if isinstance(error, ObservedSourceError) else str(error)
            self.logger.warning(f"observed source: {reason}: {message}")
            METRICS.poll_errors.labels(self.namespace, self.name, str(reason)).inc()
            self.state = ObservedState(
                healthy=False,
                reason=str(reason),
                message=message,
                last_poll_time=timestamp(now),
                last_success_time=previous.last_success_time,
                last_error=f"{reason}: {message}",
                series=previous.series,
            )
            return
        self.observations = merge_observations(self.observations, result.observations)
        self.state = ObservedState(
            healthy=True,
            reason="Polled",
            message=f"{len(result.observations)} edges in {result.series} series",
            last_poll_time=timestamp(now),
            last_success_time=timestamp(now),
            last_error=None,
            series=result.series,
        )

    async def _secret(self, ref: SecretKeyRef | None) -> str | None:
        if ref is None:
            return None
        value = await self.kube.read_secret_key(self.namespace, ref.name, ref.key)
        if value is None:
            raise ValueError(f"Secret {self.namespace}/{ref.name} has no key {ref.key!r}")
        return value

"""A ServiceGraph's polls of its Prometheus sources: each source every its own `interval`.

Each source keeps its own observation history (lastSeen per edge) across polls and failures:
a broken Prometheus never takes observed edges out of the graph, it only stops refreshing
them, and one source's failure touches no other source's edges. The kubernetes source polls
nothing (see `manifest_source`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from servicegraph.api import DiscoverySource, PolledSource, SecretKeyRef, SourceType
from servicegraph.graph import Observation, merge_observations, prune_observations
from servicegraph.kube import Kube, KubeError
from servicegraph.observed import ObservedSourceError, PrometheusQuery, poll
from servicegraph.status import ObservedState, timestamp
from servicegraph.telemetry import METRICS, TRACER

INVALID_CONFIGURATION = "InvalidConfiguration"


def pending(source: DiscoverySource, message: str = "no poll yet") -> ObservedState:
    return ObservedState(
        healthy=None, reason="Pending", message=message, name=source.name, type=source.type
    )


class SourcePoller:
    """One Prometheus source of one graph: its history, its health, its poll loop."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        source: DiscoverySource,
        kube: Kube,
        on_poll: Callable[[], Awaitable[None]],
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.namespace = namespace
        self.graph_name = name
        self.source = source  # replaced when the spec changes; the next poll uses the new one
        self.kube = kube
        self.on_poll = on_poll
        self.logger = logger
        self.observations: list[Observation] = []
        self.state = pending(source)
        self.wake = asyncio.Event()  # set when the spec changed: poll now, with the new one

    def restore(self, observations: list[Observation], previous: Mapping[str, Any]) -> None:
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
            edges=previous.get("edges"),
            name=self.source.name,
            type=self.source.type,
        )

    def prune(self, now: datetime, retention: float) -> int:
        """Forget what this source has not seen within `retention` seconds; how many went."""
        self.observations, pruned = prune_observations(
            self.observations, now=now, retention=timedelta(seconds=retention)
        )
        return pruned

    async def run(self) -> None:
        while True:
            await self.poll_once(self.source)
            await self.on_poll()
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.source.interval_seconds)

    async def poll_once(self, source: DiscoverySource) -> None:
        labels = (self.namespace, self.graph_name, source.name)
        attributes = {
            "servicegraph.namespace": self.namespace,
            "servicegraph.name": self.graph_name,
            "servicegraph.source": source.name,
            "servicegraph.source_type": str(source.type),
        }
        with (
            TRACER.start_as_current_span("servicegraph.poll", attributes=attributes) as span,
            METRICS.poll_seconds.labels(*labels).time(),
        ):
            await self._poll_once(source)
            span.set_attribute("servicegraph.healthy", bool(self.state.healthy))
            span.set_attribute("servicegraph.series", self.state.series or 0)
            if not self.state.healthy:
                span.set_attribute("servicegraph.error_reason", self.state.reason)
        METRICS.observed_healthy.labels(*labels).set(1 if self.state.healthy else 0)

    async def _poll_once(self, source: DiscoverySource) -> None:
        now = datetime.now(UTC)
        previous = self.state
        try:
            assert source.prometheus is not None  # the model requires it of these types
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
            self.logger.warning(f"source {source.name}: {reason}: {message}")
            METRICS.poll_errors.labels(
                self.namespace, self.graph_name, source.name, str(reason)
            ).inc()
            self.state = ObservedState(
                healthy=False,
                reason=str(reason),
                message=message,
                last_poll_time=timestamp(now),
                last_success_time=previous.last_success_time,
                last_error=f"{reason}: {message}",
                series=previous.series,
                edges=previous.edges,
                name=source.name,
                type=source.type,
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
            edges=len(result.observations),
            name=source.name,
            type=source.type,
        )

    async def _secret(self, ref: SecretKeyRef | None) -> str | None:
        if ref is None:
            return None
        value = await self.kube.read_secret_key(self.namespace, ref.name, ref.key)
        if value is None:
            raise ValueError(f"Secret {self.namespace}/{ref.name} has no key {ref.key!r}")
        return value


class SourcePollers:
    """The Prometheus sources of one graph, kept in step with its spec: a poller and a task
    for each, started when a source appears, stopped when it goes. What a source that the spec
    does not name saw (it was removed, or the last snapshot holds it) is history like any
    other: it goes stale after staleAfter and is forgotten after the default retention, so
    neither a restart nor a brief edit of the spec loses it, and it is taken up again should
    the source return."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        kube: Kube,
        on_poll: Callable[[], Awaitable[None]],
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.kube = kube
        self.on_poll = on_poll
        self.logger = logger
        self.pollers: dict[str, SourcePoller] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # Sightings by sources the spec does not name (now), by source name.
        self.retired: dict[str, list[Observation]] = {}
        self.restored_states: dict[str, Mapping[str, Any]] = {}

    def restore(
        self, observations: Iterable[Observation], states: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """The last snapshot's sightings, by the source that made them, and the status's
        figures of each source; taken up by the pollers `sync` starts."""
        for obs in observations:
            self.retired.setdefault(obs.reporter, []).append(obs)
        self.restored_states = dict(states)
        for name, poller in self.pollers.items():
            poller.restore(self.retired.pop(name, []), self.restored_states.get(name, {}))

    def sync(self, sources: Iterable[DiscoverySource]) -> None:
        """Start, update and stop pollers to match `sources` (a changed source polls at once)."""
        wanted = {s.name: s for s in sources if s.type != SourceType.KUBERNETES}
        for name in [
            n for n in self.pollers if n not in wanted or _retyped(self.pollers[n], wanted[n])
        ]:
            self.tasks.pop(name).cancel()
            stopped = self.pollers.pop(name)
            if name not in wanted:
                self.retired[name] = stopped.observations
            METRICS.forget_source(self.namespace, self.name, name)
        for name, source in wanted.items():
            poller = self.pollers.get(name)
            if poller is None:
                poller = self.pollers[name] = SourcePoller(
                    namespace=self.namespace,
                    name=self.name,
                    source=source,
                    kube=self.kube,
                    on_poll=self.on_poll,
                    logger=self.logger,
                )
                if name in self.retired:
                    poller.restore(self.retired.pop(name), self.restored_states.get(name, {}))
                self.tasks[name] = asyncio.create_task(
                    poller.run(), name=f"poll {self.namespace}/{self.name} {name}"
                )
            elif poller.source != source:
                poller.source = source
                poller.wake.set()

    def prune(self, now: datetime, retention: Callable[[PolledSource], float]) -> int:
        pruned = sum(p.prune(now, retention(p.source)) for p in self.pollers.values())
        kept = timedelta(seconds=retention(PolledSource()))
        for name, sightings in list(self.retired.items()):
            left, gone = prune_observations(sightings, now=now, retention=kept)
            pruned += gone
            if left:
                self.retired[name] = left
            else:
                del self.retired[name]
        return pruned

    def observations(self) -> list[Observation]:
        polled = [obs for poller in self.pollers.values() for obs in poller.observations]
        return polled + [obs for sightings in self.retired.values() for obs in sightings]

    def states(self) -> list[ObservedState]:
        return [poller.state for poller in self.pollers.values()]

    def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()


def _retyped(poller: SourcePoller, source: DiscoverySource) -> bool:
    """A source that changed its type is another source under the same name: its history
    (another kind of evidence) goes."""
    return poller.source.type != source.type

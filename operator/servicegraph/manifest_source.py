"""A ServiceGraph's kubernetes source: the edges its namespaces' manifests imply.

Nothing is polled: the operator watches workloads, Services and ConfigMaps into in-memory
indexes, a change wakes the graphs that read its namespace, and each recomputation infers
the edges again from what the indexes hold. Unlike a Prometheus source the edges are the
manifests' current state, not a history: an env var removed from a Deployment removes its
edge at the next recomputation. An edge keeps its lastSeen until `interval` has passed, so the
snapshot does not move with every recomputation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from servicegraph.api import DiscoverySource
from servicegraph.graph import Observation
from servicegraph.inference import ManifestEntry, Unresolved, infer, observations_of
from servicegraph.snapshot import evidence_document
from servicegraph.status import ObservedState, timestamp

MAX_UNRESOLVED = 100  # in the snapshot; the count is whole

NOT_WATCHED = "NotWatched"
NOT_WATCHED_MESSAGE = (
    "the operator does not watch workloads, Services and ConfigMaps: start it with "
    "--watch-manifests (the chart's sources.kubernetes.enabled=true)"
)


class ManifestSource:
    """The kubernetes source of one graph: its edges and its health."""

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.state: ObservedState | None = None
        self.stamped: datetime | None = None  # when lastSeen was last moved to the present
        self.unresolved: tuple[Unresolved, ...] = ()
        self.source: DiscoverySource | None = None

    def restore(self, observations: list[Observation], previous: Mapping[str, Any]) -> None:
        """The last snapshot's inferred edges, kept until the first inference replaces them."""
        self.observations = observations
        self.state = ObservedState(
            healthy=None,
            reason="Pending",
            message="no inference since the operator started",
            last_poll_time=previous.get("lastPollTime"),
            last_success_time=previous.get("lastSuccessTime"),
            edges=previous.get("edges"),
            objects=previous.get("objects"),
            unresolved=previous.get("unresolved"),
            name=previous.get("name", ""),
            type=previous.get("type", ""),
        )

    def observe(
        self,
        source: DiscoverySource,
        entries: Iterable[ManifestEntry] | None,
        *,
        now: datetime,
    ) -> None:
        """Infer the edges of `entries` (the objects in the graph's namespaces); None means
        the operator watches no manifests, which keeps the last edges and says why."""
        if entries is None:
            previous = self.state
            self.state = ObservedState(
                healthy=False,
                reason=NOT_WATCHED,
                message=NOT_WATCHED_MESSAGE,
                last_poll_time=previous.last_poll_time if previous else None,
                last_success_time=previous.last_success_time if previous else None,
                last_error=f"{NOT_WATCHED}: {NOT_WATCHED_MESSAGE}",
                edges=previous.edges if previous else None,
                name=source.name,
                type=source.type,
            )
            return
        listed = list(entries)
        inference = infer(listed)
        self.source = source
        self.unresolved = inference.unresolved
        now = now.replace(microsecond=0)
        due = self.stamped is None or now - self.stamped >= timedelta(
            seconds=source.interval_seconds
        )
        inferred = observations_of(inference, now=now, source_name=source.name)
        if not due:  # what was inferred before keeps its lastSeen
            before = {obs.key: obs for obs in self.observations}
            inferred = [_keep_seen(obs, before.get(obs.key)) for obs in inferred]
        changed = _shape(inferred) != _shape(self.observations)
        self.observations = inferred
        previous = self.state
        if due or changed or previous is None or previous.healthy is not True:
            self.stamped = now if due else self.stamped
            moment = timestamp(now)
        else:
            moment = previous.last_poll_time or timestamp(now)
        self.state = ObservedState(
            healthy=True,
            reason="Inferred",
            message=f"{len(inference.edges)} edges from {len(listed)} objects, "
            f"{len(inference.unresolved)} unresolved references",
            last_poll_time=moment,
            last_success_time=moment,
            edges=len(inference.edges),
            objects=len(listed),
            unresolved=len(inference.unresolved),
            name=source.name,
            type=source.type,
        )

    def documents(self) -> list[dict[str, Any]]:
        """For the snapshot: the references that named no Service, with their evidence."""
        if self.source is None or not self.unresolved:
            return []
        return [
            {
                "name": self.source.name,
                "type": str(self.source.type),
                "unresolvedCount": len(self.unresolved),
                "unresolved": [
                    {
                        "source": u.source,
                        "reference": u.reference,
                        "evidence": evidence_document(u.evidence),
                    }
                    for u in self.unresolved[:MAX_UNRESOLVED]
                ],
            }
        ]


def _keep_seen(obs: Observation, before: Observation | None) -> Observation:
    if before is None:
        return obs
    return replace(obs, last_seen=before.last_seen)


def _shape(observations: Iterable[Observation]) -> set[Any]:
    return {(obs.key, obs.evidence, obs.attributes) for obs in observations}

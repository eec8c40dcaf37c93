"""The loop each ServiceGraph runs: recompute when its inputs change, write what changed.

Plain asyncio code; the Kopf handlers in `operator.py` build it and hand it the live object,
the in-memory indexes and a way to post events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from servicegraph import snapshot, snapshot_configmaps
from servicegraph.api import (
    API_VERSION,
    SERVICE_DEPENDENCY,
    SERVICE_GRAPH,
    ServiceDependency,
    ServiceGraphSpec,
)
from servicegraph.graph import Graph, ServiceDeclaration
from servicegraph.kube import Kube, KubeError
from servicegraph.polling import ObservedPoller
from servicegraph.settings import OperatorSettings
from servicegraph.signals import ChangeSignal, SignalHub
from servicegraph.status import (
    SnapshotInfo,
    dependency_status,
    graph_status,
    invalid_dependency_status,
    timestamp,
)
from servicegraph.telemetry import METRICS, TRACER

Body = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace, name)
PostEvent = Callable[[str, str, str], None]  # (type, reason, message)


@dataclass(frozen=True)
class IndexedDependency:
    """What the in-memory index keeps of one ServiceDependency: no more than the graph needs."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    generation: int | None
    declaration: ServiceDeclaration | None
    error: str | None = None
    status: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_object(
        cls,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        spec: Mapping[str, Any],
        generation: int | None,
        status: Mapping[str, Any],
    ) -> IndexedDependency:
        managed = {key: status[key] for key in _DEPENDENCY_STATUS_KEYS if key in status}
        try:
            obj = ServiceDependency.model_validate(
                {"metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)}
            )
        except ValidationError as error:
            return cls(
                namespace, name, dict(labels), generation, None, _first_error(error), managed
            )
        return cls(namespace, name, dict(labels), generation, obj.declaration(), None, managed)


_DEPENDENCY_STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "resolvedTargets",
    "unresolvedTargets",
    "inCycle",
)


@dataclass(frozen=True)
class IndexedGraph:
    namespace: str
    name: str
    spec: ServiceGraphSpec | None  # None: invalid, selects nothing until fixed
    error: str | None = None

    @classmethod
    def from_object(cls, namespace: str, name: str, spec: Mapping[str, Any]) -> IndexedGraph:
        try:
            return cls(namespace, name, ServiceGraphSpec.model_validate(dict(spec)))
        except ValidationError as error:
            return cls(namespace, name, None, _first_error(error))

    def selects(self, dep: IndexedDependency) -> bool:
        return self.spec is not None and self.spec.selector.selects(
            dep.namespace, dep.labels, self.namespace
        )


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


class GraphLoop:
    """One ServiceGraph's reconciliation: restore, then recompute on change, forever."""

    def __init__(
        self,
        *,
        body: Any,  # Kopf's live view of the ServiceGraph: spec and status stay current
        kube: Kube,
        settings: OperatorSettings,
        signals: SignalHub,
        dependencies: Callable[[], Iterable[IndexedDependency]],
        graphs: Callable[[], Iterable[IndexedGraph]],
        post_event: PostEvent,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.body = body
        self.kube = kube
        self.settings = settings
        self.signals = signals
        self.signal = ChangeSignal()  # this loop's own, registered while it runs
        self.dependencies = dependencies
        self.graphs = graphs
        self.post_event = post_event
        self.logger = logger
        self.namespace: str = body["metadata"]["namespace"]
        self.name: str = body["metadata"]["name"]
        self.ref = f"{self.namespace}/{self.name}"
        self.poller = ObservedPoller(
            namespace=self.namespace,
            name=self.name,
            spec=self.spec,
            kube=kube,
            on_poll=lambda: self.signal.notify(),
            logger=logger,
        )
        self._spec: tuple[Any, ServiceGraphSpec | None] | None = None
        self.revision: str | None = None
        self.snapshot_info: SnapshotInfo | None = None
        self.cycles_seen: set[frozenset[str]] | None = None
        self.last_status: Body | None = None
        self.dependency_statuses: dict[ObjectKey, Body] = {}

    async def run(self) -> None:
        self.signals.add(self.signal)
        await self.restore()
        poller = asyncio.create_task(self.poller.run(), name=f"poll {self.ref}")
        try:
            seen, failures = -1, 0
            while True:
                retry_after = 0.0
                try:
                    await self.reconcile()
                    failures = 0
                except (KubeError, OSError) as error:
                    failures += 1
                    retry_after = min(getattr(error, "retry_after", None) or 0.0, 60.0)
                    self.logger.warning(f"reconciliation of {self.ref} failed, will retry: {error}")
                # After a failure, retry soon even if nothing changes (1, 2, 4 ... 60 s), and
                # not before the API server's Retry-After.
                timeout = (
                    max(min(2.0 ** (failures - 1), 60.0), retry_after)
                    if failures
                    else self.settings.resync
                )
                seen = await self._wait_for_change(seen, timeout)
        finally:
            poller.cancel()
            self.signals.discard(self.signal)
            METRICS.forget_graph(self.namespace, self.name)

    async def _wait_for_change(self, seen: int, timeout: float) -> int:
        if not self.settings.coalesce:
            # Recompute once per event: the behaviour coalescing exists to avoid.
            if self.signal.count > seen >= 0:
                return seen + 1
            return await self.signal.settled(self.signal.count, timeout=timeout, quiet=0, cap=0)
        since = self.signal.count if seen < 0 else seen
        now_seen = await self.signal.settled(
            since, timeout=timeout, quiet=self.settings.debounce, cap=self.settings.debounce_max
        )
        if now_seen - since > 1:
            METRICS.coalesced_changes.labels(self.namespace, self.name).inc(now_seen - since - 1)
        return now_seen

    def spec(self) -> ServiceGraphSpec | None:
        """The current spec, parsed once per change; None while it is invalid."""
        raw = self.body.get("spec") or {}
        if self._spec is None or self._spec[0] != raw:
            parsed = IndexedGraph.from_object(self.namespace, self.name, raw)
            if self._spec is not None:
                self.poller.wake.set()  # poll at once with the new settings
            self._spec = (dict(raw), parsed.spec)
            if parsed.spec is None:
                self.logger.error(f"ServiceGraph {self.ref} has an invalid spec: {parsed.error}")
        return self._spec[1]

    @property
    def snapshot_name(self) -> str:
        spec = self.body.get("spec") or {}
        return str((spec.get("snapshot") or {}).get("configMapName") or f"{self.name}-graph")

    async def restore(self) -> None:
        """Take up where the last run stopped: its snapshot holds what was observed and when."""
        status = dict(self.body.get("status") or {})
        failures = 0
        while True:  # without it the next write would drop the observation history
            try:
                parts = await self.kube.list_config_maps(
                    self.namespace, snapshot_configmaps.snapshot_selector(self.snapshot_name)
                )
                break
            except KubeError as error:
                failures += 1
                delay = max(min(2.0 ** (failures - 1), 60.0), min(error.retry_after or 0, 60.0))
                self.logger.warning(
                    f"cannot read the last snapshot of {self.ref}, will retry in {delay:g}s: "
                    f"{error}"
                )
                await asyncio.sleep(delay)
        try:
            by_name = {cm["metadata"]["name"]: cm for cm in parts}
            index = by_name.get(self.snapshot_name)
            if index is None:
                return
            doc = snapshot_configmaps.decode(index, by_name.get)
        except snapshot.SnapshotError as error:
            self.logger.warning(f"cannot reload the last snapshot of {self.ref}: {error}")
            return
        self.poller.restore(
            snapshot.observations_from_document(doc), dict(status.get("observed") or {})
        )
        self.revision = str(index["data"][snapshot_configmaps.REVISION_KEY])  # decode checked it
        self.cycles_seen = {frozenset(c) for c in doc["cycles"]}
        info = status.get("snapshot") or {}
        if info.get("revision") == self.revision:
            self.snapshot_info = SnapshotInfo(
                config_map=self.snapshot_name,
                revision=self.revision,
                bytes=int(info.get("bytes") or 0),
                shards=int(info.get("shards") or 0),
                updated_at=str(info.get("updatedAt") or ""),
            )
        self.logger.info(
            f"reloaded snapshot {self.snapshot_name} (revision {self.revision}, "
            f"{len(self.poller.observations)} observed edges)"
        )

    async def reconcile(self) -> None:
        with METRICS.reconcile_seconds.labels(self.namespace, self.name).time():
            await self._reconcile()

    async def _reconcile(self) -> None:
        now = datetime.now(UTC)
        generation = self.body["metadata"].get("generation")
        spec = self.spec()
        if spec is None:
            return
        mine = IndexedGraph(self.namespace, self.name, spec)
        selected = [dep for dep in self.dependencies() if mine.selects(dep)]
        declarations = [dep.declaration for dep in selected if dep.declaration is not None]
        span_attributes = {"servicegraph.namespace": self.namespace, "servicegraph.name": self.name}
        with (
            TRACER.start_as_current_span(
                "servicegraph.recompute", attributes=span_attributes
            ) as span,
            METRICS.recompute_seconds.labels(self.namespace, self.name).time(),
        ):
            graph = spec.analyse(declarations, self.poller.observations, now=now)
            summary = graph.summary()
            span.set_attributes(
                {
                    "servicegraph.declarations": len(declarations),
                    "servicegraph.services": summary.services,
                    "servicegraph.edges": summary.edges,
                    "servicegraph.cycles": summary.cycles,
                    "servicegraph.stale_edges": summary.stale_edges,
                    "servicegraph.drift": summary.drift,
                }
            )
        METRICS.recomputations.labels(self.namespace, self.name).inc()
        METRICS.record_graph(self.namespace, self.name, summary)

        snapshot_error, snapshot_failure = None, None
        try:
            await self.write_snapshot(graph, now)
        except KubeError as error:
            snapshot_error, snapshot_failure = str(error), error
            self.logger.warning(f"snapshot of {self.ref} not written: {error}")

        previous = (
            self.last_status
            if self.last_status is not None
            else dict(self.body.get("status") or {})
        )
        status = graph_status(
            graph,
            generation=generation,
            previous=previous,
            snapshot=self.snapshot_info,
            snapshot_error=snapshot_error,
            observed=self.poller.state if spec.observed is not None else None,
            now=now,
        )
        if status != _comparable(previous, status):
            await self.kube.patch_status(SERVICE_GRAPH.plural, self.namespace, self.name, status)
            METRICS.writes.labels("servicegraph-status").inc()
            self.last_status = status
            self.logger.info(
                f"status updated: {summary.services} services, {summary.edges} edges, "
                f"{summary.cycles} unacknowledged cycles, {summary.stale_edges} stale, "
                f"{summary.drift} drift"
            )
        self.post_cycle_events(graph)
        await self.write_dependency_statuses(selected, graph, now)
        if snapshot_failure is not None:  # the status says so; now retry with backoff
            raise snapshot_failure

    async def write_snapshot(self, graph: Graph, now: datetime) -> None:
        """Shards first, then the index that names them, then old shards: readers never see
        an index whose shards are missing."""
        name = self.snapshot_name
        canonical = snapshot.graph_json(graph, graph_ref=(self.namespace, self.name))
        write = snapshot_configmaps.encode_json(canonical, name)
        del canonical  # tens of megabytes on a large graph; the write holds it gzipped
        if write.revision == self.revision and self.snapshot_info is not None:
            METRICS.snapshot_written.labels(self.namespace, self.name).set_to_current_time()
            return
        for payload in write.in_write_order:
            body = payload.manifest()
            body["metadata"]["namespace"] = self.namespace
            body["metadata"]["ownerReferences"] = [self._owner_reference()]
            # Shards carry their revision in their name: only the index is ever replaced.
            exists = payload.name == name and self.revision is not None
            await self.kube.write_config_map(self.namespace, body, exists=exists)
            METRICS.writes.labels("configmap").inc()
        existing = await self.kube.list_config_maps(
            self.namespace, snapshot_configmaps.snapshot_selector(name)
        )
        for stale in snapshot_configmaps.stale_shards(
            (cm["metadata"]["name"] for cm in existing), write, name
        ):
            await self.kube.delete_config_map(self.namespace, stale)
        self.logger.info(
            f"snapshot {name} written: revision {write.revision}, {write.bytes} bytes, "
            f"{len(write.shards)} shards"
        )
        self.revision = write.revision
        self.snapshot_info = SnapshotInfo(
            config_map=name,
            revision=write.revision,
            bytes=write.bytes,
            shards=len(write.shards),
            updated_at=timestamp(now),
        )
        METRICS.snapshot_bytes.labels(self.namespace, self.name).set(write.bytes)
        METRICS.snapshot_shards.labels(self.namespace, self.name).set(len(write.shards))
        METRICS.snapshot_written.labels(self.namespace, self.name).set_to_current_time()

    def _owner_reference(self) -> Body:
        # Not kopf.adopt: it copies the owner's labels, and Argo CD's tracking label on the
        # snapshot would make Argo CD prune it as an orphan of the Application.
        return {
            "apiVersion": API_VERSION,
            "kind": SERVICE_GRAPH.kind,
            "name": self.name,
            "uid": self.body["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def post_cycle_events(self, graph: Graph) -> None:
        """A Warning when an unacknowledged cycle appears, a Normal event when it is gone."""
        current = {frozenset(c): c for c in graph.cycles}
        before = self.cycles_seen if self.cycles_seen is not None else set()
        for members, cycle in current.items():
            if members not in before:
                path = " -> ".join([*cycle, cycle[0]])
                self.post_event("Warning", "CycleDetected", f"dependency cycle: {path}")
                self.logger.warning(f"new dependency cycle: {path}")
        acknowledged = {frozenset(c) for c in graph.acknowledged_cycles}
        for members in before - current.keys():
            if members in acknowledged:  # silenced, not gone: "resolved" would be untrue
                continue
            self.post_event(
                "Normal", "CycleResolved", f"cycle between {', '.join(sorted(members))} is gone"
            )
        self.cycles_seen = set(current)

    async def write_dependency_statuses(
        self, selected: list[IndexedDependency], graph: Graph, now: datetime
    ) -> None:
        """Statuses of the ServiceDependency objects this graph owns, where they changed.

        A few workers share one lazy sequence of changes: ten thousand statuses never sit in
        memory at once, as tasks or as dicts.
        """
        changes = self._dependency_changes(selected, graph, now)
        failures: list[KubeError] = []
        written = 0

        async def worker() -> None:
            nonlocal written
            for key, status in changes:  # each change is taken by one worker
                error = await self._write_dependency_status(key, status)
                if error is None:
                    written += 1
                else:
                    failures.append(error)

        await asyncio.gather(*(worker() for _ in range(self.settings.write_concurrency)))
        if written or failures:
            self.logger.info(f"statuses of {written} ServiceDependency objects updated")
        if failures:  # the others are written; these are retried with backoff
            raise failures[0]

    def _dependency_changes(
        self, selected: list[IndexedDependency], graph: Graph, now: datetime
    ) -> Iterator[tuple[ObjectKey, Body]]:
        """(object, status) for each owned ServiceDependency whose status should change.

        An object selected by several graphs is reported by the first of them (by namespace
        and name), so two graphs never fight over one status.
        """
        graphs = sorted(self.graphs(), key=lambda g: (g.namespace, g.name))
        for dep in selected:
            owner = next((g for g in graphs if g.selects(dep)), None)
            if owner is not None and (owner.namespace, owner.name) != (self.namespace, self.name):
                continue
            key = (dep.namespace, dep.name)
            written = self.dependency_statuses.get(key)
            if written is not None and _comparable(dep.status, written) == written:
                del self.dependency_statuses[key]  # the index has caught up: forget our copy
                written = None
            previous = written or dep.status
            if dep.declaration is None:
                desired = invalid_dependency_status(
                    dep.error or "invalid spec",
                    generation=dep.generation,
                    previous=previous,
                    now=now,
                )
            else:
                desired = dependency_status(
                    dep.declaration,
                    graph,
                    graph_ref=self.ref,
                    generation=dep.generation,
                    previous=previous,
                    now=now,
                )
            if desired != _comparable(previous, desired):
                yield key, desired

    async def _write_dependency_status(self, key: ObjectKey, status: Body) -> KubeError | None:
        try:
            if await self.kube.patch_status(SERVICE_DEPENDENCY.plural, *key, status):
                self.dependency_statuses[key] = status
                METRICS.writes.labels("servicedependency-status").inc()
        except KubeError as error:
            self.logger.warning(f"status of ServiceDependency {key[0]}/{key[1]}: {error}")
            return error
        return None


def _comparable(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> Body:
    """The part of the current status that `desired` would set, for an equality test."""
    return {key: previous.get(key) for key in desired}

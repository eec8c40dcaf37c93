"""The loop each ServiceGraph runs: recompute when its inputs change, write what changed.

Plain asyncio code; the Kopf handlers in `operator.py` build it and hand it the live object,
the in-memory indexes and a way to post events. The analysis and the snapshot encoding run
in a worker thread, so the event loop keeps serving watches and the liveness probe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servicegraph import snapshot
from servicegraph.api import (
    API_VERSION,
    LEGACY_SOURCE_NAME,
    SERVICE_GRAPH,
    ServiceGraphSpec,
    SourceType,
)
from servicegraph.backoff import retry_delay
from servicegraph.cycle_events import CycleEvents, PostEvent
from servicegraph.dependency_statuses import DependencyStatuses
from servicegraph.graph import Graph, Observation, ServiceDeclaration, SourceKind
from servicegraph.indexing import IndexedDependency, IndexedGraph
from servicegraph.inference import ManifestEntry
from servicegraph.kube import Kube, KubeError
from servicegraph.manifest_source import ManifestSource
from servicegraph.polling import INVALID_CONFIGURATION, SourcePollers
from servicegraph.settings import OperatorSettings
from servicegraph.signals import ChangeSignal, SignalHub
from servicegraph.snapshot_store import SnapshotConflict, SnapshotStore
from servicegraph.status import ObservedState, comparable, graph_status, invalid_graph_status
from servicegraph.telemetry import METRICS, TRACER
from servicegraph.tenancy import Tenancy
from servicegraph.workers import off_the_loop

Body = dict[str, Any]


@dataclass(frozen=True)
class Analysis:
    graph: Graph
    canonical: bytes  # the snapshot document, canonical JSON
    topology: str


def analyse(
    spec: ServiceGraphSpec,
    declarations: list[ServiceDeclaration],
    observations: list[Observation],
    *,
    graph_ref: tuple[str, str],
    now: datetime,
    sources: Sequence[Mapping[str, Any]] = (),
) -> Analysis:
    """Everything a reconciliation computes, in one call for a worker thread; `sources` is
    what the sources say beyond edges (`snapshot.to_document`)."""
    graph = spec.analyse(declarations, observations, now=now, home_namespace=graph_ref[0])
    return Analysis(
        graph,
        snapshot.graph_json(graph, graph_ref=graph_ref, sources=sources),
        snapshot.topology_of(graph, sources),
    )


class GraphLoop:
    """One ServiceGraph's reconciliation: restore, then recompute on change, forever."""

    def __init__(
        self,
        *,
        body: Any,  # Kopf's live view of the ServiceGraph: spec and status stay current
        kube: Kube,
        settings: OperatorSettings,
        signals: SignalHub,
        tenancy: Tenancy,
        dependencies: Callable[[], Iterable[IndexedDependency]],
        graphs: Callable[[], Iterable[IndexedGraph]],
        post_event: PostEvent,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        manifests: Callable[[], Iterable[ManifestEntry]] | None = None,
    ) -> None:
        self.body = body
        self.kube = kube
        self.settings = settings
        self.signals = signals
        self.tenancy = tenancy
        self.signal = ChangeSignal()  # this loop's own, registered while it runs
        self.dependencies = dependencies
        self.graphs = graphs
        self.manifests = manifests  # None: the operator watches no workloads
        self.post_event = post_event
        self.logger = logger
        self.namespace: str = body["metadata"]["namespace"]
        self.name: str = body["metadata"]["name"]
        self.ref = f"{self.namespace}/{self.name}"
        self.pollers = SourcePollers(
            namespace=self.namespace,
            name=self.name,
            kube=kube,
            on_poll=lambda: self.signal.notify(),
            logger=logger,
        )
        self.manifest_source = ManifestSource()
        self.store = SnapshotStore(
            kube=kube,
            namespace=self.namespace,
            owner_reference=self._owner_reference,
            logger=logger,
        )
        self.cycle_events = CycleEvents(post_event, logger)
        self.statuses = DependencyStatuses(
            kube=kube,
            ref=(self.namespace, self.name),
            tenancy=tenancy,
            concurrency=settings.write_concurrency,
            logger=logger,
        )
        self._spec: tuple[Any, IndexedGraph] | None = None
        # The status this loop last wrote, and the resourceVersion the object had then: until
        # the watch shows a newer object, the live body does not hold that write yet.
        self.last_status: Body | None = None
        self.version_at_write: str | None = None
        self.deferred_until: datetime | None = None  # a snapshot write held back until then
        self.conflict_reported: str | None = None

    async def run(self) -> None:
        self.signals.add(self.signal, self.selects)
        await self.restore()
        self._sync_sources(self.spec())
        try:
            failures = 0
            while True:
                # Taken before the work: a change that lands during it is not lost.
                handled = self.signal.count
                retry_after = 0.0
                try:
                    await self.reconcile()
                    failures = 0
                except (KubeError, OSError) as error:
                    failures += 1
                    retry_after = getattr(error, "retry_after", None) or 0.0
                    self.logger.warning(f"reconciliation of {self.ref} failed, will retry: {error}")
                # After a failure, retry soon even if nothing changes (1, 2, 4 ... 60 s), and
                # not before the API server's Retry-After.
                timeout = retry_delay(failures, retry_after) if failures else self.settings.resync
                if self.deferred_until is not None:
                    due = (self.deferred_until - datetime.now(UTC)).total_seconds()
                    timeout = max(0.0, min(timeout, due))
                await self._wait_for_change(handled, timeout)
        finally:
            self.pollers.stop()
            self.signals.discard(self.signal)
            METRICS.forget_graph(self.namespace, self.name)

    async def _wait_for_change(self, handled: int, timeout: float) -> None:
        if not self.settings.coalesce:
            # Recompute once per event: the behaviour coalescing exists to avoid.
            if self.signal.count <= handled:
                await self.signal.settled(handled, timeout=timeout, quiet=0, cap=0)
            return
        now_seen = await self.signal.settled(
            handled, timeout=timeout, quiet=self.settings.debounce, cap=self.settings.debounce_max
        )
        if now_seen - handled > 1:
            METRICS.coalesced_changes.labels(self.namespace, self.name).inc(now_seen - handled - 1)

    def indexed(self) -> IndexedGraph:
        """This graph as the indexes see it, parsed once per change of its spec."""
        raw = self.body.get("spec") or {}
        if self._spec is None or self._spec[0] != raw:
            parsed = IndexedGraph.from_object(self.namespace, self.name, raw)
            started = self._spec is not None
            self._spec = (dict(raw), parsed)
            if started:
                self._sync_sources(parsed.spec)  # a changed source polls at once
            if parsed.spec is None:
                self.logger.error(f"ServiceGraph {self.ref} has an invalid spec: {parsed.error}")
        return self._spec[1]

    def spec(self) -> ServiceGraphSpec | None:
        """The current spec; None while it is invalid."""
        return self.indexed().spec

    def _sync_sources(self, spec: ServiceGraphSpec | None) -> None:
        """Pollers for the spec's Prometheus sources; an invalid spec keeps those it had."""
        if spec is not None:
            self.pollers.sync(spec.all_sources())

    def selects(self, entry: IndexedDependency | ManifestEntry) -> bool:
        """Whether a change of `entry` concerns this graph: a ServiceDependency it selects, or
        a workload, Service or ConfigMap in a namespace its kubernetes source reads."""
        mine = self.indexed()
        if isinstance(entry, IndexedDependency):
            return mine.selects(entry, self.tenancy)
        return self._reads_manifests_of(mine.spec, entry.namespace)

    def _reads_manifests_of(self, spec: ServiceGraphSpec | None, namespace: str) -> bool:
        return (
            spec is not None
            and any(s.type == SourceType.KUBERNETES for s in spec.sources)
            and spec.selector.selects_namespace(namespace, self.namespace)
            and self.tenancy.may_read(self.namespace, namespace)
        )

    @property
    def snapshot_name(self) -> str:
        spec = self.body.get("spec") or {}
        return str((spec.get("snapshot") or {}).get("configMapName") or f"{self.name}-graph")

    async def restore(self) -> None:
        """Take up where the last run stopped: its snapshot holds what was observed and when."""
        status = dict(self.body.get("status") or {})
        written_as = (status.get("snapshot") or {}).get("configMap")
        doc = await self.store.load(
            [self.snapshot_name, *([written_as] if written_as else [])], status
        )
        if doc is None:
            return
        restored = snapshot.observations_from_document(doc)
        states = {
            str(entry.get("name")): entry
            for entry in status.get("sources") or []
            if isinstance(entry, dict)
        }
        states.setdefault(LEGACY_SOURCE_NAME, dict(status.get("observed") or {}))
        inferred = [obs for obs in restored if obs.kind == SourceKind.KUBERNETES]
        self.pollers.restore([obs for obs in restored if obs.kind != SourceKind.KUBERNETES], states)
        if inferred:
            self.manifest_source.restore(inferred, states.get(inferred[0].reporter, {}))
        self.cycle_events.restore(doc["cycles"])
        stored = self.store.stored
        assert stored is not None
        self.logger.info(
            f"reloaded snapshot {stored.name} (revision {stored.revision}, "
            f"{len(restored)} observed edges)"
        )

    async def reconcile(self) -> None:
        with METRICS.reconcile_seconds.labels(self.namespace, self.name).time():
            await self._reconcile()

    def _previous_status(self) -> Body:
        """The status as the API holds it, or as this loop last wrote it while the watch has
        not shown that write yet. Other controllers' conditions and hand edits are seen."""
        version = self.body["metadata"].get("resourceVersion")
        if self.last_status is not None and version == self.version_at_write:
            return self.last_status
        return dict(self.body.get("status") or {})

    async def _write_status(self, status: Body, previous: Body) -> bool:
        if status == comparable(previous, status):
            return False
        self.version_at_write = self.body["metadata"].get("resourceVersion")
        await self.kube.patch_status(SERVICE_GRAPH.plural, self.namespace, self.name, status)
        METRICS.writes.labels("servicegraph-status").inc()
        self.last_status = {**previous, **status}
        return True

    async def _reconcile(self) -> None:
        now = datetime.now(UTC)
        generation = self.body["metadata"].get("generation")
        mine = self.indexed()
        spec = mine.spec
        previous = self._previous_status()
        if spec is None:
            status = invalid_graph_status(
                mine.error or "invalid spec", generation=generation, previous=previous, now=now
            )
            await self._write_status(status, previous)
            return
        selected = self._selected(mine)
        declarations = [dep.declaration for dep in selected if dep.declaration is not None]
        self._sync_sources(spec)
        pruned = self.pollers.prune(now, spec.retention_seconds)
        if pruned:
            METRICS.pruned_observations.labels(self.namespace, self.name).inc(pruned)
        await self._infer(spec, now)
        observations = [*self.pollers.observations(), *self.manifest_source.observations]
        span_attributes = {"servicegraph.namespace": self.namespace, "servicegraph.name": self.name}
        with (
            TRACER.start_as_current_span(
                "servicegraph.recompute", attributes=span_attributes
            ) as span,
            METRICS.recompute_seconds.labels(self.namespace, self.name).time(),
        ):
            result = await off_the_loop(
                analyse,
                spec,
                declarations,
                observations,
                graph_ref=(self.namespace, self.name),
                now=now,
                sources=self.manifest_source.documents(),
            )
            summary = result.graph.summary()
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

        problem, failure = await self._write_snapshot(result, spec, now)
        # The snapshot's bytes (16 MiB at 10,000 services) are not held through the status
        # writes that follow, which take longest.
        graph = result.graph
        del result
        states = self._source_states(spec)
        invalid = next((s for s in states if s.reason == INVALID_CONFIGURATION), None)
        if invalid is not None:
            problem = problem or (
                INVALID_CONFIGURATION,
                f"source {invalid.name}: {invalid.message}",
            )
        status = graph_status(
            graph,
            generation=generation,
            previous=previous,
            snapshot=self.store.info(),
            problem=problem,
            observed=states[0] if spec.observed is not None else None,
            now=now,
            sources=states,
        )
        if self.deferred_until is not None and "lowestCeilings" in previous:
            # The status says what the snapshot says: while a snapshot whose figures moved is
            # held back, the ceilings stay those it was written with.
            status["lowestCeilings"] = previous["lowestCeilings"]
        if await self._write_status(status, previous):
            self.logger.info(
                f"status updated: {summary.services} services, {summary.edges} edges, "
                f"{summary.cycles} unacknowledged cycles, {summary.stale_edges} stale, "
                f"{summary.drift} drift"
            )
        self.cycle_events.post(graph)
        await self.statuses.write(selected, self.dependencies, list(self.graphs()), graph, now)
        if failure is not None:  # the status says so; now retry with backoff
            raise failure

    async def _write_snapshot(
        self, result: Analysis, spec: ServiceGraphSpec, now: datetime
    ) -> tuple[tuple[str, str] | None, KubeError | None]:
        """Write the snapshot if due; the (reason, message) for Ready when it failed, and the
        error to retry with backoff."""
        try:
            outcome = await self.store.write(
                result.canonical,
                name=self.snapshot_name,
                topology=result.topology,
                now=now,
                min_interval=spec.snapshot.min_interval_seconds,
            )
        except SnapshotConflict as conflict:
            message = str(conflict)
            if self.conflict_reported != message:  # one event per conflict, not per retry
                self.post_event("Warning", "SnapshotConflict", message)
                self.conflict_reported = message
            self.logger.warning(message)
            return ("SnapshotConflict", message), None
        except KubeError as error:
            self.logger.warning(f"snapshot of {self.ref} not written: {error}")
            return ("SnapshotWriteFailed", str(error)), error
        self.conflict_reported = None
        self.deferred_until = outcome.deferred_until
        if outcome.written:
            METRICS.snapshot_writes.labels(self.namespace, self.name).inc()
        info = self.store.info()
        if info is not None:
            METRICS.snapshot_bytes.labels(self.namespace, self.name).set(info.bytes)
            METRICS.snapshot_shards.labels(self.namespace, self.name).set(info.shards)
            METRICS.snapshot_written.labels(self.namespace, self.name).set_to_current_time()
        return None, None

    async def release(self) -> None:
        """The graph is being deleted: tell the objects only it selected."""
        selected = self._selected(self.indexed())
        await self.statuses.write(
            selected, self.dependencies, list(self.graphs()), None, datetime.now(UTC)
        )

    async def _infer(self, spec: ServiceGraphSpec, now: datetime) -> None:
        """The kubernetes source's edges, from the indexed objects of the graph's namespaces."""
        source = next((s for s in spec.sources if s.type == SourceType.KUBERNETES), None)
        if source is None:
            self.manifest_source = ManifestSource()
            return
        entries = (
            None
            if self.manifests is None
            else [e for e in self.manifests() if self._reads_manifests_of(spec, e.namespace)]
        )
        await off_the_loop(self.manifest_source.observe, source, entries, now=now)

    def _source_states(self, spec: ServiceGraphSpec) -> list[ObservedState]:
        """Each source's state, in the spec's order (spec.observed first)."""
        states = []
        for source in spec.all_sources():
            if source.type == SourceType.KUBERNETES:
                state = self.manifest_source.state
            else:
                poller = self.pollers.pollers.get(source.name)
                state = None if poller is None else poller.state
            states.append(
                state
                or ObservedState(None, "Pending", "no poll yet", name=source.name, type=source.type)
            )
        return states

    def _selected(self, mine: IndexedGraph) -> list[IndexedDependency]:
        return [dep for dep in self.dependencies() if mine.selects(dep, self.tenancy)]

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

"""The statuses of the ServiceDependency objects a graph owns, written where they changed.

An object selected by several graphs is reported by one of them: a graph in the object's
own namespace first, else the first by namespace and name; so two graphs never fight over
one status, and a graph elsewhere never speaks for an object that has a graph at home.
An object no graph selects any more is told so (`Accepted` Unknown, `NotSelected`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from servicegraph.api import SERVICE_DEPENDENCY
from servicegraph.graph import Graph
from servicegraph.indexing import IndexedDependency, IndexedGraph, ObjectKey, status_json
from servicegraph.kube import Kube, KubeError
from servicegraph.status import (
    comparable,
    dependency_status,
    invalid_dependency_status,
    not_selected_status,
)
from servicegraph.telemetry import METRICS
from servicegraph.tenancy import Tenancy

Body = dict[str, Any]


def status_owner(
    dep: IndexedDependency, graphs: Iterable[IndexedGraph], tenancy: Tenancy
) -> IndexedGraph | None:
    """The graph that reports `dep`'s status, if any selects it."""
    selecting = [g for g in graphs if g.selects(dep, tenancy)]
    return min(
        selecting, key=lambda g: (g.namespace != dep.namespace, g.namespace, g.name), default=None
    )


def _says_selected(status: Mapping[str, Any]) -> bool:
    accepted = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Accepted"), None
    )
    return accepted is not None and accepted.get("reason") != "NotSelected"


class DependencyStatuses:
    def __init__(
        self,
        *,
        kube: Kube,
        ref: tuple[str, str],
        tenancy: Tenancy,
        concurrency: int,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.kube = kube
        self.ref = ref
        self.tenancy = tenancy
        self.concurrency = concurrency
        self.logger = logger
        # What this loop wrote and the index may not show yet (not written twice), as JSON.
        self.written: dict[ObjectKey, str] = {}

    async def write(
        self,
        selected: Sequence[IndexedDependency],
        everyone: Callable[[], Iterable[IndexedDependency]],
        graphs: Sequence[IndexedGraph],
        graph: Graph | None,
        now: datetime,
    ) -> None:
        """Write every status that should change: of the `selected` objects this graph owns,
        and of objects no graph selects any more. A few workers share one lazy sequence of
        changes: ten thousand statuses never sit in memory at once, as tasks or as dicts.

        `graph` None: this graph is going away; release what only it selected."""
        changes = self._changes(selected, everyone, graphs, graph, now)
        failures: list[KubeError] = []
        written = 0

        async def worker() -> None:
            nonlocal written
            for key, status in changes:  # each change is taken by one worker
                error = await self._write_one(key, status)
                if error is None:
                    written += 1
                else:
                    failures.append(error)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        if written or failures:
            self.logger.info(f"statuses of {written} ServiceDependency objects updated")
        if failures:  # the others are written; these are retried with backoff
            raise failures[0]

    def _changes(
        self,
        selected: Sequence[IndexedDependency],
        everyone: Callable[[], Iterable[IndexedDependency]],
        graphs: Sequence[IndexedGraph],
        graph: Graph | None,
        now: datetime,
    ) -> Iterator[tuple[ObjectKey, Body]]:
        ordered = sorted(graphs, key=lambda g: (g.namespace, g.name))
        if graph is None:  # going away: the others decide, and it releases what it selected
            others = [g for g in ordered if (g.namespace, g.name) != self.ref]
            yield from self._released(selected, others, now)
            return
        yield from self._owned(selected, ordered, graph, now)
        # Objects nobody selects any more are released by one loop: the first graph's.
        if ordered and (ordered[0].namespace, ordered[0].name) == self.ref:
            yield from self._released(everyone(), ordered, now)

    def _owned(
        self,
        selected: Iterable[IndexedDependency],
        graphs: Sequence[IndexedGraph],
        graph: Graph,
        now: datetime,
    ) -> Iterator[tuple[ObjectKey, Body]]:
        """The statuses of the selected objects this graph reports."""
        ref = "/".join(self.ref)
        for dep in selected:
            owner = status_owner(dep, graphs, self.tenancy)
            if owner is None or (owner.namespace, owner.name) != self.ref:
                continue
            previous = self._previous(dep)
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
                    graph_ref=ref,
                    generation=dep.generation,
                    previous=previous,
                    now=now,
                )
            if desired != comparable(previous, desired):
                yield (dep.namespace, dep.name), desired

    def _released(
        self, candidates: Iterable[IndexedDependency], graphs: Sequence[IndexedGraph], now: datetime
    ) -> Iterator[tuple[ObjectKey, Body]]:
        """`NotSelected` for the candidates that say they are in a graph and are in none."""
        for dep in candidates:
            previous = self._previous(dep)
            if not _says_selected(previous) or status_owner(dep, graphs, self.tenancy) is not None:
                continue
            service = dep.declaration.name if dep.declaration else None
            desired = not_selected_status(
                service, generation=dep.generation, previous=previous, now=now
            )
            if desired != comparable(previous, desired):
                yield (dep.namespace, dep.name), desired

    def _previous(self, dep: IndexedDependency) -> Body:
        """The object's status as this loop last wrote it, until the index shows it."""
        key = (dep.namespace, dep.name)
        shown = dep.status
        encoded = self.written.get(key)
        if encoded is None:
            return shown
        written: Body = json.loads(encoded)
        if comparable(shown, written) == written:
            del self.written[key]  # the index has caught up: forget our copy
            return shown
        return written or shown

    async def _write_one(self, key: ObjectKey, status: Body) -> KubeError | None:
        try:
            if await self.kube.patch_status(SERVICE_DEPENDENCY.plural, *key, status):
                self.written[key] = status_json(status)
                METRICS.writes.labels("servicedependency-status").inc()
        except KubeError as error:
            self.logger.warning(f"status of ServiceDependency {key[0]}/{key[1]}: {error}")
            return error
        return None

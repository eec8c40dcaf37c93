"""What the operator writes into the status of ServiceGraph and ServiceDependency objects.

Pure: the status is a function of the analysed graph and the status already there, so the
operator writes only when this function's answer differs from what the object holds.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from servicegraph.api import (
    MAX_CYCLE_SAMPLE_NAMES,
    MAX_DEPENDENCIES,
    MAX_LAST_ERROR,
    MAX_SAMPLES,
    MAX_SOURCE_STATUSES,
)
from servicegraph.cycles import Cycle
from servicegraph.graph import Graph, ServiceDeclaration
from servicegraph.snapshot import edge_refs, summary_document

Body = dict[str, Any]

# Every string and list written here is bounded, whatever the size of the graph: the API server
# refuses a status past its schema's limits, and then every later patch too. The CRD says the
# same numbers (MAX_SAMPLES, MAX_CYCLE_SAMPLE_NAMES, MAX_LAST_ERROR, MAX_DEPENDENCIES in api.py).
MAX_CYCLES_IN_MESSAGE = 3  # cycles spelled out in the Acyclic condition
MAX_MESSAGE_LENGTH = 1024  # characters of a condition message (the schema allows 32768)
_ELLIPSIS = "..."


def bounded(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def cycle_sample(cycle: Cycle) -> list[str]:
    """A cycle for `cycleSamples`: its path, at most MAX_CYCLE_SAMPLE_NAMES names of it, then one
    entry "and N more" counting the services of the component the sample leaves out."""
    names = list(cycle.path[:MAX_CYCLE_SAMPLE_NAMES])
    left_out = cycle.size - len(names)
    return [*names, f"and {left_out} more"] if left_out else names


def cycles_message(cycles: list[Cycle]) -> str:
    """The Acyclic message for unacknowledged `cycles`: their count and the first few paths."""
    shown = "; ".join(c.describe(MAX_CYCLE_SAMPLE_NAMES) for c in cycles[:MAX_CYCLES_IN_MESSAGE])
    first = f", the first {MAX_CYCLES_IN_MESSAGE}" if len(cycles) > MAX_CYCLES_IN_MESSAGE else ""
    return bounded(f"{len(cycles)} unacknowledged cycle(s){first}: {shown}")


def lowest_ceilings(graph: Graph) -> list[Body]:
    """The MAX_SAMPLES services whose dependency ceiling is lowest (below 100 %), lowest
    first, each with the dependency that holds it back most."""
    limited = (
        (node.slo.dependency_ceiling, name, node.slo.weakest_dependency)
        for name, node in graph.nodes.items()
        if node.slo is not None and node.slo.dependency_ceiling < 1.0
    )
    return [
        {"service": name, "dependencyCeiling": ceiling, "limitedBy": weakest}
        for ceiling, name, weakest in heapq.nsmallest(MAX_SAMPLES, limited)
    ]


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str,
    ok: bool | None,
    reason: str,
    message: str,
    *,
    generation: int | None,
    previous: Iterable[Mapping[str, Any]],
    now: datetime,
) -> Body:
    """A metav1.Condition that keeps its lastTransitionTime while its status holds.

    `ok` None is status Unknown: not known yet."""
    status = "Unknown" if ok is None else "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else None
    result: Body = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": bounded(message),
        "lastTransitionTime": since or timestamp(now),
    }
    if generation is not None:
        result["observedGeneration"] = generation
    return result


@dataclass(frozen=True)
class ObservedState:
    """What the polls (or, for the kubernetes source, the inferences) of one source have
    shown so far."""

    healthy: bool | None  # None: no poll has finished yet
    reason: str
    message: str
    last_poll_time: str | None = None
    last_success_time: str | None = None
    last_error: str | None = None
    series: int | None = None
    edges: int | None = None
    name: str = ""
    type: str = ""
    objects: int | None = None  # kubernetes: the workloads, Services and ConfigMaps read
    unresolved: int | None = None  # kubernetes: references to no Service in scope


@dataclass(frozen=True)
class SnapshotInfo:
    config_map: str
    revision: str
    bytes: int
    shards: int
    updated_at: str


def graph_status(
    graph: Graph,
    *,
    generation: int | None,
    previous: Mapping[str, Any],
    snapshot: SnapshotInfo | None,
    problem: tuple[str, str] | None,
    observed: ObservedState | None,
    now: datetime,
    sources: Sequence[ObservedState] = (),
) -> Body:
    """A ServiceGraph's status: counts, samples and conditions; never per-service lists.

    `problem` is the (reason, message) that keeps the graph from being Ready, if any;
    `sources` are all its sources, `observed` the one `spec.observed` names, if any."""
    summary = graph.summary()
    conditions = previous.get("conditions") or []
    if problem is not None:
        ready = condition(
            "Ready",
            False,
            problem[0],
            problem[1],
            generation=generation,
            previous=conditions,
            now=now,
        )
    else:
        ready = condition(
            "Ready",
            True,
            "Reconciled",
            f"{summary.services} services, {summary.edges} edges",
            generation=generation,
            previous=conditions,
            now=now,
        )
    if graph.cycles:
        acyclic = condition(
            "Acyclic",
            False,
            "CyclesFound",
            cycles_message(graph.cycles),
            generation=generation,
            previous=conditions,
            now=now,
        )
    else:
        message = (
            f"no unacknowledged cycle ({len(graph.acknowledged_cycles)} acknowledged)"
            if graph.acknowledged_cycles
            else "no cycle"
        )
        acyclic = condition(
            "Acyclic",
            True,
            "NoCycles",
            message,
            generation=generation,
            previous=conditions,
            now=now,
        )
    ours = [ready, acyclic]
    sources = sources or ([observed] if observed is not None else [])
    summary_state = sources_summary(sources)
    if summary_state is not None:
        ours.append(
            condition(
                "ObservedSourceHealthy",
                summary_state.healthy,
                summary_state.reason,
                summary_state.message,
                generation=generation,
                previous=conditions,
                now=now,
            )
        )
    mine = ("Ready", "Acyclic", "ObservedSourceHealthy")
    kept = [c for c in conditions if c.get("type") not in mine]
    status: Body = {
        "observedGeneration": generation,
        "conditions": [*ours, *kept],
        **summary_document(summary),
        "drift": summary.drift,
        "cycleSamples": [cycle_sample(c) for c in graph.cycles[:MAX_SAMPLES]],
        "driftSamples": {
            "undeclared": edge_refs(graph.undeclared[:MAX_SAMPLES]),
            "unobserved": edge_refs(graph.unobserved[:MAX_SAMPLES]),
        },
        "lowestCeilings": lowest_ceilings(graph),
    }
    if snapshot is not None:
        status["snapshot"] = {
            "configMap": snapshot.config_map,
            "revision": snapshot.revision,
            "bytes": snapshot.bytes,
            "shards": snapshot.shards,
            "updatedAt": snapshot.updated_at,
        }
    elif "snapshot" in previous:
        status["snapshot"] = previous["snapshot"]
    # None removes them (merge patch) when the graph stops observing.
    status["sources"] = [source_status(state) for state in sources[:MAX_SOURCE_STATUSES]] or None
    status["observed"] = (
        None
        if observed is None
        else {
            "lastPollTime": observed.last_poll_time,
            "lastSuccessTime": observed.last_success_time,
            "lastError": None
            if observed.last_error is None
            else bounded(observed.last_error, MAX_LAST_ERROR),
            "series": observed.series,
        }
    )
    return status


def sources_summary(sources: Sequence[ObservedState]) -> ObservedState | None:
    """The ObservedSourceHealthy condition: one source's own state, or for several the failing
    ones named (False), else the pending ones (Unknown), else all healthy (True)."""
    if not sources:
        return None
    if len(sources) == 1:
        return sources[0]
    failing = [s for s in sources if s.healthy is False]
    waiting = [s for s in sources if s.healthy is None]
    if failing:
        first = failing[0]
        more = f"; {len(failing) - 1} more failing" if len(failing) > 1 else ""
        return ObservedState(
            False,
            first.reason,
            f"source {first.name} ({first.type}): {first.message}{more}",
        )
    if waiting:
        names = ", ".join(s.name for s in waiting)
        return ObservedState(None, "Pending", f"waiting for the first poll of {names}")
    edges = ", ".join(f"{s.name} {s.edges or 0}" for s in sources)
    return ObservedState(True, "Polled", f"{len(sources)} sources healthy; edges: {edges}")


def source_status(state: ObservedState) -> Body:
    """One entry of status.sources."""
    entry: Body = {
        "name": state.name,
        "type": state.type,
        "healthy": state.healthy,
        "reason": state.reason,
        "lastPollTime": state.last_poll_time,
        "lastSuccessTime": state.last_success_time,
        "lastError": None
        if state.last_error is None
        else bounded(state.last_error, MAX_LAST_ERROR),
        "edges": state.edges,
    }
    for key, value in (
        ("series", state.series),
        ("objects", state.objects),
        ("unresolved", state.unresolved),
    ):
        if value is not None:
            entry[key] = value
    return {key: value for key, value in entry.items() if value is not None}


def dependency_status(
    declaration: ServiceDeclaration,
    graph: Graph,
    *,
    graph_ref: str,
    generation: int | None,
    previous: Mapping[str, Any],
    now: datetime,
) -> Body:
    """A ServiceDependency's view of the graph it belongs to."""
    targets = sorted({target for target, _ in declaration.depends_on})
    known = graph.nodes
    resolved = [t for t in targets if t in known and known[t].declared]
    unresolved = [t for t in targets if t not in known or not known[t].declared]
    conditions = previous.get("conditions") or []
    loser_of = next(
        (
            c
            for c in graph.conflicts
            if c.service == declaration.name
            and (declaration.namespace, declaration.object_name) in c.losers
        ),
        None,
    )
    if loser_of is not None:
        winner = "/".join(p for p in loser_of.winner if p)
        accepted = condition(
            "Accepted",
            False,
            "DuplicateService",
            f"service {declaration.name} is already declared by {winner}; this object is ignored",
            generation=generation,
            previous=conditions,
            now=now,
        )
    else:
        accepted = condition(
            "Accepted",
            True,
            "InGraph",
            f"part of ServiceGraph {graph_ref}",
            generation=generation,
            previous=conditions,
            now=now,
        )
    node = known.get(declaration.name)
    return {
        "observedGeneration": generation,
        "service": declaration.name,
        "conditions": [accepted],
        "resolvedTargets": resolved[:MAX_DEPENDENCIES],
        "unresolvedTargets": unresolved[:MAX_DEPENDENCIES],
        "inCycle": bool(node and node.in_cycle and loser_of is None),
    }


def invalid_dependency_status(
    message: str, *, generation: int | None, previous: Mapping[str, Any], now: datetime
) -> Body:
    """For an object the API server let through but the graph cannot use (an older schema)."""
    accepted = condition(
        "Accepted",
        False,
        "InvalidSpec",
        message,
        generation=generation,
        previous=previous.get("conditions") or [],
        now=now,
    )
    return _outside_any_graph(accepted, generation)


def _outside_any_graph(accepted: Body, generation: int | None, service: str | None = None) -> Body:
    """The status of an object that is in no graph: only its Accepted condition says why."""
    return {
        "observedGeneration": generation,
        "service": service,
        "conditions": [accepted],
        "resolvedTargets": [],
        "unresolvedTargets": [],
        "inCycle": False,
    }


def comparable(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> Body:
    """The part of the current status that `desired` would set, for an equality test."""
    return {key: previous.get(key) for key in desired}


def not_selected_status(
    service: str | None, *, generation: int | None, previous: Mapping[str, Any], now: datetime
) -> Body:
    """For an object no ServiceGraph selects any more: whatever graph it was in is gone."""
    accepted = condition(
        "Accepted",
        None,
        "NotSelected",
        "no ServiceGraph selects this object",
        generation=generation,
        previous=previous.get("conditions") or [],
        now=now,
    )
    return _outside_any_graph(accepted, generation, service)


def invalid_graph_status(
    message: str, *, generation: int | None, previous: Mapping[str, Any], now: datetime
) -> Body:
    """For a ServiceGraph whose spec the API server let through but the graph cannot use."""
    conditions = previous.get("conditions") or []
    ready = condition(
        "Ready",
        False,
        "InvalidSpec",
        message,
        generation=generation,
        previous=conditions,
        now=now,
    )
    kept = [c for c in conditions if c.get("type") != "Ready"]
    return {"observedGeneration": generation, "conditions": [ready, *kept]}

"""The snapshot document's shape, for the programs that read it: typed dictionaries (what
`snapshot.to_document` writes and `snapshot_files.load_snapshot_file` returns), and the JSON
Schema generated from them, published as `docs/snapshot.schema.json`.

Every object is closed (no other keys): a field added to the document and not here fails the
tests that validate every snapshot they make against this schema.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

Closed = ConfigDict(extra="forbid")
Count = Annotated[int, Field(ge=0)]
Ratio = Annotated[float, Field(ge=0, le=1)]
Name = Annotated[str, Field(min_length=1)]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
SourceKind = Literal["manual", "service-mesh", "otel", "kubernetes"]


@with_config(Closed)
class GraphRef(TypedDict):
    """The ServiceGraph the snapshot belongs to."""

    namespace: str
    name: str


@with_config(Closed)
class ObjectRef(TypedDict):
    """A ServiceDependency, by namespace and name."""

    namespace: str | None
    name: str | None


@with_config(Closed)
class Summary(TypedDict):
    """The counts, as the ServiceGraph's status spells them."""

    services: Count
    edges: Count
    declaredEdges: Count
    observedEdges: Count
    staleEdges: Count
    cycles: Count
    undeclared: Count
    unobserved: Count


@with_config(Closed)
class EdgeRef(TypedDict):
    source: Name
    target: Name


@with_config(Closed)
class Drift(TypedDict):
    """undeclared: observed, never declared; unobserved: declared, not observed lately."""

    undeclared: list[EdgeRef]
    unobserved: list[EdgeRef]


@with_config(Closed)
class Conflict(TypedDict):
    """A service declared by several objects: the winner counts, the losers are ignored."""

    service: Name
    winner: ObjectRef
    losers: list[ObjectRef]


@with_config(Closed)
class Impact(TypedDict):
    """Who fails (hard sync callers, transitively) and who degrades when the service is down;
    the lists hold the first names, the counts all."""

    fails: list[Name]
    failsCount: Count
    degrades: list[Name]
    degradesCount: Count


@with_config(Closed)
class ServiceSLO(TypedDict):
    """Availabilities are ratios (0.9995 is 99.95 %); null when not observed."""

    impact: Impact
    syncDepth: Count
    syncNext: str | None
    availability: Ratio | None
    dependencyCeiling: Ratio
    weakestDependency: str | None
    unknownDependencies: list[Name]


@with_config(Closed)
class Node(TypedDict):
    """A service: declared by a ServiceDependency (namespace, object, team, tier) or only
    called (a placeholder)."""

    name: Name
    declared: bool
    namespace: str | None
    object: str | None
    team: str | None
    tier: Literal["critical", "high", "medium", "low"] | None
    role: Literal["service", "database", "virtual"]
    blastRadius: Count
    inCycle: bool
    slo: NotRequired[ServiceSLO]


@with_config(Closed)
class Retry(TypedDict):
    maxRetries: Count
    backoffMs: Count
    backoffMultiplier: float


@with_config(Closed)
class Attributes(TypedDict):
    """How the caller calls: as declared, or as the winning source saw it."""

    communicationMode: Literal["sync", "async"]
    criticality: Literal["hard", "soft", "degraded"]
    protocol: NotRequired[str]
    timeoutMs: NotRequired[Count]
    retry: NotRequired[Retry]


@with_config(Closed)
class Traffic(TypedDict):
    """Over the observation window: requests per second, the ratio that failed, p95 latency."""

    requestRate: Annotated[float, Field(ge=0)]
    errorRate: Ratio
    connectionType: str
    p95LatencyMs: NotRequired[Annotated[float, Field(ge=0)]]


@with_config(Closed)
class Evidence(TypedDict):
    """Where a manifest names the callee: object, container, field and its value."""

    kind: str
    name: str
    namespace: NotRequired[str]
    container: str
    field: str
    value: str


@with_config(Closed)
class EdgeSource(TypedDict):
    """One source's sighting of an edge; attributes and traffic only where they differ from
    the edge's (traffic null: seen without figures)."""

    kind: SourceKind
    confidence: Ratio
    lastSeen: Timestamp | None
    name: NotRequired[Name]
    evidence: NotRequired[list[Evidence]]
    virtual: NotRequired[Literal["source", "target"]]
    attributes: NotRequired[Attributes]
    traffic: NotRequired[Traffic | None]


@with_config(Closed)
class Edge(TypedDict):
    """A call: `source` calls `target`."""

    source: Name
    target: Name
    stale: bool
    declared: bool
    observed: bool
    confidence: Ratio
    attributes: Attributes
    sources: list[EdgeSource]
    traffic: NotRequired[Traffic]


@with_config(Closed)
class Unresolved(TypedDict):
    """A reference in a manifest that names no Service."""

    source: Name
    reference: str
    evidence: Evidence


@with_config(Closed)
class SourceReport(TypedDict):
    """What a source says beyond edges: a kubernetes source's unresolved references."""

    name: Name
    type: str
    unresolvedCount: Count
    unresolved: list[Unresolved]


@with_config(Closed)
class SnapshotDocument(TypedDict):
    """The whole graph of one ServiceGraph, as the snapshot ConfigMap holds it."""

    schemaVersion: Literal[1]
    graph: GraphRef | None
    summary: Summary
    cycles: list[list[Name]]
    cyclePaths: list[list[Name]]
    acknowledgedCycles: list[list[Name]]
    acknowledgedCyclePaths: list[list[Name]]
    drift: Drift
    conflicts: list[Conflict]
    nodes: list[Node]
    edges: list[Edge]
    sources: NotRequired[list[SourceReport]]


SNAPSHOT_ADAPTER: TypeAdapter[SnapshotDocument] = TypeAdapter(SnapshotDocument)
SCHEMA_ID = "https://graph.slo-engine.io/schemas/snapshot-v1.json"


def snapshot_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the snapshot document."""
    schema = SNAPSHOT_ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "servicegraph snapshot",
        **schema,
    }


def render_schema() -> str:
    return json.dumps(snapshot_json_schema(), indent=2, sort_keys=True) + "\n"

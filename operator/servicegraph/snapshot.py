"""The snapshot document: the analysed graph as versioned JSON, and back.

Pure: no Kubernetes client. How the document is stored in ConfigMaps is
`snapshot_configmaps`; reading it from a file is `snapshot_files`.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from servicegraph.cycles import Cycle, find_cycle
from servicegraph.graph import (
    Conflict,
    Edge,
    EdgeAttributes,
    Evidence,
    Graph,
    Node,
    NodeRole,
    Observation,
    Retry,
    Sighting,
    SourceKind,
    Summary,
    Traffic,
    VirtualEnd,
    set_slo_figures,
    without_gc,
)
from servicegraph.slo import ServiceSLO

SCHEMA_VERSION = 1

Document = dict[str, Any]


class SnapshotError(Exception):
    """A snapshot that cannot be read: unknown version, malformed, or half-written."""


@without_gc
def to_document(
    graph: Graph,
    *,
    graph_ref: tuple[str, str] | None = None,
    sources: Sequence[Mapping[str, Any]] = (),
) -> Document:
    """The snapshot document of `graph`; `graph_ref` is the (namespace, name) of its ServiceGraph,
    `sources` what its sources report beyond edges (see `_document_head`).

    Holds no wall-clock time other than the sources' lastSeen, so the same graph always
    gives the same document and the same revision.
    """
    return {
        **_document_head(graph, graph_ref, sources),
        "nodes": list(_iter_node_documents(graph)),
        "edges": list(_iter_edge_documents(graph)),
    }


@without_gc
def graph_json(
    graph: Graph,
    *,
    graph_ref: tuple[str, str] | None = None,
    sources: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """`canonical_json(to_document(graph, ...))`, built one node and one edge at a time.

    The operator needs only these bytes; 50,000 edges as dicts take five times their JSON.
    """
    head = _document_head(graph, graph_ref, sources)
    streamed = {"nodes": _iter_node_documents, "edges": _iter_edge_documents}
    # BytesIO, not bytearray: getvalue() hands over its buffer where bytes(bytearray) copies,
    # and two copies of a 25 MiB snapshot were the operator's peak.
    out = io.BytesIO()
    out.write(b"{")
    for position, key in enumerate(sorted([*head, *streamed])):
        out.write(b'%s"%s":' % (b"," if position else b"", key.encode()))
        if key not in streamed:
            out.write(orjson.dumps(head[key], option=orjson.OPT_SORT_KEYS))
            continue
        out.write(b"[")
        for index, item in enumerate(streamed[key](graph)):
            if index:
                out.write(b",")
            out.write(orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
        out.write(b"]")
    out.write(b"}")
    return out.getvalue()


@without_gc
def topology_of(graph: Graph, sources: Sequence[Mapping[str, Any]] = ()) -> str:
    """A hash of what the snapshot says about the graph's shape, leaving out what moves with
    every poll (lastSeen, request and error rates, latencies).

    Nodes, edges, their sources and attributes, stale flags, cycles, drift, conflicts, impact
    and sync chains are all in it: when it changes the snapshot is written at once; when only
    the moving figures change (availabilities among them), at most once per
    `spec.snapshot.minInterval`.
    """
    head = _document_head(graph, None, sources)
    digest = hashlib.sha256(orjson.dumps(head, option=orjson.OPT_SORT_KEYS))
    for node in _iter_node_documents(graph, moving=False):
        digest.update(orjson.dumps(node, option=orjson.OPT_SORT_KEYS))
    for key in sorted(graph.edges):
        edge = graph.edges[key]
        # Evidence changes with a manifest, never with a poll: part of the shape.
        reporters = [
            [name, [evidence_document(e) for e in edge.sources[name].evidence]]
            for name in sorted(edge.sources)
        ]
        attributes = _attributes_document(edge.attributes)
        digest.update(
            orjson.dumps([*key, edge.stale, reporters, attributes], option=orjson.OPT_SORT_KEYS)
        )
    return digest.hexdigest()[:16]


def _document_head(
    graph: Graph, graph_ref: tuple[str, str] | None, sources: Sequence[Mapping[str, Any]] = ()
) -> Document:
    """Everything of the document but its nodes and edges. `sources`, when given, is what
    the sources say beyond edges: for a kubernetes source the references it could not
    resolve, e.g. [{"name": "manifests", "type": "kubernetes", "unresolved": [...],
    "unresolvedCount": 3}]."""
    summary = graph.summary()
    extra = {"sources": [dict(s) for s in sources]} if sources else {}
    return {
        **extra,
        "schemaVersion": SCHEMA_VERSION,
        "graph": None if graph_ref is None else {"namespace": graph_ref[0], "name": graph_ref[1]},
        "summary": summary_document(summary),
        # Members (sorted) of each component; the paths, in the same order, are real cycles.
        "cycles": [list(c.members) for c in sorted(graph.cycles)],
        "cyclePaths": [list(c.path) for c in sorted(graph.cycles)],
        "acknowledgedCycles": [list(c.members) for c in sorted(graph.acknowledged_cycles)],
        "acknowledgedCyclePaths": [list(c.path) for c in sorted(graph.acknowledged_cycles)],
        "drift": {
            "undeclared": edge_refs(sorted(graph.undeclared)),
            "unobserved": edge_refs(sorted(graph.unobserved)),
        },
        "conflicts": [
            {
                "service": c.service,
                "winner": _object_ref(c.winner),
                "losers": [_object_ref(loser) for loser in c.losers],
            }
            for c in sorted(graph.conflicts, key=lambda c: c.service)
        ],
    }


def summary_document(summary: Summary) -> dict[str, int]:
    """The counts, as both the snapshot and the ServiceGraph status spell them."""
    return {
        "services": summary.services,
        "edges": summary.edges,
        "declaredEdges": summary.declared_edges,
        "observedEdges": summary.observed_edges,
        "staleEdges": summary.stale_edges,
        "cycles": summary.cycles,
        "undeclared": summary.undeclared,
        "unobserved": summary.unobserved,
    }


def edge_refs(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"source": source, "target": target} for source, target in pairs]


@without_gc
def graph_from_document(doc: Mapping[str, Any]) -> Graph:
    """The graph a snapshot describes, ready for `Graph.query`.

    A Graph has no ServiceGraph reference: pass `doc["graph"]` back to `to_document` as
    `graph_ref` to get the same document again.
    """
    check_schema_version(doc)
    try:
        nodes = {n["name"]: _node_from_document(n) for n in doc["nodes"]}
        edges = {(e["source"], e["target"]): _edge_from_document(e) for e in doc["edges"]}
        dangling = next(((s, t) for s, t in edges if s not in nodes or t not in nodes), None)
        if dangling is not None:
            raise ValueError(f"edge {dangling} names a missing node")
        graph = Graph(
            nodes=nodes,
            edges=edges,
            undeclared=[(d["source"], d["target"]) for d in doc["drift"]["undeclared"]],
            unobserved=[(d["source"], d["target"]) for d in doc["drift"]["unobserved"]],
            conflicts=[
                Conflict(
                    c["service"],
                    _object_ref_from_document(c["winner"]),
                    tuple(_object_ref_from_document(loser) for loser in c["losers"]),
                )
                for c in doc["conflicts"]
            ],
        )
        graph.cycles = _cycles_from_document(doc, "cycles", "cyclePaths", graph)
        graph.acknowledged_cycles = _cycles_from_document(
            doc, "acknowledgedCycles", "acknowledgedCyclePaths", graph
        )
        _check_sync_chains(nodes)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise SnapshotError(f"malformed snapshot document: {error!r}") from error
    if any(node.slo is None for node in nodes.values()):  # written before it held them
        set_slo_figures(graph)
    return graph


def _check_sync_chains(nodes: Mapping[str, Node]) -> None:
    """Every `syncNext` names a service, and following them always ends."""
    ends: set[str] = set()
    for name in nodes:
        walked: list[str] = []
        current: str | None = name
        while current is not None and current not in ends:
            if current in walked:
                raise ValueError(f"syncNext goes round from {name}: {walked[-5:]}")
            walked.append(current)
            figures = nodes[current].slo
            current = None if figures is None else figures.sync_next
        ends.update(walked)


def _cycles_from_document(
    doc: Mapping[str, Any], members_key: str, paths_key: str, graph: Graph
) -> list[Cycle]:
    """The cycles of a document; one written before it held paths gets them from its edges."""
    members = [tuple(sorted(c)) for c in doc[members_key]]
    paths = doc.get(paths_key)
    if paths is not None:
        cycles = [Cycle(m, tuple(p)) for m, p in zip(members, paths, strict=True)]
        if any(not c.path or not set(c.path) <= set(c.members) for c in cycles):
            raise ValueError(f"{paths_key} do not match {members_key}")
        return cycles
    return [find_cycle(m, graph.network) for m in members]


def observations_from_document(doc: Mapping[str, Any]) -> list[Observation]:
    """The observed (non-manual) sightings, so a restarted operator keeps its lastSeen history."""
    graph = graph_from_document(doc)
    return [
        Observation(
            edge.source,
            edge.target,
            sighting.kind,
            sighting.last_seen,
            sighting.attributes,
            sighting.traffic,
            sighting.name,
            sighting.evidence,
            sighting.virtual,
        )
        for edge in graph.edges.values()
        for sighting in edge.sources.values()
        if sighting.kind != SourceKind.MANUAL and sighting.last_seen is not None
    ]


def graph_ref_of(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (namespace, name) of the ServiceGraph a document belongs to, if it says."""
    ref = doc.get("graph")
    if ref is None:
        return None
    if not isinstance(ref, Mapping) or not all(
        isinstance(ref.get(key), str) for key in ("namespace", "name")
    ):
        raise SnapshotError(f"malformed snapshot document: graph is {ref!r}")
    return (ref["namespace"], ref["name"])


def check_schema_version(doc: Mapping[str, Any]) -> None:
    version = doc.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise SnapshotError(
            f"snapshot schemaVersion {version!r} is not supported (this version reads "
            f"{SCHEMA_VERSION}); upgrade servicegraph to read it"
        )


def _object_ref(ref: tuple[str | None, str | None]) -> dict[str, str | None]:
    return {"namespace": ref[0], "name": ref[1]}


def _object_ref_from_document(ref: Mapping[str, Any]) -> tuple[str | None, str | None]:
    return (ref["namespace"], ref["name"])


def _iter_node_documents(graph: Graph, *, moving: bool = True) -> Iterator[dict[str, Any]]:
    """Every node, by name; without the `moving` figures (availabilities) for `topology_of`."""
    for name in sorted(graph.nodes):
        yield _node_document(graph.nodes[name], moving)


def _node_document(node: Node, moving: bool = True) -> dict[str, Any]:
    doc = {
        "name": node.name,
        "declared": node.declared,
        "namespace": node.namespace,
        "object": node.object_name,
        "team": node.team,
        "tier": node.tier,
        "role": node.role.value,
        "blastRadius": node.blast_radius,
        "inCycle": node.in_cycle,
    }
    if node.slo is not None:
        doc["slo"] = slo_document(node.slo, moving=moving)
    return doc


def slo_document(figures: ServiceSLO, *, moving: bool = True) -> dict[str, Any]:
    """A service's SLO figures as the snapshot spells them; the impact lists hold the first
    MAX_IMPACT_NAMES names, the counts all of them."""
    doc: dict[str, Any] = {
        "impact": {
            "fails": list(figures.fails_names),
            "failsCount": figures.fails,
            "degrades": list(figures.degrades_names),
            "degradesCount": figures.degrades,
        },
        "syncDepth": figures.sync_depth,
        "syncNext": figures.sync_next,
    }
    if moving:
        doc["availability"] = figures.availability
        doc["dependencyCeiling"] = figures.dependency_ceiling
        doc["weakestDependency"] = figures.weakest_dependency
        doc["unknownDependencies"] = list(figures.unknown_dependencies)
    return doc


def _node_from_document(n: Mapping[str, Any]) -> Node:
    figures = n.get("slo")
    return Node(
        name=n["name"],
        declared=n["declared"],
        namespace=n["namespace"],
        object_name=n["object"],
        team=n["team"],
        tier=n["tier"],
        role=NodeRole(n["role"]),
        blast_radius=n["blastRadius"],
        in_cycle=n["inCycle"],
        slo=None if figures is None else _slo_from_document(figures),
    )


def _slo_from_document(f: Mapping[str, Any]) -> ServiceSLO:
    impact = f["impact"]
    return ServiceSLO(
        availability=f["availability"],
        dependency_ceiling=f["dependencyCeiling"],
        weakest_dependency=f["weakestDependency"],
        unknown_dependencies=tuple(f["unknownDependencies"]),
        fails=impact["failsCount"],
        degrades=impact["degradesCount"],
        fails_names=tuple(impact["fails"]),
        degrades_names=tuple(impact["degrades"]),
        sync_depth=f["syncDepth"],
        sync_next=f["syncNext"],
    )


def _iter_edge_documents(graph: Graph) -> Iterator[dict[str, Any]]:
    """Every edge, in order. Tens of thousands of edges share a handful of attribute sets and
    poll times: each is rendered once and the rendered part shared (documents are read-only)."""
    attributes: dict[EdgeAttributes, dict[str, Any]] = {}
    times: dict[datetime, str] = {}

    def rendered(value: EdgeAttributes) -> dict[str, Any]:
        found = attributes.get(value)
        if found is None:
            found = attributes[value] = _attributes_document(value)
        return found

    def moment(value: datetime | None) -> str | None:
        if value is None:
            return None
        found = times.get(value)
        if found is None:
            found = times[value] = _timestamp(value)
        return found

    for key in sorted(graph.edges):
        edge = graph.edges[key]
        winner, traffic = edge.winner, edge.traffic
        sightings = sorted(
            edge.sources.values(), key=lambda s: (-s.confidence, s.kind.value, s.name)
        )
        sources = []
        for sighting in sightings:
            source: dict[str, Any] = {
                "kind": sighting.kind.value,
                "confidence": sighting.confidence,
                "lastSeen": moment(sighting.last_seen),
            }
            if sighting.name and sighting.name != sighting.kind.value:
                source["name"] = sighting.name
            if sighting.evidence:
                source["evidence"] = [evidence_document(e) for e in sighting.evidence]
            if sighting.virtual:
                source["virtual"] = sighting.virtual.value
            # The edge already shows the winner's attributes and the freshest traffic.
            if sighting.attributes != winner.attributes:
                source["attributes"] = rendered(sighting.attributes)
            if sighting.traffic is not None and sighting.traffic != traffic:
                source["traffic"] = _traffic_document(sighting.traffic)
            elif sighting.traffic is None and traffic is not None and sighting.last_seen:
                source["traffic"] = None  # observed without figures: not the edge's

            sources.append(source)
        doc: dict[str, Any] = {
            "source": edge.source,
            "target": edge.target,
            "stale": edge.stale,
            "declared": SourceKind.MANUAL in edge.sources,
            "observed": len(sightings) > (SourceKind.MANUAL in edge.sources),
            "confidence": winner.confidence,
            "attributes": rendered(winner.attributes),
            "sources": sources,
        }
        if traffic is not None:
            doc["traffic"] = _traffic_document(traffic)
        yield doc


def _edge_from_document(e: Mapping[str, Any]) -> Edge:
    attributes = _attributes_from_document(e["attributes"])
    traffic = e.get("traffic")
    sightings = [
        _sighting_from_document(
            s, attributes, None if traffic is None else _traffic_from_document(traffic)
        )
        for s in e["sources"]
    ]
    if not sightings:
        raise ValueError(f"edge {e['source']} -> {e['target']} has no sources")
    return Edge(e["source"], e["target"], {s.reporter: s for s in sightings}, stale=e["stale"])


def _sighting_from_document(
    s: Mapping[str, Any], edge_attributes: EdgeAttributes, edge_traffic: Traffic | None
) -> Sighting:
    kind = SourceKind(s["kind"])
    attributes, traffic = s.get("attributes"), s.get("traffic")
    if traffic is not None:
        own_traffic: Traffic | None = _traffic_from_document(traffic)
    elif kind == SourceKind.MANUAL or "traffic" in s:  # None: seen without figures
        own_traffic = None
    else:
        own_traffic = edge_traffic
    return Sighting(
        kind=kind,
        last_seen=None if s["lastSeen"] is None else _parse_timestamp(s["lastSeen"]),
        attributes=edge_attributes if attributes is None else _attributes_from_document(attributes),
        traffic=own_traffic,
        name=s.get("name", ""),
        evidence=tuple(_evidence_from_document(e) for e in s.get("evidence", ())),
        virtual=VirtualEnd(s.get("virtual", "")),
    )


def evidence_document(evidence: Evidence) -> dict[str, Any]:
    doc = {
        "kind": evidence.kind,
        "name": evidence.name,
        "container": evidence.container,
        "field": evidence.field,
        "value": evidence.value,
    }
    if evidence.namespace is not None:
        doc["namespace"] = evidence.namespace
    return doc


def _evidence_from_document(e: Mapping[str, Any]) -> Evidence:
    return Evidence(
        kind=e["kind"],
        name=e["name"],
        container=e["container"],
        field=e["field"],
        value=e["value"],
        namespace=e.get("namespace"),
    )


def _attributes_document(attributes: EdgeAttributes) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "communicationMode": attributes.communication_mode,
        "criticality": attributes.criticality,
    }
    if attributes.protocol is not None:
        doc["protocol"] = attributes.protocol
    if attributes.timeout_ms is not None:
        doc["timeoutMs"] = attributes.timeout_ms
    if attributes.retry is not None:
        doc["retry"] = {
            "maxRetries": attributes.retry.max_retries,
            "backoffMs": attributes.retry.backoff_ms,
            "backoffMultiplier": attributes.retry.backoff_multiplier,
        }
    return doc


def _attributes_from_document(a: Mapping[str, Any]) -> EdgeAttributes:
    retry = a.get("retry")
    return EdgeAttributes(
        communication_mode=a["communicationMode"],
        criticality=a["criticality"],
        protocol=a.get("protocol"),
        timeout_ms=a.get("timeoutMs"),
        retry=None
        if retry is None
        else Retry(retry["maxRetries"], retry["backoffMs"], retry["backoffMultiplier"]),
    )


def _traffic_document(traffic: Traffic) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "requestRate": traffic.request_rate,
        "errorRate": traffic.error_rate,
        "connectionType": traffic.connection_type,
    }
    if traffic.p95_latency_ms is not None:
        doc["p95LatencyMs"] = traffic.p95_latency_ms
    return doc


def _traffic_from_document(t: Mapping[str, Any]) -> Traffic:
    return Traffic(
        request_rate=t["requestRate"],
        error_rate=t["errorRate"],
        p95_latency_ms=t.get("p95LatencyMs"),
        connection_type=t["connectionType"],
    )


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, e.g. 2026-01-02T03:04:05Z."""
    if moment.tzinfo is None:
        raise ValueError(f"lastSeen {moment} has no time zone; observations must be in UTC")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"lastSeen {text!r} has no time zone")
    return moment.astimezone(UTC)

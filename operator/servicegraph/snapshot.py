"""The snapshot: the analysed graph as a versioned JSON document, and its ConfigMap encoding.

Pure: no Kubernetes client. The operator writes what `encode` returns and readers (the CLI,
other tools) pass what they read to `decode`.

A snapshot is one ConfigMap named after the snapshot, in one of three encodings:
- plain: `data["snapshot.json"]` holds the document;
- gzip: past `gzip_threshold`, `binaryData["snapshot.json.gz"]` holds it gzipped;
- sharded: when even the gzip exceeds one part, the gzip is cut into shard ConfigMaps named
  `<name>-<revision[:10]>-<i>` (`binaryData["part"]`, `data["partNumber"]`) and the ConfigMap
  `<name>` holds `data["index.json"]` listing them with their sha256.
Every ConfigMap has the label `graph.slo-engine.io/snapshot: <name>` and the annotation
`graph.slo-engine.io/revision`; `<name>` also has `data["revision"]`.
The revision is a hash of the document's content, so an unchanged graph is never rewritten.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson
import yaml

from servicegraph.graph import (
    Conflict,
    Cycle,
    Edge,
    EdgeAttributes,
    Graph,
    Node,
    NodeRole,
    Observation,
    Retry,
    Sighting,
    SourceKind,
    Summary,
    Traffic,
    find_cycle,
    without_gc,
)

SCHEMA_VERSION = 1
SNAPSHOT_LABEL = "graph.slo-engine.io/snapshot"
REVISION_ANNOTATION = "graph.slo-engine.io/revision"
PLAIN_KEY = "snapshot.json"
GZIP_KEY = "snapshot.json.gz"
INDEX_KEY = "index.json"
REVISION_KEY = "revision"
PART_KEY = "part"  # in binaryData: the bytes
# In data: the part's position. Kubernetes refuses a key present in both data and binaryData.
PART_NUMBER_KEY = "partNumber"

# Room for "-<revision[:10]>-<part>" after the name, with up to four digits of part number.
_SHARD_PREFIX_LIMIT = 253 - len("-0123456789-9999")
_LABEL_VALUE_LIMIT = 63

Document = dict[str, Any]


class SnapshotError(Exception):
    """A snapshot that cannot be read: unknown version, malformed, or half-written."""


# --- the document -------------------------------------------------------------------------


@without_gc
def to_document(graph: Graph, *, graph_ref: tuple[str, str] | None = None) -> Document:
    """The snapshot document of `graph`; `graph_ref` is the (namespace, name) of its ServiceGraph.

    Holds no wall-clock time other than the sources' lastSeen, so the same graph always
    gives the same document and the same revision.
    """
    return {**_document_head(graph, graph_ref), "edges": list(_iter_edge_documents(graph))}


@without_gc
def graph_json(graph: Graph, *, graph_ref: tuple[str, str] | None = None) -> bytes:
    """`canonical_json(to_document(graph))`, built one edge at a time.

    The operator needs only these bytes; 50,000 edges as dicts take five times their JSON.
    """
    head = _document_head(graph, graph_ref)
    out = bytearray(b"{")
    for position, key in enumerate(sorted([*head, "edges"])):
        out += b'%s"%s":' % (b"," if position else b"", key.encode())
        if key != "edges":
            out += orjson.dumps(head[key], option=orjson.OPT_SORT_KEYS)
            continue
        out += b"["
        for index, edge in enumerate(_iter_edge_documents(graph)):
            if index:
                out += b","
            out += orjson.dumps(edge, option=orjson.OPT_SORT_KEYS)
        out += b"]"
    out += b"}"
    return bytes(out)


def _document_head(graph: Graph, graph_ref: tuple[str, str] | None) -> Document:
    """Everything of the document but its edges."""
    summary = graph.summary()
    return {
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
        "nodes": [_node_document(graph.nodes[name]) for name in sorted(graph.nodes)],
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
        graph = Graph(
            nodes=nodes,
            edges=edges,
            cycles=_cycles_from_document(doc, "cycles", "cyclePaths", edges),
            acknowledged_cycles=_cycles_from_document(
                doc, "acknowledgedCycles", "acknowledgedCyclePaths", edges
            ),
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
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise SnapshotError(f"malformed snapshot document: {error!r}") from error
    dangling = next(((s, t) for s, t in edges if s not in nodes or t not in nodes), None)
    if dangling is not None:
        raise SnapshotError(f"malformed snapshot document: edge {dangling} names a missing node")
    return graph


def _cycles_from_document(
    doc: Mapping[str, Any], members_key: str, paths_key: str, edges: Mapping[tuple[str, str], Edge]
) -> list[Cycle]:
    """The cycles of a document; one written before it held paths gets them from its edges."""
    members = [tuple(sorted(c)) for c in doc[members_key]]
    paths = doc.get(paths_key)
    if paths is not None:
        cycles = [Cycle(m, tuple(p)) for m, p in zip(members, paths, strict=True)]
        if any(not c.path or not set(c.path) <= set(c.members) for c in cycles):
            raise ValueError(f"{paths_key} do not match {members_key}")
        return cycles
    callees: dict[str, list[str]] = {}
    for (source, target), edge in edges.items():
        if not edge.stale:
            callees.setdefault(source, []).append(target)
    return [find_cycle(m, callees) for m in members]


def observations_from_document(doc: Mapping[str, Any]) -> list[Observation]:
    """The observed (non-manual) sightings, so a restarted operator keeps its lastSeen history."""
    graph = graph_from_document(doc)
    return [
        Observation(
            edge.source,
            edge.target,
            kind,
            sighting.last_seen,
            sighting.attributes,
            sighting.traffic,
        )
        for edge in graph.edges.values()
        for kind, sighting in edge.sources.items()
        if kind != SourceKind.MANUAL and sighting.last_seen is not None
    ]


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


def _node_document(node: Node) -> dict[str, Any]:
    return {
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


def _node_from_document(n: Mapping[str, Any]) -> Node:
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
        sightings = sorted(edge.sources.values(), key=lambda s: (-s.confidence, s.kind.value))
        sources = []
        for sighting in sightings:
            source: dict[str, Any] = {
                "kind": sighting.kind.value,
                "confidence": sighting.confidence,
                "lastSeen": moment(sighting.last_seen),
            }
            # The edge already shows the winner's attributes and the freshest traffic.
            if sighting.attributes != winner.attributes:
                source["attributes"] = rendered(sighting.attributes)
            if sighting.traffic is not None and sighting.traffic != traffic:
                source["traffic"] = _traffic_document(sighting.traffic)
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
    return Edge(e["source"], e["target"], {s.kind: s for s in sightings}, stale=e["stale"])


def _sighting_from_document(
    s: Mapping[str, Any], edge_attributes: EdgeAttributes, edge_traffic: Traffic | None
) -> Sighting:
    kind = SourceKind(s["kind"])
    attributes, traffic = s.get("attributes"), s.get("traffic")
    if traffic is not None:
        own_traffic: Traffic | None = _traffic_from_document(traffic)
    else:
        own_traffic = None if kind == SourceKind.MANUAL else edge_traffic
    return Sighting(
        kind=kind,
        last_seen=None if s["lastSeen"] is None else _parse_timestamp(s["lastSeen"]),
        attributes=edge_attributes if attributes is None else _attributes_from_document(attributes),
        traffic=own_traffic,
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


# --- the ConfigMap encoding ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigMapPayload:
    """One ConfigMap to write; its namespace and owner are for the writer to set."""

    name: str
    data: dict[str, str] = field(default_factory=dict)
    binary_data: dict[str, str] = field(default_factory=dict)  # base64, as the API expects
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """The ConfigMap body. Write it whole (create or replace): a merge patch would keep
        keys of the previous encoding, and `decode` refuses a ConfigMap holding two."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
            },
            "data": dict(self.data),
            "binaryData": dict(self.binary_data),
        }


@dataclass(frozen=True, slots=True)
class SnapshotWrite:
    """What to write for one revision of a snapshot.

    Write every shard first and the index last, then delete `stale_shards`: a reader that
    fetched the previous index still finds its shards (their names carry the revision), and
    a reader never sees an index whose shards are not all written yet.
    """

    revision: str
    bytes: int  # size of the canonical JSON document
    index: ConfigMapPayload
    shards: list[ConfigMapPayload]

    @property
    def in_write_order(self) -> list[ConfigMapPayload]:
        return [*self.shards, self.index]


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """The bytes the revision hashes: compact UTF-8 JSON with sorted keys."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def revision_of(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()[:16]


def snapshot_label_value(name: str) -> str:
    """The value of the snapshot label for snapshot `name` (label values stop at 63 characters)."""
    return _fit(name, _LABEL_VALUE_LIMIT)


def snapshot_selector(name: str) -> str:
    """The label selector of every ConfigMap of snapshot `name`, for `kubectl get cm -l`."""
    return f"{SNAPSHOT_LABEL}={snapshot_label_value(name)}"


@without_gc
def encode(
    doc: Mapping[str, Any],
    name: str,
    *,
    gzip_threshold: int = 256 * 1024,
    max_part_bytes: int = 700_000,
) -> SnapshotWrite:
    """The ConfigMaps holding `doc` as snapshot `name`.

    The defaults keep every ConfigMap under the API's 1 MiB: base64 makes 700,000 bytes
    into 933,336 characters, which leaves room for the metadata.
    """
    return encode_json(
        canonical_json(doc), name, gzip_threshold=gzip_threshold, max_part_bytes=max_part_bytes
    )


@without_gc
def encode_json(
    canonical: bytes,
    name: str,
    *,
    gzip_threshold: int = 256 * 1024,
    max_part_bytes: int = 700_000,
) -> SnapshotWrite:
    """`encode` for a document already in canonical JSON (see `graph_json`)."""
    revision = revision_of(canonical)

    def payload(
        payload_name: str, data: dict[str, str], binary_data: dict[str, str] | None = None
    ) -> ConfigMapPayload:
        return ConfigMapPayload(
            name=payload_name,
            data=data,
            binary_data=binary_data or {},
            labels={SNAPSHOT_LABEL: snapshot_label_value(name)},
            annotations={REVISION_ANNOTATION: revision},
        )

    if len(canonical) <= gzip_threshold:
        index = payload(name, {PLAIN_KEY: canonical.decode(), REVISION_KEY: revision})
        return SnapshotWrite(revision, len(canonical), index, [])

    # mtime=0 so the same document always gives the same bytes; level 9 would take 2.5 times
    # as long for a fifth fewer bytes.
    packed = gzip.compress(canonical, compresslevel=6, mtime=0)
    if len(packed) <= max_part_bytes:
        index = payload(name, {REVISION_KEY: revision}, {GZIP_KEY: _b64(packed)})
        return SnapshotWrite(revision, len(canonical), index, [])

    parts = [packed[i : i + max_part_bytes] for i in range(0, len(packed), max_part_bytes)]
    shards = [
        payload(
            shard_name(name, revision, i),
            {REVISION_KEY: revision, PART_NUMBER_KEY: str(i)},
            {PART_KEY: _b64(part)},
        )
        for i, part in enumerate(parts)
    ]
    listing = {
        "schemaVersion": SCHEMA_VERSION,
        "revision": revision,
        "encoding": "gzip",
        "bytes": len(canonical),
        "shards": [
            {"name": shard.name, "sha256": hashlib.sha256(part).hexdigest(), "bytes": len(part)}
            for shard, part in zip(shards, parts, strict=True)
        ],
    }
    index = payload(name, {INDEX_KEY: json.dumps(listing, sort_keys=True), REVISION_KEY: revision})
    return SnapshotWrite(revision, len(canonical), index, shards)


def shard_name(name: str, revision: str, part: int) -> str:
    return f"{_fit(name, _SHARD_PREFIX_LIMIT)}-{revision[:10]}-{part}"


def stale_shards(existing_names: Iterable[str], write: SnapshotWrite, name: str) -> list[str]:
    """Shard ConfigMaps of snapshot `name` that `write` no longer uses: delete them after
    the index is written."""
    pattern = re.compile(re.escape(_fit(name, _SHARD_PREFIX_LIMIT)) + r"-[0-9a-f]{10}-[0-9]+")
    current = {shard.name for shard in write.shards}
    return sorted(n for n in existing_names if pattern.fullmatch(n) and n not in current)


def _fit(name: str, limit: int) -> str:
    """`name`, or when longer than `limit` its start and a hash, so distinct names stay distinct."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - 17]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- reading it back ----------------------------------------------------------------------


@without_gc
def decode(
    config_map: Mapping[str, Any], fetch_shard: Callable[[str], Mapping[str, Any] | None]
) -> Document:
    """The document in snapshot ConfigMap `config_map`; `fetch_shard(name)` returns a shard
    ConfigMap or None when it does not exist.

    Every byte is checked against the revision, so a half-written or hand-edited snapshot
    raises SnapshotError instead of being read; read the ConfigMap again and retry.
    """
    name = _name_of(config_map)
    data, binary_data = _contents(config_map)
    places = ((INDEX_KEY, data), (GZIP_KEY, binary_data), (PLAIN_KEY, data))
    encodings = [key for key, place in places if key in place]
    if len(encodings) != 1:
        found = ", ".join(encodings) or "none"
        raise SnapshotError(
            f"ConfigMap {name} is not a snapshot: it must hold exactly one of "
            f"{INDEX_KEY}, {GZIP_KEY}, {PLAIN_KEY} (found: {found})"
        )
    revision = data.get(REVISION_KEY)
    if not revision:
        raise SnapshotError(f"ConfigMap {name} has no {REVISION_KEY!r} key")

    if INDEX_KEY in data:
        canonical = _gunzip(_read_shards(name, data[INDEX_KEY], revision, fetch_shard), name)
    elif GZIP_KEY in binary_data:
        canonical = _gunzip(_unb64(binary_data[GZIP_KEY], name), name)
    else:
        canonical = data[PLAIN_KEY].encode()
    if revision_of(canonical) != revision:
        raise SnapshotError(
            f"ConfigMap {name}: content does not match revision {revision} "
            "(half-written or edited); read it again"
        )
    doc: Document = orjson.loads(canonical)
    check_schema_version(doc)
    return doc


def _read_shards(
    name: str,
    index_json: str,
    revision: str,
    fetch_shard: Callable[[str], Mapping[str, Any] | None],
) -> bytes:
    try:
        listing = json.loads(index_json)
        entries = [(s["name"], s["sha256"], s["bytes"]) for s in listing["shards"]]
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"ConfigMap {name}: malformed {INDEX_KEY}: {error!r}") from error
    check_schema_version(listing)
    if listing.get("revision") != revision or listing.get("encoding") != "gzip":
        raise SnapshotError(
            f"ConfigMap {name}: {INDEX_KEY} describes revision {listing.get('revision')!r} "
            f"encoded {listing.get('encoding')!r}, expected revision {revision} encoded 'gzip'"
        )
    parts = []
    for i, (part_name, sha256, size) in enumerate(entries):
        shard = fetch_shard(part_name)
        if shard is None:
            raise SnapshotError(
                f"shard {part_name} ({i + 1} of {len(entries)}) of snapshot {name} revision "
                f"{revision} is missing (being rewritten?); read the snapshot again"
            )
        shard_data, shard_binary = _contents(shard)
        number = shard_data.get(PART_NUMBER_KEY)
        if shard_data.get(REVISION_KEY) != revision or number != str(i):
            raise SnapshotError(
                f"shard {part_name} holds part {number!r} of revision "
                f"{shard_data.get(REVISION_KEY)!r}, expected part {i} of revision {revision}"
            )
        part = _unb64(shard_binary.get(PART_KEY, ""), part_name)
        if len(part) != size or hashlib.sha256(part).hexdigest() != sha256:
            raise SnapshotError(f"shard {part_name} is corrupt: its sha256 or size differs")
        parts.append(part)
    return b"".join(parts)


def _name_of(config_map: Mapping[str, Any]) -> str:
    return str((config_map.get("metadata") or {}).get("name", "<unnamed>"))


def _contents(config_map: Mapping[str, Any]) -> tuple[Mapping[str, str], Mapping[str, str]]:
    # The kubernetes client's to_dict() spells it binary_data; the API spells it binaryData.
    binary = config_map.get("binaryData") or config_map.get("binary_data") or {}
    return config_map.get("data") or {}, binary


def _unb64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SnapshotError(f"ConfigMap {name}: invalid base64: {error}") from error


def _gunzip(packed: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as error:
        raise SnapshotError(f"ConfigMap {name}: invalid gzip: {error}") from error


def load_snapshot_file(path: str | Path) -> Document:
    """A snapshot document from a file holding the document itself, one ConfigMap
    (`kubectl get cm NAME -o yaml`), or a List of the index and its shards
    (`kubectl get cm -l graph.slo-engine.io/snapshot=NAME -o yaml`), in JSON or YAML."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SnapshotError(f"{path}: not a text file: {error}") from error
    try:
        content = json.loads(text)
    except ValueError:
        try:
            # The C loader: kubectl's YAML of a big snapshot is megabytes of base64.
            content = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as error:
            raise SnapshotError(f"{path}: neither JSON nor YAML: {error}") from error
    if not isinstance(content, dict):
        raise SnapshotError(f"{path}: expected a snapshot document, a ConfigMap or a List")

    if "schemaVersion" in content:
        check_schema_version(content)
        return content
    if content.get("kind") == "ConfigMap":
        return decode(content, lambda shard: _missing_shard(path, content, shard))
    if content.get("kind") in ("List", "ConfigMapList"):
        return _decode_list(path, content.get("items") or [])
    raise SnapshotError(f"{path}: expected a snapshot document, a ConfigMap or a List")


def _decode_list(path: str | Path, items: list[Mapping[str, Any]]) -> Document:
    by_name = {_name_of(item): item for item in items}
    indexes = [item for item in items if _holds_snapshot(item)]
    if len(indexes) != 1:
        raise SnapshotError(
            f"{path}: expected one snapshot in the List, found {len(indexes)}; "
            f"select one with -l {SNAPSHOT_LABEL}=NAME"
        )
    return decode(indexes[0], by_name.get)


def _holds_snapshot(config_map: Mapping[str, Any]) -> bool:
    data, binary_data = _contents(config_map)
    return INDEX_KEY in data or PLAIN_KEY in data or GZIP_KEY in binary_data


def _missing_shard(path: str | Path, config_map: Mapping[str, Any], shard: str) -> NoReturn:
    name = _name_of(config_map)
    raise SnapshotError(
        f"{path}: snapshot {name} is sharded (shard {shard} is not in the file); save it with "
        f"kubectl get cm -l {snapshot_selector(name)} -o yaml"
    )

"""The snapshot document and its ConfigMap encoding: round trips, integrity, size limits."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicegraph import snapshot, snapshot_configmaps, snapshot_files
from servicegraph.graph import (
    EdgeAttributes,
    Graph,
    Observation,
    Retry,
    ServiceDeclaration,
    SourceKind,
    Traffic,
    analyse,
)
from servicegraph.snapshot import SnapshotError
from servicegraph.snapshot_configmaps import SnapshotWrite

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MIB = 1024 * 1024
DEFAULTS = EdgeAttributes()
GRPC = EdgeAttributes("sync", "hard", "grpc", 500, Retry(3, 100, 2.0))
REF = ("shop", "checkout-graph")


def declare(
    name: str,
    *targets: str,
    namespace: str = "shop",
    team: str | None = None,
    tier: str | None = None,
    attributes: EdgeAttributes = DEFAULTS,
) -> ServiceDeclaration:
    depends_on = tuple((target, attributes) for target in targets)
    return ServiceDeclaration(name, namespace, name, team, tier, depends_on)


def observe(
    source: str,
    target: str,
    ago: timedelta,
    *,
    kind: SourceKind = SourceKind.OTEL,
    attributes: EdgeAttributes = DEFAULTS,
    traffic: Traffic | None = None,
) -> Observation:
    return Observation(source, target, kind, NOW - ago, attributes, traffic)


DECLARATIONS = [
    declare("checkout", "payment", "cart", team="commerce", tier="critical", attributes=GRPC),
    declare("payment", "ledger", team="payments", tier="critical"),
    declare("ledger", "payment", team="payments"),
    declare("cart", team="commerce"),
    declare("cart", namespace="legacy", team="old-commerce"),  # a conflict
    declare("a", "b"),
    declare("b", "a"),
]
OBSERVATIONS = [
    observe(
        "checkout",
        "payment",
        timedelta(minutes=5),
        attributes=EdgeAttributes(protocol="grpc"),
        traffic=Traffic(12.5, 0.01, 42.0, ""),
    ),
    observe(
        "checkout",
        "payment",
        timedelta(hours=1),
        kind=SourceKind.SERVICE_MESH,
        traffic=Traffic(11.0, 0.0, None, ""),
    ),
    observe("cart", "redis", timedelta(minutes=1), traffic=Traffic(100.0, 0.0, 1.5, "database")),
    observe("search", "checkout", timedelta(minutes=2)),  # undeclared
    observe("legacy", "checkout", timedelta(days=30)),  # stale
    observe(
        "checkout", "stripe", timedelta(minutes=3), traffic=Traffic(1.0, 0.2, 300.0, "virtual_node")
    ),
    # Not UTC: the document still says Z.
    Observation(
        "payment",
        "ledger",
        SourceKind.OTEL,
        datetime(2026, 5, 1, 14, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2))),
    ),
]


def sample_graph(now: datetime = NOW) -> Graph:
    return analyse(
        DECLARATIONS, OBSERVATIONS, now=now, acknowledged_cycles=[["a", "b"]], observing=True
    )


def sample_document() -> dict[str, Any]:
    return snapshot.to_document(sample_graph(), graph_ref=REF)


def edge(doc: dict[str, Any], source: str, target: str) -> dict[str, Any]:
    return next(e for e in doc["edges"] if (e["source"], e["target"]) == (source, target))


def node(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in doc["nodes"] if n["name"] == name)


# --- the document -------------------------------------------------------------------------


def test_document_holds_the_analysed_graph() -> None:
    doc = sample_document()

    assert doc["schemaVersion"] == 1
    assert doc["graph"] == {"namespace": "shop", "name": "checkout-graph"}
    assert doc["summary"] == {
        "services": 10,
        "edges": 10,
        "declaredEdges": 6,
        "observedEdges": 6,
        "staleEdges": 1,
        "cycles": 1,
        "undeclared": 3,
        "unobserved": 4,
    }
    assert doc["cycles"] == [["ledger", "payment"]]
    assert doc["acknowledgedCycles"] == [["a", "b"]]
    assert {"source": "search", "target": "checkout"} in doc["drift"]["undeclared"]
    assert {"source": "checkout", "target": "cart"} in doc["drift"]["unobserved"]
    assert doc["conflicts"] == [
        {
            "service": "cart",
            "winner": {"namespace": "legacy", "name": "cart"},
            "losers": [{"namespace": "shop", "name": "cart"}],
        }
    ]
    assert [n["name"] for n in doc["nodes"]] == sorted(n["name"] for n in doc["nodes"])
    assert [(e["source"], e["target"]) for e in doc["edges"]] == sorted(
        (e["source"], e["target"]) for e in doc["edges"]
    )


def test_nodes_say_who_declared_them_and_what_they_are() -> None:
    doc = sample_document()

    assert node(doc, "checkout") == {
        "name": "checkout",
        "declared": True,
        "namespace": "shop",
        "object": "checkout",
        "team": "commerce",
        "tier": "critical",
        "role": "service",
        "blastRadius": 1,  # search; the stale caller legacy does not count
        "inCycle": False,
        "slo": {
            # payment's availability comes from the mesh (0.9 beats OpenTelemetry's 0.7);
            # OpenTelemetry's newest poll (cart -> redis) did not see checkout -> payment.
            "availability": None,  # nobody observed calling checkout in the last poll
            "dependencyCeiling": 1.0,
            "weakestDependency": "payment",
            "unknownDependencies": ["cart", "stripe"],
            "impact": {"fails": ["search"], "failsCount": 1, "degrades": [], "degradesCount": 0},
            "syncDepth": 2,
            "syncNext": "cart",  # then redis: the chain is checkout -> cart -> redis
        },
    }
    assert node(doc, "redis")["declared"] is False
    assert node(doc, "redis")["role"] == "database"
    assert node(doc, "redis")["namespace"] is None
    assert node(doc, "stripe")["role"] == "virtual"
    assert node(doc, "payment")["inCycle"] is True


def test_edges_keep_every_source_and_the_winning_attributes() -> None:
    payment = edge(sample_document(), "checkout", "payment")

    assert payment["declared"] and payment["observed"] and not payment["stale"]
    assert payment["confidence"] == 1.0
    assert payment["attributes"] == {
        "communicationMode": "sync",
        "criticality": "hard",
        "protocol": "grpc",
        "timeoutMs": 500,
        "retry": {"maxRetries": 3, "backoffMs": 100, "backoffMultiplier": 2.0},
    }
    assert [(s["kind"], s["confidence"], s["lastSeen"]) for s in payment["sources"]] == [
        ("manual", 1.0, None),
        ("service-mesh", 0.9, "2026-05-01T11:00:00Z"),
        ("otel", 0.7, "2026-05-01T11:55:00Z"),
    ]
    otel = payment["sources"][2]
    assert otel["attributes"] == {
        "communicationMode": "sync",
        "criticality": "hard",
        "protocol": "grpc",
    }
    assert payment["traffic"] == {  # the freshest report
        "requestRate": 12.5,
        "errorRate": 0.01,
        "p95LatencyMs": 42.0,
        "connectionType": "",
    }
    # A source repeats neither the edge's attributes nor its traffic, only what differs.
    assert "attributes" not in payment["sources"][0] and "traffic" not in otel
    assert "p95LatencyMs" not in payment["sources"][1]["traffic"]  # None is left out


def test_edges_without_traffic_have_none_and_times_are_utc() -> None:
    doc = sample_document()

    assert "traffic" not in edge(doc, "checkout", "cart")
    assert edge(doc, "legacy", "checkout")["stale"] is True
    assert edge(doc, "payment", "ledger")["sources"][1]["lastSeen"] == "2026-05-01T12:00:00.250000Z"


def test_document_is_plain_json() -> None:
    doc = sample_document()

    assert json.loads(json.dumps(doc)) == doc


def test_document_round_trips_through_a_graph() -> None:
    doc = sample_document()

    rebuilt = snapshot.graph_from_document(doc)

    assert snapshot.to_document(rebuilt, graph_ref=REF) == doc
    unnamed = snapshot.to_document(sample_graph())
    assert snapshot.to_document(snapshot.graph_from_document(unnamed)) == unnamed


def test_queries_work_on_a_snapshot() -> None:
    original = sample_graph()
    rebuilt = snapshot.graph_from_document(snapshot.to_document(original))

    for service, direction, depth in [("checkout", "downstream", 2), ("payment", "both", 3)]:
        expected = original.query(service, direction, depth)
        got = rebuilt.query(service, direction, depth)
        assert list(got.nodes) == list(expected.nodes)
        assert list(got.edges) == list(expected.edges)
    assert ("legacy", "checkout") in rebuilt.query("checkout", "upstream", include_stale=True).edges


def test_observations_reload_so_a_restart_keeps_history() -> None:
    doc = sample_document()

    reloaded = snapshot.observations_from_document(doc)

    assert all(o.kind != SourceKind.MANUAL for o in reloaded)
    assert {(o.key, o.last_seen) for o in reloaded} == {(o.key, o.last_seen) for o in OBSERVATIONS}
    after_restart = analyse(
        DECLARATIONS, reloaded, now=NOW, acknowledged_cycles=[["a", "b"]], observing=True
    )
    assert snapshot.to_document(after_restart, graph_ref=REF) == doc


def test_document_depends_on_content_not_on_the_clock() -> None:
    first = snapshot_configmaps.encode(snapshot.to_document(sample_graph(NOW)), "g")
    later = snapshot_configmaps.encode(
        snapshot.to_document(sample_graph(NOW + timedelta(seconds=30))), "g"
    )

    assert first.revision == later.revision


def test_naive_times_are_refused() -> None:
    naive = Observation("a", "z", SourceKind.OTEL, datetime(2026, 5, 1, 12))
    graph = analyse([], [naive], now=datetime(2026, 5, 1, 12))

    with pytest.raises(ValueError, match="no time zone"):
        snapshot.to_document(graph)


def test_unknown_schema_version_is_refused() -> None:
    doc = sample_document() | {"schemaVersion": 2}

    with pytest.raises(SnapshotError, match="schemaVersion 2 is not supported"):
        snapshot.graph_from_document(doc)
    with pytest.raises(SnapshotError, match="schemaVersion 2"):
        snapshot_configmaps.decode(
            snapshot_configmaps.encode(doc, "g").index.manifest(), lambda name: None
        )


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: doc["edges"][0].pop("sources"),
        lambda doc: doc["edges"][0].update(sources=[]),
        lambda doc: doc["edges"][0]["sources"][0].update(kind="carrier-pigeon"),
        lambda doc: doc["edges"][0]["sources"][-1].update(lastSeen="yesterday"),
        lambda doc: doc["nodes"].pop(0),
    ],
    ids=["no-sources", "empty-sources", "unknown-kind", "bad-time", "dangling-edge"],
)
def test_malformed_documents_are_refused(damage: Any) -> None:
    doc = json.loads(json.dumps(sample_document()))
    damage(doc)

    with pytest.raises(SnapshotError, match="malformed snapshot document"):
        snapshot.graph_from_document(doc)


# --- the ConfigMap encoding ---------------------------------------------------------------


def shards_by_name(write: SnapshotWrite) -> dict[str, dict[str, Any]]:
    return {shard.name: shard.manifest() for shard in write.shards}


def decode(write: SnapshotWrite) -> dict[str, Any]:
    return snapshot_configmaps.decode(write.index.manifest(), shards_by_name(write).get)


def sharded(doc: dict[str, Any] | None = None) -> SnapshotWrite:
    return snapshot_configmaps.encode(
        doc or sample_document(), "g", gzip_threshold=0, max_part_bytes=300
    )


def test_small_snapshot_is_plain_json() -> None:
    doc = sample_document()

    write = snapshot_configmaps.encode(doc, "checkout-graph")

    assert write.shards == []
    assert write.index.name == "checkout-graph"
    assert set(write.index.data) == {"snapshot.json", "revision"}
    assert write.index.binary_data == {}
    assert json.loads(write.index.data["snapshot.json"]) == doc
    assert write.bytes == len(write.index.data["snapshot.json"].encode())
    assert decode(write) == doc


def test_large_snapshot_is_gzipped() -> None:
    doc = sample_document()

    write = snapshot_configmaps.encode(doc, "checkout-graph", gzip_threshold=100)

    assert write.shards == []
    assert set(write.index.data) == {"revision"}
    assert set(write.index.binary_data) == {"snapshot.json.gz"}
    assert decode(write) == doc


def test_larger_snapshot_is_sharded_and_the_index_lists_the_shards() -> None:
    doc = sample_document()

    write = sharded(doc)

    assert len(write.shards) > 2
    assert [s.name for s in write.shards] == [
        f"g-{write.revision[:10]}-{i}" for i in range(len(write.shards))
    ]
    for i, shard in enumerate(write.shards):
        assert shard.data == {"revision": write.revision, "partNumber": str(i)}
        assert len(base64.b64decode(shard.binary_data["part"])) <= 300
    index = json.loads(write.index.data["index.json"])
    assert index["schemaVersion"] == 1
    assert index["revision"] == write.revision == write.index.data["revision"]
    assert index["encoding"] == "gzip"
    assert index["bytes"] == write.bytes
    assert [s["name"] for s in index["shards"]] == [s.name for s in write.shards]
    assert write.in_write_order == [*write.shards, write.index]
    assert decode(write) == doc


@pytest.mark.parametrize(
    "write",
    [
        snapshot_configmaps.encode(sample_document(), "g"),
        snapshot_configmaps.encode(sample_document(), "g", gzip_threshold=0),
        sharded(),
    ],
    ids=["plain", "gzip", "sharded"],
)
def test_every_configmap_is_valid_and_carries_the_label_and_the_revision(
    write: SnapshotWrite,
) -> None:
    for payload in write.in_write_order:
        assert payload.labels == {"graph.slo-engine.io/snapshot": "g"}
        assert payload.annotations == {"graph.slo-engine.io/revision": write.revision}
        # The API server refuses other key characters, and a key in both data and binaryData.
        assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", key) for key in payload.data)
        assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", key) for key in payload.binary_data)
        assert not payload.data.keys() & payload.binary_data.keys()
    assert write.index.data["revision"] == write.revision


def test_revision_is_the_hash_of_the_canonical_document() -> None:
    doc = sample_document()
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    write = snapshot_configmaps.encode(doc, "g")

    assert write.revision == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert write.bytes == len(canonical.encode())


def test_revision_and_bytes_are_deterministic() -> None:
    doc = sample_document()
    reordered = json.loads(json.dumps(doc, sort_keys=True))  # same content, other key order

    assert sharded(doc) == sharded(reordered)
    assert sharded(doc).revision != sharded(doc | {"graph": None}).revision


def test_names_longer_than_kubernetes_allows_are_shortened_distinctly() -> None:
    long_a, long_b = "a" * 240 + "-graph", "a" * 240 + "-other"

    write_a, write_b = sharded_as(long_a), sharded_as(long_b)

    for write in (write_a, write_b):
        assert len(write.index.labels["graph.slo-engine.io/snapshot"]) <= 63
        assert all(len(shard.name) <= 253 for shard in write.shards)
        assert decode(write) == sample_document()
    assert write_a.index.labels != write_b.index.labels
    assert snapshot_configmaps.snapshot_selector(long_a) == (
        f"graph.slo-engine.io/snapshot={write_a.index.labels['graph.slo-engine.io/snapshot']}"
    )
    assert not {s.name for s in write_a.shards} & {s.name for s in write_b.shards}


def sharded_as(name: str) -> SnapshotWrite:
    return snapshot_configmaps.encode(sample_document(), name, gzip_threshold=0, max_part_bytes=300)


def corrupt(manifest: dict[str, Any]) -> None:
    part = bytearray(base64.b64decode(manifest["binaryData"]["part"]))
    part[len(part) // 2] ^= 0xFF
    manifest["binaryData"]["part"] = base64.b64encode(bytes(part)).decode()


def test_corrupt_shard_is_refused() -> None:
    write = sharded()
    shards = shards_by_name(write)
    corrupt(shards[write.shards[1].name])

    with pytest.raises(SnapshotError, match="corrupt"):
        snapshot_configmaps.decode(write.index.manifest(), shards.get)


def test_missing_shard_is_refused() -> None:
    write = sharded()
    shards = shards_by_name(write)
    del shards[write.shards[-1].name]

    with pytest.raises(SnapshotError, match=r"missing.*read the snapshot again"):
        snapshot_configmaps.decode(write.index.manifest(), shards.get)


def test_shard_of_another_revision_is_refused() -> None:
    # A reader that got the new index while a shard of the same name still held old bytes.
    write = sharded()
    shards = shards_by_name(write)
    shards[write.shards[0].name]["data"]["revision"] = "0" * 16

    with pytest.raises(SnapshotError, match="expected part 0 of revision"):
        snapshot_configmaps.decode(write.index.manifest(), shards.get)


def test_shards_in_the_wrong_order_are_refused() -> None:
    write = sharded()
    shards = shards_by_name(write)
    first, second = write.shards[0].name, write.shards[1].name
    shards[first], shards[second] = shards[second], shards[first]

    with pytest.raises(SnapshotError, match="expected part 0"):
        snapshot_configmaps.decode(write.index.manifest(), shards.get)


def test_index_of_another_revision_is_refused() -> None:
    write = sharded()
    index = write.index.manifest()
    index["data"]["revision"] = "0" * 16

    with pytest.raises(SnapshotError, match="expected revision 0000000000000000"):
        snapshot_configmaps.decode(index, shards_by_name(write).get)


@pytest.mark.parametrize("threshold", [10**9, 0], ids=["plain", "gzip"])
def test_content_that_does_not_match_its_revision_is_refused(threshold: int) -> None:
    doc = sample_document()
    manifest = snapshot_configmaps.encode(doc, "g", gzip_threshold=threshold).index.manifest()
    manifest["data"]["revision"] = snapshot_configmaps.encode(doc | {"graph": None}, "g").revision

    with pytest.raises(SnapshotError, match="does not match revision"):
        snapshot_configmaps.decode(manifest, lambda name: None)


def test_configmap_holding_two_encodings_is_refused() -> None:
    # What a merge patch from plain to gzip would leave behind.
    doc = sample_document()
    manifest = snapshot_configmaps.encode(doc, "g", gzip_threshold=0).index.manifest()
    manifest["data"]["snapshot.json"] = snapshot_configmaps.encode(doc, "g").index.data[
        "snapshot.json"
    ]

    with pytest.raises(SnapshotError, match="exactly one of"):
        snapshot_configmaps.decode(manifest, lambda name: None)


def test_configmap_from_the_kubernetes_client_is_read() -> None:
    # V1ConfigMap.to_dict() spells binaryData as binary_data.
    write = snapshot_configmaps.encode(sample_document(), "g", gzip_threshold=0)
    manifest = write.index.manifest()
    manifest["binary_data"] = manifest.pop("binaryData")

    assert snapshot_configmaps.decode(manifest, lambda name: None) == sample_document()


def configmap_size(manifest: dict[str, Any]) -> int:
    return len(json.dumps(manifest, separators=(",", ":")).encode())


def test_twenty_thousand_services_need_shards_and_round_trip() -> None:
    graph = synthetic_graph(services=20_000, calls_each=5)
    doc = snapshot.to_document(graph, graph_ref=("shop", "big"))

    write = snapshot_configmaps.encode(doc, "big-graph")

    assert len(graph.edges) >= 95_000
    assert write.shards, "a 20,000-service snapshot must be sharded"
    for payload in write.in_write_order:
        assert configmap_size(payload.manifest()) < MIB, payload.name
    assert decode(write) == doc


def synthetic_graph(services: int, calls_each: int) -> Graph:
    """Layered calls with some traffic; realistic names so gzip does not flatter the size."""
    teams = ("shop", "pay", "ship", "auth")
    names = [
        f"{teams[i % 4]}-{hashlib.sha1(str(i).encode()).hexdigest()[:6]}-{i}"
        for i in range(services)
    ]
    declarations = []
    observations = []
    for i, name in enumerate(names):
        targets = sorted({(i + 1 + (i * 7 + k * 131) % 997) % services for k in range(calls_each)})
        targets = [t for t in targets if t != i]
        declarations.append(
            declare(name, *(names[t] for t in targets), team=teams[i % 4], tier="high")
        )
        observations.append(
            observe(
                name,
                names[targets[0]],
                timedelta(seconds=i),
                traffic=Traffic(1.0 + i % 97, (i % 13) / 100, 5.0 + i % 211, ""),
            )
        )
    return analyse(declarations, observations, now=NOW, observing=True)


# --- files --------------------------------------------------------------------------------


def test_file_with_the_document_itself(tmp_path: Path) -> None:
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(sample_document()))

    assert snapshot_files.load_snapshot_file(path) == sample_document()


@pytest.mark.parametrize("threshold", [10**9, 0], ids=["plain", "gzip"])
@pytest.mark.parametrize("dump", [yaml.safe_dump, json.dumps], ids=["yaml", "json"])
def test_file_with_one_configmap(tmp_path: Path, threshold: int, dump: Any) -> None:
    manifest = snapshot_configmaps.encode(
        sample_document(), "g", gzip_threshold=threshold
    ).index.manifest()
    manifest["metadata"] |= {"namespace": "shop", "resourceVersion": "42"}  # as kubectl shows it
    path = tmp_path / "cm.yaml"
    path.write_text(dump(manifest))

    assert snapshot_files.load_snapshot_file(path) == sample_document()


def test_file_with_a_list_of_the_index_and_its_shards(tmp_path: Path) -> None:
    write = sharded()
    previous = sharded(sample_document() | {"graph": None})
    items = [p.manifest() for p in [*previous.shards, write.index, *write.shards[::-1]]]
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))

    assert snapshot_files.load_snapshot_file(path) == sample_document()


def test_file_with_a_sharded_configmap_alone_says_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text(yaml.safe_dump(sharded().index.manifest()))

    with pytest.raises(SnapshotError, match=r"kubectl get cm -l graph\.slo-engine\.io/snapshot=g"):
        snapshot_files.load_snapshot_file(path)


@pytest.mark.parametrize(
    "content",
    [b"just: [text", b"- a\n- list\n", b'{"kind": "Secret"}', b"\x1f\x8b\x08\x00\xff"],
    ids=["not-yaml", "not-a-mapping", "not-a-snapshot", "binary"],
)
def test_file_that_is_not_a_snapshot_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(content)

    with pytest.raises(SnapshotError):
        snapshot_files.load_snapshot_file(path)


def test_list_with_two_snapshots_is_refused(tmp_path: Path) -> None:
    items = [
        snapshot_configmaps.encode(sample_document(), name).index.manifest() for name in ("g", "h")
    ]
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    with pytest.raises(SnapshotError, match="found 2"):
        snapshot_files.load_snapshot_file(path)


def test_graph_json_is_the_canonical_json_of_the_document() -> None:
    """The operator builds the JSON an edge at a time; it must be the very same bytes."""
    graph = snapshot.graph_from_document(sample_document())
    for ref in (None, ("shop", "checkout-graph")):
        expected = snapshot_configmaps.canonical_json(snapshot.to_document(graph, graph_ref=ref))
        assert snapshot.graph_json(graph, graph_ref=ref) == expected

"""The snapshot ConfigMap end to end: ownership, content, rewrites, gzip and shards, and the
history it carries across restarts of the operator."""

from __future__ import annotations

import json
import random
import string
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from servicegraph import snapshot_configmaps, snapshot_files
from servicegraph.api import ServiceDependency
from servicegraph.graph import Observation, SourceKind
from tests.e2e.test_operator_support import (
    API,
    SDEP_STATUS_PATCHES,
    SG_STATUS_PATCHES,
    config_map_writes,
    counts,
    edges_of,
    graph,
    install,
    jsonpath,
    reasons,
    sdep,
    seed_snapshot,
    snapshot_config_maps,
    snapshot_document,
    writes,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import StartOperator

pytestmark = pytest.mark.e2e

ARGO_LABEL = "app.kubernetes.io/instance"
CM_UPDATES = ("", "configmaps", "", "update")


def test_snapshot_config_map(api: Api, start_operator: StartOperator, tmp_path: Path) -> None:
    install(api, "shop")
    main = graph("shop")
    main["metadata"]["labels"] = {ARGO_LABEL: "shop-app", "team": "sre"}
    custom = graph("custom", snapshot={"configMapName": "custom-snapshot"})
    custom["metadata"]["labels"] = {ARGO_LABEL: "shop-app"}
    a = sdep("a", "b")
    a["spec"]["dependsOn"] = [
        {"service": "b", "communicationMode": "async", "protocol": "grpc", "timeoutMs": 500}
    ]
    a["spec"].update(team="commerce", tier="high")
    api.kubectl.apply(main, custom, a, sdep("b", "c"))
    operator = start_operator()
    wait_for(lambda: counts(api, "shop") == "3/2", timeout=30)
    wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.snapshot.revision}"))
    wait_for(lambda: jsonpath(api, "sg", "custom", "{.status.snapshot.revision}"))

    sg = api.kubectl.get("sg", "shop", "-n", "shop")
    cm = api.kubectl.get("configmap", "shop-graph", "-n", "shop")
    assert cm["metadata"]["ownerReferences"] == [
        {
            "apiVersion": API,
            "kind": "ServiceGraph",
            "name": "shop",
            "uid": sg["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    # Argo CD's tracking label stays on the graph: on the ConfigMap it would get it pruned.
    assert cm["metadata"]["labels"] == {snapshot_configmaps.SNAPSHOT_LABEL: "shop-graph"}
    revision = sg["status"]["snapshot"]["revision"]
    assert cm["metadata"]["annotations"][snapshot_configmaps.REVISION_ANNOTATION] == revision
    assert set(cm["data"]) == {
        snapshot_configmaps.PLAIN_KEY,
        snapshot_configmaps.REVISION_KEY,
    }  # small: plain JSON
    assert sg["status"]["snapshot"]["configMap"] == "shop-graph"
    assert sg["status"]["snapshot"]["shards"] == 0
    assert sg["status"]["snapshot"]["bytes"] == len(
        cm["data"][snapshot_configmaps.PLAIN_KEY].encode()
    )

    # Its content, as a reader decodes it.
    doc = snapshot_document(api, "shop-graph")
    assert doc["graph"] == {"namespace": "shop", "name": "shop"}
    assert doc["summary"]["services"] == 3 and doc["summary"]["edges"] == 2
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert {name: n["declared"] for name, n in nodes.items()} == {"a": True, "b": True, "c": False}
    assert (nodes["a"]["team"], nodes["a"]["tier"], nodes["a"]["namespace"]) == (
        "commerce",
        "high",
        "shop",
    )
    assert nodes["c"]["blastRadius"] == 2  # b and a depend on it
    (ab,) = [e for e in doc["edges"] if (e["source"], e["target"]) == ("a", "b")]
    assert ab["attributes"] == {
        "communicationMode": "async",
        "criticality": "hard",
        "protocol": "grpc",
        "timeoutMs": 500,
    }
    assert [s["kind"] for s in ab["sources"]] == ["manual"]
    assert edges_of(doc) == {("a", "b"), ("b", "c")}
    saved = tmp_path / "snapshot.yaml"
    saved.write_text(api.kubectl("get", "configmap", "shop-graph", "-n", "shop", "-o", "yaml"))
    assert snapshot_files.load_snapshot_file(saved) == doc

    # spec.snapshot.configMapName names it; the default name is not used then.
    assert jsonpath(api, "sg", "custom", "{.status.snapshot.configMap}") == "custom-snapshot"
    assert snapshot_document(api, "custom-snapshot")["graph"]["name"] == "custom"
    assert snapshot_config_maps(api, "custom-graph") == []
    owner = api.kubectl.get("configmap", "custom-snapshot", "-n", "shop")["metadata"]
    assert ARGO_LABEL not in owner["labels"]

    # A recomputation that changes nothing writes nothing.
    cm_writes = config_map_writes(api)
    replaced = writes(api, CM_UPDATES)
    before = operator.idle_reconciliations("shop", "shop")
    api.kubectl("label", "sdep", "b", "-n", "shop", "unrelated=yes")
    operator.wait_for_reconciliation(before, "shop", "shop")
    assert config_map_writes(api) == cm_writes
    assert (
        jsonpath(api, "configmap", "shop-graph", "{.metadata.resourceVersion}")
        == (cm["metadata"]["resourceVersion"])
    )
    # A change rewrites both snapshots (replaced whole: keys of an older encoding must go).
    api.kubectl.apply(sdep("c", "d"))
    wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.snapshot.revision}") != revision)
    wait_for(lambda: writes(api, CM_UPDATES) == replaced + 2)
    assert edges_of(snapshot_document(api, "shop-graph")) == {("a", "b"), ("b", "c"), ("c", "d")}

    # Deleting the graph deletes its snapshot, and only its own.
    api.kubectl("delete", "servicegraph", "shop", "-n", "shop", "--timeout=20s")
    wait_for(lambda: snapshot_config_maps(api, "shop-graph") == [])
    assert len(snapshot_config_maps(api, "custom-snapshot")) == 1


def random_names(rng: random.Random, count: int, length: int = 240) -> list[str]:
    """Service names that gzip cannot shrink much (the longest are 253 characters)."""
    alphabet = string.ascii_letters + string.digits
    return [f"{i:04d}" + "".join(rng.choices(alphabet, k=length - 4)) for i in range(count)]


def test_big_snapshot_is_gzipped_and_sharded(api: Api, start_operator: StartOperator) -> None:
    """400 long random names per object: 2 objects give a gzipped snapshot, 8 a sharded one
    (the gzip exceeds a 700,000-byte part)."""
    install(api, "shop")
    rng = random.Random(7)
    targets = [random_names(rng, 400) for _ in range(8)]
    api.kubectl.apply(graph("big"), *(sdep(f"big-{i}", *targets[i]) for i in range(2)))
    start_operator()
    wait_for(lambda: counts(api, "big") == "802/800", timeout=30)

    cms = snapshot_config_maps(api, "big-graph")
    assert [cm["metadata"]["name"] for cm in cms] == ["big-graph"]
    (cm,) = cms
    assert set(cm["binaryData"]) == {snapshot_configmaps.GZIP_KEY}
    assert set(cm["data"]) == {snapshot_configmaps.REVISION_KEY}
    doc = snapshot_document(api, "big-graph")
    assert len(doc["edges"]) == 800
    assert jsonpath(api, "sg", "big", "{.status.snapshot.shards}") == "0"

    # Eight objects: past one part even gzipped, so sharded.
    started = time.monotonic()
    api.kubectl.apply(*(sdep(f"big-{i}", *targets[i]) for i in range(2, 8)))
    wait_for(lambda: counts(api, "big") == "3208/3200", timeout=20)
    first = check_sharded(api)
    assert len(snapshot_document(api, "big-graph")["edges"]) == 3200

    # A change: new shards under the new revision, the old ones deleted.
    api.kubectl.apply(sdep("big-7", *targets[7][:-1]))
    wait_for(lambda: counts(api, "big") == "3207/3199", timeout=20)
    second = wait_for(lambda: (names := check_sharded(api)) != first and names)
    assert not set(first) & set(second), "the new revision's shards have new names"
    doc = snapshot_document(api, "big-graph")
    assert len(doc["edges"]) == 3199
    assert ("big-7", targets[7][-1]) not in edges_of(doc)

    # Back to small: no shard is left behind.
    for i in range(1, 8):
        api.kubectl("delete", "sdep", f"big-{i}", "-n", "shop", "--wait=false")
    wait_for(lambda: counts(api, "big") == "401/400", timeout=20)
    wait_for(
        lambda: (
            [c["metadata"]["name"] for c in snapshot_config_maps(api, "big-graph")] == ["big-graph"]
        )
    )
    assert len(snapshot_document(api, "big-graph")["edges"]) == 400
    print(f"sharded phase took {time.monotonic() - started:.1f}s")


def check_sharded(api: Api) -> list[str]:
    """The shard names of a consistent sharded snapshot big-graph (AssertionError otherwise)."""
    sg = api.kubectl.get("sg", "big", "-n", "shop")
    cms = {cm["metadata"]["name"]: cm for cm in snapshot_config_maps(api, "big-graph")}
    index = cms.pop("big-graph")
    listing = json.loads(index["data"][snapshot_configmaps.INDEX_KEY])
    revision = index["data"][snapshot_configmaps.REVISION_KEY]
    assert sg["status"]["snapshot"]["revision"] == revision
    shards = [s["name"] for s in listing["shards"]]
    assert sorted(cms) == sorted(shards), "exactly the shards of the current revision"
    assert len(shards) == sg["status"]["snapshot"]["shards"] >= 2
    for i, name in enumerate(shards):
        assert name == snapshot_configmaps.shard_name("big-graph", revision, i)
        assert cms[name]["metadata"]["ownerReferences"][0]["uid"] == sg["metadata"]["uid"]
        assert len(cms[name]["binaryData"][snapshot_configmaps.PART_KEY]) < 1_000_000
    return shards


def test_restart_keeps_observed_history(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop")
    manifests = [sdep("a", "b"), sdep("c", "d"), sdep("d", "c")]
    api.kubectl.apply(graph("shop"), *manifests)
    # What an earlier run left: the same graph, plus a -> x seen in traces an hour ago.
    seen = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    seen_text = seen.isoformat().replace("+00:00", "Z")
    seed_snapshot(
        api,
        "shop",
        [ServiceDependency.model_validate(m).declaration() for m in manifests],
        [Observation("a", "x", SourceKind.OTEL, seen)],
    )

    def observed_edge() -> dict[str, Any]:
        doc = snapshot_document(api, "shop-graph")
        (edge,) = [e for e in doc["edges"] if (e["source"], e["target"]) == ("a", "x")]
        return edge

    first = start_operator()
    wait_for(lambda: counts(api, "shop") == "5/4", timeout=30)
    sg = api.kubectl.get("sg", "shop", "-n", "shop")["status"]
    assert (sg["observedEdges"], sg["declaredEdges"], sg["undeclared"], sg["drift"]) == (1, 3, 1, 1)
    assert sg["driftSamples"]["undeclared"] == [{"source": "a", "target": "x"}]
    assert sg["cycles"] == 1
    edge = observed_edge()
    assert (edge["declared"], edge["observed"], edge["stale"]) == (False, True, False)
    assert edge["sources"] == [{"kind": "otel", "confidence": 0.7, "lastSeen": seen_text}]
    assert "reloaded snapshot shop-graph" in first.log()

    # A restart: the same state, so nothing is written at all.
    assert first.stop() == 0
    counters = (
        config_map_writes(api),
        writes(api, SG_STATUS_PATCHES),
        writes(api, SDEP_STATUS_PATCHES),
    )
    second = start_operator()
    second.wait_for_reconciliation(0, "shop", "shop")
    assert observed_edge()["sources"][0]["lastSeen"] == seen_text
    assert counts(api, "shop") == "5/4"
    assert (
        config_map_writes(api),
        writes(api, SG_STATUS_PATCHES),
        writes(api, SDEP_STATUS_PATCHES),
    ) == counters
    # The cycle c <-> d was known to the earlier run: no restart warns about it again.
    assert reasons(api, "shop", "shop") == []

    # The history came through the reload: a change rewrites the snapshot, a -> x stays.
    revision = jsonpath(api, "sg", "shop", "{.status.snapshot.revision}")
    api.kubectl.apply(sdep("b", "e"))
    wait_for(lambda: counts(api, "shop") == "6/5")
    wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.snapshot.revision}") != revision)
    assert observed_edge()["sources"] == [
        {"kind": "otel", "confidence": 0.7, "lastSeen": seen_text}
    ]
    assert jsonpath(api, "sg", "shop", "{.status.observedEdges}") == "1"

"""The snapshot's published JSON Schema: generated from `snapshot_schema`, kept in
docs/snapshot.schema.json, and true of every document the engine writes (closed objects: a
field the schema does not know fails here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings

from servicegraph import snapshot
from servicegraph.api import DiscoverySource, SourceType
from servicegraph.graph import analyse
from servicegraph.inference import entries_of
from servicegraph.manifest_source import ManifestSource
from servicegraph.manifests import cluster_objects
from servicegraph.snapshot_schema import SNAPSHOT_ADAPTER, render_schema, snapshot_json_schema
from tests.support.real_manifests import real_manifest
from tests.unit.test_export import hostile_document, rich_document, sample_document
from tests.unit.test_graph_properties import RandomGraph, random_graphs

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "snapshot.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(
    snapshot_json_schema(), format_checker=jsonschema.FormatChecker()
)


def assert_valid(doc: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    assert not errors, errors[:5]
    SNAPSHOT_ADAPTER.validate_python(doc)  # the typed reader takes it too


def test_the_published_schema_is_the_generated_one() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == render_schema(), (
        "the snapshot's shape changed: run `make crds` to publish its schema"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(PUBLISHED.read_text()))


@pytest.mark.parametrize(
    "make", [sample_document, rich_document, hostile_document], ids=lambda f: f.__name__
)
def test_every_kind_of_document_is_valid(make: Any) -> None:
    assert_valid(make())


def test_a_snapshot_with_inferred_edges_and_unresolved_references_is_valid() -> None:
    boutique = real_manifest("online-boutique/kubernetes-manifests.yaml")
    source = ManifestSource()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    kubernetes = DiscoverySource(name="manifests", type=SourceType.KUBERNETES)
    source.observe(kubernetes, entries_of(cluster_objects([boutique], "shop")), now=now)
    graph = analyse([], source.observations, now=now)
    doc = snapshot.to_document(graph, graph_ref=("shop", "g"), sources=source.documents())
    assert doc["sources"][0]["unresolvedCount"] == 1
    assert any("evidence" in s for e in doc["edges"] for s in e["sources"])
    assert_valid(doc)


@settings(max_examples=100, deadline=None)
@given(random_graphs())
def test_random_graphs_make_valid_documents(graph: RandomGraph) -> None:
    assert_valid(snapshot.to_document(graph.analyse(), graph_ref=("ns", "g")))


def test_a_field_the_schema_does_not_know_is_refused() -> None:
    doc = sample_document()
    doc["edges"][0]["weight"] = 3
    assert not VALIDATOR.is_valid(doc)
    doc = sample_document()
    doc["nodes"][0]["tier"] = "platinum"
    assert not VALIDATOR.is_valid(doc)

"""Named sources: the spec's rules, sightings kept per source, and their trip through the
snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from servicegraph import snapshot, validation
from servicegraph.api import DiscoverySource, ServiceGraphSpec, SourceType
from servicegraph.graph import (
    EdgeAttributes,
    Evidence,
    NodeRole,
    Observation,
    ServiceDeclaration,
    SourceKind,
    Traffic,
    VirtualEnd,
    analyse,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
PROMETHEUS = {"url": "http://prometheus:9090"}
EVIDENCE = Evidence("Deployment", "a", "server", "env[B_ADDR]", "b:8080", "shop")


def graph_object(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "graph.slo-engine.io/v1alpha1",
        "kind": "ServiceGraph",
        "metadata": {"name": "g", "namespace": "shop"},
        "spec": spec,
    }


def refusals(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What the API server's rules (through `servicegraph check`) and the models say."""
    checked = [str(e) for e in validation.validate(graph_object(spec))]
    try:
        ServiceGraphSpec.model_validate(spec)
        modelled: list[str] = []
    except ValidationError as error:
        modelled = [e["msg"] for e in error.errors()]
    return checked, modelled


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"sources": [{"name": "m", "type": "istio"}]}, "prometheus is required"),
        (
            {"sources": [{"name": "k", "type": "kubernetes", "prometheus": PROMETHEUS}]},
            "not allowed for a kubernetes source",
        ),
        (
            {
                "sources": [
                    {"name": "m", "type": "linkerd", "prometheus": PROMETHEUS, "metricPrefix": "x"}
                ]
            },
            "metricPrefix is only for otel sources",
        ),
        ({"sources": [{"name": "manual", "type": "kubernetes"}]}, "'manual' names declared edges"),
        (
            {"sources": [{"name": "k", "type": "kubernetes"}, {"name": "j", "type": "kubernetes"}]},
            "at most one kubernetes source",
        ),
        (
            {
                "observed": {"prometheus": PROMETHEUS},
                "sources": [{"name": "otel", "type": "otel", "prometheus": PROMETHEUS}],
            },
            "spec.observed is the source named 'otel'",
        ),
        (
            {
                "sources": [
                    {"name": "m", "type": "istio", "prometheus": PROMETHEUS, "retention": "1h"}
                ]
            },
            "must be at least staleAfter",
        ),
        (
            {"sources": [{"name": "m", "type": "wasm", "prometheus": PROMETHEUS}]},
            "",
        ),
    ],
)
def test_the_api_server_and_the_models_refuse_the_same_sources(
    spec: dict[str, Any], message: str
) -> None:
    checked, modelled = refusals(spec)
    assert checked and modelled
    assert any(message in text for text in checked), checked
    assert any(message in text for text in modelled), modelled


def test_two_sources_of_one_name_are_refused() -> None:
    twice = {"sources": [{"name": "m", "type": "istio", "prometheus": PROMETHEUS}] * 2}
    checked, modelled = refusals(twice)
    assert any("Duplicate value" in text for text in checked)
    assert any("two sources named m" in text for text in modelled)


def test_sources_in_order_with_the_legacy_one_first() -> None:
    spec = ServiceGraphSpec.model_validate(
        {
            "observed": {"prometheus": PROMETHEUS, "interval": "1m"},
            "sources": [
                {"name": "mesh", "type": "istio", "prometheus": PROMETHEUS},
                {"name": "manifests", "type": "kubernetes"},
            ],
        }
    )
    sources = spec.all_sources()
    assert [(s.name, s.type, s.kind) for s in sources] == [
        ("otel", "otel", SourceKind.OTEL),
        ("mesh", "istio", SourceKind.SERVICE_MESH),
        ("manifests", "kubernetes", SourceKind.KUBERNETES),
    ]
    assert sources[0].interval == "1m" and sources[0].metric_prefix == "traces_service_graph"
    assert spec.retention_seconds(sources[1]) == 720 * 3600
    assert (
        validation.validate(graph_object(spec.model_dump(by_alias=True, exclude_none=True))) == []
    )


def seen(
    source: str, target: str, name: str, kind: SourceKind, ago: int = 0, **extra: Any
) -> Observation:
    return Observation(
        source, target, kind, NOW - timedelta(seconds=ago), source_name=name, **extra
    )


def test_two_sources_of_one_kind_keep_their_own_sightings() -> None:
    graph = analyse(
        [ServiceDeclaration("a", depends_on=(("b", EdgeAttributes()),))],
        [
            seen("a", "b", "east", SourceKind.SERVICE_MESH, 60, traffic=Traffic(2, 0)),
            seen("a", "b", "west", SourceKind.SERVICE_MESH, 0, traffic=Traffic(3, 0)),
            seen("a", "b", "manifests", SourceKind.KUBERNETES, 0, evidence=(EVIDENCE,)),
        ],
        now=NOW,
        observing=True,
    )
    edge = graph.edges[("a", "b")]
    assert set(edge.sources) == {"manual", "east", "west", "manifests"}
    assert edge.traffic == Traffic(3, 0)  # the freshest figures
    assert graph.unobserved == []


def test_the_winner_among_equals_is_the_freshest_whatever_the_order() -> None:
    mesh = [
        seen("a", "b", "east", SourceKind.SERVICE_MESH, 60, attributes=EdgeAttributes("async")),
        seen("a", "b", "west", SourceKind.SERVICE_MESH, 0, attributes=EdgeAttributes("sync")),
    ]
    for observations in (mesh, mesh[::-1]):
        edge = analyse([], observations, now=NOW).edges[("a", "b")]
        assert edge.winner.name == "west" and edge.attributes.communication_mode == "sync"


def test_a_virtual_end_is_a_virtual_node_unless_declared() -> None:
    graph = analyse(
        [ServiceDeclaration("frontend")],
        [
            seen("unknown", "frontend", "mesh", SourceKind.SERVICE_MESH, virtual=VirtualEnd.SOURCE),
            seen(
                "frontend",
                "PassthroughCluster",
                "mesh",
                SourceKind.SERVICE_MESH,
                virtual=VirtualEnd.TARGET,
            ),
        ],
        now=NOW,
    )
    assert graph.nodes["unknown"].role == NodeRole.VIRTUAL
    assert graph.nodes["PassthroughCluster"].role == NodeRole.VIRTUAL
    assert graph.nodes["frontend"].role == NodeRole.SERVICE


def test_names_evidence_and_virtual_ends_survive_the_snapshot() -> None:
    observations = [
        seen("a", "b", "manifests", SourceKind.KUBERNETES, evidence=(EVIDENCE,)),
        seen("a", "b", "otel", SourceKind.OTEL, traffic=Traffic(1, 0)),
        seen("unknown", "a", "mesh", SourceKind.SERVICE_MESH, virtual=VirtualEnd.SOURCE),
    ]
    graph = analyse([], observations, now=NOW)
    doc = snapshot.to_document(graph)
    edge = next(e for e in doc["edges"] if (e["source"], e["target"]) == ("a", "b"))
    assert [(s["kind"], s.get("name")) for s in edge["sources"]] == [
        ("otel", None),  # named as its kind: the name is left out, as older snapshots had it
        ("kubernetes", "manifests"),
    ]
    assert edge["sources"][1]["evidence"] == [
        {
            "kind": "Deployment",
            "name": "a",
            "namespace": "shop",
            "container": "server",
            "field": "env[B_ADDR]",
            "value": "b:8080",
        }
    ]

    def kept(obs: Observation) -> tuple[Any, ...]:
        return (obs.key, obs.kind, obs.last_seen, obs.evidence, obs.virtual, obs.traffic)

    restored = snapshot.observations_from_document(doc)
    assert sorted(map(kept, restored)) == sorted(map(kept, observations))
    assert snapshot.to_document(snapshot.graph_from_document(doc)) == doc


def test_evidence_is_part_of_the_topology() -> None:
    before = analyse(
        [], [seen("a", "b", "manifests", SourceKind.KUBERNETES, evidence=(EVIDENCE,))], now=NOW
    )
    other = Evidence("Deployment", "a", "server", "env[B_URL]", "http://b", "shop")
    after = analyse(
        [], [seen("a", "b", "manifests", SourceKind.KUBERNETES, evidence=(other,))], now=NOW
    )
    moved = analyse(
        [], [seen("a", "b", "manifests", SourceKind.KUBERNETES, 30, evidence=(EVIDENCE,))], now=NOW
    )
    assert snapshot.topology_of(before) != snapshot.topology_of(after)
    assert snapshot.topology_of(before) == snapshot.topology_of(moved)  # lastSeen moves freely


def test_a_source_named_as_its_kind_is_the_legacy_otel_source() -> None:
    source = DiscoverySource(name="otel", type=SourceType.OTEL, prometheus=PROMETHEUS)  # type: ignore[arg-type]
    assert source.reporter == "otel" == seen("a", "b", "", SourceKind.OTEL).reporter

"""What `servicegraph infer` prints: the inference as JSON, as a table, or as draft
ServiceDependency manifests a team can review and commit."""

from __future__ import annotations

from typing import Any

from servicegraph.api import API_VERSION
from servicegraph.graph import Evidence
from servicegraph.inference import Inference
from servicegraph.snapshot import evidence_document


def inference_document(inference: Inference) -> dict[str, Any]:
    """{"services", "edges": [{"source", "target", "evidence"}], "unresolved": [...]}"""
    return {
        "services": list(inference.services),
        "edges": [
            {
                "source": edge.source,
                "target": edge.target,
                "communicationMode": edge.attributes.communication_mode,
                "evidence": [evidence_document(e) for e in edge.evidence],
            }
            for edge in inference.edges
        ],
        "unresolved": [
            {
                "source": u.source,
                "reference": u.reference,
                "evidence": evidence_document(u.evidence),
            }
            for u in inference.unresolved
        ],
    }


def draft_manifests(inference: Inference, namespace: str) -> list[dict[str, Any]]:
    """One ServiceDependency per service, `dependsOn` sorted (empty for one that calls
    nothing, so every target is declared); async calls (to message brokers) say so, every
    other field is left to its default."""
    calls: dict[str, list[dict[str, Any]]] = {}
    for edge in inference.edges:
        dependency: dict[str, Any] = {"service": edge.target}
        if edge.attributes.communication_mode != "sync":
            dependency["communicationMode"] = edge.attributes.communication_mode
            dependency["criticality"] = edge.attributes.criticality
        calls.setdefault(edge.source, []).append(dependency)
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "ServiceDependency",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"dependsOn": sorted(calls.get(name, []), key=lambda d: d["service"])},
        }
        for name in inference.services
    ]


def inference_rows(inference: Inference) -> list[list[str]]:
    """SOURCE, TARGET, EVIDENCE: one row per edge, then one per unresolved reference."""
    rows = [
        [
            edge.source,
            edge.target,
            ", ".join(_where(e) for e in edge.evidence),
        ]
        for edge in inference.edges
    ]
    rows += [
        [
            u.source,
            f"(unresolved) {u.reference}",
            f"{u.evidence.kind}/{u.evidence.name} {u.evidence.field}",
        ]
        for u in inference.unresolved
    ]
    return rows


def _where(evidence: Evidence) -> str:
    container = f" {evidence.container}" if evidence.container else ""
    return f"{evidence.kind}/{evidence.name}{container} {evidence.field}"

"""What `servicegraph analyze` reports: the operator's summary, cycles and drift, and a row per
service. Pure: built from a snapshot document, so the figures are the ones the operator would
write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from servicegraph.cycles import Cycle
from servicegraph.graph import Graph
from servicegraph.slo import MAX_IMPACT_NAMES

Document = Mapping[str, Any]
# The parts of the snapshot that analyze repeats as they are.
SNAPSHOT_PARTS = (
    "graph",
    "summary",
    "cycles",
    "cyclePaths",
    "acknowledgedCycles",
    "acknowledgedCyclePaths",
    "drift",
)
SERVICE_HEADERS = [
    "SERVICE",
    "TEAM",
    "TIER",
    "DECLARED",
    "FAN-IN",
    "FAN-OUT",
    "BLAST-RADIUS",
    "CYCLE",
    "DRIFT",
]


def analysis_document(graph: Graph, doc: Document) -> dict[str, Any]:
    """The report of `graph`, whose snapshot document is `doc`."""
    report: dict[str, Any] = {key: doc[key] for key in SNAPSHOT_PARTS}
    report["services"] = service_facts(doc)
    # As `servicegraph slo` spells them: the chain written out, where the snapshot has its
    # next hop only; its first names, as the impact lists, since every service's whole chain
    # would grow with the square of the graph's depth (340 MB for a chain of 10,000).
    report["slo"] = {
        node["name"]: {
            **{key: value for key, value in node["slo"].items() if key != "syncNext"},
            "syncChain": list(graph.sync_chain(node["name"], limit=MAX_IMPACT_NAMES)),
        }
        for node in doc["nodes"]
    }
    return report


def service_facts(doc: Document) -> list[dict[str, Any]]:
    """Per service: who owns it, how it is wired (stale edges left out, as queries do), what
    fails with it, and the drift of the calls it makes."""
    live = [edge for edge in doc["edges"] if not edge["stale"]]
    fan_in = Counter(edge["target"] for edge in live)
    fan_out = Counter(edge["source"] for edge in live)
    drift: dict[str, dict[str, list[str]]] = {}
    for kind, edges in doc["drift"].items():
        for edge in edges:
            drift.setdefault(edge["source"], {}).setdefault(kind, []).append(edge["target"])
    return [
        {
            "name": node["name"],
            "namespace": node["namespace"],
            "team": node["team"],
            "tier": node["tier"],
            "role": node["role"],
            "declared": node["declared"],
            "fanIn": fan_in.get(node["name"], 0),
            "fanOut": fan_out.get(node["name"], 0),
            "blastRadius": node["blastRadius"],
            "inCycle": node["inCycle"],
            "drift": {
                kind: drift.get(node["name"], {}).get(kind, [])
                for kind in ("undeclared", "unobserved")
            },
        }
        for node in doc["nodes"]
    ]


def service_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The per-service table of `analyze -o table`."""
    return [
        [
            service["name"],
            service["team"] or "",
            service["tier"] or "",
            "yes" if service["declared"] else "no",
            str(service["fanIn"]),
            str(service["fanOut"]),
            str(service["blastRadius"]),
            "yes" if service["inCycle"] else "",
            _drift_cell(service["drift"]),
        ]
        for service in report["services"]
    ]


def cycle_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per cycle, unacknowledged first."""
    lines = []
    for title, cycles, paths in (
        ("cycles", report["cycles"], report["cyclePaths"]),
        ("acknowledged", report["acknowledgedCycles"], report["acknowledgedCyclePaths"]),
    ):
        for members, path in zip(cycles, paths, strict=True):
            lines.append(f"{title}: {Cycle(tuple(members), tuple(path)).describe()}")
    return lines


def _drift_cell(drift: Mapping[str, list[str]]) -> str:
    """`+cache` for a call seen and not declared, `-payment` for one declared and not seen."""
    return " ".join(
        [f"+{target}" for target in drift["undeclared"]]
        + [f"-{target}" for target in drift["unobserved"]]
    )

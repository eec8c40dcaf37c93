"""Pictures of a snapshot (what each kind of edge and node looks like, the legend, hostile
names), and the graph exported for other tools."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicegraph import export, pictures, snapshot
from servicegraph.cli import main
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
from servicegraph.graph_networkx import flatten, to_networkx
from servicegraph.pictures import ExportError
from tests.support.binaries import needs_binary
from tests.support.scripts import load_script

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DEFAULTS = EdgeAttributes()
HOSTILE_NAMES = [
    'a"b',
    'x" -> "y',
    "back\\",
    "two\nlines",
    "<b>bold</b>",
    "#35;",
    "tab\there",
    "};digraph{",
    "`code`",
    "ünïcode",
]
needs_dot = needs_binary("dot", "Graphviz renders the export (apt-get install graphviz)")


def declare(name: str, *targets: str) -> ServiceDeclaration:
    return ServiceDeclaration(name, "shop", name, depends_on=tuple((t, DEFAULTS) for t in targets))


def seen(source: str, target: str, ago: timedelta, connection_type: str = "") -> Observation:
    traffic = Traffic(1.0, 0.0, 10.0, connection_type)
    return Observation(source, target, SourceKind.OTEL, NOW - ago, traffic=traffic)


def sample_document() -> dict[str, Any]:
    recently = timedelta(minutes=5)
    graph = analyse(
        [
            declare("checkout", "payment", "cart"),
            declare("payment", "ledger"),
            declare("ledger", "payment"),
            declare("cart"),
        ],
        [
            seen("checkout", "payment", recently),
            seen("payment", "ledger", recently),
            seen("ledger", "payment", recently),
            seen("cart", "redis", recently, "database"),
            seen("checkout", "stripe", recently, "virtual_node"),
            seen("search", "checkout", recently),
            seen("legacy", "checkout", timedelta(days=30)),
        ],
        now=NOW,
        observing=True,
    )
    return snapshot.to_document(graph)


def hostile_document() -> dict[str, Any]:
    chain = [declare(a, b) for a, b in pairwise(HOSTILE_NAMES)]
    return snapshot.to_document(analyse(chain, now=NOW))


# --- DOT ----------------------------------------------------------------------------------

QUOTED = r'"(?:[^"\\]|\\.)*"'
NODE_LINE = re.compile(rf"  ({QUOTED}) \[(.*)\];")
EDGE_LINE = re.compile(rf"  ({QUOTED}) -> ({QUOTED})(?: \[(.*)\])?;")
ATTRIBUTE = re.compile(rf"(\w+)=({QUOTED})")


def unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text[1:-1])


LEGEND_START = '  subgraph "cluster legend" {'


def parse_dot(dot: str) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], dict[str, str]]]:
    """The nodes and edges of our DOT output (the legend aside), with their attributes; fails
    on any other line."""
    lines = dot.splitlines()
    assert lines[0] == "digraph servicegraph {" and lines[-1] == "}"
    end = lines.index(LEGEND_START) if LEGEND_START in lines else -1
    nodes, edges = {}, {}
    for line in lines[4:end]:
        if edge := EDGE_LINE.fullmatch(line):
            attributes = {k: unquote(v) for k, v in ATTRIBUTE.findall(edge[3] or "")}
            edges[(unquote(edge[1]), unquote(edge[2]))] = attributes
        else:
            node = NODE_LINE.fullmatch(line)
            assert node, f"unexpected DOT line {line!r}"
            nodes[unquote(node[1])] = {k: unquote(v) for k, v in ATTRIBUTE.findall(node[2])}
    return nodes, edges


def legend_of(dot: str) -> list[str]:
    """The labels of the DOT legend, in order."""
    lines = dot.splitlines()
    legend = lines[lines.index(LEGEND_START) : -1]
    labels = [unquote(label) for line in legend for label in re.findall(rf"label=({QUOTED})", line)]
    return [label for label in labels if label]  # the ends of an edge sample have none


SEEN = "1 rps, p95 10 ms"  # what `seen` observed


def test_dot_draws_each_kind_of_edge() -> None:
    _, edges = parse_dot(pictures.to_dot(sample_document()))

    assert edges[("legacy", "checkout")] == {
        "style": "dashed",
        "color": "grey",
        "fontcolor": "grey",
        "label": SEEN,
    }
    assert edges[("search", "checkout")] == {
        "style": "dashed",
        "color": "orange",
        "fontcolor": "orange",
        "label": f"undeclared\n{SEEN}",
    }
    assert edges[("checkout", "cart")] == {"style": "dotted"}  # declared, never seen
    assert edges[("payment", "ledger")] == {"color": "red", "fontcolor": "red", "label": SEEN}
    assert edges[("ledger", "payment")]["color"] == "red"
    assert edges[("checkout", "payment")] == {"label": SEEN}  # hard sync: the default look


def test_dot_styles_soft_and_async_calls_apart_and_labels_traffic() -> None:
    soft_async = EdgeAttributes(communication_mode="async", criticality="soft")
    degraded = EdgeAttributes(criticality="degraded")
    checkout = ServiceDeclaration(
        "checkout",
        "shop",
        "checkout",
        depends_on=(("mailer", soft_async), ("ads", degraded), ("payment", DEFAULTS)),
    )
    slow = Traffic(12.5, 0.031, 1250.0, "")
    graph = analyse(
        [checkout, declare("mailer"), declare("ads"), declare("payment")],
        [Observation("checkout", "payment", SourceKind.OTEL, NOW, traffic=slow)],
        now=NOW,
    )
    dot = pictures.to_dot(snapshot.to_document(graph))
    _, edges = parse_dot(dot)

    assert edges[("checkout", "mailer")] == {
        "penwidth": "1",
        "arrowhead": "empty",
        "label": "async soft",
    }
    assert edges[("checkout", "ads")] == {"penwidth": "1", "label": "degraded"}
    assert edges[("checkout", "payment")] == {"label": "12.5 rps, 3.1% errors, p95 1.25 s"}
    assert legend_of(dot) == [
        "Legend",
        "hard: fails when its callee fails",
        "soft or degraded",
        "async",
    ]


def test_dot_colours_nodes_by_tier_and_the_legend_says_so() -> None:
    tiers = [ServiceDeclaration(tier, "shop", tier, tier=tier) for tier in ("critical", "low")]
    dot = pictures.to_dot(snapshot.to_document(analyse(tiers, now=NOW)))
    nodes, _ = parse_dot(dot)

    assert nodes["critical"]["fillcolor"] == pictures.TIER_COLOURS["critical"]
    assert nodes["low"]["fillcolor"] == pictures.TIER_COLOURS["low"]
    assert pictures.TIER_COLOURS["critical"] != pictures.TIER_COLOURS["low"]
    assert legend_of(dot) == ["Legend", "tier critical", "tier low"]


def test_the_legend_names_every_look_of_the_picture() -> None:
    dot = pictures.to_dot(sample_document())

    assert legend_of(dot) == [
        "Legend",
        "not declared",
        "database",
        "outside the graph",
        "in a cycle",
        "hard: fails when its callee fails",
        "observed, not declared",
        "declared, not observed",
        "stale: not seen lately",
        "in a cycle",
    ]
    # Graphviz draws it: one box titled Legend beside the graph.
    if shutil.which("dot"):
        svg = pictures.to_svg(sample_document())
        assert svg.count(">Legend</text>") == 1


def test_the_legend_keeps_clear_of_services_named_like_it() -> None:
    graph = analyse([declare("legend 0", "legend 1 from")], now=NOW)
    nodes, edges = parse_dot(pictures.to_dot(snapshot.to_document(graph)))

    assert set(nodes) == {"legend 0", "legend 1 from"}
    assert nodes["legend 0"]["tooltip"] == "legend 0: blast radius 0"
    assert list(edges) == [("legend 0", "legend 1 from")]


def test_dot_draws_each_kind_of_node() -> None:
    nodes, _ = parse_dot(pictures.to_dot(sample_document()))

    assert "shape" not in nodes["checkout"] and "style" not in nodes["checkout"]  # rounded box
    assert nodes["search"]["style"] == "rounded,dashed,filled"  # a placeholder
    assert nodes["redis"].items() >= {"shape": "cylinder", "style": "dashed,filled"}.items()
    assert nodes["stripe"].items() >= {"shape": "ellipse", "style": "dashed,filled"}.items()
    assert "fillcolor" not in nodes["checkout"]  # no tier: the default white
    assert nodes["payment"]["color"] == nodes["ledger"]["color"] == "red"
    assert "color" not in nodes["checkout"]
    assert nodes["checkout"]["tooltip"] == "checkout: blast radius 1"
    assert nodes["search"]["tooltip"] == "search: not declared"


def test_dot_keeps_hostile_names_inside_their_quotes() -> None:
    nodes, edges = parse_dot(pictures.to_dot(hostile_document()))

    expected = [name.replace("\t", " ") for name in HOSTILE_NAMES]
    assert sorted(nodes) == sorted(expected)
    assert len(edges) == len(HOSTILE_NAMES) - 1


@needs_dot
def test_graphviz_reads_hostile_names_as_one_node_each() -> None:
    result = subprocess.run(
        ["dot", "-Tjson"],
        input=pictures.to_dot(hostile_document()),
        capture_output=True,
        encoding="utf-8",
        check=True,
        timeout=30,
    )
    drawn = json.loads(result.stdout)

    legend = {
        i for i, o in enumerate(drawn["objects"]) if o["name"].startswith(("legend ", "cluster "))
    }
    assert len(drawn["objects"]) - len(legend) == len(HOSTILE_NAMES)
    edges = [e for e in drawn["edges"] if e["tail"] not in legend]
    assert len(edges) == len(HOSTILE_NAMES) - 1


# --- SVG ----------------------------------------------------------------------------------


@needs_dot
def test_svg_is_rendered_by_graphviz() -> None:
    svg = pictures.to_svg(sample_document())

    assert "<svg" in svg
    assert "<title>checkout</title>" in svg
    assert "undeclared" in svg


@needs_dot
def test_svg_escapes_hostile_names() -> None:
    svg = pictures.to_svg(hostile_document())

    assert "&lt;b&gt;bold&lt;/b&gt;" in svg
    assert "<b>" not in svg


def fake_dot(directory: Path, script: str) -> None:
    dot = directory / "dot"
    dot.write_text(f"#!/bin/sh\n{script}\n")
    dot.chmod(0o755)


def test_svg_without_graphviz_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(ExportError, match="Graphviz 'dot' is not installed; install graphviz"):
        pictures.to_svg(sample_document())


def test_svg_reports_what_graphviz_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dot(tmp_path, "cat >/dev/null; echo 'Error: syntax error in line 1' >&2; exit 1")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    with pytest.raises(ExportError, match="failed: Error: syntax error in line 1"):
        pictures.to_svg(sample_document())


def test_svg_gives_up_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dot(tmp_path, "exec sleep 30")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    with pytest.raises(ExportError, match=r"did not finish within 0\.5s"):
        pictures.to_svg(sample_document(), timeout=0.5)


# --- Mermaid ------------------------------------------------------------------------------

MERMAID_NODE = re.compile(r'  (n\d+)(\("|\[\("|\(\[")([^"]*)("\)|"\)\]|"\]\))')
MERMAID_EDGE = re.compile(r'  (n\d+) (==>|-->|--o|-\.->)(?:\|"([^"]*)"\|)? (n\d+)')
ENTITIES = {"quot": '"', "35": "#", "lt": "<", "gt": ">", "amp": "&", "96": "`"}


MERMAID_LEGEND_START = '  subgraph legend["Legend"]'


def parse_mermaid(
    text: str,
) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str, str]]]:
    """Nodes (id -> shape, label), edges in order (source, arrow, target, label), the legend
    aside, and the other lines' prefixes checked."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    if MERMAID_LEGEND_START in lines:
        start = lines.index(MERMAID_LEGEND_START)
        lines = lines[:start] + lines[lines.index("  end", start) + 1 :]
    nodes, edges = {}, []
    for line in lines[1:]:
        if node := MERMAID_NODE.fullmatch(line):
            label = node[3]
            assert not re.search(r'[<>`"\n]', label)
            assert re.sub(r"#\w+;", "", label).count("#") == 0
            decoded = re.sub(r"#(\w+);", lambda m: ENTITIES[m[1]], label)
            nodes[node[1]] = (node[2] + node[4], decoded)
        elif edge := MERMAID_EDGE.fullmatch(line):
            edges.append((edge[1], edge[2], edge[4], edge[3] or ""))
        else:
            assert line.startswith(("  classDef ", "  class ", "  linkStyle ")), line
    return nodes, edges


def link_styles(text: str) -> dict[str, set[int]]:
    found = re.findall(r"  linkStyle ([\d,]+) (.*)", text)
    return {style: {int(i) for i in indexes.split(",")} for indexes, style in found}


def classes(text: str) -> dict[str, set[str]]:
    found = re.findall(r"  class ([\w,]+) (\w+)", text)
    return {name: set(members.split(",")) for members, name in found}


def test_mermaid_draws_each_kind_of_node_and_edge() -> None:
    text = pictures.to_mermaid(sample_document())
    nodes, edges = parse_mermaid(text)
    id_of = {label: node_id for node_id, (_, label) in nodes.items()}
    index_of = {(a, b): i for i, (a, _, b, _) in enumerate(edges)}

    def index(source: str, target: str) -> int:
        return index_of[(id_of[source], id_of[target])]

    assert nodes[id_of["checkout"]][0] == '("")'
    assert nodes[id_of["redis"]][0] == '[("")]'
    assert nodes[id_of["stripe"]][0] == '([""])'
    assert classes(text) == {
        "placeholder": {id_of[n] for n in ("legacy", "redis", "search", "stripe")},
        "cycle": {id_of["ledger"], id_of["payment"]},
    }
    assert edges[index("search", "checkout")][1:] == (
        "-.->",
        id_of["checkout"],
        f"undeclared, {SEEN}",
    )
    assert edges[index("checkout", "payment")][1:] == ("==>", id_of["payment"], SEEN)  # hard
    graph_links = set(range(len(edges)))  # the legend's samples come after them
    styles = {style: found & graph_links for style, found in link_styles(text).items()}
    assert styles == {
        "stroke:grey": {index("legacy", "checkout")},
        "stroke:orange": {
            index("search", "checkout"),
            index("checkout", "stripe"),
            index("cart", "redis"),
        },
        "stroke-dasharray:1 4": {index("checkout", "cart")},
        "stroke:red": {index("payment", "ledger"), index("ledger", "payment")},
    }
    legend = text.split(MERMAID_LEGEND_START)[1].split("\n  end\n")[0]
    for sample in ("not declared", "database", "in a cycle", "stale: not seen lately"):
        assert f'"{sample}"' in legend
    samples = len(re.findall(r"\(\( \)\)", legend)) // 2  # each edge sample: two dots
    assert max(max(found) for found in link_styles(text).values()) < len(edges) + samples


def test_mermaid_labels_cannot_break_out() -> None:
    nodes, edges = parse_mermaid(pictures.to_mermaid(hostile_document()))

    expected = [name.replace("\t", " ").replace("\n", " ") for name in HOSTILE_NAMES]
    assert sorted(label for _, label in nodes.values()) == sorted(expected)
    assert len(edges) == len(HOSTILE_NAMES) - 1


# --- JSON and the empty graph -------------------------------------------------------------


def test_json_is_the_document_pretty_and_stable() -> None:
    doc = hostile_document()

    text = export.to_json(doc)

    assert json.loads(text) == doc
    assert text == export.to_json(json.loads(text))
    assert text.endswith("}\n")
    assert '\n  "acknowledgedCycles": []' in text
    assert "ünïcode" in text


def test_empty_graph_draws_an_empty_picture() -> None:
    doc = snapshot.to_document(analyse([], now=NOW))

    assert parse_dot(pictures.to_dot(doc)) == ({}, {})
    assert parse_mermaid(pictures.to_mermaid(doc)) == ({}, [])


# --- the graph as networkx sees it --------------------------------------------------------

HARD_GRPC = EdgeAttributes(protocol="grpc", timeout_ms=500, retry=Retry(3, 100, 2.0))
SOFT_ASYNC = EdgeAttributes(communication_mode="async", criticality="soft", protocol="kafka")
GRAPH_REF = ("shop", "checkout-graph")


def rich_graph() -> Graph:
    """Every kind of field a snapshot holds: a stale edge, drift both ways, edges seen by
    several sources with their own attributes and traffic, a cycle, placeholders of each role,
    retries and timeouts, and SLO figures with availabilities and unknown dependencies."""
    recently, earlier = timedelta(minutes=5), timedelta(minutes=20)
    checkout = ServiceDeclaration(
        "checkout",
        "shop",
        "checkout-deps",
        team="payments",
        tier="critical",
        depends_on=(("payment", HARD_GRPC), ("cart", DEFAULTS), ("mailer", SOFT_ASYNC)),
    )
    mesh = Observation(
        "checkout",
        "payment",
        SourceKind.SERVICE_MESH,
        NOW - earlier,
        EdgeAttributes(protocol="http"),
        Traffic(12.0, 0.02, None, ""),
    )
    k8s = Observation("search", "checkout", SourceKind.KUBERNETES, NOW - recently)
    return analyse(
        [checkout, declare("payment", "ledger"), declare("ledger", "payment"), declare("cart")],
        [
            Observation(
                "checkout",
                "payment",
                SourceKind.OTEL,
                NOW - recently,
                traffic=Traffic(10.0, 0.01, 20.0, ""),
            ),
            mesh,
            seen("payment", "ledger", recently),
            seen("ledger", "payment", recently),
            seen("cart", "redis", recently, "database"),
            seen("checkout", "stripe", recently, "virtual_node"),
            seen("search", "checkout", recently),
            k8s,
            seen("legacy", "checkout", timedelta(days=30)),
        ],
        now=NOW,
        observing=True,
    )


def rich_document() -> dict[str, Any]:
    return snapshot.to_document(rich_graph(), graph_ref=GRAPH_REF)


def typed(value: Any) -> Any:
    """`value` with every scalar paired with its type, so that == compares types too (True is
    not 1, and 1 is not 1.0)."""
    if isinstance(value, Mapping):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def drift_of(doc: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (ref["source"], ref["target"]): kind
        for kind in ("undeclared", "unobserved")
        for ref in doc["drift"][kind]
    }


Expectation = tuple[dict[str, Any], dict[str, dict[str, Any]], dict[tuple[str, str], Any]]


def nested_expectation(doc: Mapping[str, Any]) -> Expectation:
    """The graph, node and edge attributes of the document, as they are, plus edge drift."""
    drift = drift_of(doc)
    nodes = {n["name"]: {k: v for k, v in n.items() if k != "name"} for n in doc["nodes"]}
    edges = {
        (e["source"], e["target"]): {
            **{k: v for k, v in e.items() if k not in ("source", "target")},
            "drift": drift.get((e["source"], e["target"])),
        }
        for e in doc["edges"]
    }
    return {"graph": doc["graph"], "summary": doc["summary"]}, nodes, edges


NODE_FIELDS = {"name", "declared", "namespace", "object", "team", "tier", "role"}
NODE_FIELDS |= {"blastRadius", "inCycle", "slo"}
SLO_FIELDS = {"availability", "dependencyCeiling", "weakestDependency", "unknownDependencies"}
SLO_FIELDS |= {"impact"}
SLO_FIELDS |= {"syncDepth", "syncNext"}
EDGE_FIELDS = {"source", "target", "stale", "declared", "observed", "confidence"}
EDGE_FIELDS |= {"attributes", "sources", "traffic"}
SOURCE_FIELDS = {"kind", "confidence", "lastSeen", "attributes", "traffic"}


def present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def ratio(value: float | None) -> float | None:
    return None if value is None else float(value)


def flat_node(node: Mapping[str, Any]) -> dict[str, Any]:
    # A field the snapshot gains fails here until it has a flat key.
    assert set(node) == NODE_FIELDS and set(node["slo"]) == SLO_FIELDS
    slo = node["slo"]
    return present(
        {
            "label": node["name"],
            **{key: node[key] for key in sorted(NODE_FIELDS - {"name", "slo"})},
            "availability": ratio(slo["availability"]),
            "dependencyCeiling": ratio(slo["dependencyCeiling"]),
            "weakestDependency": slo["weakestDependency"],
            "unknownDependencies": ",".join(slo["unknownDependencies"]),
            "impactFails": slo["impact"]["failsCount"],
            "impactDegrades": slo["impact"]["degradesCount"],
            "syncDepth": slo["syncDepth"],
            "syncNext": slo["syncNext"],
        }
    )


def flat_settings(attributes: Mapping[str, Any], suffix: str = "") -> dict[str, Any]:
    assert set(attributes) <= {"communicationMode", "criticality", "protocol", "timeoutMs", "retry"}
    retry = attributes.get("retry", {})
    assert set(retry) <= {"maxRetries", "backoffMs", "backoffMultiplier"}
    values = {
        "communicationMode": attributes["communicationMode"],
        "criticality": attributes["criticality"],
        "protocol": attributes.get("protocol"),
        "timeoutMs": attributes.get("timeoutMs"),
        "retry.maxRetries": retry.get("maxRetries"),
        "retry.backoffMs": retry.get("backoffMs"),
        "retry.backoffMultiplier": ratio(retry.get("backoffMultiplier")),
    }
    return {key + suffix: value for key, value in values.items()}


def flat_traffic(traffic: Mapping[str, Any] | None, suffix: str = "") -> dict[str, Any]:
    if traffic is None:
        return {}
    assert set(traffic) <= {"requestRate", "errorRate", "connectionType", "p95LatencyMs"}
    values = {
        "requestRate": float(traffic["requestRate"]),
        "errorRate": float(traffic["errorRate"]),
        "connectionType": traffic["connectionType"],
        "p95LatencyMs": ratio(traffic.get("p95LatencyMs")),
    }
    return {key + suffix: value for key, value in values.items()}


def flat_edge(edge: Mapping[str, Any], drift: str | None) -> dict[str, Any]:
    assert set(edge) <= EDGE_FIELDS
    flat = {
        "stale": edge["stale"],
        "declared": edge["declared"],
        "observed": edge["observed"],
        "confidence": float(edge["confidence"]),
        **flat_settings(edge["attributes"]),
        "sources": ",".join(source["kind"] for source in edge["sources"]),
        **flat_traffic(edge.get("traffic")),
        "drift": drift,
    }
    for source in edge["sources"]:
        assert set(source) <= SOURCE_FIELDS
        kind = source["kind"]
        flat[f"confidence.{kind}"] = float(source["confidence"])
        flat[f"lastSeen.{kind}"] = source["lastSeen"]
        if "attributes" in source:
            flat.update(flat_settings(source["attributes"], f".{kind}"))
        flat.update(flat_traffic(source.get("traffic"), f".{kind}"))
    return present(flat)


def flat_expectation(doc: Mapping[str, Any]) -> Expectation:
    """What GraphML and GEXF should hold, worked out from the document field by field."""
    ref = doc["graph"] or {}
    graph = present({"namespace": ref.get("namespace"), "name": ref.get("name"), **doc["summary"]})
    nodes = {node["name"]: flat_node(node) for node in doc["nodes"]}
    drift = drift_of(doc)
    edges = {
        (e["source"], e["target"]): flat_edge(e, drift.get((e["source"], e["target"])))
        for e in doc["edges"]
    }
    return graph, nodes, edges


def held(network: nx.DiGraph[str]) -> Expectation:
    return (
        dict(network.graph),
        {name: dict(node) for name, node in network.nodes.items()},
        {(source, target): dict(edge) for source, target, edge in network.edges(data=True)},
    )


def test_the_rich_document_has_every_kind_of_field() -> None:
    doc = rich_document()
    edges = {(e["source"], e["target"]): e for e in doc["edges"]}
    nodes = {n["name"]: n for n in doc["nodes"]}

    sources = edges[("checkout", "payment")]["sources"]
    assert [s["kind"] for s in sources] == ["manual", "service-mesh", "otel"]
    assert all("attributes" in s for s in sources[1:]) and "traffic" in sources[1]
    assert edges[("checkout", "payment")]["attributes"]["retry"]["backoffMultiplier"] == 2.0
    assert "p95LatencyMs" not in sources[1]["traffic"]
    assert [s["kind"] for s in edges[("search", "checkout")]["sources"]] == ["otel", "kubernetes"]
    assert edges[("legacy", "checkout")]["stale"]
    assert drift_of(doc)[("checkout", "cart")] == "unobserved"
    assert drift_of(doc)[("search", "checkout")] == "undeclared"
    assert nodes["payment"]["inCycle"] and nodes["ledger"]["inCycle"]
    assert {n["role"] for n in doc["nodes"]} == {"service", "database", "virtual"}
    assert nodes["checkout"]["slo"]["unknownDependencies"] == ["cart"]
    assert nodes["checkout"]["slo"]["syncNext"] == "cart"
    assert isinstance(nodes["payment"]["slo"]["availability"], float)
    assert nodes["cart"]["slo"]["availability"] is None
    assert nodes["checkout"]["slo"]["weakestDependency"] == "payment"
    assert nodes["redis"]["slo"]["weakestDependency"] is None


def test_to_networkx_holds_the_document() -> None:
    graph = rich_graph()
    doc = snapshot.to_document(graph)

    network = graph.to_networkx()

    assert list(network) == [node["name"] for node in doc["nodes"]]
    assert list(network.edges) == [(e["source"], e["target"]) for e in doc["edges"]]
    assert typed(held(network)) == typed(nested_expectation(doc))


def test_flatten_spells_every_field_as_one_scalar() -> None:
    doc = rich_document()

    flat = flatten(to_networkx(doc))

    assert typed(held(flat)) == typed(flat_expectation(doc))
    assert list(flat) == [node["name"] for node in doc["nodes"]]
    assert flat.nodes["checkout"]["syncNext"] == "cart"
    assert flat.nodes["cart"].keys() >= {"unknownDependencies", "dependencyCeiling"}
    assert "availability" not in flat.nodes["cart"]  # None is left out
    edge = flat.edges["checkout", "payment"]
    assert edge["sources"] == "manual,service-mesh,otel"
    assert edge["lastSeen.otel"] == "2026-05-01T11:55:00Z" and "lastSeen.manual" not in edge
    assert edge["protocol"] == "grpc" and edge["protocol.service-mesh"] == "http"
    assert edge["requestRate"] == 10.0 and edge["requestRate.service-mesh"] == 12.0
    assert edge["retry.maxRetries"] == 3 and "drift" not in edge
    assert flat.edges["checkout", "cart"]["drift"] == "unobserved"
    assert flat.graph["name"] == "checkout-graph" and flat.graph["staleEdges"] == 1


def test_flatten_makes_ratios_floats() -> None:
    doc = rich_document()
    doc["nodes"][0]["slo"]["dependencyCeiling"] = 1  # as snapshots of older versions say
    doc["edges"][0]["traffic"] = {"requestRate": 2, "errorRate": 0, "connectionType": ""}

    flat = flatten(to_networkx(doc))

    assert typed(flat.nodes[doc["nodes"][0]["name"]]["dependencyCeiling"]) == ("float", 1.0)
    edge = flat.edges[doc["edges"][0]["source"], doc["edges"][0]["target"]]
    assert typed([edge["requestRate"], edge["errorRate"]]) == [("float", 2.0), ("float", 0.0)]


# --- GraphML, GEXF and node-link JSON, as the CLI writes them ------------------------------

FOR_OTHER_TOOLS = ["graphml", "gexf", "node-link"]
NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
XML_HOSTILE_NAMES = [
    *HOSTILE_NAMES,
    "a\x00b",
    "bell\x07",
    "cr\rx",
    "crlf\r\n",
    " ",
    "\u2028",
    "\ufffe",
    "lone\ud800",
    "looks\\u0041escaped",
    "a\\\\b",
]


def exported(
    doc: Mapping[str, Any], fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    """`servicegraph export --snapshot FILE -o FMT`'s output; any warning fails."""
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["export", "--snapshot", str(path), "-o", fmt]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def read_back(fmt: str, text: str) -> nx.DiGraph[str]:
    """An export as networkx's own readers read it."""
    if fmt == "node-link":
        network = nx.node_link_graph(json.loads(text), edges="edges")
    elif fmt == "graphml":
        network = nx.read_graphml(io.BytesIO(text.encode()))
    else:
        network = nx.read_gexf(io.BytesIO(text.encode()))
    assert type(network) is nx.DiGraph
    return network


def unescaped(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        export.text_from_xml(key): export.text_from_xml(value) if isinstance(value, str) else value
        for key, value in values.items()
    }


def from_xml(fmt: str, network: nx.DiGraph[str]) -> Expectation:
    """What a GraphML or GEXF export holds, without what the readers add, escapes undone."""
    graph, nodes, edges = held(network)
    if fmt == "graphml":
        graph = {k: v for k, v in graph.items() if k not in ("node_default", "edge_default")}
    else:  # GEXF keeps only the graph's name; the reader numbers the edges
        graph = {k: v for k, v in graph.items() if k == "name"}
        edges = {key: {k: v for k, v in edge.items() if k != "id"} for key, edge in edges.items()}
    return (
        unescaped(graph),
        {export.text_from_xml(name): unescaped(node) for name, node in nodes.items()},
        {
            (export.text_from_xml(source), export.text_from_xml(target)): unescaped(edge)
            for (source, target), edge in edges.items()
        },
    )


def xml_expectation(fmt: str, doc: Mapping[str, Any]) -> Expectation:
    graph, nodes, edges = flat_expectation(doc)
    if fmt == "gexf":
        graph = {k: v for k, v in graph.items() if k == "name"}
    return graph, nodes, edges


@pytest.mark.parametrize("fmt", FOR_OTHER_TOOLS)
def test_exports_read_back_as_the_document(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = rich_document()

    network = read_back(fmt, exported(doc, fmt, tmp_path, capsys))

    assert list(network) == [node["name"] for node in doc["nodes"]]
    assert list(network.edges) == [(e["source"], e["target"]) for e in doc["edges"]]
    if fmt == "node-link":
        assert typed(held(network)) == typed(nested_expectation(doc))
    else:  # booleans, ints and floats come back typed
        assert typed(from_xml(fmt, network)) == typed(xml_expectation(fmt, doc))
        assert held(network)[1]["checkout"]["label"] == "checkout"


@pytest.mark.parametrize("fmt", ["graphml", "gexf"])
def test_xml_exports_keep_every_name(fmt: str) -> None:
    chain = [
        ServiceDeclaration(a, "shop", a, team=a, depends_on=((b, DEFAULTS),))
        for a, b in pairwise(XML_HOSTILE_NAMES)
    ]
    doc = snapshot.to_document(analyse(chain, now=NOW))

    network = read_back(fmt, export.to_graphml(doc) if fmt == "graphml" else export.to_gexf(doc))

    assert typed(from_xml(fmt, network)) == typed(xml_expectation(fmt, doc))
    # Only what XML cannot hold, and what would read as an escape, is escaped.
    assert {"cr\rx", "two\nlines", "tab\there", "<b>bold</b>", "back\\"} <= set(network)
    assert {"a\\u0000b", "bell\\u0007", "\\ufffe", "lone\\ud800"} <= set(network)
    assert {"looks\\\\u0041escaped", "a\\\\\\\\b"} <= set(network)


def test_xml_text_escapes_only_what_xml_cannot_hold() -> None:
    assert export.xml_text("C:\\svc") == "C:\\svc"
    assert export.xml_text("back\\") == "back\\"
    assert export.xml_text("<&>\"'\r\n\t\x7f\u2028😀") == "<&>\"'\r\n\t\x7f\u2028😀"
    assert export.xml_text("a\x00b\\c") == "a\\u0000b\\\\c"
    assert export.xml_text("\\u0041") == "\\\\u0041"
    assert export.xml_text("\\\\") == "\\\\\\\\"


@settings(max_examples=300)
@given(st.text(st.characters(exclude_categories=()) | st.sampled_from("\\u0aF\x00\r\ufffe")))
def test_text_from_xml_undoes_xml_text(text: str) -> None:
    held_text = export.xml_text(text)

    assert export.text_from_xml(held_text) == text
    assert NOT_XML.search(held_text) is None
    if NOT_XML.search(text) is None and "\\" not in text:
        assert held_text == text


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(
        st.text(st.characters(exclude_categories=()), min_size=1, max_size=8),
        min_size=2,
        max_size=5,
        unique=True,
    )
)
def test_xml_exports_keep_any_name(names: list[str]) -> None:
    doc = snapshot.to_document(analyse([declare(a, b) for a, b in pairwise(names)], now=NOW))

    for fmt, text in (("graphml", export.to_graphml(doc)), ("gexf", export.to_gexf(doc))):
        assert typed(from_xml(fmt, read_back(fmt, text))) == typed(xml_expectation(fmt, doc))


@pytest.mark.parametrize("fmt", FOR_OTHER_TOOLS)
def test_empty_graph_exports_an_empty_graph(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = snapshot.to_document(analyse([], now=NOW))

    network = read_back(fmt, exported(doc, fmt, tmp_path, capsys))

    assert network.number_of_nodes() == network.number_of_edges() == 0


# --- the README's picture -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_picture_is_what_the_code_draws() -> None:
    picture = load_script("picture")
    drawn = (ROOT / "docs" / "online-boutique.dot").read_text(encoding="utf-8")
    assert drawn == picture.picture_dot(), "the drawing changed: run `make picture`"
    assert (ROOT / "docs" / "online-boutique.png").read_bytes().startswith(b"\x89PNG\r\n")
    assert (
        "![" in (readme := (ROOT / "README.md").read_text())
        and "docs/online-boutique.png" in readme
    )

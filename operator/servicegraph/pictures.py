"""Pictures of a snapshot document: Graphviz DOT (and SVG through `dot`) and Mermaid, drawn by
one convention and each with a legend of what it shows.

Nodes:
- fill colour is the tier: the more critical, the darker blue; no tier, white;
- placeholders (called, never declared) have a dashed outline;
- databases are cylinders, virtual nodes (callers or ends outside the graph) dashed ellipses;
- cycle members are red.
Edges:
- hard calls are thick, soft and degraded ones thin and labelled so;
- async calls end in a hollow arrow (Mermaid: a circle) and are labelled async;
- stale edges are dashed grey; undeclared ones (observed, never declared) dashed orange and
  labelled; unobserved ones (declared, not seen lately) dotted; edges inside a cycle red;
- an observed edge is labelled with its request rate, error rate and p95 latency.
Names are escaped, so a hostile service name cannot break out of its label; the legend's own
nodes have identifiers that no node of the graph has.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

SVG_TIMEOUT_SECONDS = 60.0
TIER_COLOURS = {"critical": "#6baed6", "high": "#9ecae1", "medium": "#c6dbef", "low": "#eff3ff"}
_DOT_SHAPES = {"database": "cylinder", "virtual": "ellipse"}
_INK = "#333333"


class ExportError(Exception):
    """The picture could not be made."""


@dataclass(frozen=True, slots=True)
class EdgeLook:
    stale: bool
    undeclared: bool
    unobserved: bool
    in_cycle: bool
    soft: bool  # criticality soft or degraded: the caller copes without it
    asynchronous: bool
    label: str


def edge_looks(doc: Mapping[str, Any]) -> Iterable[tuple[Mapping[str, Any], EdgeLook]]:
    cycle_of = {
        name: i
        for i, members in enumerate([*doc["cycles"], *doc["acknowledgedCycles"]])
        for name in members
    }
    unobserved = {(d["source"], d["target"]) for d in doc["drift"]["unobserved"]}
    for edge in doc["edges"]:
        source, target, stale = edge["source"], edge["target"], edge["stale"]
        source_cycle = cycle_of.get(source)
        attributes = edge["attributes"]
        soft = attributes.get("criticality", "hard") != "hard"
        asynchronous = attributes.get("communicationMode") == "async"
        # The same rule as the engine's drift, so a queried subgraph (no drift list) still
        # shows it.
        undeclared = edge["observed"] and not edge["declared"] and not stale
        words = [
            *(["async"] if asynchronous else []),
            *([attributes["criticality"]] if soft else []),
            *(["undeclared"] if undeclared else []),
        ]
        lines = [" ".join(words), traffic_text(edge.get("traffic"))]
        yield (
            edge,
            EdgeLook(
                stale=stale,
                undeclared=undeclared,
                unobserved=(source, target) in unobserved,
                in_cycle=not stale
                and source_cycle is not None
                and source_cycle == cycle_of.get(target),
                soft=soft,
                asynchronous=asynchronous,
                label="\n".join(line for line in lines if line),
            ),
        )


def traffic_text(traffic: Mapping[str, Any] | None) -> str:
    """`12 rps, 3% errors, p95 120 ms`: what was observed of an edge, as short as it goes."""
    if not traffic:
        return ""
    parts = [f"{traffic['requestRate']:.3g} rps"]
    if traffic["errorRate"]:
        parts.append(f"{traffic['errorRate'] * 100:.2g}% errors")
    p95 = traffic.get("p95LatencyMs")
    if p95 is not None:
        parts.append(f"p95 {p95 / 1000:.3g} s" if p95 >= 1000 else f"p95 {p95:.3g} ms")
    return ", ".join(parts)


# --- DOT and SVG --------------------------------------------------------------------------


def to_dot(doc: Mapping[str, Any]) -> str:
    lines = [
        "digraph servicegraph {",
        "  graph [rankdir=LR, fontname=Helvetica];",
        f'  node [shape=box, style="rounded,filled", fillcolor=white, color="{_INK}", '
        "fontname=Helvetica];",
        f'  edge [fontname=Helvetica, fontsize=10, color="{_INK}", penwidth=2];',
    ]
    for node in doc["nodes"]:
        attributes = {**_dot_node_attributes(node), "tooltip": _tooltip(node)}
        lines.append(f"  {_dot_id(node['name'])} [{_dot_attribute_list(attributes)}];")
    looks = list(edge_looks(doc))
    for edge, look in looks:
        attributes = _dot_edge_attributes(look)
        suffix = f" [{_dot_attribute_list(attributes)}]" if attributes else ""
        lines.append(f"  {_dot_id(edge['source'])} -> {_dot_id(edge['target'])}{suffix};")
    lines += _dot_legend(doc["nodes"], [look for _, look in looks])
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(doc: Mapping[str, Any], *, timeout: float = SVG_TIMEOUT_SECONDS) -> str:
    """The DOT picture rendered by the Graphviz `dot` executable."""
    dot = shutil.which("dot")
    if dot is None:
        raise ExportError("Graphviz 'dot' is not installed; install graphviz or use -o dot")
    try:
        result = subprocess.run(
            [dot, "-Tsvg"],
            input=to_dot(doc),
            capture_output=True,
            encoding="utf-8",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ExportError(
            f"Graphviz 'dot' did not finish within {timeout:g}s; draw a smaller part of the "
            "graph (query a service) or use -o dot"
        ) from error
    if result.returncode != 0:
        raise ExportError(f"Graphviz 'dot' failed: {result.stderr.strip()}")
    return result.stdout


def _dot_node_attributes(node: Mapping[str, Any]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    dashed = not node["declared"] or node["role"] == "virtual"
    shape = _DOT_SHAPES.get(node["role"])
    if shape:
        attributes["shape"] = shape
        attributes["style"] = "dashed,filled" if dashed else "filled"
    elif dashed:
        attributes["style"] = "rounded,dashed,filled"
    colour = TIER_COLOURS.get(node["tier"] or "")
    if colour:
        attributes["fillcolor"] = colour
    if node["inCycle"]:
        attributes["color"] = attributes["fontcolor"] = "red"
    return attributes


def _tooltip(node: Mapping[str, Any]) -> str:
    if not node["declared"]:
        return f"{node['name']}: not declared"
    facts = [f"{key} {node[key]}" for key in ("team", "tier") if node[key]]
    facts.append(f"blast radius {node['blastRadius']}")
    return f"{node['name']}: {', '.join(facts)}"


def _dot_edge_attributes(look: EdgeLook) -> dict[str, str]:
    attributes: dict[str, str] = {}
    if look.stale:
        attributes.update(style="dashed", color="grey", fontcolor="grey")
    elif look.undeclared:
        attributes.update(style="dashed", color="orange", fontcolor="orange")
    elif look.unobserved:
        attributes["style"] = "dotted"
    if look.soft:
        attributes["penwidth"] = "1"
    if look.asynchronous:
        attributes["arrowhead"] = "empty"
    if look.in_cycle:
        attributes["color"] = attributes["fontcolor"] = "red"
    if look.label:
        attributes["label"] = look.label
    return attributes


def _dot_legend(nodes: list[Mapping[str, Any]], looks: list[EdgeLook]) -> list[str]:
    """A box, right of the graph, explaining each look the picture uses (and only those), each
    sample drawn as the graph's own nodes and edges are."""
    node_samples, edge_samples = list(_node_samples(nodes)), list(_edge_samples(looks))
    if not node_samples and not edge_samples:
        return []
    prefix = "legend "
    while any(node["name"].startswith(prefix) for node in nodes):
        prefix = "_" + prefix
    lines = [
        '  subgraph "cluster legend" {',
        f'    graph [label="Legend", fontsize=12, style=rounded, color="{_INK}"];',
    ]
    for i, sample in enumerate(node_samples):
        text = sample["name"]
        attributes = {**_dot_node_attributes(sample), "label": text, "tooltip": text}
        lines.append(f"    {_dot_id(f'{prefix}{i}')} [{_dot_attribute_list(attributes)}];")
    for i, look in enumerate(edge_samples, start=len(node_samples)):
        # an edge between two points, labelled
        ends = [f"{prefix}{i} from", f"{prefix}{i} to"]
        for end in ends:
            lines.append(f'    {_dot_id(end)} [shape=point, width=0.05, label=""];')
        attributes = _dot_edge_attributes(look)
        lines.append(
            f"    {_dot_id(ends[0])} -> {_dot_id(ends[1])} [{_dot_attribute_list(attributes)}];"
        )
    lines.append("  }")
    return lines


def _node_samples(nodes: list[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """A node, named by what it shows, for each look of node the picture uses."""
    tiers = {node["tier"] for node in nodes}
    for tier in TIER_COLOURS:
        if tier in tiers:
            yield _sample_node(f"tier {tier}", tier=tier)
    if any(not node["declared"] and node["role"] == "service" for node in nodes):
        yield _sample_node("not declared", declared=False)
    if any(node["role"] == "database" for node in nodes):
        yield _sample_node("database", role="database")
    if any(node["role"] == "virtual" for node in nodes):
        yield _sample_node("outside the graph", role="virtual")
    if any(node["inCycle"] for node in nodes):
        yield _sample_node("in a cycle", in_cycle=True)


def _sample_node(
    name: str,
    *,
    declared: bool = True,
    role: str = "service",
    tier: str | None = None,
    in_cycle: bool = False,
) -> Mapping[str, Any]:
    return {"name": name, "declared": declared, "role": role, "tier": tier, "inCycle": in_cycle}


_PLAIN_EDGE = EdgeLook(
    stale=False,
    undeclared=False,
    unobserved=False,
    in_cycle=False,
    soft=False,
    asynchronous=False,
    label="",
)


def _edge_samples(looks: list[EdgeLook]) -> Iterable[EdgeLook]:
    """An edge, labelled with what it shows, for each look of edge the picture uses."""
    if any(not look.soft for look in looks):
        yield replace(_PLAIN_EDGE, label="hard: fails when its callee fails")
    if any(look.soft for look in looks):
        yield replace(_PLAIN_EDGE, soft=True, label="soft or degraded")
    if any(look.asynchronous for look in looks):
        yield replace(_PLAIN_EDGE, asynchronous=True, label="async")
    if any(look.undeclared for look in looks):
        yield replace(_PLAIN_EDGE, undeclared=True, label="observed, not declared")
    if any(look.unobserved and not look.stale for look in looks):
        yield replace(_PLAIN_EDGE, unobserved=True, label="declared, not observed")
    if any(look.stale for look in looks):
        yield replace(_PLAIN_EDGE, stale=True, label="stale: not seen lately")
    if any(look.in_cycle for look in looks):
        yield replace(_PLAIN_EDGE, in_cycle=True, label="in a cycle")


# --- Mermaid ------------------------------------------------------------------------------


def to_mermaid(doc: Mapping[str, Any]) -> str:
    """A Mermaid flowchart; nodes are n0, n1, ... with the service names as quoted labels."""
    ids = {node["name"]: f"n{i}" for i, node in enumerate(doc["nodes"])}
    lines = ["flowchart LR"]
    classes: dict[str, list[str]] = {name: [] for name in _MERMAID_CLASSES}
    for node in doc["nodes"]:
        node_id, label = ids[node["name"]], _mermaid_text(node["name"])
        lines.append(f"  {node_id}{_mermaid_shape(node['role'], label)}")
        for name in _mermaid_classes(node):
            classes[name].append(node_id)

    link_styles: dict[str, list[int]] = {}
    looks = list(edge_looks(doc))
    for i, (edge, look) in enumerate(looks):
        source, target = ids[edge["source"]], ids[edge["target"]]
        lines.append(f"  {source} {_mermaid_arrow(look)} {target}")
        style = _mermaid_link_style(look)
        if style:
            link_styles.setdefault(style, []).append(i)
    lines += _mermaid_legend(doc["nodes"], [look for _, look in looks], len(looks), link_styles)

    lines += [f"  classDef {name} {style}" for name, style in _MERMAID_CLASSES.items()]
    lines += [f"  class {','.join(members)} {name}" for name, members in classes.items() if members]
    lines += [
        f"  linkStyle {','.join(map(str, indexes))} {style}"
        for style, indexes in link_styles.items()
    ]
    return "\n".join(lines) + "\n"


# The classes of the graph's nodes and their styles; legend nodes take the same styles inline.
_MERMAID_CLASSES = {
    "placeholder": "stroke-dasharray:5 5",
    "cycle": "stroke:red,color:red",
    **{f"tier-{tier}": f"fill:{colour}" for tier, colour in TIER_COLOURS.items()},
}


def _mermaid_classes(node: Mapping[str, Any]) -> list[str]:
    names = [] if node["declared"] else ["placeholder"]
    if node["inCycle"]:
        names.append("cycle")
    if node["tier"] in TIER_COLOURS:
        names.append(f"tier-{node['tier']}")
    return names


def _mermaid_shape(role: str, label: str) -> str:
    if role == "database":
        return f'[("{label}")]'
    if role == "virtual":
        return f'(["{label}"])'  # a stadium: Mermaid has no ellipse
    return f'("{label}")'


def _mermaid_arrow(look: EdgeLook) -> str:
    if look.undeclared or look.stale or look.unobserved:
        arrow = "-.->"
    elif look.asynchronous:
        arrow = "--o"
    elif look.soft:
        arrow = "-->"
    else:
        arrow = "==>"
    label = _mermaid_text(look.label.replace("\n", ", "))
    return f'{arrow}|"{label}"|' if label else arrow


def _mermaid_link_style(look: EdgeLook) -> str:
    if look.stale:
        return "stroke:grey"
    styles = []
    if look.unobserved:
        styles.append("stroke-dasharray:1 4")
    if look.in_cycle:
        styles.append("stroke:red")
    elif look.undeclared:
        styles.append("stroke:orange")
    return ",".join(styles)


def _mermaid_legend(
    nodes: list[Mapping[str, Any]],
    looks: list[EdgeLook],
    first_link: int,
    link_styles: dict[str, list[int]],
) -> list[str]:
    """A Legend subgraph: a node per node look, a link between two dots per edge look."""
    node_samples = list(_node_samples(nodes))
    edge_samples = list(_edge_samples(looks))
    if not node_samples and not edge_samples:
        return []
    lines = ['  subgraph legend["Legend"]']
    for i, sample in enumerate(node_samples):
        lines.append(f"    l{i}{_mermaid_shape(sample['role'], _mermaid_text(sample['name']))}")
        style = ",".join(_MERMAID_CLASSES[name] for name in _mermaid_classes(sample))
        if style:
            lines.append(f"    style l{i} {style}")
    for i, look in enumerate(edge_samples):
        lines.append(f"    e{i}a(( )) {_mermaid_arrow(look)} e{i}b(( ))")
        style = _mermaid_link_style(look)
        if style:
            link_styles.setdefault(style, []).append(first_link + i)
    lines.append("  end")
    return lines


# Control characters would end a line in either format; they become spaces.
_CONTROL_CHARACTERS = dict.fromkeys([*range(0x20), 0x7F], " ")

# DOT quoted strings: only \ and " need escaping; a newline becomes Graphviz's \n line break.
_DOT_ESCAPES = _CONTROL_CHARACTERS | {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n"}

# Mermaid labels take entity codes (#quot;); < > & ` would otherwise become HTML or markdown.
_MERMAID_ESCAPES = _CONTROL_CHARACTERS | {
    ord('"'): "#quot;",
    ord("#"): "#35;",
    ord("<"): "#lt;",
    ord(">"): "#gt;",
    ord("&"): "#amp;",
    ord("`"): "#96;",
}


def _dot_id(text: str) -> str:
    return f'"{text.translate(_DOT_ESCAPES)}"'


def _dot_attribute_list(attributes: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={_dot_id(value)}" for key, value in attributes.items())


def _mermaid_text(text: str) -> str:
    return text.translate(_MERMAID_ESCAPES)

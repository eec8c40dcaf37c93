"""Pictures of a snapshot document: Graphviz DOT (and SVG through `dot`), Mermaid, and JSON;
and the graph for other tools, through networkx's writers: GraphML (yEd), GEXF (Gephi) and
node-link JSON (D3).

One drawing convention for both picture formats:
- stale edges are dashed grey;
- undeclared edges (observed, never declared) are dashed orange and labelled "undeclared";
- unobserved edges (declared, not seen lately) are dotted;
- cycle members and the edges inside a cycle are red;
- placeholder services (called, never declared) have a dashed outline;
- databases are cylinders, virtual nodes dashed ellipses.
Names are escaped, so a hostile service name cannot break out of its label.

GraphML and GEXF hold the flattened graph (`graph_networkx.flatten`); node-link JSON the
nested one, every field as in the snapshot. Text reads back as it was written, except for
what XML cannot hold at all: see `xml_text`.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from servicegraph.graph_networkx import Scalar, flatten, to_networkx

SVG_TIMEOUT_SECONDS = 60.0
_DOT_SHAPES = {"database": "cylinder", "virtual": "ellipse"}


class ExportError(Exception):
    """The picture could not be made."""


@dataclass(frozen=True, slots=True)
class _EdgeLook:
    stale: bool
    undeclared: bool
    unobserved: bool
    in_cycle: bool


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def to_dot(doc: Mapping[str, Any]) -> str:
    lines = [
        "digraph servicegraph {",
        "  graph [rankdir=LR, fontname=Helvetica];",
        "  node [shape=box, style=rounded, fontname=Helvetica];",
        "  edge [fontname=Helvetica, fontsize=10];",
    ]
    for node in doc["nodes"]:
        attributes = _dot_node_attributes(node)
        lines.append(f"  {_dot_id(node['name'])} [{_dot_attribute_list(attributes)}];")
    for edge, look in _edge_looks(doc):
        attributes = _dot_edge_attributes(look)
        suffix = f" [{_dot_attribute_list(attributes)}]" if attributes else ""
        lines.append(f"  {_dot_id(edge['source'])} -> {_dot_id(edge['target'])}{suffix};")
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


def to_mermaid(doc: Mapping[str, Any]) -> str:
    """A Mermaid flowchart; nodes are n0, n1, ... with the service names as quoted labels."""
    ids = {node["name"]: f"n{i}" for i, node in enumerate(doc["nodes"])}
    lines = ["flowchart LR"]
    classes: dict[str, list[str]] = {"placeholder": [], "cycle": []}
    for node in doc["nodes"]:
        node_id, label = ids[node["name"]], _mermaid_text(node["name"])
        if node["role"] == "database":
            lines.append(f'  {node_id}[("{label}")]')
        elif node["role"] == "virtual":
            lines.append(f'  {node_id}(["{label}"])')  # a stadium: Mermaid has no ellipse
        else:
            lines.append(f'  {node_id}("{label}")')
        if not node["declared"]:
            classes["placeholder"].append(node_id)
        if node["inCycle"]:
            classes["cycle"].append(node_id)

    link_styles: dict[str, list[int]] = {}
    for i, (edge, look) in enumerate(_edge_looks(doc)):
        source, target = ids[edge["source"]], ids[edge["target"]]
        if look.undeclared:
            lines.append(f'  {source} -.->|"undeclared"| {target}')
        elif look.stale or look.unobserved:
            lines.append(f"  {source} -.-> {target}")
        else:
            lines.append(f"  {source} --> {target}")
        style = _mermaid_link_style(look)
        if style:
            link_styles.setdefault(style, []).append(i)

    lines += [
        "  classDef placeholder stroke-dasharray:5 5",
        "  classDef cycle stroke:red,color:red",
    ]
    lines += [f"  class {','.join(members)} {name}" for name, members in classes.items() if members]
    lines += [
        f"  linkStyle {','.join(map(str, indexes))} {style}"
        for style, indexes in link_styles.items()
    ]
    return "\n".join(lines) + "\n"


def _edge_looks(doc: Mapping[str, Any]) -> Iterable[tuple[Mapping[str, Any], _EdgeLook]]:
    cycle_of = {
        name: i
        for i, members in enumerate([*doc["cycles"], *doc["acknowledgedCycles"]])
        for name in members
    }
    unobserved = {(d["source"], d["target"]) for d in doc["drift"]["unobserved"]}
    for edge in doc["edges"]:
        source, target, stale = edge["source"], edge["target"], edge["stale"]
        source_cycle = cycle_of.get(source)
        yield (
            edge,
            _EdgeLook(
                stale=stale,
                # The same rule as the engine's drift, so a queried subgraph (no drift list)
                # still shows it.
                undeclared=edge["observed"] and not edge["declared"] and not stale,
                unobserved=(source, target) in unobserved,
                in_cycle=not stale
                and source_cycle is not None
                and source_cycle == cycle_of.get(target),
            ),
        )


def _dot_node_attributes(node: Mapping[str, Any]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    dashed = not node["declared"] or node["role"] == "virtual"
    shape = _DOT_SHAPES.get(node["role"])
    if shape:
        attributes.update(shape=shape, style="dashed" if dashed else "solid")
    elif dashed:
        attributes["style"] = "rounded,dashed"
    if node["inCycle"]:
        attributes["color"] = attributes["fontcolor"] = "red"
    attributes["tooltip"] = _tooltip(node)
    return attributes


def _tooltip(node: Mapping[str, Any]) -> str:
    if not node["declared"]:
        return f"{node['name']}: not declared"
    facts = [f"{key} {node[key]}" for key in ("team", "tier") if node[key]]
    facts.append(f"blast radius {node['blastRadius']}")
    return f"{node['name']}: {', '.join(facts)}"


def _dot_edge_attributes(look: _EdgeLook) -> dict[str, str]:
    attributes: dict[str, str] = {}
    if look.stale:
        attributes.update(style="dashed", color="grey", fontcolor="grey")
    elif look.undeclared:
        attributes.update(style="dashed", color="orange", fontcolor="orange", label="undeclared")
    elif look.unobserved:
        attributes["style"] = "dotted"
    if look.in_cycle:
        attributes["color"] = attributes["fontcolor"] = "red"
    return attributes


def _mermaid_link_style(look: _EdgeLook) -> str:
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


# --- the graph for other tools ---------------------------------------------------------


def to_node_link(doc: Mapping[str, Any]) -> str:
    """networkx's node-link JSON, as D3 reads it: `nodes` with an `id`, `edges` with a
    `source` and a `target`, and the snapshot's fields as they are."""
    data = nx.node_link_data(to_networkx(doc), edges="edges")
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def to_graphml(doc: Mapping[str, Any]) -> str:
    """GraphML with typed keys (boolean, long, double, string), for yEd or Cytoscape.

    Written by networkx's own ElementTree writer, not lxml's when lxml is installed, so the
    output is the same wherever it is made.
    """
    buffer = io.BytesIO()
    nx.write_graphml_xml(_xml_graph(doc), buffer)
    return _xml_document(buffer)


def to_gexf(doc: Mapping[str, Any]) -> str:
    """GEXF 1.2 for Gephi; each node's label is its service name."""
    buffer = io.BytesIO()
    nx.write_gexf(_xml_graph(doc), buffer)
    return _xml_document(buffer)


# Characters XML 1.0 cannot hold, not even as character references; and our escapes.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_ESCAPE = re.compile(r"\\(\\|u[0-9a-fA-F]{4})")


def xml_text(text: str) -> str:
    """`text` as XML can hold it: unchanged, unless it holds characters XML cannot hold (most
    control characters, U+FFFE, U+FFFF, lone surrogates) or would read as an escape; then with
    those characters as \\uXXXX and every backslash doubled. `text_from_xml` undoes it, and
    distinct names stay distinct."""
    if _NOT_XML.search(text) is None and ("\\" not in text or text_from_xml(text) == text):
        return text
    return _NOT_XML.sub(lambda m: f"\\u{ord(m[0]):04x}", text.replace("\\", "\\\\"))


def text_from_xml(text: str) -> str:
    """The text `xml_text` was given."""
    return _XML_ESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), text)


def _xml_graph(doc: Mapping[str, Any]) -> nx.DiGraph[str]:
    flat = flatten(to_networkx(doc))
    safe: nx.DiGraph[str] = nx.DiGraph()
    safe.graph.update(_xml_attributes(flat.graph))
    safe.add_nodes_from(
        (xml_text(name), _xml_attributes(node)) for name, node in flat.nodes.items()
    )
    safe.add_edges_from(
        (xml_text(source), xml_text(target), _xml_attributes(edge))
        for source, target, edge in flat.edges(data=True)
    )
    return safe


def _xml_attributes(attributes: Mapping[str, Scalar]) -> dict[str, Scalar]:
    return {
        xml_text(key): xml_text(value) if isinstance(value, str) else value
        for key, value in attributes.items()
    }


def _xml_document(buffer: io.BytesIO) -> str:
    # ElementTree writes a carriage return in an attribute as &#13; but leaves it bare in text,
    # where XML reads it as a line feed; bare, it can only be in text.
    return buffer.getvalue().replace(b"\r", b"&#13;").decode("utf-8") + "\n"

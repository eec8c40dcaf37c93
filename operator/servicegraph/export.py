"""The graph for other tools: JSON (the snapshot document itself), and through networkx's
writers GraphML (yEd), GEXF (Gephi) and node-link JSON (D3). Pictures are in `pictures`.

GraphML and GEXF hold the flattened graph (`graph_networkx.flatten`); node-link JSON the
nested one, every field as in the snapshot. Text reads back as it was written, except for
what XML cannot hold at all: see `xml_text`.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from typing import Any

import networkx as nx

from servicegraph.graph_networkx import Scalar, flatten, to_networkx


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


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

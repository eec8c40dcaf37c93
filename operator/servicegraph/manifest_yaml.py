"""YAML manifests as the API server reads them (through JSON), and a file's documents.

    for doc in documents(path): ...        # every document of a file, `kind: List` unpacked
    split_documents(text)                  # the text cut where documents start, for workers

A file that cannot be read or is not YAML raises ManifestError, naming the file and line.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import os
import re
import sys
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

# The API server takes at most 3 MiB per request; a file of many objects may be larger, but
# one past this is not a manifest (and would take minutes to read and check).
MAX_FILE_BYTES = 16 * 1024 * 1024
# Aliases repeat anchored nodes without copying them; past this many repeated nodes a document
# is refused, as kubectl refuses "excessive aliasing" (a "billion laughs" expands to 10^9).
MAX_ALIASED_NODES = 1_000_000
# The path `-` stands for: standard input, named so in messages.
STDIN: Final = Path("<stdin>")


class ManifestError(Exception):
    """A file that cannot be read at all."""


class _ManifestLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as the API server reads it, through JSON: timestamps stay strings, mapping keys
    become strings, and what JSON cannot hold (NaN, infinity, !!binary, !!set) is an error,
    as are aliases that contain themselves or repeat too much (see MAX_ALIASED_NODES).
    The C parser when available: several times faster, and it caps the nesting depth."""

    # Whether the text can hold an alias at all (each one is written `*anchor`). Without one,
    # no node is shared: nothing to count, and plain nodes are built by `_plain`, six times
    # faster than the general constructor.
    may_alias = True

    def construct_document(self, node: yaml.Node) -> Any:
        if self.may_alias:
            _check_aliases(node)
            return super().construct_document(node)
        try:
            return self._plain(node)
        finally:  # what construct_object remembered of the document's odd nodes
            self.constructed_objects.clear()
            self.recursive_objects.clear()

    def _plain(self, node: yaml.Node) -> Any:
        """What the general constructor builds from `node`, faster for the common nodes:
        strings, maps whose keys are scalars (no merge key), sequences; the rest it builds."""
        kind = node.__class__
        if kind is yaml.ScalarNode:
            return node.value if node.tag == _STR else self.construct_object(node, deep=True)
        if kind is yaml.SequenceNode and node.tag == _SEQ:
            return [self._plain(item) for item in node.value]
        if kind is yaml.MappingNode and node.tag == _MAP:
            keys = [key for key, _ in node.value]
            if all(key.__class__ is yaml.ScalarNode and key.tag != _MERGE for key in keys):
                return {
                    key.value
                    if key.tag == _STR
                    else _json_key(self.construct_object(key, deep=True)): self._plain(value)
                    for key, value in node.value
                }
        return self.construct_object(node, deep=True)

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        """The tag of a node; a plain scalar's through a cache: the C parser asks for every
        scalar of every file, and the same keys and values repeat across objects."""
        if kind is yaml.ScalarNode:
            return _scalar_tag(value, implicit)
        return str(super().resolve(kind, value, implicit))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Each key made a string as it is read: built first, `1` and `true` would be one
        Python key (1 == True) and one value would be lost."""
        if not isinstance(node, yaml.MappingNode):
            raise ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)  # merge keys (<<)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                if not isinstance(key, Hashable):
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        "found unhashable key",
                        key_node.start_mark,
                    )
                key = _json_key(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


@functools.lru_cache(maxsize=4096)
def _scalar_tag(value: str, implicit: tuple[bool, bool]) -> str:
    return str(_RESOLVER.resolve(yaml.ScalarNode, value, implicit))  # type: ignore[no-untyped-call]


_RESOLVER = yaml.resolver.Resolver()  # its scalar rules are the class's: no state involved


_STR, _SEQ, _MAP, _MERGE = (f"tag:yaml.org,2002:{t}" for t in ("str", "seq", "map", "merge"))


def _json_key(key: Any) -> str:
    """A key as YAML-to-JSON conversion (sigs.k8s.io/yaml) writes it."""
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    return str(key)


def _timestamp(loader: SafeConstructor, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


def _finite_float(loader: SafeConstructor, node: yaml.ScalarNode) -> float:
    value = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        raise ConstructorError(
            None, None, f"{node.value!r} is not a number JSON can hold", node.start_mark
        )
    return value


def _int(loader: SafeConstructor, node: yaml.ScalarNode) -> int:
    try:
        return loader.construct_yaml_int(node)
    except ValueError as exc:  # more digits than Python converts (4300)
        raise ConstructorError(None, None, f"invalid integer: {exc}", node.start_mark) from exc


def _no_json_form(loader: SafeConstructor, node: yaml.Node) -> Any:
    raise ConstructorError(
        None,
        None,
        f"{node.tag} has no JSON form; Kubernetes manifests cannot use it",
        node.start_mark,
    )


_ManifestLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
_ManifestLoader.add_constructor("tag:yaml.org,2002:float", _finite_float)
_ManifestLoader.add_constructor("tag:yaml.org,2002:int", _int)
_ManifestLoader.add_constructor("tag:yaml.org,2002:binary", _no_json_form)
_ManifestLoader.add_constructor("tag:yaml.org,2002:set", _no_json_form)


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a document whose aliases contain themselves or, copied out, would add more than
    MAX_ALIASED_NODES nodes. Counts without expanding (each node once): linear in the file."""
    sizes: dict[int, int] = {}  # id(node): its node count with aliases copied out
    open_nodes: set[int] = set()  # the path from the root to the node being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        children = _children(node)
        if counted:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            continue
        if id(node) in sizes:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise ConstructorError(
                    None, None, "an alias refers to a node that contains it", child.start_mark
                )
            if id(child) not in sizes:
                stack.append((child, False))
    repeated = sizes[id(root)] - len(sizes)
    if repeated > MAX_ALIASED_NODES:
        raise ConstructorError(
            None,
            None,
            f"excessive aliasing: aliases repeat {repeated} nodes (at most {MAX_ALIASED_NODES})",
            root.start_mark,
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def read_text(path: Path) -> str:
    """The text of the file at `path` (or of standard input, for STDIN)."""
    try:
        if path is STDIN:
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            size = len(data)
        else:
            with path.open("rb", buffering=0) as file:  # one open, no stat: files are many
                data = _read_capped(file)
                size = len(data) if len(data) <= MAX_FILE_BYTES else os.fstat(file.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise ManifestError(
                f"{path}: {size / 2**20:.1f} MiB is more than the {MAX_FILE_BYTES // 2**20} MiB "
                "a manifest file may hold; split it into several files"
            )
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from exc


def _read_capped(file: BinaryIO) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes of `file`, in reads that double from 64 KiB: one read
    of the cap would allocate 16 MiB for every file, five times the cost of reading a small
    manifest."""
    parts: list[bytes] = []
    size = 0
    while size <= MAX_FILE_BYTES:
        part = file.read(min(max(size, 64 * 1024), MAX_FILE_BYTES + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def documents(path: Path, text: str | None = None) -> Iterator[Any]:
    """Every document of the file at `path` (whose text is `text`, when read already), the
    items of a `kind: List` one by one."""
    if text is None:
        text = read_text(path)
    try:
        for doc in _load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "List":
                items = doc.get("items") or []
                if not isinstance(items, list):
                    raise ManifestError(f"{path}: the items of a List must be a list")
                yield from items
            elif doc is not None:
                yield doc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        number = text.count("\n", 0, exc.position) + 1
        raise ManifestError(f"{path}: invalid YAML at line {number}: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{path}: invalid YAML{line}: {problem}") from exc
    except RecursionError as exc:  # the pure-Python parser, without libyaml's depth limit
        raise ManifestError(f"{path}: invalid YAML: nested too deeply") from exc


# A line that starts a document: `---` at the start of a line, then a space or the line's end
# (YAML forbids such a line inside any scalar, so nothing else starts with it).
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|\Z)", re.MULTILINE)
# A directive (%YAML, %TAG) holds for the document after it: a text with one is not cut.
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)


def split_documents(text: str, parts: int) -> list[str]:
    """`text` cut into at most `parts` pieces of about equal size, each cut where a document
    starts, so that each piece reads as the documents it holds. A piece that fails to read
    says nothing about the whole text: read the whole text for the message."""
    if parts <= 1 or _DIRECTIVE.search(text):
        return [text]
    starts = [m.start() for m in _DOCUMENT_START.finditer(text)]
    cuts = {0, len(text)}
    for part in range(1, parts):
        # The first document start at or after the part's share of the text.
        index = bisect.bisect_left(starts, len(text) * part // parts)
        if index < len(starts):
            cuts.add(starts[index])
    bounds = sorted(cuts)
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _load_all(text: str) -> Iterator[Any]:
    """`yaml.load_all` with our loader, which checks aliases only if the text can hold one."""
    loader = _ManifestLoader(text)
    loader.may_alias = "*" in text
    try:
        while loader.check_data():
            yield loader.get_data()
    finally:
        loader.dispose()

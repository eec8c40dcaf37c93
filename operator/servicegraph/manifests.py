"""Reading ServiceDependency and ServiceGraph manifests from files and folders, as kubectl would.

Multi-document YAML, JSON and `kind: List` are accepted; other kinds are skipped, so a whole
Helm-rendered or Argo CD application folder can be handed over as it is.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError, SafeConstructor

from servicegraph.api import API_VERSION, GROUP, ServiceDependency, ServiceGraph
from servicegraph.validation import FieldError, cut, printable, validate

SUFFIXES = (".yaml", ".yml", ".json")
OUR_KINDS = ("ServiceDependency", "ServiceGraph")
# The API server takes at most 3 MiB per request; a file of many objects may be larger, but
# one past this is not a manifest (and would take minutes to read and check).
MAX_FILE_BYTES = 16 * 1024 * 1024
# Aliases repeat anchored nodes without copying them; past this many repeated nodes a document
# is refused, as kubectl refuses "excessive aliasing" (a "billion laughs" expands to 10^9).
MAX_ALIASED_NODES = 1_000_000
# What a problem says after its file's name, at the most.
MAX_PROBLEM_LENGTH: Final = 590
# The path `-` stands for: standard input, named so in messages.
STDIN: Final = Path("<stdin>")


class ManifestError(Exception):
    """A file that cannot be read at all."""


@dataclass(frozen=True)
class Problem:
    """An object that admission would refuse."""

    path: Path
    kind: str
    name: str
    error: FieldError

    def __str__(self) -> str:
        # One short line whatever the object holds: the error, name and kind are each cut,
        # and so is all of them together.
        return f"{self.path}: {cut(f'{self.kind} {self.name}: {self.error}', MAX_PROBLEM_LENGTH)}"


# An object's identity as the API server sees it: kind, namespace (None: the one applied to),
# name.
ObjectKey = tuple[str, str | None, str | None]


@dataclass
class ManifestSet:
    dependencies: list[ServiceDependency] = field(default_factory=list)
    graphs: list[ServiceGraph] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Where each valid object was read from, so that messages can name the file.
    origins: dict[ObjectKey, Path] = field(default_factory=dict)

    def origin(self, kind: str, namespace: str | None, name: str | None) -> Path | None:
        return self.origins.get((kind, namespace or None, name))


def files_under(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        if str(raw) == "-":  # as kubectl's `-f -`: what a pipe brings, e.g. `helm template`
            yield STDIN
            continue
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise ManifestError(f"{path}: no such file or directory")


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


def _documents(path: Path) -> Iterator[Any]:
    try:
        piped = sys.stdin.buffer.read(MAX_FILE_BYTES + 1) if path is STDIN else None
        size = path.stat().st_size if piped is None else len(piped)
        if size > MAX_FILE_BYTES:
            raise ManifestError(
                f"{path}: {size / 2**20:.1f} MiB is more than the {MAX_FILE_BYTES // 2**20} MiB "
                "a manifest file may hold; split it into several files"
            )
        text = path.read_text(encoding="utf-8") if piped is None else piped.decode("utf-8")
        for doc in _load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "List":
                items = doc.get("items") or []
                if not isinstance(items, list):
                    raise ManifestError(f"{path}: the items of a List must be a list")
                yield from items
            elif doc is not None:
                yield doc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from exc
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


def _load_all(text: str) -> Iterator[Any]:
    """`yaml.load_all` with our loader, which checks aliases only if the text can hold one."""
    loader = _ManifestLoader(text)
    loader.may_alias = "*" in text
    try:
        while loader.check_data():
            yield loader.get_data()
    finally:
        loader.dispose()


def load(paths: Iterable[str | Path]) -> ManifestSet:
    """Every ServiceDependency and ServiceGraph under `paths`: valid ones parsed, others listed."""
    result = ManifestSet()
    for path in files_under(paths):
        for doc in _documents(path):
            if not isinstance(doc, dict):
                continue
            if not str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
                continue  # someone else's API group, whatever its kind is called
            kind = cut(printable(str(doc.get("kind", ""))[:100]), 40)
            metadata = doc.get("metadata")
            if not isinstance(metadata, dict):
                metadata = {}
            name = "/".join(str(p) for p in (metadata.get("namespace"), metadata.get("name")) if p)
            name = printable(name[:100])
            name = name if len(name) <= 80 else name[:77] + "..."
            parsed, errors = parse_object(doc)
            if parsed is not None:
                errors = _duplicate(result, path, kind, parsed)
            if errors or parsed is None:
                result.problems += [Problem(path, kind, name or "<unnamed>", e) for e in errors]
            elif isinstance(parsed, ServiceDependency):
                result.dependencies.append(parsed)
            else:
                result.graphs.append(parsed)
    return result


def parse_object(
    doc: Mapping[str, Any],
) -> tuple[ServiceDependency | ServiceGraph | None, list[FieldError]]:
    """An object of our group as admission reads it: parsed, or what it would refuse."""
    # A misspelt kind or version of our group is a mistake, never someone else's object:
    # skipping it would turn a pipeline's gate off without a word.
    errors = _unknown_type(doc) or validate(dict(doc))
    if errors:
        return None, errors
    model = ServiceDependency if doc.get("kind") == "ServiceDependency" else ServiceGraph
    try:
        return model.model_validate(doc), []
    except ValidationError as exc:  # what admission lets through, the models must
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return None, [FieldError(where, f"Invalid value: {first['msg']}")]


def _duplicate(
    result: ManifestSet, path: Path, kind: str, parsed: ServiceDependency | ServiceGraph
) -> list[FieldError]:
    """Two objects of one kind, namespace and name: one apply would overwrite the other, so
    which one the cluster ends up with depends on the order of the files."""
    key = (kind, parsed.metadata.namespace or None, parsed.metadata.name)
    first = result.origins.get(key)
    if first is None:
        result.origins[key] = path
        return []
    where = "earlier in the same file" if first == path else f"in {first}"
    return [FieldError("metadata.name", f'Duplicate value: "{key[2]}": also defined {where}')]


def _unknown_type(doc: Mapping[str, Any]) -> list[FieldError]:
    if doc.get("kind") not in OUR_KINDS:
        kind = printable(str(doc.get("kind"))[:100])
        kinds = ", ".join(f'"{k}"' for k in OUR_KINDS)
        return [FieldError("kind", f'Unsupported value: "{kind}": {GROUP} has the kinds {kinds}')]
    if doc.get("apiVersion") != API_VERSION:
        version = printable(str(doc.get("apiVersion"))[:100])
        return [
            FieldError(
                "apiVersion",
                f'Unsupported value: "{version}": supported values: "{API_VERSION}"',
            )
        ]
    return []


def cluster_objects(paths: Iterable[str | Path], namespace: str) -> Iterator[dict[str, Any]]:
    """Every object under `paths` as `kubectl apply -n NAMESPACE` would create it: one without
    a namespace lands in `namespace`. Cluster-scoped kinds keep none (inference reads only
    namespaced ones)."""
    for path in files_under(paths):
        for doc in _documents(path):
            if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
                continue
            metadata = doc["metadata"]
            if not metadata.get("namespace"):
                doc = {**doc, "metadata": {**metadata, "namespace": namespace}}
            yield doc

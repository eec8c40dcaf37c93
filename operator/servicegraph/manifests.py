"""Reading ServiceDependency and ServiceGraph manifests from files and folders, as kubectl would.

Multi-document YAML, JSON and `kind: List` are accepted; other kinds are skipped, so a whole
Helm-rendered or Argo CD application folder can be handed over as it is.

Reading and admission (YAML, schema, rules) are most of the work; with `workers` > 1 a large
input is shared among that many processes, a file of many documents cut where documents start.
The result is the same, in the same order.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import ValidationError

from servicegraph.api import API_VERSION, GROUP, ServiceDependency, ServiceGraph
from servicegraph.manifest_yaml import STDIN, ManifestError, documents, read_text, split_documents
from servicegraph.validation import FieldError, cut, printable, validate

SUFFIXES = (".yaml", ".yml", ".json")
OUR_KINDS = ("ServiceDependency", "ServiceGraph")
# What a problem says after its file's name, at the most.
MAX_PROBLEM_LENGTH: Final = 590
# Below this many bytes in all, or files, starting processes costs more than it saves.
PARALLEL_FROM_BYTES: Final = 512 * 1024
PARALLEL_FROM_FILES: Final = 1000
# Pieces of work per process: enough that one slow piece does not leave the others idle.
PIECES_PER_WORKER: Final = 4


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
            # In the order of Path's comparison, part by part, without a Path for each name
            # compared (as Path.parts would need): ten thousand files are common.
            names = _manifest_files(str(path))
            found = sorted(names, key=lambda name: name.split(os.sep))  # noqa: PTH206
            yield from map(Path, found)
        elif path.is_file():
            yield path
        else:
            raise ManifestError(f"{path}: no such file or directory")


def _manifest_files(folder: str) -> Iterator[str]:
    """The files under `folder` with a manifest's suffix, as `Path.rglob` finds them (links to
    folders not followed, unreadable folders passed over), without a stat for each: a folder
    of thousands of manifests is common."""
    try:
        with os.scandir(folder) as entries:
            found = list(entries)
    except OSError:
        return
    for entry in found:
        if entry.is_dir(follow_symlinks=False):
            yield from _manifest_files(entry.path)
        elif _suffix(entry.name) in SUFFIXES and entry.is_file():
            yield entry.path


def _suffix(name: str) -> str:
    """`Path(name).suffix`, for a plain file name."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def available_cores() -> int:
    """The processor cores this process may run on."""
    if sys.platform == "linux":
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load(
    paths: Iterable[str | Path], *, workers: int = 1, parallel_from: int = PARALLEL_FROM_BYTES
) -> ManifestSet:
    """Every ServiceDependency and ServiceGraph under `paths`: valid ones parsed, others listed.
    With `workers` > 1, reading and admission run in that many processes once the files hold
    `parallel_from` bytes or more."""
    result = ManifestSet()
    for item in _admitted(list(files_under(paths)), workers, parallel_from):
        parsed, errors = _parsed(item.doc) if item.doc is not None else (None, item.errors)
        if parsed is not None:
            errors = _duplicate(result, item.path, item.kind, parsed)
        if errors or parsed is None:
            result.problems += [Problem(item.path, item.kind, item.name, e) for e in errors]
        elif isinstance(parsed, ServiceDependency):
            result.dependencies.append(parsed)
        else:
            result.graphs.append(parsed)
    return result


@dataclass(frozen=True, slots=True)
class Admitted:
    """An object of our group as admission judged it: `doc` when it passes, else `errors`."""

    path: Path
    kind: str  # for messages: printable and short
    name: str  # namespace/name, for messages
    doc: dict[str, Any] | None
    errors: list[FieldError]


def _admit(path: Path, docs: Iterable[Any]) -> Iterator[Admitted]:
    for doc in docs:
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
        name = (name if len(name) <= 80 else name[:77] + "...") or "<unnamed>"
        errors = _admission_errors(doc)
        yield Admitted(path, kind, name, None if errors else doc, errors)


# A piece of work: a file to read, or a piece of a file's text already read.
_Piece = tuple[Path, str | None]
# What a process makes of a piece: its objects (as JSON, see `_to_json`), the file's error, or
# None when the piece of text did not read on its own (the whole file is read again, for the
# file's own message).
_Outcome = bytes | ManifestError | None


def _admitted(files: list[Path], workers: int, parallel_from: int) -> Iterator[Admitted]:
    """The objects of `files` in order, admission judged."""
    pieces = _pieces(files, workers, parallel_from) if workers > 1 else None
    if pieces is None:
        for path in files:
            yield from _admit(path, documents(path))
        return
    batches = _batches(pieces, workers * PIECES_PER_WORKER)
    # fork: the workers start at once with everything imported; the CLI runs no threads.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        outcomes = itertools.chain.from_iterable(pool.map(_read_batch, batches))
        for path, of_file in itertools.groupby(outcomes, key=lambda outcome: outcome[0]):
            found = [outcome for _, outcome in of_file]
            if any(outcome is None for outcome in found):
                yield from _admit(path, documents(path))
                continue
            for outcome in found:
                if isinstance(outcome, ManifestError):
                    raise outcome
                assert outcome is not None
                yield from _from_json(path, outcome)


def _pieces(files: list[Path], workers: int, parallel_from: int) -> list[_Piece] | None:
    """The work for `workers` processes, or None when the files are too few or too small."""
    if sys.platform != "linux" or STDIN in files:  # fork is Linux's to rely on
        return None
    if len(files) >= PARALLEL_FROM_FILES:
        return [(path, None) for path in files]
    sizes = {path: _size(path) for path in files}
    if sum(sizes.values()) < parallel_from:
        return None
    pieces: list[_Piece] = []
    share = sum(sizes.values()) // (workers * PIECES_PER_WORKER) or 1
    for path in files:
        text = read_text(path)
        parts = split_documents(text, max(1, sizes[path] // share))
        pieces += [(path, part) for part in parts]
    return pieces


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # read as usual, for the message


def _batches(pieces: list[_Piece], count: int) -> list[list[_Piece]]:
    """`pieces` in `count` runs of neighbours (order kept), about equal in number."""
    size = -(-len(pieces) // count)
    return [pieces[i : i + size] for i in range(0, len(pieces), size)]


def _read_batch(batch: list[_Piece]) -> list[tuple[Path, _Outcome]]:
    """In a worker process: each piece read and its objects admission judged."""
    return [(path, _read_piece(path, text)) for path, text in batch]


def _read_piece(path: Path, text: str | None) -> _Outcome:
    try:
        return _to_json(_admit(path, documents(path, text)))
    except ManifestError as error:
        return None if text is not None else error


def _to_json(admitted: Iterable[Admitted]) -> bytes:
    """Objects as JSON, several times quicker to pass between processes than pickled: what
    admission lets through is JSON's to hold (strings for keys, finite numbers, 64-bit
    integers; the YAML reader refuses lone surrogates)."""
    return orjson.dumps(
        [
            (item.kind, item.name, item.doc, [(e.field, e.message) for e in item.errors])
            for item in admitted
        ]
    )


def _from_json(path: Path, encoded: bytes) -> Iterator[Admitted]:
    for kind, name, doc, errors in orjson.loads(encoded):
        yield Admitted(path, kind, name, doc, [FieldError(*error) for error in errors])


# An object's model, or what admission or the model refuses in it.
Parsed = tuple[ServiceDependency | ServiceGraph | None, list[FieldError]]


def parse_object(doc: dict[str, Any]) -> Parsed:
    """An object of our group as admission reads it: parsed, or what it would refuse."""
    errors = _admission_errors(doc)
    return (None, errors) if errors else _parsed(doc)


def _admission_errors(doc: dict[str, Any]) -> list[FieldError]:
    # A misspelt kind or version of our group is a mistake, never someone else's object:
    # skipping it would turn a pipeline's gate off without a word.
    return _unknown_type(doc) or validate(doc)


def _parsed(
    doc: dict[str, Any],
) -> tuple[ServiceDependency | ServiceGraph | None, list[FieldError]]:
    """The model of an object admission lets through."""
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
        for doc in documents(path):
            if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
                continue
            metadata = doc["metadata"]
            if not metadata.get("namespace"):
                doc = {**doc, "metadata": {**metadata, "namespace": namespace}}
            yield doc

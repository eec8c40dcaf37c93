"""Reading ServiceDependency and ServiceGraph manifests from files and folders, as kubectl would.

Multi-document YAML, JSON and `kind: List` are accepted; other kinds are skipped, so a whole
Helm-rendered or Argo CD application folder can be handed over as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from servicegraph.api import GROUP, ServiceDependency, ServiceGraph
from servicegraph.validation import FieldError, validate

SUFFIXES = (".yaml", ".yml", ".json")
OUR_KINDS = ("ServiceDependency", "ServiceGraph")


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
        return f"{self.path}: {self.kind} {self.name}: {self.error}"


@dataclass
class ManifestSet:
    dependencies: list[ServiceDependency] = field(default_factory=list)
    graphs: list[ServiceGraph] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def files_under(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise ManifestError(f"{path}: no such file or directory")


def _documents(path: Path) -> Iterator[Any]:
    try:
        text = path.read_text(encoding="utf-8")
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "List":
                yield from doc.get("items") or []
            elif doc is not None:
                yield doc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{path}: invalid YAML{line}: {problem}") from exc


def load(paths: Iterable[str | Path]) -> ManifestSet:
    """Every ServiceDependency and ServiceGraph under `paths`: valid ones parsed, others listed."""
    result = ManifestSet()
    for path in files_under(paths):
        for doc in _documents(path):
            if not isinstance(doc, dict) or doc.get("kind") not in OUR_KINDS:
                continue
            if not str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
                continue  # same kind name, someone else's API group
            kind = doc["kind"]
            metadata = doc.get("metadata")
            if not isinstance(metadata, dict):
                metadata = {}
            name = "/".join(str(p) for p in (metadata.get("namespace"), metadata.get("name")) if p)
            errors = validate(doc)
            if errors:
                result.problems += [Problem(path, kind, name or "<unnamed>", e) for e in errors]
            elif kind == "ServiceDependency":
                result.dependencies.append(ServiceDependency.model_validate(doc))
            else:
                result.graphs.append(ServiceGraph.model_validate(doc))
    return result

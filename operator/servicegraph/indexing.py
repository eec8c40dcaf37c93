"""What the in-memory indexes keep of our objects: no more than the graphs need."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from servicegraph.api import ServiceDependency, ServiceDependencyStatus, ServiceGraphSpec
from servicegraph.graph import ServiceDeclaration
from servicegraph.tenancy import Tenancy

ObjectKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class IndexedDependency:
    """What the in-memory index keeps of one ServiceDependency: no more than the graph needs."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    generation: int | None
    declaration: ServiceDeclaration | None
    error: str | None = None
    # The fields of the status the operator writes, as canonical JSON: as dicts of lists of
    # dicts they cost about 2 KB an object, as JSON about 400 bytes; a graph loop reads them
    # once per recomputation. Compared too: Kopf keeps the stored entry when a new one is
    # equal, and the status must stay current (a graph loop trusts it once it shows the
    # loop's own write).
    status_json: str = "{}"

    @property
    def status(self) -> dict[str, Any]:
        """The fields of the object's status that the operator writes."""
        loaded: dict[str, Any] = json.loads(self.status_json)
        return loaded

    def inputs(self) -> IndexedDependency:
        """What graphs are built from: the entry without its status (a status write of a
        graph loop must not wake the loops)."""
        return dataclasses.replace(self, status_json="{}")

    @classmethod
    def from_object(
        cls,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        spec: Mapping[str, Any],
        generation: int | None,
        status: Mapping[str, Any],
    ) -> IndexedDependency:
        managed = status_json(
            {key: status[key] for key in _DEPENDENCY_STATUS_KEYS if key in status}
        )
        try:
            obj = ServiceDependency.model_validate(
                {"metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)}
            )
        except ValidationError as error:
            return cls(
                namespace, name, dict(labels), generation, None, _first_error(error), managed
            )
        return cls(namespace, name, dict(labels), generation, obj.declaration(), None, managed)


def status_json(status: Mapping[str, Any]) -> str:
    """`status` as canonical JSON. The standard library's, not orjson's: each of orjson's
    results keeps a 4 KB allocation behind it, which for ten thousand kept for long is 40 MB."""
    return json.dumps(status, sort_keys=True, separators=(",", ":"))


# Every field the operator writes, from the model, so that a new one is compared too (else
# each restart would find it missing and write every status again).
_DEPENDENCY_STATUS_KEYS = tuple(
    field.alias or name for name, field in ServiceDependencyStatus.model_fields.items()
)


@dataclass(frozen=True)
class IndexedGraph:
    namespace: str
    name: str
    spec: ServiceGraphSpec | None  # None: invalid, selects nothing until fixed
    error: str | None = None

    @classmethod
    def from_object(cls, namespace: str, name: str, spec: Mapping[str, Any]) -> IndexedGraph:
        try:
            return cls(namespace, name, ServiceGraphSpec.model_validate(dict(spec)))
        except ValidationError as error:
            return cls(namespace, name, None, _first_error(error))

    def selects(self, dep: IndexedDependency, tenancy: Tenancy) -> bool:
        """Whether the graph's selector names `dep` and `dep`'s namespace lets it read there."""
        return (
            self.spec is not None
            and self.spec.selector.selects(dep.namespace, dep.labels, self.namespace)
            and tenancy.may_read(self.namespace, dep.namespace)
        )


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"

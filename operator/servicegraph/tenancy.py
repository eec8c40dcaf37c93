"""Who may read which namespace: cross-namespace selection is an explicit grant.

A ServiceGraph always selects from its own namespace. It selects from another namespace only
when that namespace grants it, in the spirit of Gateway API's ReferenceGrant:

- the other namespace carries the label `readers.graph.slo-engine.io/<graph namespace>`
  (any value but "false"), set by whoever owns that namespace; or
- the graph lives in a platform namespace the operator trusts (`--platform-namespace`,
  by default the operator's own namespace).

`["*"]` selects the graph's own namespace and every namespace that grants it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

GRANT_PREFIX = "readers.graph.slo-engine.io/"


def granted_to(labels: Mapping[str, str]) -> frozenset[str]:
    """The namespaces whose graphs a namespace with `labels` lets read it."""
    return frozenset(
        key[len(GRANT_PREFIX) :]
        for key, value in labels.items()
        if key.startswith(GRANT_PREFIX) and value.lower() != "false"
    )


@dataclass(frozen=True)
class Tenancy:
    platform: frozenset[str] = frozenset()
    # The grants of each namespace, as the namespace index holds them; None: not watched
    # (an operator limited to some namespaces cannot read Namespace objects).
    grants: Callable[[str], frozenset[str]] | None = field(default=None, compare=False)

    def may_read(self, graph_namespace: str, namespace: str) -> bool:
        if namespace == graph_namespace or graph_namespace in self.platform:
            return True
        return self.grants is not None and graph_namespace in self.grants(namespace)


def platform_namespaces(given: Iterable[str], own: str | None) -> frozenset[str]:
    """The namespaces whose graphs may read every namespace: those given, else the operator's."""
    chosen = frozenset(n for n in given if n)
    return chosen or (frozenset({own}) if own else frozenset())

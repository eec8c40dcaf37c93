"""Cycles: a strongly connected component of two or more services, and a real cycle through it.

Pure: networkx and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import networkx as nx


@dataclass(frozen=True, slots=True, order=True)
class Cycle(Sequence[str]):
    """A strongly connected component of two or more services, and a real cycle through it.

    `members` is the whole component, sorted; acknowledgement, `in_cycle` and alarms are about
    it. As a sequence a Cycle is its members, so `frozenset(cycle)` is the component.
    `path` is the shortest cycle through the smallest member, starting there: each name calls
    the next and the last calls the first, over live (non-stale) edges. It may leave members
    out; `describe` says how many the component holds.
    """

    members: tuple[str, ...]
    path: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[str]:
        return iter(self.members)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self.members[index]

    def describe(self, max_names: int | None = None) -> str:
        """For people: the path, closed on itself, and the size of the component.

        `a -> b -> a (component of 3 services: a, b, c)`; with `max_names`, the path and the
        member list each show at most that many names, then say how many more there are.
        """
        shown = self.path if max_names is None else self.path[:max_names]
        arrow = " -> ".join(shown)
        if len(shown) < len(self.path):
            arrow += f" -> ... and {len(self.path) - len(shown)} more"
        text = f"{arrow} -> {self.path[0]} (component of {self.size} services"
        if len(self.path) < self.size:  # the path leaves some out: name them
            listed = self.members if max_names is None else self.members[:max_names]
            text += ": " + ", ".join(listed)
            if len(listed) < self.size:
                text += f" and {self.size - len(listed)} more"
        return text + ")"


def find_cycle(members: Iterable[str], network: nx.DiGraph[str]) -> Cycle:
    """The Cycle of one strongly connected component of `network` (an edge: a call).

    Breadth-first from the smallest member, inside the component, callees smallest name
    first: the first member found that calls the start closes a shortest cycle, and the
    name order settles ties.
    """
    ordered = tuple(sorted(members))
    if len(ordered) < 2:
        raise ValueError(f"a cycle needs two services or more, not {list(ordered)}")
    inside = network.subgraph(ordered)
    start = ordered[0]
    parent: dict[str, str] = {}
    for name in (start, *_visited(inside, start, parent)):
        if inside.has_edge(name, start):
            back = [name]
            while back[-1] != start:
                back.append(parent[back[-1]])
            return Cycle(ordered, tuple(reversed(back)))
    raise ValueError(f"{', '.join(ordered)} is not a strongly connected component")


def next_hops_to(network: nx.DiGraph[str], target: str) -> dict[str, str]:
    """For every node that reaches `target`, its next node on a shortest path there.

    One breadth-first walk back from `target`, callers smallest name first, so that the paths
    never depend on the order the edges were added in; a path per node would be a walk each.
    """
    return {
        caller: callee
        for callee, caller in nx.bfs_edges(network, target, reverse=True, sort_neighbors=sorted)
    }


def _visited(network: nx.DiGraph[str], start: str, parent: dict[str, str]) -> Iterator[str]:
    """The nodes breadth-first from `start` in the order they are reached; fills `parent`."""
    for caller, callee in nx.bfs_edges(network, start, sort_neighbors=sorted):
        parent[callee] = caller
        yield callee

"""Every service's transitive callers at once, as bitsets over the condensation.

Pure: networkx and nothing else.

networkx answers this one service at a time (`nx.ancestors`, `nx.descendants`); for every
service that is one traversal each, O(V * E): 1.06 s at 10,000 services and 50,000 edges (the
whole analysis budget) and 48 s at 20,000. Over `nx.condensation` in topological order each
component ORs its callers' sets into its own, complete by then: one pass over the edges, 0.12 s
and 0.57 s (`bench/graph_bench.py`). Bit i stands for the i-th node of the network, so a
network built with sorted nodes lists callers by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx


@dataclass(frozen=True, slots=True)
class Dependents:
    """Who depends on whom in one network: its strongly connected components, and the callers
    of each node. The condensation they come from is emptied once they are counted."""

    members: list[set[str]]  # per component (nx.condensation's numbering)
    mapping: dict[str, int]  # the component of each node
    names: tuple[str, ...]  # bit i is names[i]
    callers: list[int]  # per component: bits of every node that reaches it, its own members too
    order: list[int]  # the components, callers before callees (nx.topological_sort)

    @classmethod
    def of(cls, network: nx.DiGraph[str]) -> Dependents:
        condensation = nx.condensation(network)
        names = tuple(network)
        position = {name: i for i, name in enumerate(names)}
        # nx.condensation numbers its components 0, 1, ... in the order it adds them.
        members: list[set[str]] = [
            condensation.nodes[component]["members"] for component in range(len(condensation))
        ]
        own = [0] * len(condensation)
        for component, names_in in enumerate(members):
            for name in names_in:
                own[component] |= 1 << position[name]
        callers = [0] * len(condensation)
        order = list(nx.topological_sort(condensation))
        for component in order:
            reached = own[component]
            for caller in condensation.pred[component]:
                reached |= callers[caller]
            callers[component] = reached
        mapping = condensation.graph["mapping"]
        release(condensation)
        return cls(members, mapping, names, callers, order)

    def first_names(self, bits: int, limit: int) -> list[str]:
        """The names of the lowest `limit` bits set in `bits`: the first by name when the
        network's nodes were added sorted."""
        if not bits:
            return []
        return [
            self.names[i]
            for _, i in zip(range(limit), _set_bits(_lowest(bits, limit)), strict=False)
        ]


def release(*networks: nx.DiGraph[Any]) -> None:
    """Empty graphs that are done with.

    A networkx graph refers to itself through the views it caches (`G.edges`, `G.nodes`, ...),
    so only the cyclic collector frees it, and the analysis runs with that collector paused:
    at 10,000 services its graphs would stay in memory through the snapshot's encoding.
    """
    for network in networks:
        network.clear()


def _lowest(bits: int, count: int) -> int:
    """`bits` cut to a low part that still holds its lowest `count` set bits (or all of it):
    the part grows fourfold from 64 bits, so a service with thousands of callers has its first
    names found without writing out all of its bits."""
    width = 64
    low = bits & ((1 << width) - 1)
    while low != bits and low.bit_count() < count:
        width *= 4
        low = bits & ((1 << width) - 1)
    return low


def _set_bits(bits: int) -> Iterator[int]:
    """Positions of the bits set in `bits`, lowest first."""
    # bin() and str.find run in C: far faster than shifting a 10,000-bit int a bit at a time.
    text = bin(bits)[:1:-1]
    found = text.find("1")
    while found != -1:
        yield found
        found = text.find("1", found + 1)

"""The bitsets of callers give names back in order, however wide they are."""

from __future__ import annotations

import itertools

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from servicegraph.dependents import Dependents

WIDTH = 5000


def dependents_of(size: int, *, chained: bool) -> Dependents:
    """Services s00000, s00001, ...: apart, or each calling the next."""
    names = [f"s{i:05}" for i in range(size)]
    network: nx.DiGraph[str] = nx.DiGraph()
    network.add_nodes_from(names)
    if chained:
        network.add_edges_from(itertools.pairwise(names))
    return Dependents.of(network)


APART = dependents_of(WIDTH, chained=False)


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(0, WIDTH - 1), max_size=400), st.integers(1, 30))
def test_first_names_are_the_lowest_bits_set_by_name(positions: set[int], limit: int) -> None:
    dependents = APART
    bits = sum(1 << position for position in positions)
    expected = [dependents.names[position] for position in sorted(positions)[:limit]]
    assert dependents.first_names(bits, limit) == expected


def test_first_names_of_callers_thousands_deep() -> None:
    """A chain of 3,000 services: the last has every other one as a caller."""
    dependents = dependents_of(3000, chained=True)
    names = dependents.names
    last = dependents.callers[dependents.mapping[names[-1]]]
    assert last.bit_count() == 3000
    assert dependents.first_names(last, 20) == list(names[:20])
    assert dependents.first_names(1 << 2999, 20) == [names[-1]]

"""The graph engine against plain brute-force references, on random small graphs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from servicegraph import snapshot
from servicegraph.api import MAX_CYCLE_SAMPLE_NAMES
from servicegraph.cycles import Cycle
from servicegraph.graph import (
    MAX_DEPTH,
    Direction,
    EdgeAttributes,
    Graph,
    Observation,
    ServiceDeclaration,
    SourceKind,
    analyse,
)
from servicegraph.status import (
    MAX_CYCLES_IN_MESSAGE,
    cycle_sample,
    graph_status,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STALE_AFTER_HOURS = 168
Edge = tuple[str, str]


@dataclass(frozen=True)
class RandomGraph:
    """Inputs to `analyse`, and the truth about each edge to check its answers against."""

    declarations: list[ServiceDeclaration]
    observations: list[Observation]
    nodes: set[str]
    edges: set[Edge]
    stale: set[Edge]

    @property
    def live(self) -> set[Edge]:
        return self.edges - self.stale

    def analyse(
        self, acknowledged_cycles: Iterable[Iterable[str]] = (), *, figures: bool = True
    ) -> Graph:
        return analyse(
            self.declarations,
            self.observations,
            now=NOW,
            stale_after=timedelta(hours=STALE_AFTER_HOURS),
            acknowledged_cycles=acknowledged_cycles,
            observing=True,
            figures=figures,
        )


@st.composite
def random_graphs(draw: st.DrawFn) -> RandomGraph:
    # Names of uneven length so that sorting by name is not sorting by index.
    names = [f"s{i}" for i in range(draw(st.integers(1, 12)))]
    # A density per graph, so that sparse graphs (chains, trees) and dense ones both come up.
    density = draw(st.integers(0, 40))
    edges = {
        (source, target)
        for source in names
        for target in names
        if source != target and draw(st.integers(0, 99)) < density
    }
    declared_services = {name for name in names if draw(st.booleans())}

    depends_on: dict[str, list[str]] = {name: [] for name in declared_services}
    observations, stale = [], set()
    for source, target in sorted(edges):
        # Only a declared service can declare a dependency; any edge may also be observed.
        declared = source in declared_services and draw(st.booleans())
        # Ages straddle the horizon and hit it exactly (seen at the horizon = not stale).
        ages = st.integers(0, 400)
        age = draw(st.none() | ages) if declared else draw(ages)
        if declared:
            depends_on[source].append(target)
        if age is not None:
            observations.append(
                Observation(source, target, SourceKind.OTEL, NOW - timedelta(hours=age))
            )
            if not declared and age > STALE_AFTER_HOURS:
                stale.add((source, target))
    declarations = [
        ServiceDeclaration(
            name, "ns", name, depends_on=tuple((t, EdgeAttributes()) for t in depends_on[name])
        )
        for name in sorted(declared_services)
    ]
    nodes = declared_services | {name for edge in edges for name in edge}
    return RandomGraph(declarations, observations, nodes, edges, stale)


def reachable(start: str, edges: set[Edge]) -> set[str]:
    """Every node `start` reaches by following calls (itself included)."""
    seen, todo = {start}, [start]
    while todo:
        current = todo.pop()
        for source, target in edges:
            if source == current and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def reference_walk(start: str, edges: set[Edge], depth: int) -> tuple[set[str], dict[Edge, int]]:
    """Level by level: nodes within `depth` calls, and every edge leaving a nearer node with
    its hop (1 for the edges leaving `start`)."""
    nodes, frontier, walked = {start}, {start}, {}
    for hop in range(1, depth + 1):
        leaving = {(s, t) for (s, t) in edges if s in frontier}
        walked |= dict.fromkeys(leaving, hop)
        frontier = {t for _, t in leaving} - nodes
        nodes |= frontier
    return nodes, walked


def reference_query(
    graph: RandomGraph, service: str, direction: Direction, depth: int, include_stale: bool
) -> tuple[set[str], dict[Edge, dict[Direction, int]]]:
    edges = graph.edges if include_stale else graph.live
    nodes: set[str] = {service}
    walked: dict[Edge, dict[Direction, int]] = {}
    if direction in (Direction.DOWNSTREAM, Direction.BOTH):
        down_nodes, down_edges = reference_walk(service, edges, depth)
        nodes |= down_nodes
        for edge, hop in down_edges.items():
            walked.setdefault(edge, {})[Direction.DOWNSTREAM] = hop
    if direction in (Direction.UPSTREAM, Direction.BOTH):
        reversed_edges = {(t, s) for (s, t) in edges}
        up_nodes, up_edges = reference_walk(service, reversed_edges, depth)
        nodes |= up_nodes
        for (t, s), hop in up_edges.items():
            walked.setdefault((s, t), {})[Direction.UPSTREAM] = hop
    return nodes, walked


@settings(max_examples=300, deadline=None)
@given(
    random_graphs(),
    st.data(),
    st.sampled_from(list(Direction)),
    st.integers(1, MAX_DEPTH),
    st.booleans(),
)
def test_query_matches_breadth_first_reference(
    graph: RandomGraph,
    data: st.DataObject,
    direction: Direction,
    depth: int,
    include_stale: bool,
) -> None:
    assume(graph.nodes)
    service = data.draw(st.sampled_from(sorted(graph.nodes)))
    analysed = graph.analyse()
    result = analysed.query(service, direction, depth, include_stale)
    nodes, edges = reference_query(graph, service, direction, depth, include_stale)
    assert set(result.nodes) == nodes
    assert set(result.edges) == set(edges)
    assert analysed.reach(service, direction, depth, include_stale) == edges


def shortest_cycle_length(start: str, edges: set[Edge]) -> int | None:
    """Calls on the shortest way from `start` back to itself, by brute-force breadth-first."""
    distance, frontier, steps = {start}, {start}, 0
    while frontier:
        steps += 1
        following = {t for (s, t) in edges if s in frontier}
        if start in following:
            return steps
        frontier = following - distance
        distance |= frontier
    return None


def mutually_reachable_groups(graph: RandomGraph) -> set[frozenset[str]]:
    reach = {name: reachable(name, graph.live) for name in graph.nodes}
    groups = {
        frozenset(m for m in graph.nodes if m in reach[name] and name in reach[m])
        for name in graph.nodes
    }
    return {group for group in groups if len(group) >= 2}


def assert_a_real_shortest_cycle(cycle: Cycle, graph: RandomGraph) -> None:
    members, path = cycle.members, cycle.path
    assert path[0] == members[0] == min(members)
    assert len(path) >= 2 and len(set(path)) == len(path)
    assert set(path) <= set(members)  # within one component
    for caller, callee in zip(path, (*path[1:], path[0]), strict=True):
        assert (caller, callee) in graph.live, (caller, callee)
    assert len(path) == shortest_cycle_length(path[0], graph.live)


@settings(max_examples=300, deadline=None)
@given(random_graphs(), st.data())
def test_cycles_are_the_mutually_reachable_groups_over_live_edges(
    graph: RandomGraph, data: st.DataObject
) -> None:
    expected = mutually_reachable_groups(graph)
    acknowledged = (
        data.draw(st.sets(st.sampled_from(sorted(expected, key=sorted)))) if expected else set()
    )
    result = graph.analyse(
        acknowledged_cycles=[sorted(group, reverse=True) for group in acknowledged]
    )

    assert {frozenset(c.members) for c in result.acknowledged_cycles} == acknowledged
    assert {frozenset(c) for c in result.cycles} == expected - acknowledged
    every = [*result.cycles, *result.acknowledged_cycles]
    assert len(every) == len(expected)  # each group once
    assert result.cycles == sorted(result.cycles)
    assert result.summary().cycles == len(expected - acknowledged)
    for cycle in every:
        assert list(cycle.members) == sorted(cycle.members)
        assert_a_real_shortest_cycle(cycle, graph)
    in_cycle = {name for group in expected for name in group}
    assert {name for name, node in result.nodes.items() if node.in_cycle} == in_cycle
    # What `servicegraph check` asks for, without the figures: the same cycles and drift.
    checked = graph.analyse(
        acknowledged_cycles=[sorted(group, reverse=True) for group in acknowledged],
        figures=False,
    )
    assert (checked.cycles, checked.acknowledged_cycles) == (
        every[: len(result.cycles)],
        every[len(result.cycles) :],
    )
    assert (checked.undeclared, checked.unobserved) == (result.undeclared, result.unobserved)
    assert checked.summary() == result.summary()
    assert all(node.slo is None for node in checked.nodes.values())


@settings(max_examples=200, deadline=None)
@given(random_graphs())
def test_every_printed_or_stored_cycle_is_a_real_one(graph: RandomGraph) -> None:
    result = graph.analyse()
    for cycle in result.cycles:
        arrow = " -> ".join([*cycle.path, cycle.path[0]])
        assert cycle.describe().startswith(f"{arrow} (component of {cycle.size} services")
        sample = cycle_sample(cycle)
        assert sample[: len(cycle.path)] == list(cycle.path[:MAX_CYCLE_SAMPLE_NAMES])

    status = graph_status(
        result,
        generation=1,
        previous={},
        snapshot=None,
        problem=None,
        observed=None,
        now=NOW,
    )
    acyclic = next(c for c in status["conditions"] if c["type"] == "Acyclic")
    for cycle in result.cycles[:MAX_CYCLES_IN_MESSAGE]:
        assert cycle.describe(MAX_CYCLE_SAMPLE_NAMES) in acyclic["message"]

    doc = snapshot.to_document(result)
    assert doc["cycles"] == [list(c.members) for c in result.cycles]
    assert doc["cyclePaths"] == [list(c.path) for c in result.cycles]
    assert snapshot.graph_from_document(doc).cycles == result.cycles
    # A document written before it held paths: they are found again from its edges.
    older = {k: v for k, v in doc.items() if k not in ("cyclePaths", "acknowledgedCyclePaths")}
    assert snapshot.graph_from_document(older).cycles == result.cycles


@settings(max_examples=300, deadline=None)
@given(random_graphs())
def test_blast_radius_counts_every_transitive_caller_over_live_edges(graph: RandomGraph) -> None:
    result = graph.analyse()
    reach = {name: reachable(name, graph.live) for name in graph.nodes}
    for name in graph.nodes:
        callers = {other for other in graph.nodes if other != name and name in reach[other]}
        assert result.nodes[name].blast_radius == len(callers), name


@settings(max_examples=200, deadline=None)
@given(random_graphs())
def test_nodes_staleness_and_drift_follow_the_rules(graph: RandomGraph) -> None:
    result = graph.analyse()
    assert set(result.nodes) == graph.nodes
    assert set(result.edges) == graph.edges
    assert {key for key, edge in result.edges.items() if edge.stale} == graph.stale

    declared = {(d.name, target) for d in graph.declarations for target, _ in d.depends_on}
    horizon = NOW - timedelta(hours=STALE_AFTER_HOURS)
    seen_recently = {(o.source, o.target) for o in graph.observations if o.last_seen >= horizon}
    assert set(result.undeclared) == seen_recently - declared
    assert set(result.unobserved) == declared - seen_recently

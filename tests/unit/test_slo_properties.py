"""Every SLO figure against a brute-force reference written from `slo`'s definitions.

The graphs are small and have every kind of edge: hard, soft and degraded, sync and async,
declared and only observed (messaging among them), traffic from several sources seen at
several polls, sightings without traffic, stale edges and cycles. The references read the
raw declarations and observations, not the analysed graph, and count in exact fractions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from fractions import Fraction
from itertools import combinations, pairwise
from unittest import mock

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from servicegraph import slo, snapshot
from servicegraph.graph import (
    EdgeAttributes,
    Graph,
    Observation,
    ServiceDeclaration,
    SourceKind,
    Traffic,
    analyse,
)
from servicegraph.otel_edges import MESSAGING_SYSTEM
from servicegraph.slo import limiting_dependencies
from tests.unit.test_graph_properties import (
    NOW,
    STALE_AFTER_HOURS,
    Edge,
    RandomGraph,
    reachable,
)

# Most trusted first, as the graph module ranks them (manual 1.0 > mesh > OpenTelemetry > k8s).
TRUST = (SourceKind.MANUAL, SourceKind.SERVICE_MESH, SourceKind.OTEL, SourceKind.KUBERNETES)
OBSERVERS = TRUST[1:]

HARD_SYNC = EdgeAttributes()
# Hard sync about half the time, so that the hard sync graph has some depth.
ATTRIBUTES = st.sampled_from(
    [HARD_SYNC] * 6
    + [
        EdgeAttributes(communication_mode=mode, criticality=criticality)
        for mode in ("sync", "async")
        for criticality in ("hard", "soft", "degraded")
    ]
)
# Hours ago. Few values, so that several edges share a source's last poll; 168 is the stale
# horizon (seen exactly then: live), 169 just past it.
PERCENT = st.integers(0, 99)
AGES = st.sampled_from([0, 0, 1, 2, 30, 168, 169, 400])
RATES = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0, 12.5]),
    st.floats(1e-3, 1e4, allow_nan=False, allow_infinity=False),
)
ERROR_RATIOS = st.one_of(
    st.sampled_from([0.0, 0.5, 0.500001, 1.0]),
    st.floats(0.0, 1.0, allow_nan=False),
)
TRAFFIC = st.builds(
    Traffic,
    request_rate=RATES,
    error_rate=ERROR_RATIOS,
    connection_type=st.sampled_from(["", "http", "grpc", MESSAGING_SYSTEM, "database"]),
)
MAYBE_TRAFFIC = st.none() | TRAFFIC  # a sighting without figures


@st.composite
def slo_graphs(draw: st.DrawFn, *, every_sighting_has_traffic: bool = False) -> RandomGraph:
    """A RandomGraph whose declarations carry attributes and whose observations come from
    several sources, each with its own age, attributes and (usually) traffic."""
    names = [f"s{i}" for i in range(draw(st.integers(1, 9)))]
    density = draw(st.integers(0, 45))
    edges = {
        (source, target)
        for source in names
        for target in names
        if source != target and draw(PERCENT) < density
    }
    declared_services = {name for name in names if draw(st.booleans())}
    depends_on: dict[str, list[tuple[str, EdgeAttributes]]] = {n: [] for n in declared_services}
    observations, stale = [], set()
    traffic = TRAFFIC if every_sighting_has_traffic else MAYBE_TRAFFIC
    for source, target in sorted(edges):
        declared = source in declared_services and draw(st.booleans())
        if declared:
            depends_on[source].append((target, draw(ATTRIBUTES)))
        # The sources that saw it, one bit each: at least one for an edge nobody declared.
        seen_by = draw(st.integers(0 if declared else 1, 2 ** len(OBSERVERS) - 1))
        ages = []
        for kind in (kind for bit, kind in enumerate(OBSERVERS) if seen_by >> bit & 1):
            age, seen = draw(AGES), draw(traffic)
            ages.append(age)
            if seen is not None and seen.connection_type == MESSAGING_SYSTEM:
                attributes = EdgeAttributes(communication_mode="async")  # as `observed` says
            else:
                attributes = draw(ATTRIBUTES)
            observations.append(
                Observation(source, target, kind, NOW - timedelta(hours=age), attributes, seen)
            )
        if not declared and all(age > STALE_AFTER_HOURS for age in ages):
            stale.add((source, target))
    declarations = [
        ServiceDeclaration(name, "ns", name, depends_on=tuple(depends_on[name]))
        for name in sorted(declared_services)
    ]
    nodes = declared_services | {name for edge in edges for name in edge}
    return RandomGraph(declarations, observations, nodes, edges, stale)


# --- the references -------------------------------------------------------------------------

Sighting = tuple[datetime | None, EdgeAttributes, Traffic | None]  # lastSeen None: declared


def live_sightings(graph: RandomGraph) -> dict[Edge, dict[SourceKind, Sighting]]:
    """Every source of every live edge, straight from the inputs."""
    sources: dict[Edge, dict[SourceKind, Sighting]] = {edge: {} for edge in graph.live}
    for decl in graph.declarations:
        for target, attributes in decl.depends_on:
            if (decl.name, target) in sources:
                sources[(decl.name, target)][SourceKind.MANUAL] = (None, attributes, None)
    for obs in graph.observations:
        if (obs.source, obs.target) in sources:
            sources[(obs.source, obs.target)][obs.kind] = (
                obs.last_seen,
                obs.attributes,
                obs.traffic,
            )
    return sources


def hard_sync_edges(graph: RandomGraph) -> set[Edge]:
    """Live edges whose most trusted source says criticality hard and communication sync."""
    hard = set()
    for edge, sightings in live_sightings(graph).items():
        _, attributes, _ = sightings[next(kind for kind in TRUST if kind in sightings)]
        if attributes.criticality == "hard" and attributes.communication_mode == "sync":
            hard.add(edge)
    return hard


def reference_availability(graph: RandomGraph) -> dict[str, Fraction]:
    """Exact availabilities: per service, the most trusted source that reported traffic into
    it in its own last poll (its newest lastSeen with traffic on any live edge)."""
    sightings = live_sightings(graph)
    last_poll: dict[SourceKind, datetime] = {}
    for by_kind in sightings.values():
        for kind, (seen, _, traffic) in by_kind.items():
            if traffic is not None and seen is not None:
                last_poll[kind] = max(seen, last_poll.get(kind, seen))
    result = {}
    for service in graph.nodes:
        reports: dict[SourceKind, list[Traffic]] = {kind: [] for kind in OBSERVERS}
        for (_, target), by_kind in sightings.items():
            for kind, (seen, _, traffic) in by_kind.items():
                if target == service and traffic is not None and seen == last_poll.get(kind):
                    reports[kind].append(traffic)
        reported = [reports[kind] for kind in OBSERVERS if reports[kind]]
        if not reported:
            continue
        rate = sum(Fraction(t.request_rate) for t in reported[0])
        failed = sum(Fraction(t.request_rate) * Fraction(t.error_rate) for t in reported[0])
        if rate:
            result[service] = 1 - failed / rate
    return result


def roundings(exact: Fraction) -> set[float]:
    """What `exact` rounded to 6 digits may come out as in floating point: its rounding, or
    both neighbours when it lies within float error (1e-12) of halfway between them."""
    scaled = exact * 10**6
    low = math.floor(scaled)
    if abs(scaled - low - Fraction(1, 2)) < Fraction(1, 10**6):
        return {low / 10**6, (low + 1) / 10**6}
    return {round(scaled) / 10**6}


def components(nodes: Iterable[str], edges: set[Edge]) -> dict[str, frozenset[str]]:
    """Each node's group of mutually reachable nodes (itself alone when in no cycle)."""
    nodes = sorted(nodes)
    reach = {name: reachable(name, edges) for name in nodes}
    return {n: frozenset(m for m in nodes if m in reach[n] and n in reach[m]) for n in nodes}


def component_depths(nodes: Iterable[str], edges: set[Edge]) -> dict[frozenset[str], int]:
    """The most calls between components on any path leaving each component, by trying
    every path of the condensation."""
    group = components(nodes, edges)
    calls = {(group[s], group[t]) for s, t in edges if group[s] != group[t]}

    def longest(start: frozenset[str]) -> int:
        return max((1 + longest(after) for before, after in calls if before == start), default=0)

    return {component: longest(component) for component in set(group.values())}


def simple_paths(start: str, edges: set[Edge]) -> list[tuple[str, ...]]:
    paths, todo = [], [(start,)]
    while todo:
        path = todo.pop()
        paths.append(path)
        todo.extend((*path, t) for s, t in edges if s == path[-1] and t not in path)
    return paths


def slos_of(result: Graph) -> dict[str, slo.ServiceSLO | None]:
    return {name: node.slo for name, node in result.nodes.items()}


# --- the properties -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(slo_graphs())
def test_availability_is_the_most_trusted_sources_last_poll(graph: RandomGraph) -> None:
    result = graph.analyse()
    expected = reference_availability(graph)
    for name in graph.nodes:
        figures = result.nodes[name].slo
        assert figures is not None
        if name not in expected:
            assert figures.availability is None, name
        else:
            assert figures.availability in roundings(expected[name]), (name, expected[name])


@settings(max_examples=200, deadline=None)
@given(slo_graphs())
def test_dependency_ceiling_multiplies_the_direct_hard_sync_dependencies(
    graph: RandomGraph,
) -> None:
    result = graph.analyse()
    hard = hard_sync_edges(graph)
    known = reference_availability(graph)
    for name in graph.nodes:
        figures = result.nodes[name].slo
        assert figures is not None
        dependencies = sorted(t for s, t in hard if s == name)
        assert list(figures.unknown_dependencies) == [d for d in dependencies if d not in known]
        product = Fraction(1)
        for dependency in dependencies:
            reported = result.nodes[dependency].slo
            assert reported is not None
            if dependency in known:  # its own figure, checked by the availability property
                assert reported.availability is not None
                product *= Fraction(reported.availability)
        assert figures.dependency_ceiling in roundings(product), name


@settings(max_examples=200, deadline=None)
@given(slo_graphs(), st.integers(1, 4))
def test_impact_fails_over_hard_sync_edges_and_degrades_over_the_others(
    graph: RandomGraph, limit: int
) -> None:
    with mock.patch.object(slo, "MAX_IMPACT_NAMES", limit):  # so that the lists get cut
        result = graph.analyse()
    hard = hard_sync_edges(graph)
    for name in graph.nodes:
        fails = sorted(o for o in graph.nodes if o != name and name in reachable(o, hard))
        reach = sorted(o for o in graph.nodes if o != name and name in reachable(o, graph.live))
        degrades = [o for o in reach if o not in fails]
        figures = result.nodes[name].slo
        assert figures is not None
        assert (figures.fails, figures.degrades) == (len(fails), len(degrades)), name
        assert list(figures.fails_names) == fails[:limit]
        assert list(figures.degrades_names) == degrades[:limit]
        assert result.impact_of(name) == (fails, degrades)
        assert result.nodes[name].blast_radius == len(fails) + len(degrades) == len(reach)


@settings(max_examples=200, deadline=None)
@given(slo_graphs())
def test_sync_depth_is_the_longest_hard_sync_chain_with_cycles_counted_once(
    graph: RandomGraph,
) -> None:
    result = graph.analyse()
    hard = hard_sync_edges(graph)
    group = components(graph.nodes, hard)
    depth = component_depths(graph.nodes, hard)
    for name in graph.nodes:
        figures = result.nodes[name].slo
        assert figures is not None
        assert figures.sync_depth == depth[group[name]], name
        chain = result.sync_chain(name)
        assert chain[0] == name
        assert len(set(chain)) == len(chain)  # a path: no service twice
        assert all(call in hard for call in pairwise(chain)), chain
        crossed = [
            group[n] for i, n in enumerate(chain) if i == 0 or group[n] != group[chain[i - 1]]
        ]
        assert len(set(crossed)) == len(crossed) == figures.sync_depth + 1, chain
        assert all(depth[a] > depth[b] for a, b in pairwise(crossed)), chain
        if all(len(group[m]) == 1 for m in reachable(name, hard)):
            # No cycle below: "the first by name among the deepest" is the smallest of them.
            longest = [p for p in simple_paths(name, hard) if len(p) == len(chain)]
            assert chain == min(longest)


AVAILABILITIES = st.one_of(
    st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 0.9995, 1.0]),
    st.integers(0, 10**6).map(lambda k: k / 10**6),
)


def meets(kept: Iterable[float], target: float) -> bool | None:
    """Whether the rounded product of `kept` reaches `target`; None: too close to tell."""
    verdicts = {ceiling >= target for ceiling in roundings(math.prod(map(Fraction, kept)))}
    return verdicts.pop() if len(verdicts) == 1 else None


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from([f"d{i}" for i in range(7)]), AVAILABILITIES, max_size=7),
    st.data(),
)
def test_limiting_dependencies_are_the_fewest_and_weakest_first(
    availabilities: dict[str, float], data: st.DataObject
) -> None:
    names = sorted(availabilities)
    # A target some set of dependencies meets exactly comes up as often as any other.
    reachable_ceilings = st.sets(st.sampled_from(names)).map(
        lambda kept: round(math.prod(availabilities[n] for n in kept), 6)
    )
    target = data.draw(AVAILABILITIES | reachable_ceilings if names else AVAILABILITIES)

    answer = limiting_dependencies(availabilities, target)

    # The fewest removals that may meet the target, and the fewest that surely do.
    maybe = surely = None
    for count in range(len(names) + 1):
        for removed in combinations(names, count):
            verdict = meets((availabilities[n] for n in names if n not in removed), target)
            if verdict is not False and maybe is None:
                maybe = count
            if verdict is True and surely is None:
                surely = count
    assert maybe is not None and surely is not None  # removing them all leaves 1.0
    assert maybe <= len(answer) <= surely
    assert meets((availabilities[n] for n in names if n not in answer), target) is not False
    weakest_first = sorted(names, key=lambda n: (availabilities[n], n))
    assert answer == weakest_first[: len(answer)]
    if surely == 0:
        assert answer == []


@settings(max_examples=150, deadline=None)
@given(slo_graphs(every_sighting_has_traffic=True))
def test_a_snapshot_gives_back_the_figures_and_an_older_one_recomputes_them(
    graph: RandomGraph,
) -> None:
    # Every sighting carries traffic, as `observed` reports it: a document does not keep a
    # sighting's lack of traffic apart from its edge's (see test_slo.py).
    result = graph.analyse()
    doc = orjson.loads(snapshot.graph_json(result))
    assert slos_of(snapshot.graph_from_document(doc)) == slos_of(result)

    older = {**doc, "nodes": [{k: v for k, v in n.items() if k != "slo"} for n in doc["nodes"]]}
    recomputed = snapshot.graph_from_document(older)
    assert slos_of(recomputed) == slos_of(result)
    assert {n: node.blast_radius for n, node in recomputed.nodes.items()} == {
        n: node.blast_radius for n, node in result.nodes.items()
    }


@settings(max_examples=200, deadline=None)
@given(slo_graphs(), st.data())
def test_the_figures_do_not_depend_on_the_order_of_the_inputs(
    graph: RandomGraph, data: st.DataObject
) -> None:
    shuffle = data.draw(st.randoms(use_true_random=False)).shuffle
    declarations = []
    for decl in graph.declarations:
        depends_on = list(decl.depends_on)
        shuffle(depends_on)
        declarations.append(replace(decl, depends_on=tuple(depends_on)))
    shuffle(declarations)
    observations = list(graph.observations)
    shuffle(observations)
    shuffled = analyse(
        declarations,
        observations,
        now=NOW,
        stale_after=timedelta(hours=STALE_AFTER_HOURS),
        observing=True,
    )
    result = graph.analyse()
    assert slos_of(shuffled) == slos_of(result)
    assert {n: node.blast_radius for n, node in shuffled.nodes.items()} == {
        n: node.blast_radius for n, node in result.nodes.items()
    }

"""One test (or a few) per rule in the graph engine's module docstring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from servicegraph.cycles import Cycle
from servicegraph.graph import (
    CONFIDENCE,
    MAX_DEPTH,
    Conflict,
    Direction,
    EdgeAttributes,
    NodeRole,
    Observation,
    ServiceDeclaration,
    SourceKind,
    Summary,
    Traffic,
    UnknownServiceError,
    analyse,
    merge_observations,
    prune_observations,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(hours=168)
PLAIN = EdgeAttributes()


def declare(
    name: str,
    *targets: str,
    namespace: str = "shop",
    object_name: str | None = None,
    attributes: EdgeAttributes = PLAIN,
    team: str | None = None,
    tier: str | None = None,
) -> ServiceDeclaration:
    return ServiceDeclaration(
        name=name,
        namespace=namespace,
        object_name=object_name or name,
        team=team,
        tier=tier,
        depends_on=tuple((target, attributes) for target in targets),
    )


def observe(
    source: str,
    target: str,
    *,
    ago: timedelta = timedelta(minutes=5),
    kind: SourceKind = SourceKind.OTEL,
    attributes: EdgeAttributes = PLAIN,
    traffic: Traffic | None = None,
) -> Observation:
    return Observation(source, target, kind, NOW - ago, attributes, traffic)


def chain(*names: str) -> list[ServiceDeclaration]:
    """Declarations for names[0] -> names[1] -> ... (the last one declared with no deps)."""
    return [declare(a, b) for a, b in pairwise(names)] + [declare(names[-1])]


# --- merging several sources ---------------------------------------------------------------


def test_manual_attributes_beat_every_observed_source_and_all_sources_are_kept() -> None:
    seen = {
        SourceKind.SERVICE_MESH: timedelta(minutes=1),
        SourceKind.OTEL: timedelta(minutes=2),
        SourceKind.KUBERNETES: timedelta(minutes=3),
    }
    graph = analyse(
        [declare("checkout", "payment", attributes=EdgeAttributes(protocol="grpc"))],
        [
            observe(
                "checkout",
                "payment",
                kind=kind,
                ago=ago,
                attributes=EdgeAttributes(protocol=kind.value, communication_mode="async"),
            )
            for kind, ago in seen.items()
        ],
        now=NOW,
    )
    edge = graph.edges[("checkout", "payment")]
    assert edge.attributes == EdgeAttributes(protocol="grpc")
    assert edge.confidence == CONFIDENCE[SourceKind.MANUAL] == 1.0
    assert set(edge.sources) == {SourceKind.MANUAL, *seen}
    # A declaration holds while its object exists, so it has no lastSeen of its own.
    assert edge.sources[SourceKind.MANUAL].last_seen is None
    for kind, ago in seen.items():
        assert edge.sources[kind].last_seen == NOW - ago
        assert edge.sources[kind].attributes.protocol == kind.value
    assert edge.declared and edge.observed


KUBERNETES, OTEL, SERVICE_MESH = SourceKind.KUBERNETES, SourceKind.OTEL, SourceKind.SERVICE_MESH


@pytest.mark.parametrize(
    ("kinds", "winner"),
    [
        ([KUBERNETES, OTEL, SERVICE_MESH], SERVICE_MESH),
        ([KUBERNETES, OTEL], OTEL),
        ([OTEL, KUBERNETES], OTEL),
        ([KUBERNETES], KUBERNETES),
    ],
)
def test_most_trusted_observed_source_wins_the_attributes(
    kinds: list[SourceKind], winner: SourceKind
) -> None:
    graph = analyse(
        [],
        [observe("a", "b", kind=k, attributes=EdgeAttributes(protocol=k.value)) for k in kinds],
        now=NOW,
    )
    edge = graph.edges[("a", "b")]
    assert edge.winner.kind == winner
    assert edge.attributes.protocol == winner.value
    assert edge.confidence == CONFIDENCE[winner]
    assert not edge.declared


def test_confidences_are_the_predecessors() -> None:
    assert CONFIDENCE == {
        SourceKind.MANUAL: 1.0,
        SourceKind.SERVICE_MESH: 0.9,
        SourceKind.OTEL: 0.7,
        SourceKind.KUBERNETES: 0.5,
    }


def test_repeated_sightings_from_one_source_keep_the_freshest() -> None:
    fresh = observe("a", "b", ago=timedelta(minutes=1), traffic=Traffic(5.0, 0.0))
    old = observe("a", "b", ago=timedelta(hours=2), traffic=Traffic(1.0, 0.5))
    for order in ([fresh, old], [old, fresh]):
        sighting = analyse([], order, now=NOW).edges[("a", "b")].sources[SourceKind.OTEL]
        assert sighting.last_seen == fresh.last_seen
        assert sighting.traffic == fresh.traffic


def test_edge_traffic_is_the_freshest_any_source_reported() -> None:
    mesh = Traffic(request_rate=1.0, error_rate=0.0)
    otel = Traffic(request_rate=9.0, error_rate=0.1, p95_latency_ms=12.0)
    graph = analyse(
        [declare("a", "b")],
        [
            observe("a", "b", kind=SourceKind.SERVICE_MESH, ago=timedelta(hours=1), traffic=mesh),
            observe("a", "b", kind=SourceKind.OTEL, ago=timedelta(minutes=1), traffic=otel),
        ],
        now=NOW,
    )
    assert graph.edges[("a", "b")].traffic == otel
    assert analyse([declare("a", "b")], now=NOW).edges[("a", "b")].traffic is None


# --- nodes: placeholders, declarations, conflicts, roles -----------------------------------


def test_called_but_undeclared_service_is_a_placeholder() -> None:
    graph = analyse(
        [declare("checkout", "payment", namespace="shop", team="commerce", tier="critical")],
        [observe("frontend", "checkout")],
        now=NOW,
    )
    checkout = graph.nodes["checkout"]
    assert checkout.declared
    assert (checkout.namespace, checkout.object_name) == ("shop", "checkout")
    assert (checkout.team, checkout.tier) == ("commerce", "critical")
    for placeholder in ("payment", "frontend"):
        node = graph.nodes[placeholder]
        assert not node.declared
        assert node.namespace is None and node.team is None
    assert list(graph.nodes) == sorted(graph.nodes)


def test_a_declared_service_without_dependencies_is_still_a_node() -> None:
    graph = analyse([declare("lonely")], now=NOW)
    assert graph.nodes["lonely"].declared
    assert graph.edges == {}


def test_two_declarations_of_one_service_first_by_namespace_then_name_wins() -> None:
    graph = analyse(
        [
            declare("checkout", "payment", namespace="shop-b", object_name="checkout"),
            declare("checkout", "cart", namespace="shop-a", object_name="z-checkout"),
            declare("checkout", "tax", namespace="shop-a", object_name="a-checkout", team="t"),
        ],
        now=NOW,
    )
    assert graph.conflicts == [
        Conflict(
            "checkout",
            ("shop-a", "a-checkout"),
            (("shop-a", "z-checkout"), ("shop-b", "checkout")),
        )
    ]
    node = graph.nodes["checkout"]
    assert (node.namespace, node.object_name, node.team) == ("shop-a", "a-checkout", "t")
    # Only the winner's dependencies count: the losers' targets are not even nodes.
    assert list(graph.edges) == [("checkout", "tax")]
    assert set(graph.nodes) == {"checkout", "tax"}


def test_a_single_declaration_is_no_conflict() -> None:
    assert analyse(chain("a", "b", "c"), now=NOW).conflicts == []


@pytest.mark.parametrize(
    ("connection_type", "role"),
    [
        ("database", NodeRole.DATABASE),
        ("virtual_node", NodeRole.VIRTUAL),
        ("messaging_system", NodeRole.SERVICE),
        ("", NodeRole.SERVICE),
    ],
)
def test_placeholder_role_comes_from_the_traffic_connection_type(
    connection_type: str, role: NodeRole
) -> None:
    traffic = Traffic(1.0, 0.0, connection_type=connection_type)
    graph = analyse([declare("orders")], [observe("orders", "postgres", traffic=traffic)], now=NOW)
    assert graph.nodes["postgres"].role == role
    assert graph.nodes["orders"].role == NodeRole.SERVICE


def test_a_declared_service_keeps_its_role_whatever_the_traffic_says() -> None:
    traffic = Traffic(1.0, 0.0, connection_type="database")
    graph = analyse(
        [declare("orders", "ledger"), declare("ledger")],
        [observe("orders", "ledger", traffic=traffic)],
        now=NOW,
    )
    assert graph.nodes["ledger"].role == NodeRole.SERVICE


# --- self-edges ------------------------------------------------------------------------------


def test_observed_self_edges_are_ignored() -> None:
    graph = analyse([declare("a", "b")], [observe("a", "a"), observe("b", "b")], now=NOW)
    assert list(graph.edges) == [("a", "b")]
    assert graph.cycles == []
    assert not graph.nodes["a"].in_cycle


def test_a_stray_declared_self_edge_makes_no_cycle() -> None:
    graph = analyse([declare("a", "a", "b")], now=NOW)
    assert list(graph.edges) == [("a", "b")]
    assert graph.cycles == []


# --- staleness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ago", "stale_after", "stale"),
    [
        (timedelta(days=8), WEEK, True),
        (timedelta(days=6), WEEK, False),
        (WEEK, WEEK, False),  # seen exactly at the horizon still counts
        (WEEK + timedelta(seconds=1), WEEK, True),
        (timedelta(days=8), timedelta(days=10), False),
        (timedelta(hours=2), timedelta(hours=1), True),
    ],
)
def test_an_only_observed_edge_is_stale_once_not_seen_within_stale_after(
    ago: timedelta, stale_after: timedelta, stale: bool
) -> None:
    graph = analyse([], [observe("a", "b", ago=ago)], now=NOW, stale_after=stale_after)
    assert graph.edges[("a", "b")].stale is stale


def test_a_declared_edge_is_never_stale() -> None:
    graph = analyse(
        [declare("a", "b", "c")],
        [observe("a", "b", ago=timedelta(days=30))],
        now=NOW,
        stale_after=timedelta(hours=1),
    )
    assert not graph.edges[("a", "b")].stale  # declared, observed long ago
    assert not graph.edges[("a", "c")].stale  # declared, never observed


def test_one_fresh_source_keeps_an_edge_alive() -> None:
    graph = analyse(
        [],
        [
            observe("a", "b", kind=SourceKind.SERVICE_MESH, ago=timedelta(days=30)),
            observe("a", "b", kind=SourceKind.KUBERNETES, ago=timedelta(hours=1)),
        ],
        now=NOW,
    )
    assert not graph.edges[("a", "b")].stale


def test_stale_edges_are_kept_and_flagged() -> None:
    graph = analyse([declare("a")], [observe("a", "gone", ago=timedelta(days=8))], now=NOW)
    assert graph.edges[("a", "gone")].stale
    assert not graph.nodes["gone"].declared


# --- stale edges leave cycles, blast radius and queries --------------------------------------


def test_a_cycle_closed_only_by_a_stale_edge_is_no_cycle() -> None:
    declarations = [declare("a", "b"), declare("b")]
    stale_back_edge = [observe("b", "a", ago=timedelta(days=8))]
    graph = analyse(declarations, stale_back_edge, now=NOW)
    assert graph.cycles == []
    assert not graph.nodes["a"].in_cycle and not graph.nodes["b"].in_cycle

    fresh = analyse(declarations, [observe("b", "a", ago=timedelta(days=6))], now=NOW)
    assert fresh.cycles == [Cycle(("a", "b"), ("a", "b"))]


def test_stale_edges_do_not_count_in_blast_radius() -> None:
    graph = analyse(
        [declare("a", "b"), declare("b")],
        [observe("x", "a", ago=timedelta(days=8)), observe("y", "b")],
        now=NOW,
    )
    assert graph.nodes["a"].blast_radius == 0  # x only calls it through a stale edge
    assert graph.nodes["b"].blast_radius == 2  # a and y


def test_queries_skip_stale_edges_unless_asked() -> None:
    graph = analyse(
        [declare("a", "b"), declare("b")],
        [
            observe("b", "old", ago=timedelta(days=8)),
            observe("old", "older", ago=timedelta(days=9)),
        ],
        now=NOW,
    )
    live = graph.query("a", Direction.DOWNSTREAM, depth=3)
    assert list(live.nodes) == ["a", "b"]
    assert list(live.edges) == [("a", "b")]

    everything = graph.query("a", Direction.DOWNSTREAM, depth=3, include_stale=True)
    assert list(everything.nodes) == ["a", "b", "old", "older"]
    assert list(everything.edges) == [("a", "b"), ("b", "old"), ("old", "older")]

    assert list(graph.query("old", Direction.UPSTREAM, depth=2).nodes) == ["old"]


# --- cycles ------------------------------------------------------------------------------------


def test_a_cycle_starts_at_its_smallest_name_and_follows_the_calls() -> None:
    # c -> b -> a -> c: call order from a is a, c, b (not alphabetical).
    graph = analyse([declare("c", "b"), declare("b", "a"), declare("a", "c")], now=NOW)
    assert graph.cycles == [Cycle(("a", "b", "c"), ("a", "c", "b"))]
    assert graph.cycles[0].describe() == "a -> c -> b -> a (component of 3 services)"
    assert all(graph.nodes[name].in_cycle for name in "abc")


def test_the_path_of_a_cycle_uses_only_real_calls() -> None:
    # a -> b, a -> c, b -> a, c -> a: one component of three, but no call b -> c.
    graph = analyse([declare("a", "b", "c"), declare("b", "a"), declare("c", "a")], now=NOW)
    (cycle,) = graph.cycles
    assert cycle.members == ("a", "b", "c")
    assert cycle.path == ("a", "b")  # the shortest way back to a, smallest name first
    assert cycle.describe() == "a -> b -> a (component of 3 services: a, b, c)"
    assert frozenset(cycle) == {"a", "b", "c"}  # as a collection, a cycle is its members


def test_the_path_is_the_shortest_cycle_through_the_smallest_member() -> None:
    # a -> b -> c -> d -> a is long; a -> z -> a is short although z sorts last.
    graph = analyse(
        [
            declare("a", "b", "z"),
            declare("b", "c"),
            declare("c", "d"),
            declare("d", "a"),
            declare("z", "a"),
        ],
        now=NOW,
    )
    assert graph.cycles[0].path == ("a", "z")
    assert graph.cycles[0].members == ("a", "b", "c", "d", "z")


def test_describing_a_long_cycle_names_at_most_so_many_services() -> None:
    names = [f"s{i:02}" for i in range(30)]
    ring = [declare(name, names[(i + 1) % 30]) for i, name in enumerate(names)]
    (cycle,) = analyse(ring, now=NOW).cycles
    assert cycle.path == tuple(names)
    assert cycle.describe(3) == (
        "s00 -> s01 -> s02 -> ... and 27 more -> s00 (component of 30 services)"
    )
    chord = [declare("s01", "s02", "s00"), *ring[2:], ring[0]]  # s01 also calls s00 back
    chorded = analyse(chord, now=NOW)
    assert chorded.cycles[0].describe(3) == (
        "s00 -> s01 -> s00 (component of 30 services: s00, s01, s02 and 27 more)"
    )


def test_a_cycle_with_chords_is_reported_once() -> None:
    # One strongly connected component with several elementary cycles in it.
    graph = analyse(
        [declare("a", "b"), declare("b", "a", "c"), declare("c", "a", "d"), declare("d")],
        now=NOW,
    )
    assert [c.members for c in graph.cycles] == [("a", "b", "c")]
    assert graph.cycles[0].path == ("a", "b")
    assert not graph.nodes["d"].in_cycle


def test_separate_cycles_are_each_reported_sorted() -> None:
    graph = analyse(
        [declare("y", "x"), declare("x", "y"), declare("b", "a"), declare("a", "b", "x")],
        now=NOW,
    )
    assert [c.members for c in graph.cycles] == [("a", "b"), ("x", "y")]


def test_an_acknowledged_cycle_matches_by_members_in_any_order() -> None:
    declarations = [declare("a", "b"), declare("b", "c"), declare("c", "a")]
    graph = analyse(declarations, now=NOW, acknowledged_cycles=[["c", "a", "b"]])
    assert graph.cycles == []
    assert graph.acknowledged_cycles == [Cycle(("a", "b", "c"), ("a", "b", "c"))]
    assert graph.summary().cycles == 0
    # Acknowledging silences the alarm; the services are still in a cycle.
    assert graph.nodes["a"].in_cycle


def test_a_grown_cycle_is_unacknowledged_again() -> None:
    graph = analyse(
        [declare("a", "b"), declare("b", "c"), declare("c", "a")],
        now=NOW,
        acknowledged_cycles=[["a", "b"]],
    )
    assert [c.members for c in graph.cycles] == [("a", "b", "c")]
    assert graph.acknowledged_cycles == []


def test_acknowledging_one_cycle_leaves_the_others_alarmed() -> None:
    graph = analyse(
        [declare("a", "b"), declare("b", "a"), declare("x", "y"), declare("y", "x")],
        now=NOW,
        acknowledged_cycles=[["y", "x"]],
    )
    assert [c.members for c in graph.cycles] == [("a", "b")]
    assert [c.members for c in graph.acknowledged_cycles] == [("x", "y")]


def test_an_observed_edge_can_close_a_cycle() -> None:
    graph = analyse([declare("a", "b"), declare("b")], [observe("b", "a")], now=NOW)
    assert graph.cycles == [Cycle(("a", "b"), ("a", "b"))]


# --- drift -------------------------------------------------------------------------------------


def test_observed_but_undeclared_edges_are_drift() -> None:
    graph = analyse(
        [declare("a", "b"), declare("b")],
        [observe("a", "b"), observe("b", "c"), observe("c", "d", ago=timedelta(days=8))],
        now=NOW,
        observing=True,
    )
    # a -> b is declared and seen; c -> d is stale, so it no longer counts as drift.
    assert graph.undeclared == [("b", "c")]
    assert graph.unobserved == []


def test_declared_but_unobserved_edges_are_drift_only_when_observing() -> None:
    declarations = [declare("a", "b", "c", "d"), declare("b"), declare("c"), declare("d")]
    observations = [
        observe("a", "b", ago=timedelta(hours=1)),
        observe("a", "c", ago=timedelta(days=8)),
    ]
    graph = analyse(declarations, observations, now=NOW, observing=True)
    assert graph.unobserved == [("a", "c"), ("a", "d")]

    declared_only = analyse(declarations, observations, now=NOW, observing=False)
    assert declared_only.unobserved == []


def test_unobserved_follows_stale_after() -> None:
    graph = analyse(
        [declare("a", "b")],
        [observe("a", "b", ago=timedelta(days=8))],
        now=NOW,
        stale_after=timedelta(days=10),
        observing=True,
    )
    assert graph.unobserved == []


# --- merge_observations ----------------------------------------------------------------------


def test_merge_observations_keeps_absent_history_and_takes_fresher_sightings() -> None:
    kept = observe("a", "b", ago=timedelta(days=3))
    refreshed_old = observe("a", "c", ago=timedelta(days=2))
    refreshed_new = observe("a", "c", ago=timedelta(minutes=1))
    other_kind = observe("a", "c", kind=SourceKind.SERVICE_MESH, ago=timedelta(days=4))
    brand_new = observe("c", "d")
    merged = merge_observations([kept, refreshed_old, other_kind], [refreshed_new, brand_new])
    assert sorted(merged, key=lambda o: (o.key, o.last_seen)) == sorted(
        [kept, refreshed_new, other_kind, brand_new], key=lambda o: (o.key, o.last_seen)
    )


def test_merge_observations_never_goes_back_in_time() -> None:
    fresh = observe("a", "b", ago=timedelta(minutes=1))
    late_report = observe("a", "b", ago=timedelta(hours=1))
    assert merge_observations([fresh], [late_report]) == [fresh]


def test_merged_history_keeps_an_edge_that_a_failed_poll_missed() -> None:
    history = merge_observations([], [observe("a", "b", ago=timedelta(hours=1))])
    after_empty_poll = merge_observations(history, [])
    graph = analyse([], after_empty_poll, now=NOW)
    assert ("a", "b") in graph.edges and not graph.edges[("a", "b")].stale


def test_merged_last_seen_is_kept_to_the_second() -> None:
    jittery = Observation("a", "b", SourceKind.OTEL, NOW.replace(microsecond=654321))
    (merged,) = merge_observations([], [jittery])
    assert merged.last_seen == NOW
    older = Observation("a", "b", SourceKind.OTEL, NOW - timedelta(microseconds=1))
    (again,) = merge_observations([older], [jittery])
    assert again.last_seen == NOW  # the history's own microseconds go too


def test_pruning_drops_what_was_not_seen_within_the_retention() -> None:
    fresh = observe("a", "b", ago=timedelta(minutes=5))
    at_the_horizon = observe("a", "c", ago=timedelta(hours=1))
    too_old = observe("x", "y", ago=timedelta(hours=1, seconds=1))
    kept, dropped = prune_observations(
        [fresh, at_the_horizon, too_old], now=NOW, retention=timedelta(hours=1)
    )
    assert (kept, dropped) == ([fresh, at_the_horizon], 1)
    graph = analyse([declare("a", "b")], kept, now=NOW)
    assert set(graph.nodes) == {"a", "b", "c"}  # x and y were known only to the dropped one


def test_pruning_takes_any_iterable() -> None:
    kept, dropped = prune_observations(
        (o for o in [observe("a", "b", ago=WEEK)]), now=NOW, retention=timedelta(days=1)
    )
    assert (kept, dropped) == ([], 1)


def test_churning_names_keep_the_history_bounded_by_the_retention() -> None:
    # A poll every 10 s for ~28 h, each bringing two peers never seen before (pod IPs).
    interval, retention = timedelta(seconds=10), timedelta(hours=1)
    polls_within = retention // interval + 1  # the horizon is inclusive
    history: list[Observation] = []
    pruned = 0
    for poll in range(10_000):
        now = NOW + poll * interval
        ip = f"10.{poll // 65536 % 256}.{poll // 256 % 256}.{poll % 256}"
        seen = [
            Observation("frontend", ip, SourceKind.OTEL, now.replace(microsecond=poll % 1000)),
            Observation(f"{ip}:8080", "cart", SourceKind.OTEL, now),
        ]
        history, dropped = prune_observations(
            merge_observations(history, seen), now=now, retention=retention
        )
        pruned += dropped
        assert len(history) <= 2 * polls_within
    assert len(history) == 2 * polls_within
    assert pruned == 2 * 10_000 - len(history)
    graph = analyse([], history, now=now)
    assert len(graph.nodes) == 2 + 2 * polls_within  # frontend, cart and the recent peers


# --- queries -----------------------------------------------------------------------------------


@pytest.fixture
def line() -> list[ServiceDeclaration]:
    """a -> b -> c -> d -> e"""
    return chain("a", "b", "c", "d", "e")


@pytest.mark.parametrize(
    ("service", "direction", "depth", "nodes"),
    [
        ("c", Direction.DOWNSTREAM, 1, "cd"),
        ("c", Direction.DOWNSTREAM, 2, "cde"),
        ("c", Direction.DOWNSTREAM, 10, "cde"),
        ("c", Direction.UPSTREAM, 1, "bc"),
        ("c", Direction.UPSTREAM, 2, "abc"),
        ("c", Direction.BOTH, 1, "bcd"),
        ("c", Direction.BOTH, 2, "abcde"),
        ("e", Direction.DOWNSTREAM, 3, "e"),
        ("a", "upstream", 3, "a"),
    ],
)
def test_query_walks_the_requested_direction_and_depth(
    line: list[ServiceDeclaration],
    service: str,
    direction: Direction | str,
    depth: int,
    nodes: str,
) -> None:
    result = analyse(line, now=NOW).query(service, direction, depth)
    assert list(result.nodes) == list(nodes)
    # On a line, the edges are exactly those between consecutive nodes of the result.
    assert list(result.edges) == list(pairwise(nodes))


def test_query_returns_only_traversed_edges() -> None:
    # a calls b and c, b calls c: from a at depth 1 both b and c are reached, but b -> c is
    # not walked (it starts at depth 1), so it is not in the result.
    graph = analyse([declare("a", "b", "c"), declare("b", "c"), declare("c")], now=NOW)
    assert list(graph.query("a", depth=1).edges) == [("a", "b"), ("a", "c")]
    assert list(graph.query("a", depth=2).edges) == [("a", "b"), ("a", "c"), ("b", "c")]


def test_query_keeps_node_details() -> None:
    graph = analyse([declare("a", "b", team="t")], now=NOW)
    result = graph.query("b", Direction.UPSTREAM)
    assert result.nodes["a"].team == "t"
    assert not result.nodes["b"].declared


def test_query_defaults_to_one_hop_downstream(line: list[ServiceDeclaration]) -> None:
    assert list(analyse(line, now=NOW).query("b").nodes) == ["b", "c"]


@pytest.mark.parametrize("depth", [0, -1, MAX_DEPTH + 1])
def test_query_depth_is_bounded(line: list[ServiceDeclaration], depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        analyse(line, now=NOW).query("a", depth=depth)


def test_query_accepts_the_maximum_depth(line: list[ServiceDeclaration]) -> None:
    assert MAX_DEPTH == 10
    assert len(analyse(line, now=NOW).query("a", depth=MAX_DEPTH).nodes) == 5


def test_query_of_an_unknown_service_is_an_error(line: list[ServiceDeclaration]) -> None:
    with pytest.raises(UnknownServiceError) as raised:
        analyse(line, now=NOW).query("nope")
    assert isinstance(raised.value, KeyError)
    assert str(raised.value) == "no service named 'nope' in the graph"


def test_query_rejects_an_unknown_direction(line: list[ServiceDeclaration]) -> None:
    with pytest.raises(ValueError, match="sideways"):
        analyse(line, now=NOW).query("a", "sideways")


# --- summary -----------------------------------------------------------------------------------


def test_summary_counts() -> None:
    graph = analyse(
        [declare("a", "b", "c"), declare("b", "a"), declare("c")],
        [
            observe("a", "b"),  # declared and observed
            observe("c", "db"),  # undeclared
            observe("c", "gone", ago=timedelta(days=8)),  # stale, not drift
        ],
        now=NOW,
        observing=True,
    )
    summary = graph.summary()
    assert summary == Summary(
        services=5,  # a, b, c, db, gone
        edges=5,
        declared_edges=3,
        observed_edges=3,
        stale_edges=1,
        cycles=1,
        undeclared=1,
        unobserved=2,  # a -> c, b -> a
    )
    assert summary.drift == 3


# --- blast radius ------------------------------------------------------------------------------


def test_blast_radius_on_a_chain() -> None:
    graph = analyse(chain("a", "b", "c", "d"), now=NOW)
    assert {n: graph.nodes[n].blast_radius for n in "abcd"} == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_blast_radius_on_a_diamond_counts_each_caller_once() -> None:
    graph = analyse([declare("a", "b", "c"), declare("b", "d"), declare("c", "d")], now=NOW)
    assert {n: graph.nodes[n].blast_radius for n in "abcd"} == {"a": 0, "b": 1, "c": 1, "d": 3}


def test_blast_radius_through_a_cycle() -> None:
    # x -> a -> b -> c -> a, c -> d: every cycle member is hit by x and the two other members.
    graph = analyse(
        [declare("x", "a"), declare("a", "b"), declare("b", "c"), declare("c", "a", "d")],
        now=NOW,
    )
    radius = {n: graph.nodes[n].blast_radius for n in graph.nodes}
    assert radius == {"x": 0, "a": 3, "b": 3, "c": 3, "d": 4}


def test_blast_radius_of_disconnected_services_is_zero() -> None:
    graph = analyse([declare("a"), declare("b")], now=NOW)
    assert graph.nodes["a"].blast_radius == graph.nodes["b"].blast_radius == 0

"""Each SLO definition of `slo`'s module docstring on a small shop, with its exact figures.

    frontend --> checkout --> payment <--> ledger ..> postgres      (a cycle on the sync path)
       :            |  :  '--> currency
       :            |  '....> kafka                  (only observed: messaging, so async)
       :            '--async--> email --> smtp-relay (declared, never observed)
       '---soft---> recommendation

--> hard sync, declared; ..> only observed. OpenTelemetry polled a minute ago (and an hour ago,
when it last saw frontend -> recommendation); the mesh saw checkout -> payment; legacy's calls
to checkout stopped ten days ago, so that edge is stale.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

from servicegraph import snapshot
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
from servicegraph.slo import MAX_IMPACT_NAMES, ServiceSLO, limiting_dependencies

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLL = NOW - timedelta(minutes=1)  # OpenTelemetry's last poll
HARD_SYNC = EdgeAttributes()
SOFT = EdgeAttributes(criticality="soft")
ASYNC = EdgeAttributes(communication_mode="async")


def declare(name: str, *depends_on: tuple[str, EdgeAttributes]) -> ServiceDeclaration:
    return ServiceDeclaration(name, "shop", name, depends_on=depends_on)


def seen(
    source: str,
    target: str,
    rate: float,
    errors: float,
    *,
    at: datetime = POLL,
    kind: SourceKind = SourceKind.OTEL,
    connection_type: str = "http",
) -> Observation:
    """A sighting as `observed` reports it: messaging traffic is async, anything else sync."""
    mode = "async" if connection_type == MESSAGING_SYSTEM else "sync"
    return Observation(
        source,
        target,
        kind,
        at,
        EdgeAttributes(communication_mode=mode),
        Traffic(rate, errors, connection_type=connection_type),
    )


def shop() -> Graph:
    declarations = [
        declare("frontend", ("checkout", HARD_SYNC), ("recommendation", SOFT)),
        declare("checkout", ("payment", HARD_SYNC), ("currency", HARD_SYNC), ("email", ASYNC)),
        declare("payment", ("ledger", HARD_SYNC)),
        declare("ledger", ("payment", HARD_SYNC)),  # refunds: a cycle on the sync path
        declare("currency"),
        declare("email", ("smtp-relay", HARD_SYNC)),
        declare("recommendation"),
    ]
    observations = [
        seen("frontend", "checkout", 100, 0.01),
        seen("frontend", "recommendation", 50, 0.1, at=NOW - timedelta(hours=1)),
        seen("checkout", "payment", 40, 0.005),
        seen("checkout", "payment", 40, 0.0025, kind=SourceKind.SERVICE_MESH),
        seen("checkout", "currency", 40, 0.0),
        seen("checkout", "email", 40, 0.001),
        seen("checkout", "kafka", 40, 0.0, connection_type=MESSAGING_SYSTEM),
        seen("payment", "ledger", 40, 0.002),
        seen("ledger", "postgres", 40, 0.0, connection_type="database"),
        seen("legacy", "checkout", 1000, 1.0, at=NOW - timedelta(days=10)),
    ]
    return analyse(declarations, observations, now=NOW)


def figures(graph: Graph, name: str) -> ServiceSLO:
    found = graph.nodes[name].slo
    assert found is not None
    return found


# --- hard sync edges ----------------------------------------------------------------------------


def test_hard_sync_edges_are_hard_and_sync_by_their_winning_source() -> None:
    hard = set(shop().hard_sync_network.edges)

    assert hard == {
        ("frontend", "checkout"),
        ("checkout", "payment"),
        ("checkout", "currency"),
        ("payment", "ledger"),
        ("ledger", "payment"),
        ("ledger", "postgres"),  # only observed, not messaging: a sync call, hard by default
        ("email", "smtp-relay"),
    }
    # Not: frontend -> recommendation (soft), checkout -> email (async), checkout -> kafka
    # (observed messaging), legacy -> checkout (stale).


def test_a_declaration_says_what_an_edge_is_whatever_the_traces_say() -> None:
    graph = analyse(
        [declare("a", ("b", SOFT))],
        [
            seen("a", "b", 10, 0.0),
            seen("b", "c", 10, 0.0, kind=SourceKind.KUBERNETES),
            Observation("b", "c", SourceKind.SERVICE_MESH, POLL, ASYNC, Traffic(10, 0.0)),
        ],
        now=NOW,
    )

    assert set(graph.hard_sync_network.edges) == set()  # soft; async by the mesh over k8s
    assert figures(graph, "b").degrades_names == ("a",)
    assert figures(graph, "c").degrades_names == ("a", "b")


# --- availability -------------------------------------------------------------------------------


def test_availability_is_one_minus_the_failed_share_of_the_calls_in() -> None:
    graph = shop()

    assert figures(graph, "checkout").availability == 0.99  # 100 calls a second, 1 % failed
    assert figures(graph, "currency").availability == 1.0
    assert figures(graph, "email").availability == 0.999  # async calls count all the same
    assert figures(graph, "kafka").availability == 1.0
    assert figures(graph, "ledger").availability == 0.998
    assert figures(graph, "frontend").availability is None  # nobody calls it
    assert figures(graph, "smtp-relay").availability is None  # declared, never observed


def test_the_most_trusted_source_that_reported_gives_the_availability() -> None:
    # OpenTelemetry says 0.5 % of checkout's calls to payment fail, the mesh 0.25 %: the mesh.
    assert figures(shop(), "payment").availability == 0.9975


def test_only_each_sources_last_poll_counts() -> None:
    # OpenTelemetry saw frontend -> recommendation an hour ago, not in its last poll.
    assert figures(shop(), "recommendation").availability is None

    alone = analyse(
        [],
        [
            seen("a", "x", 10, 0.5, at=POLL),
            seen("b", "x", 10, 0.0, at=POLL - timedelta(minutes=1)),  # an earlier poll
            seen("c", "y", 10, 0.2, kind=SourceKind.KUBERNETES, at=POLL - timedelta(hours=5)),
        ],
        now=NOW,
    )
    assert figures(alone, "x").availability == 0.5
    assert figures(alone, "y").availability == 0.8  # its source's last poll, however old


def test_a_stale_edge_counts_for_nothing() -> None:
    # legacy -> checkout: 1,000 failed calls a second, ten days ago. checkout stays at 99 %.
    graph = shop()
    assert graph.edges[("legacy", "checkout")].stale
    assert figures(graph, "checkout").availability == 0.99
    assert figures(graph, "checkout").fails_names == ("frontend",)


def test_availability_is_rounded_to_six_digits_and_needs_calls() -> None:
    graph = analyse(
        [],
        [
            seen("a", "x", 3, 1 / 3),
            seen("b", "x", 3, 0.0),
            seen("a", "idle", 0.0, 0.0),  # traffic, but not a single call
        ],
        now=NOW,
    )
    assert figures(graph, "x").availability == 0.833333
    assert figures(graph, "idle").availability is None


def test_availability_does_not_depend_on_the_order_of_the_sightings() -> None:
    # 1 - (0.05 + 0.1 + 0.1500003) / 0.6 is 0.4999995, halfway between two six-digit figures.
    # Summed in the order the observations came, the last bit of the sums (0.1 + 0.2 + 0.3 is
    # not 0.3 + 0.2 + 0.1 in floating point) made it 0.5 one way round and 0.499999 another.
    sightings = [seen("a", "x", 0.1, 0.5), seen("b", "x", 0.2, 0.5), seen("c", "x", 0.3, 0.500001)]
    found = {
        figures(analyse([], list(order), now=NOW), "x").availability
        for order in permutations(sightings)
    }
    assert len(found) == 1
    assert found <= {0.5, 0.499999}


# --- dependency ceiling -------------------------------------------------------------------------


def test_dependency_ceiling_is_the_product_of_the_direct_hard_sync_dependencies() -> None:
    graph = shop()

    checkout = figures(graph, "checkout")  # payment 0.9975 x currency 1.0; email is async
    assert (checkout.dependency_ceiling, checkout.unknown_dependencies) == (0.9975, ())
    assert figures(graph, "frontend").dependency_ceiling == 0.99  # recommendation is soft
    assert figures(graph, "payment").dependency_ceiling == 0.998  # ledger
    assert figures(graph, "ledger").dependency_ceiling == 0.9975  # payment x postgres (1.0)


def test_a_dependency_without_availability_is_unknown_not_guessed() -> None:
    email = figures(shop(), "email")
    assert email.dependency_ceiling == 1.0  # the empty product
    assert email.unknown_dependencies == ("smtp-relay",)

    graph = analyse(
        [declare("a", ("z", HARD_SYNC), ("b", HARD_SYNC), ("c", HARD_SYNC))],
        [seen("a", "c", 10, 0.1), seen("q", "b", 7, 1 / 7)],
        now=NOW,
    )
    a = figures(graph, "a")
    assert (a.dependency_ceiling, a.unknown_dependencies) == (0.771429, ("z",))  # 0.9 * 6/7


# --- limiting dependencies ----------------------------------------------------------------------


def test_limiting_dependencies_are_the_fewest_to_take_out_weakest_first() -> None:
    dependencies = {"payment": 0.9975, "currency": 1.0, "fraud": 0.99, "tax": 0.998}
    # All four: 0.98555; without fraud 0.995505; without fraud and payment 0.998.
    assert limiting_dependencies(dependencies, 0.98) == []
    assert limiting_dependencies(dependencies, 0.99) == ["fraud"]
    assert limiting_dependencies(dependencies, 0.995505) == ["fraud"]  # met exactly
    assert limiting_dependencies(dependencies, 0.997) == ["fraud", "payment"]
    assert limiting_dependencies(dependencies, 0.9995) == ["fraud", "payment", "tax"]
    assert limiting_dependencies({"b": 0.9, "a": 0.9}, 0.85) == ["a"]  # a tie: by name
    assert limiting_dependencies({}, 1.0) == []


# --- impact -------------------------------------------------------------------------------------


def test_impact_fails_through_hard_sync_calls_and_degrades_through_the_others() -> None:
    graph = shop()
    impact = {
        name: (figures(graph, name).fails_names, figures(graph, name).degrades_names)
        for name in graph.nodes
    }

    assert impact == {
        "checkout": (("frontend",), ()),  # legacy's edge is stale
        "currency": (("checkout", "frontend"), ()),
        "email": ((), ("checkout", "frontend")),  # checkout only queues mail
        "frontend": ((), ()),
        "kafka": ((), ("checkout", "frontend")),
        "ledger": (("checkout", "frontend", "payment"), ()),
        "legacy": ((), ()),
        "payment": (("checkout", "frontend", "ledger"), ()),
        "postgres": (("checkout", "frontend", "ledger", "payment"), ()),
        "recommendation": ((), ("frontend",)),
        "smtp-relay": (("email",), ("checkout", "frontend")),
    }
    for name, (fails, degrades) in impact.items():
        assert graph.impact_of(name) == (list(fails), list(degrades))
        assert (figures(graph, name).fails, figures(graph, name).degrades) == (
            len(fails),
            len(degrades),
        )
        assert graph.nodes[name].blast_radius == len(fails) + len(degrades)


def test_impact_names_the_first_callers_by_name_and_counts_them_all() -> None:
    callers = [f"caller-{i}" for i in range(MAX_IMPACT_NAMES + 10)]  # caller-10 < caller-2
    graph = analyse(
        [declare(name, ("db", HARD_SYNC)) for name in callers]
        + [declare("reports", ("db", SOFT)), declare("admin", ("reports", HARD_SYNC))],
        now=NOW,
    )
    db = figures(graph, "db")

    assert db.fails == MAX_IMPACT_NAMES + 10
    assert list(db.fails_names) == sorted(callers)[:MAX_IMPACT_NAMES]
    assert (db.degrades, db.degrades_names) == (2, ("admin", "reports"))
    assert graph.impact_of("db") == (sorted(callers), ["admin", "reports"])
    assert graph.nodes["db"].blast_radius == MAX_IMPACT_NAMES + 12


# --- sync depth ---------------------------------------------------------------------------------


def test_sync_depth_counts_a_cycle_on_the_way_once_and_the_chain_goes_through_it() -> None:
    graph = shop()
    chains = {
        name: (figures(graph, name).sync_depth, graph.sync_chain(name)) for name in graph.nodes
    }

    assert chains["postgres"] == (0, ("postgres",))
    assert chains["ledger"] == (1, ("ledger", "postgres"))
    assert chains["payment"] == (1, ("payment", "ledger", "postgres"))  # payment~ledger is one
    assert chains["checkout"] == (2, ("checkout", "payment", "ledger", "postgres"))
    assert chains["frontend"] == (3, ("frontend", "checkout", "payment", "ledger", "postgres"))
    assert chains["email"] == (1, ("email", "smtp-relay"))  # checkout -> email is async
    assert chains["currency"] == (0, ("currency",))


def test_the_sync_chain_is_the_first_by_name_among_the_deepest() -> None:
    graph = analyse(
        [
            declare("api", ("search", HARD_SYNC), ("cart", HARD_SYNC), ("auth", HARD_SYNC)),
            declare("search", ("index", HARD_SYNC)),
            declare("cart", ("redis", HARD_SYNC)),
        ],
        now=NOW,
    )
    api = figures(graph, "api")
    assert (api.sync_depth, graph.sync_chain("api")) == (2, ("api", "cart", "redis"))  # not auth
    assert api.sync_next == "cart"  # what the snapshot keeps: the chain is followed from it


# --- snapshots ----------------------------------------------------------------------------------


def test_a_snapshot_keeps_the_figures_and_an_older_one_gets_them_again() -> None:
    graph = shop()
    doc = snapshot.to_document(graph)
    assert doc["nodes"][1]["name"] == "currency"
    assert doc["nodes"][1]["slo"]["impact"]["fails"] == ["checkout", "frontend"]

    read = snapshot.graph_from_document(doc)
    older = {**doc, "nodes": [{k: v for k, v in n.items() if k != "slo"} for n in doc["nodes"]]}
    recomputed = snapshot.graph_from_document(older)
    for name in graph.nodes:
        assert read.nodes[name].slo == recomputed.nodes[name].slo == graph.nodes[name].slo, name


def test_an_older_snapshot_recomputes_availability_from_the_sightings_it_had() -> None:
    # The Kubernetes source saw a -> b just now without figures, and c -> d earlier with some.
    # Read back, a -> b's Kubernetes sighting must stay without figures, or Kubernetes' last
    # poll would move to now and d lose its availability.
    graph = analyse(
        [],
        [
            seen("a", "b", 10, 0.1, at=NOW - timedelta(minutes=5)),
            Observation("a", "b", SourceKind.KUBERNETES, NOW),
            seen("c", "d", 10, 0.5, kind=SourceKind.KUBERNETES),
        ],
        now=NOW,
    )
    doc = snapshot.to_document(graph)
    older = {**doc, "nodes": [{k: v for k, v in n.items() if k != "slo"} for n in doc["nodes"]]}
    assert figures(graph, "d").availability == 0.5
    assert figures(snapshot.graph_from_document(older), "d").availability == 0.5

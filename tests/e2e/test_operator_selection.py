"""Which ServiceDependency objects make up which graph: selectors, several graphs, and an
operator restricted to one namespace."""

from __future__ import annotations

import pytest

from tests.e2e.test_operator_support import (
    SDEP_STATUS_PATCHES,
    counts,
    edges_of,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_config_maps,
    snapshot_document,
    versions,
    writes,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import StartOperator

pytestmark = pytest.mark.e2e

ACCEPTED_BY = '{.status.conditions[?(@.type=="Accepted")].message}'


def grant(api: Api, namespace: str, reader: str) -> None:
    """Let ServiceGraphs in `reader` select objects in `namespace`."""
    api.kubectl("label", "namespace", namespace, f"readers.graph.slo-engine.io/{reader}=true")


def test_selection_by_namespaces_and_labels(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop", "pay", "other", "ops")
    api.kubectl.apply(
        graph("home"),  # default: its own namespace, shop
        graph("two", selector={"namespaces": ["shop", "pay"]}),
        graph("web", selector={"namespaces": ["*"], "matchLabels": {"team": "web"}}),
        graph("all", ns="ops", selector={"namespaces": ["*"]}),
        graph("empty", ns="ops"),
        sdep("a", "b", team="web"),
        sdep("b", team="web"),
        sdep("p", "q", ns="pay", team="pay"),
        sdep("o", "a", ns="other", team="web"),
    )
    # pay and other let graphs in shop read them; ops is a platform namespace.
    grant(api, "pay", "shop")
    grant(api, "other", "shop")
    start_operator("--platform-namespace", "ops")
    wait_for(lambda: counts(api, "home") == "2/1", timeout=30)
    wait_for(lambda: counts(api, "two") == "4/2")
    wait_for(lambda: counts(api, "web") == "3/2")
    wait_for(lambda: counts(api, "all", "ops") == "5/3")
    wait_for(lambda: counts(api, "empty", "ops") == "0/0")
    assert {n["name"] for n in snapshot_document(api, "web-graph")["nodes"]} == {"a", "b", "o"}
    assert edges_of(snapshot_document(api, "all-graph", "ops")) == {
        ("a", "b"),
        ("o", "a"),
        ("p", "q"),
    }

    # An object whose labels no longer match leaves the graph (a stays, as a placeholder: o
    # calls it), and comes back when they match again.
    api.kubectl("label", "sdep", "a", "-n", "shop", "team=mobile", "--overwrite")
    wait_for(lambda: counts(api, "web") == "3/1")
    web = snapshot_document(api, "web-graph")
    assert edges_of(web) == {("o", "a")}
    assert {n["name"]: n["declared"] for n in web["nodes"]} == {"a": False, "b": True, "o": True}
    assert counts(api, "home") == "2/1"  # selects no label: unchanged
    api.kubectl("label", "sdep", "a", "-n", "shop", "team=web", "--overwrite")
    wait_for(lambda: counts(api, "web") == "3/2")

    # Objects elsewhere stay out of a graph with the default selector.
    api.kubectl.apply(sdep("z", "a", ns="other"), sdep("y", ns="ops"))
    wait_for(lambda: counts(api, "all", "ops") == "7/4")
    wait_for(lambda: counts(api, "empty", "ops") == "1/0")
    assert counts(api, "home") == "2/1"
    assert counts(api, "two") == "4/2"


def test_two_graphs_stay_independent(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop", "pay", "extra")
    api.kubectl.apply(
        graph("alpha"),
        graph("beta", selector={"namespaces": ["shop", "extra"], "matchLabels": {"tier": "gold"}}),
        graph("gamma", ns="pay"),
        sdep("a", "b", tier="gold"),  # in alpha and beta
        sdep("b", "c"),  # in alpha only
        sdep("e", "a", ns="extra", tier="gold"),  # in beta only
        sdep("p", "q", ns="pay", tier="gold"),  # in gamma only
    )
    grant(api, "extra", "shop")
    operator = start_operator()
    wait_for(lambda: counts(api, "alpha") == "3/2", timeout=30)
    wait_for(lambda: counts(api, "beta") == "3/2")
    wait_for(lambda: counts(api, "gamma", "pay") == "2/1")
    # Each has its own snapshot, with its own content.
    assert edges_of(snapshot_document(api, "alpha-graph")) == {("a", "b"), ("b", "c")}
    assert edges_of(snapshot_document(api, "beta-graph")) == {("a", "b"), ("e", "a")}
    assert edges_of(snapshot_document(api, "gamma-graph", "pay")) == {("p", "q")}
    assert jsonpath(api, "sg", "beta", "{.status.snapshot.configMap}") == "beta-graph"

    # An object in two graphs gets its status from the first by namespace/name: shop/alpha.
    wait_for(lambda: jsonpath(api, "sdep", "a", ACCEPTED_BY) == "part of ServiceGraph shop/alpha")
    wait_for(
        lambda: jsonpath(api, "sdep", "e", ACCEPTED_BY, "extra") == "part of ServiceGraph shop/beta"
    )
    wait_for(
        lambda: jsonpath(api, "sdep", "p", ACCEPTED_BY, "pay") == "part of ServiceGraph pay/gamma"
    )
    # a resolves b in alpha (where b is declared); in beta b is only a placeholder.
    assert jsonpath(api, "sdep", "a", "{.status.resolvedTargets}") == '["b"]'

    # A change wakes the graphs that select the object, and no other; a's status is not
    # fought over.
    operator.idle_reconciliations()  # every graph's writes are done
    a_versions = versions(api, "servicedependencies", "a")
    assert a_versions == 2, "created, then its status written once"
    gamma_cm = snapshot_config_maps(api, "gamma-graph", "pay")[0]["metadata"]["resourceVersion"]
    gamma = operator.idle_reconciliations("pay", "gamma")
    changes = [
        (sdep("f", tier="gold"), ("alpha", "beta")),
        (sdep("b", "c", "d"), ("alpha",)),
        (sdep("f", "a", tier="gold"), ("alpha", "beta")),
    ]
    for change, woken in changes:
        before = {name: operator.idle_reconciliations("shop", name) for name in ("alpha", "beta")}
        api.kubectl.apply(change)
        for name in woken:
            operator.wait_for_reconciliation(before[name], "shop", name)
        if "beta" not in woken:  # alpha looked; beta, which does not select b, did not
            assert operator.idle_reconciliations("shop", "beta") == before["beta"]
    assert operator.idle_reconciliations("pay", "gamma") == gamma
    wait_for(lambda: counts(api, "alpha") == "5/4")  # a b c d f
    wait_for(lambda: counts(api, "beta") == "4/3")  # a b e f
    assert counts(api, "gamma", "pay") == "2/1"
    assert versions(api, "servicedependencies", "a") == a_versions
    assert jsonpath(api, "sdep", "f", ACCEPTED_BY) == "part of ServiceGraph shop/alpha"
    # gamma's snapshot did not change, so it was not rewritten.
    assert (
        snapshot_config_maps(api, "gamma-graph", "pay")[0]["metadata"]["resourceVersion"]
        == gamma_cm
    )
    # Status writes: a, b, e and p once each at the start, then f twice and b once; none
    # from beta, though beta selects a and f too.
    assert writes(api, SDEP_STATUS_PATCHES) == 4 + 3

    # Without alpha, beta reports on a (where b is not declared: beta selects gold only).
    api.kubectl("delete", "sg", "alpha", "-n", "shop", "--timeout=20s")
    wait_for(lambda: jsonpath(api, "sdep", "a", ACCEPTED_BY) == "part of ServiceGraph shop/beta")
    assert jsonpath(api, "sdep", "a", "{.status.unresolvedTargets}") == '["b"]'
    assert counts(api, "beta") == "4/3"


def test_operator_limited_to_one_namespace(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop", "other")
    api.kubectl.apply(
        graph("everything", selector={"namespaces": ["*"]}),
        graph("elsewhere", ns="other"),
        sdep("a", "b"),
        sdep("x", "y", ns="other"),
    )
    operator = start_operator("--namespace", "shop")
    wait_for(lambda: counts(api, "everything") == "2/1", timeout=30)
    before = operator.idle_reconciliations("shop", "everything")
    api.kubectl.apply(sdep("c", "a"), sdep("z", "a", ns="other"))
    wait_for(lambda: counts(api, "everything") == "3/2")
    # The reconciliation that took c in is done; z, created with it, was never seen.
    operator.wait_for_reconciliation(before, "shop", "everything")
    assert counts(api, "everything") == "3/2"
    assert edges_of(snapshot_document(api, "everything-graph")) == {("a", "b"), ("c", "a")}
    # Nothing in the other namespace was touched: no status, no snapshot.
    assert jsonpath(api, "sg", "elsewhere", "{.status}", "other") == ""
    assert jsonpath(api, "sdep", "x", "{.status}", "other") == ""
    assert snapshot_config_maps(api, "elsewhere-graph", "other") == []
    assert api.kubectl.get("sg", "elsewhere", "-n", "other")["metadata"].get("finalizers") is None

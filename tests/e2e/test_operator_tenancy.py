"""Cross-namespace selection is an explicit grant: a graph in one team's namespace cannot
reach into another's, or take over the statuses of its objects, unless that namespace says so."""

from __future__ import annotations

import pytest

from tests.e2e.test_operator_selection import ACCEPTED_BY, grant
from tests.e2e.test_operator_support import (
    counts,
    edges_of,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_document,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import StartOperator

pytestmark = pytest.mark.e2e

ACCEPTED = '{.status.conditions[?(@.type=="Accepted")].reason}'


def test_a_graph_elsewhere_cannot_take_over_another_teams_objects(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "aaa", "payments")
    api.kubectl.apply(
        graph("payments", ns="payments"),
        sdep("payments", "ledger", ns="payments"),
        sdep("ledger", ns="payments"),
        # The attack: a graph that selects everything, first by namespace/name, and an
        # object declaring the same service.
        graph("grab", ns="aaa", selector={"namespaces": ["*"]}),
        sdep("payments", "evil", ns="aaa"),
    )
    operator = start_operator()
    wait_for(lambda: counts(api, "payments", "payments") == "2/1", timeout=30)
    wait_for(lambda: counts(api, "grab", "aaa") == "2/1")
    assert edges_of(snapshot_document(api, "grab-graph", "aaa")) == {("payments", "evil")}
    owner = "part of ServiceGraph payments/payments"
    wait_for(lambda: jsonpath(api, "sdep", "payments", ACCEPTED_BY, "payments") == owner)
    assert jsonpath(api, "sdep", "payments", ACCEPTED, "payments") == "InGraph"

    # payments grants aaa: the graph there may read it, yet the objects keep the status
    # their own namespace's graph gives them, and in aaa's graph aaa's object wins.
    grant(api, "payments", "aaa")
    wait_for(lambda: counts(api, "grab", "aaa") == "3/1")  # ledger joins, declared
    grabbed = snapshot_document(api, "grab-graph", "aaa")
    assert edges_of(grabbed) == {("payments", "evil")}
    conflict = grabbed["conflicts"][0]
    assert conflict["winner"] == {"namespace": "aaa", "name": "payments"}
    operator.idle_reconciliations()
    assert jsonpath(api, "sdep", "payments", ACCEPTED_BY, "payments") == owner
    assert jsonpath(api, "sdep", "payments", ACCEPTED, "payments") == "InGraph"

    # Revoked, the graph in aaa loses sight of payments again.
    api.kubectl("label", "namespace", "payments", "readers.graph.slo-engine.io/aaa-")
    wait_for(lambda: counts(api, "grab", "aaa") == "2/1")

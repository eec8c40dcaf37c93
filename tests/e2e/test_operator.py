"""The operator end to end: kubectl apply, the real `servicegraph run`, kubectl get.

The scenarios are split by topic: this file (lifecycle, printer columns, statuses),
test_operator_cycles.py, test_operator_selection.py, test_operator_snapshot.py,
test_operator_burst.py; their shared helpers are in test_operator_support.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from servicegraph.graph import Observation, SourceKind
from tests.e2e.test_operator_support import (
    READY,
    ROOT,
    SDEP_STATUS_PATCHES,
    SG_STATUS_PATCHES,
    condition,
    config_map_writes,
    counts,
    graph,
    install,
    jsonpath,
    sdep,
    seed_snapshot,
    table,
    writes,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import StartOperator

pytestmark = pytest.mark.e2e


def test_create_update_delete(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "c"))
    start_operator()
    wait_for(lambda: counts(api, "shop") == "3/2", timeout=30)
    assert jsonpath(api, "servicegraph", "shop", READY) == "True"

    api.kubectl.apply(sdep("c", "d"))
    wait_for(lambda: counts(api, "shop") == "4/3")

    api.kubectl("delete", "servicedependency", "a", "-n", "shop")
    wait_for(lambda: counts(api, "shop") == "3/2")
    assert jsonpath(api, "sdep", "c", "{.status.unresolvedTargets}") == '["d"]'
    assert jsonpath(api, "sdep", "b", "{.status.resolvedTargets}") == '["c"]'


# -- 1. printer columns ------------------------------------------------------------------------


def printer_columns(kind: str) -> dict[str, str]:
    """{column name: JSONPath} of a CRD in crds/, as the API server serves them."""
    for path in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = crd["spec"]["versions"]
            return {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    raise AssertionError(f"no CRD of {kind} in crds/")


def test_every_printer_column(api: Api, start_operator: StartOperator) -> None:
    """Each column of `kubectl get` of both kinds shows the value it is meant to show."""
    install(api, "shop")
    checkout = sdep("checkout", "payment", "ghost")
    checkout["spec"].update(service="checkout-svc", team="commerce", tier="critical")
    api.kubectl.apply(graph("shop"), checkout, sdep("payment", "checkout-svc"))
    # An earlier run saw checkout-svc call cache an hour ago (drift: undeclared) and legacy
    # call old-db three weeks ago (stale, within the 30-day retention): the only way to have
    # STALE and DRIFT without Prometheus.
    now = datetime.now(UTC).replace(microsecond=0)
    seed_snapshot(
        api,
        "shop",
        [],
        [
            Observation("checkout-svc", "cache", SourceKind.OTEL, now - timedelta(hours=1)),
            Observation("legacy", "old-db", SourceKind.OTEL, now - timedelta(days=21)),
        ],
    )
    start_operator()
    # checkout-svc, payment, ghost, cache, legacy, old-db; 3 declared edges + 2 observed.
    wait_for(lambda: counts(api, "shop") == "6/5", timeout=30)
    wait_for(lambda: jsonpath(api, "sdep", "checkout", "{.status.inCycle}") == "true")

    def created(kind: str, name: str) -> str:
        return jsonpath(api, kind, name, "{.metadata.creationTimestamp}")

    expected = {
        "ServiceGraph": {
            "shop": {
                "Services": "6",
                "Edges": "5",
                "Cycles": "1",
                "Stale": "1",
                "Drift": "1",
                "Ready": "True",
                "Snapshot": "shop-graph",
                "Age": created("servicegraph", "shop"),
            }
        },
        "ServiceDependency": {
            "checkout": {
                "Service": "checkout-svc",
                "Team": "commerce",
                "Tier": "critical",
                "Accepted": "True",
                "In-Cycle": "true",
                "Unresolved": '["ghost"]',
                "Age": created("sdep", "checkout"),
            },
            "payment": {
                "Service": "payment",  # spec.service left out: the object's name
                "Team": "",
                "Tier": "",
                "Accepted": "True",
                "In-Cycle": "true",
                "Unresolved": "[]",
                "Age": created("sdep", "payment"),
            },
        },
    }
    for kind, objects in expected.items():
        columns = printer_columns(kind)
        for name, values in objects.items():
            assert set(values) == set(columns), f"a column of {kind} has no expectation here"
            shown = {
                column: jsonpath(api, kind.lower(), name, f"{{{path}}}")
                for column, path in columns.items()
            }
            assert shown == values, f"{kind} {name}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created("servicegraph", "shop"))

    # What a user sees without -o: the server renders the columns.
    header, row = table(api.kubectl("get", "servicegraph", "-n", "shop"))
    assert header == ["NAME", "SERVICES", "EDGES", "CYCLES", "STALE", "DRIFT", "READY", "AGE"]
    assert row[:-1] == ["shop", "6", "5", "1", "1", "1", "True"]
    assert re.fullmatch(r"\d+s", row[-1])
    header, row = table(api.kubectl("get", "sg", "-n", "shop", "-o", "wide"))
    assert header[-2:] == ["SNAPSHOT", "AGE"] and row[-2] == "shop-graph"

    rows = table(api.kubectl("get", "sdep", "-n", "shop"))
    assert rows[0] == ["NAME", "SERVICE", "TEAM", "TIER", "ACCEPTED", "IN-CYCLE", "AGE"]
    assert rows[1][:-1] == ["checkout", "checkout-svc", "commerce", "critical", "True", "true"]
    # Cells with no value: blank here, <none> from some servers.
    assert [c for c in rows[2][:-1] if c != "<none>"] == ["payment", "payment", "True", "true"]
    rows = table(api.kubectl("get", "sdep", "-n", "shop", "-o", "wide"))
    assert rows[0][-2:] == ["UNRESOLVED", "AGE"] and rows[1][-2] == '["ghost"]'

    # The category lists both kinds.
    names = api.kubectl("get", "slo-engine", "-n", "shop", "-o", "name").split()
    assert sorted(names) == [
        "servicedependency.graph.slo-engine.io/checkout",
        "servicedependency.graph.slo-engine.io/payment",
        "servicegraph.graph.slo-engine.io/shop",
    ]
    shown = api.kubectl("get", "slo-engine", "-n", "shop")
    assert "servicegraph.graph.slo-engine.io/shop" in shown
    assert "servicedependency.graph.slo-engine.io/checkout" in shown


# -- 2. ServiceDependency status ---------------------------------------------------------------


def test_dependency_status_is_written_when_it_changes(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b", "x"), sdep("b", "c"), sdep("c"))
    operator = start_operator()

    def status_of(name: str) -> dict[str, Any]:
        obj: dict[str, Any] = api.kubectl.get("sdep", name, "-n", "shop")
        assert obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
        return obj

    a = wait_for(lambda: status_of("a"), timeout=30)
    accepted = condition(a, "Accepted")
    assert accepted["status"] == "True"
    assert accepted["reason"] == "InGraph"
    assert accepted["message"] == "part of ServiceGraph shop/shop"
    assert accepted["observedGeneration"] == a["metadata"]["generation"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", accepted["lastTransitionTime"])
    assert a["status"]["resolvedTargets"] == ["b"]
    assert a["status"]["unresolvedTargets"] == ["x"]
    assert a["status"]["inCycle"] is False
    wait_for(lambda: status_of("c")["status"]["resolvedTargets"] == [])

    # A new generation: observedGeneration follows, the condition keeps its transition time.
    # lastTransitionTime has whole seconds: once the clock is past its second, a rewrite shows.
    transition = datetime.fromisoformat(accepted["lastTransitionTime"].replace("Z", "+00:00"))
    wait_for(lambda: datetime.now(UTC) >= transition + timedelta(seconds=1))
    api.kubectl.apply(sdep("a", "b", "c"))
    a = wait_for(lambda: (obj := status_of("a"))["metadata"]["generation"] == 2 and obj)
    assert condition(a, "Accepted")["observedGeneration"] == 2
    assert condition(a, "Accepted")["lastTransitionTime"] == accepted["lastTransitionTime"]
    assert a["status"]["resolvedTargets"] == ["b", "c"]
    assert a["status"]["unresolvedTargets"] == []

    # A cycle shows in inCycle of its members only.
    api.kubectl.apply(sdep("c", "a"))
    wait_for(lambda: jsonpath(api, "sdep", "c", "{.status.inCycle}") == "true")
    assert jsonpath(api, "sdep", "a", "{.status.inCycle}") == "true"
    assert jsonpath(api, "sdep", "b", "{.status.inCycle}") == "true"

    # No-ops: the same manifests again (kubectl finds nothing to change) and a label on one
    # dependency (the loop reads labels: they select): recomputed, nothing written.
    wait_for(lambda: jsonpath(api, "sdep", "b", "{.status.inCycle}") == "true")
    before = operator.idle_reconciliations("shop", "shop")
    sdep_writes, sg_writes = writes(api, SDEP_STATUS_PATCHES), writes(api, SG_STATUS_PATCHES)
    cm_writes = config_map_writes(api)
    api.kubectl.apply(sdep("a", "b", "c"), sdep("b", "c"), sdep("c", "a"), graph("shop"))
    api.kubectl("label", "sdep", "b", "-n", "shop", "owner=payments")
    before = operator.wait_for_reconciliation(before, "shop", "shop")
    assert writes(api, SDEP_STATUS_PATCHES) == sdep_writes
    assert writes(api, SG_STATUS_PATCHES) == sg_writes
    assert config_map_writes(api) == cm_writes

    # The graph's spec, changed in words only: the same duration written differently. The
    # loop reads the spec (it wakes and recomputes), the result is the same: no dependency
    # status and no snapshot is written, and the graph's status only takes the new
    # generation as observedGeneration (a new generation must be acknowledged).
    status = api.kubectl.get("sg", "shop", "-n", "shop")["status"]
    api.kubectl.apply(graph("shop", staleAfter="7d"))  # the default is 168h
    operator.wait_for_reconciliation(before, "shop", "shop")
    assert writes(api, SDEP_STATUS_PATCHES) == sdep_writes
    assert config_map_writes(api) == cm_writes
    assert writes(api, SG_STATUS_PATCHES) == sg_writes + 1
    now = api.kubectl.get("sg", "shop", "-n", "shop")
    assert now["status"]["observedGeneration"] == now["metadata"]["generation"] == 2
    assert without_generations(now["status"]) == without_generations(status)

    # ...while a real change is written at once, each status once: a, b and c leave the cycle.
    before = operator.idle_reconciliations("shop", "shop")
    api.kubectl.apply(sdep("c"))
    wait_for(lambda: writes(api, SDEP_STATUS_PATCHES) == sdep_writes + 3)
    operator.wait_for_reconciliation(before, "shop", "shop")
    assert writes(api, SDEP_STATUS_PATCHES) == sdep_writes + 3
    for name in "abc":
        assert jsonpath(api, "sdep", name, "{.status.inCycle}") == "false"


def without_generations(status: dict[str, Any]) -> dict[str, Any]:
    """A status without the generation it acknowledges (also in each condition)."""
    conditions = [
        {k: v for k, v in c.items() if k != "observedGeneration"}
        for c in status.get("conditions", [])
    ]
    rest = {k: v for k, v in status.items() if k not in ("observedGeneration", "conditions")}
    return {**rest, "conditions": conditions}


# -- 9. an invalid spec that got past admission ------------------------------------------------


def test_invalid_dependency_is_reported_and_the_rest_goes_on(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    # Admission refuses this name today; an object stored under an older schema has it.
    with api.emulator.admission.under_an_older_schema():
        api.kubectl.apply(sdep("broken", "a b"))
    start_operator()
    wait_for(
        lambda: (
            jsonpath(api, "sdep", "broken", '{.status.conditions[?(@.type=="Accepted")].reason}')
            == "InvalidSpec"
        ),
        timeout=30,
    )
    obj = api.kubectl.get("sdep", "broken", "-n", "shop")
    accepted = condition(obj, "Accepted")
    assert accepted["status"] == "False"
    assert "dependsOn" in accepted["message"] and "service" in accepted["message"]
    assert accepted["observedGeneration"] == 1
    assert obj["status"]["inCycle"] is False
    # The graph goes on without it.
    wait_for(lambda: counts(api, "shop") == "2/1")
    assert jsonpath(api, "servicegraph", "shop", READY) == "True"
    api.kubectl.apply(sdep("b", "c"))
    wait_for(lambda: counts(api, "shop") == "3/2")
    assert jsonpath(api, "sdep", "b", "{.status.unresolvedTargets}") == '["c"]'

    # Fixed, it joins the graph.
    api.kubectl.apply(sdep("broken", "a"))
    wait_for(
        lambda: (
            jsonpath(api, "sdep", "broken", '{.status.conditions[?(@.type=="Accepted")].status}')
            == "True"
        )
    )
    wait_for(lambda: counts(api, "shop") == "4/3")
    assert jsonpath(api, "sdep", "broken", "{.status.observedGeneration}") == "2"

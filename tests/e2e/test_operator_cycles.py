"""Cycles end to end: status, conditions, ServiceDependency inCycle and Events."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.test_operator_support import (
    condition,
    counts,
    graph,
    install,
    jsonpath,
    reasons,
    sdep,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

ACYCLIC = '{.status.conditions[?(@.type=="Acyclic")].status}'
WARNING = ("Warning", "CycleDetected")
RESOLVED = ("Normal", "CycleResolved")


def in_cycle(api: Api, *names: str) -> list[str]:
    return [jsonpath(api, "sdep", name, "{.status.inCycle}") for name in names]


def test_cycle_appears_and_is_resolved(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "c"), sdep("c"), sdep("d", "a"))
    operator = start_operator()
    wait_for(lambda: counts(api, "shop") == "4/3", timeout=30)
    assert jsonpath(api, "sg", "shop", ACYCLIC) == "True"
    wait_for(lambda: in_cycle(api, "a", "b", "c", "d") == ["false"] * 4)

    api.kubectl.apply(sdep("c", "a"))
    wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.cycles}") == "1")
    sg = api.kubectl.get("sg", "shop", "-n", "shop")
    assert sg["status"]["cycleSamples"] == [["a", "b", "c"]]
    acyclic = condition(sg, "Acyclic")
    assert (acyclic["status"], acyclic["reason"]) == ("False", "CyclesFound")
    assert "a -> b -> c -> a" in acyclic["message"]
    assert acyclic["observedGeneration"] == sg["metadata"]["generation"]
    assert condition(sg, "Ready")["status"] == "True"  # a cycle is a finding, not a failure
    wait_for(lambda: in_cycle(api, "a", "b", "c", "d") == ["true", "true", "true", "false"])
    wait_for(lambda: reasons(api, "shop", "shop") == [WARNING])
    (warning,) = [
        e
        for e in api.kubectl.get("events", "-n", "shop")["items"]
        if e["reason"] == "CycleDetected"
    ]
    assert warning["involvedObject"]["name"] == "shop"
    assert warning["involvedObject"]["uid"] == sg["metadata"]["uid"]
    assert "a -> b -> c -> a" in warning["message"]

    # Unrelated recomputations do not repeat the warning.
    for change in (sdep("e", "d"), sdep("d", "a", "e2")):
        before = operator.idle_reconciliations("shop", "shop")
        api.kubectl.apply(change)
        operator.wait_for_reconciliation(before, "shop", "shop")
    wait_for(lambda: counts(api, "shop") == "6/6")
    assert jsonpath(api, "sg", "shop", "{.status.cycles}") == "1"
    # Kopf posts events in the background, one at a time in the order they were made: a
    # repeated warning would come before the resolution's event, and the exact list awaited
    # below would never be.
    assert reasons(api, "shop", "shop") == [WARNING]

    # Resolved: the condition goes back, one Normal event, and nothing more after that.
    api.kubectl.apply(sdep("c"))
    wait_for(lambda: jsonpath(api, "sg", "shop", ACYCLIC) == "True")
    sg = api.kubectl.get("sg", "shop", "-n", "shop")
    assert sg["status"]["cycles"] == 0
    assert sg["status"]["cycleSamples"] == []
    assert condition(sg, "Acyclic")["reason"] == "NoCycles"
    assert condition(sg, "Acyclic")["lastTransitionTime"] >= acyclic["lastTransitionTime"]
    wait_for(lambda: in_cycle(api, "a", "b", "c") == ["false"] * 3)
    wait_for(lambda: reasons(api, "shop", "shop") == [WARNING, RESOLVED])
    before = operator.idle_reconciliations("shop", "shop")
    api.kubectl.apply(sdep("e"))
    operator.wait_for_reconciliation(before, "shop", "shop")
    assert reasons(api, "shop", "shop") == [WARNING, RESOLVED]

    # The same cycle again is news again (and nothing was posted before it: the order above).
    api.kubectl.apply(sdep("c", "a"))
    wait_for(lambda: reasons(api, "shop", "shop") == [WARNING, RESOLVED, WARNING])


def test_acknowledged_cycle_raises_no_alarm(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    install(api, "shop")
    api.kubectl.apply(
        graph("shop", acknowledgedCycles=[["b", "a"]]),
        sdep("a", "b"),
        sdep("b", "a"),
        sdep("x", "y"),
    )
    operator = start_operator()
    wait_for(lambda: counts(api, "shop") == "4/3", timeout=30)
    wait_for(lambda: in_cycle(api, "a", "b", "x") == ["true", "true", "false"])
    sg = api.kubectl.get("sg", "shop", "-n", "shop")
    assert sg["status"]["cycles"] == 0
    acyclic = condition(sg, "Acyclic")
    assert (acyclic["status"], acyclic["reason"]) == ("True", "NoCycles")
    assert "1 acknowledged" in acyclic["message"]

    # An unacknowledged one next to it does raise the alarm, for itself only.
    api.kubectl.apply(sdep("y", "x"))
    wait_for(lambda: jsonpath(api, "sg", "shop", ACYCLIC) == "False")
    assert jsonpath(api, "sg", "shop", "{.status.cycleSamples}") == '[["x","y"]]'
    wait_for(lambda: reasons(api, "shop", "shop") == [WARNING])
    (warning,) = api.kubectl.get("events", "-n", "shop")["items"]
    assert "x -> y -> x" in warning["message"]

    # Acknowledging it silences the condition, and is no resolution (the cycle is still there).
    before = operator.idle_reconciliations("shop", "shop")
    api.kubectl.apply(graph("shop", acknowledgedCycles=[["b", "a"], ["x", "y"]]))
    wait_for(lambda: jsonpath(api, "sg", "shop", ACYCLIC) == "True")
    operator.wait_for_reconciliation(before, "shop", "shop")
    assert in_cycle(api, "x", "y") == ["true", "true"]
    assert reasons(api, "shop", "shop") == [WARNING]

    # Taking the acknowledgement back brings the alarm back.
    api.kubectl.apply(graph("shop", acknowledgedCycles=[["b", "a"]]))
    wait_for(lambda: jsonpath(api, "sg", "shop", ACYCLIC) == "False")
    wait_for(lambda: reasons(api, "shop", "shop") == [WARNING, WARNING])


def test_a_ring_of_5000_services_reaches_a_valid_accepted_status(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    """The emulator checks every status write against the CRD, as a real API server does:
    a status that grew with the cycle would be refused here, and for ever after."""
    install(api, "shop")
    size = 5000
    ring = [sdep(f"s{i:04d}", f"s{(i + 1) % size:04d}") for i in range(size)]
    api.kubectl.apply(graph("shop"))
    start_operator()
    wait_for(lambda: counts(api, "shop") == "0/0", timeout=30)
    for start in range(0, size, 1000):  # as a GitOps sync would, while the operator runs
        api.kubectl.apply(*ring[start : start + 1000])
    wait_for(lambda: counts(api, "shop") == f"{size}/{size}", timeout=120)
    status = api.kubectl.get("sg", "shop", "-n", "shop")["status"]
    acyclic = condition({"status": status}, "Acyclic")
    assert acyclic["status"] == "False"
    assert f"component of {size} services" in acyclic["message"]
    assert len(acyclic["message"]) <= 1024
    (sample,) = status["cycleSamples"]
    assert sample[:2] == ["s0000", "s0001"] and sample[-1] == f"and {size - 20} more"
    refused = [r for r in api.emulator.admission.refused if r[0] == "ServiceGraph"]
    assert refused == []

"""What the operator may write: only ConfigMaps its ServiceGraph controls, and statuses that
say what is true now (a graph renamed, deleted or edited behind its back)."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_operator_support import (
    READY,
    SDEP_STATUS_PATCHES,
    condition,
    counts,
    events,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_config_maps,
    snapshot_document,
    writes,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess, StartOperator

pytestmark = pytest.mark.e2e


def user_config_map(name: str, ns: str = "shop") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"owner": "a user"},
    }


def ready(api: Api, name: str, ns: str = "shop") -> dict[str, object]:
    return condition(api.kubectl.get("servicegraph", name, "-n", ns), "Ready")


def test_a_configmap_of_someone_else_is_never_replaced(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")
    api.kubectl.apply(user_config_map("shop-graph"), graph("shop"), sdep("a", "b"))
    start_operator()
    wait_for(lambda: ready(api, "shop")["reason"] == "SnapshotConflict", timeout=30)
    message = str(ready(api, "shop")["message"])
    assert "shop/shop-graph" in message and "spec.snapshot.configMapName" in message
    assert jsonpath(api, "servicegraph", "shop", READY) == "False"
    assert api.kubectl.get("configmap", "shop-graph", "-n", "shop")["data"] == {"owner": "a user"}
    wait_for(lambda: any(e["reason"] == "SnapshotConflict" for e in events(api, "shop")))

    # Pointing the graph at a free name clears it.
    api.kubectl.apply(graph("shop", snapshot={"configMapName": "shop-snapshot"}))
    wait_for(lambda: jsonpath(api, "servicegraph", "shop", READY) == "True", timeout=20)
    assert {
        (e["source"], e["target"]) for e in snapshot_document(api, "shop-snapshot")["edges"]
    } == {("a", "b")}
    assert api.kubectl.get("configmap", "shop-graph", "-n", "shop")["data"] == {"owner": "a user"}


def test_two_graphs_naming_one_snapshot_do_not_delete_each_other(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")
    shared = {"configMapName": "shared-graph"}
    api.kubectl.apply(graph("first", snapshot=shared), sdep("a", "b"))
    start_operator()
    wait_for(lambda: jsonpath(api, "servicegraph", "first", READY) == "True", timeout=30)
    before = snapshot_document(api, "shared-graph")
    api.kubectl.apply(graph("second", snapshot=shared))
    wait_for(lambda: ready(api, "second")["reason"] == "SnapshotConflict", timeout=20)
    assert "ServiceGraph first" in str(ready(api, "second")["message"])
    assert snapshot_document(api, "shared-graph") == before
    assert jsonpath(api, "servicegraph", "first", READY) == "True"


def test_renaming_the_snapshot_moves_it(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    start_operator()
    wait_for(lambda: jsonpath(api, "servicegraph", "shop", READY) == "True", timeout=30)
    old = snapshot_document(api, "shop-graph")

    api.kubectl.apply(graph("shop", snapshot={"configMapName": "renamed"}))
    wait_for(
        lambda: jsonpath(api, "servicegraph", "shop", "{.status.snapshot.configMap}") == "renamed",
        timeout=20,
    )
    assert snapshot_document(api, "renamed")["edges"] == old["edges"]
    wait_for(lambda: snapshot_config_maps(api, "shop-graph") == [])


def test_a_renamed_snapshot_is_found_after_a_restart(
    api: Api, start_operator: StartOperator
) -> None:
    """The spec names a ConfigMap not written yet when the operator stops: the next run
    finds the history under the name the status gives."""
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    operator = start_operator()
    wait_for(lambda: jsonpath(api, "servicegraph", "shop", READY) == "True", timeout=30)
    operator.stop()
    api.kubectl.apply(graph("shop", snapshot={"configMapName": "renamed"}))
    restarted = start_operator()
    wait_for(lambda: snapshot_config_maps(api, "renamed") != [], timeout=30)
    assert "reloaded snapshot shop-graph" in restarted.log()
    wait_for(lambda: snapshot_config_maps(api, "shop-graph") == [])


def test_objects_no_graph_selects_are_told_so(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop")
    api.kubectl.apply(
        graph("shop", selector={"matchLabels": {"graph": "shop"}}),
        sdep("a", "b", graph="shop"),
        sdep("b", graph="shop"),
    )
    operator = start_operator()

    def accepted(name: str) -> tuple[str, str]:
        found = condition(api.kubectl.get("sdep", name, "-n", "shop"), "Accepted")
        return (found["status"], found["reason"])

    wait_for(lambda: accepted("a") == ("True", "InGraph"), timeout=30)
    api.kubectl("label", "sdep", "a", "-n", "shop", "graph=elsewhere", "--overwrite")
    wait_for(lambda: accepted("a") == ("Unknown", "NotSelected"), timeout=20)
    assert jsonpath(api, "sdep", "a", "{.status.resolvedTargets}") in ("", "[]")
    assert accepted("b") == ("True", "InGraph")

    assert graph_series(operator)  # the graph has its series while it exists
    api.kubectl("delete", "servicegraph", "shop", "-n", "shop")
    wait_for(lambda: accepted("b") == ("Unknown", "NotSelected"), timeout=20)
    # Every family labelled by graph forgets it: alerts must not fire on a graph that is gone.
    wait_for(lambda: graph_series(operator) == [], timeout=20)


def graph_series(operator: OperatorProcess) -> list[str]:
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    return sorted(
        {
            sample.name
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.labels.get("namespace") == "shop" and sample.labels.get("name") == "shop"
        }
    )


def test_an_external_edit_of_the_status_is_repaired_and_foreign_conditions_kept(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    start_operator()
    wait_for(lambda: counts(api, "shop") == "2/1", timeout=30)
    foreign = {
        "type": "example.com/Audited",
        "status": "True",
        "reason": "Checked",
        "message": "by another controller",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    conditions = api.kubectl.get("servicegraph", "shop", "-n", "shop")["status"]["conditions"]
    patch = {"status": {"services": 99, "conditions": [*conditions, foreign]}}
    api.kubectl(
        "patch", "servicegraph", "shop", "-n", "shop", "--subresource=status",
        "--type=merge", "-p", json.dumps(patch),
    )  # fmt: skip
    # Any change of the graph's inputs makes the operator look again.
    api.kubectl.apply(sdep("b"))
    wait_for(lambda: counts(api, "shop") == "2/1", timeout=20)
    status = api.kubectl.get("servicegraph", "shop", "-n", "shop")["status"]
    assert foreign in status["conditions"]
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Acyclic"}


def test_a_change_during_the_first_reconciliation_is_not_lost(
    api: Api, start_operator: StartOperator
) -> None:
    """The first reconciliation writes every status; a change applied meanwhile is picked
    up right after it, not at the next resync (300 s)."""
    install(api, "shop")
    api.kubectl.apply(graph("shop"), *(sdep(f"s{i}") for i in range(20)))
    slow = api.emulator.inject(
        "PATCH", r"/servicedependencies/[^/]+/status", None, times=None, delay=1.0
    )
    start_operator()
    wait_for(lambda: len(slow.hit_times) >= 2, timeout=30)  # the first writes are under way
    api.kubectl.apply(sdep("late", "s0"))
    started = time.monotonic()
    wait_for(lambda: counts(api, "shop") == "21/1", timeout=30)
    slow.times = 0
    assert time.monotonic() - started < 30
    wait_for(lambda: jsonpath(api, "sdep", "late", "{.status.resolvedTargets}") == '["s0"]')
    assert writes(api, SDEP_STATUS_PATCHES) >= 21


def test_snapshot_writes_list_no_configmaps(api: Api, start_operator: StartOperator) -> None:
    """The store remembers the ConfigMaps it wrote: only the reload at start lists them (a
    list of a big snapshot is megabytes of base64)."""
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    lists = api.emulator.inject("GET", r"/api/v1/namespaces/shop/configmaps\?", None, times=None)
    start_operator()
    revision = "{.status.snapshot.revision}"
    wait_for(lambda: jsonpath(api, "servicegraph", "shop", revision) != "", timeout=30)
    for target in ("c", "d", "e"):
        before = jsonpath(api, "servicegraph", "shop", revision)
        api.kubectl.apply(sdep("b", target))
        wait_for(lambda before=before: jsonpath(api, "servicegraph", "shop", revision) != before)
    assert len(lists.hit_times) == 1, "listed once, at start"

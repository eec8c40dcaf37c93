"""Fault tolerance against the Kubernetes API: 500s, 409s, 429s with Retry-After, and watch
streams that drop, while the real operator runs. After each, the ServiceGraph converges to
the right status and its snapshot is whole and matches the status.

The API emulator injects the faults (`inject`), delays and records when requests arrive
(`Fault.hit_times`), and ends watch streams (`drop_watches`). Prometheus flaps are in
test_faults_prometheus.py, a crash in the middle of a sharded snapshot write in
test_faults_crash.py, two replicas in test_peering.py.
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import pytest

from servicegraph import snapshot, snapshot_configmaps
from tests.e2e.test_operator_support import (
    READY,
    SDEP_STATUS_PATCHES,
    SG_STATUS_PATCHES,
    config_map_writes,
    counts,
    edges_of,
    graph,
    install,
    jsonpath,
    reasons,
    sdep,
    snapshot_config_maps,
    writes,
)
from tests.support.emulator import Api, Fault
from tests.support.kubectl import wait_for
from tests.support.operator_process import StartOperator

pytestmark = pytest.mark.e2e

SG_STATUS = r"/namespaces/shop/servicegraphs/shop/status$"
CM_CREATE = r"/api/v1/namespaces/shop/configmaps$"
CM_REPLACE = r"/api/v1/namespaces/shop/configmaps/shop-graph$"
SDEP_LIST = r"/apis/graph\.slo-engine\.io/v1alpha1/servicedependencies(\?(?!.*watch=true).*)?$"
SDEP_WATCH = r"/apis/graph\.slo-engine\.io/v1alpha1/servicedependencies\?.*watch=true"


# -- helpers -----------------------------------------------------------------------------------


def consistent(api: Api, name: str = "shop", ns: str = "shop") -> snapshot.Document:
    """The snapshot as a reader gets it, after checking that it is whole, that nothing else is
    left under its label, and that the status names its revision. AssertionError if not."""
    sg = api.kubectl.get("sg", name, "-n", ns)
    info = sg.get("status", {}).get("snapshot") or {}
    cm_name = info.get("configMap") or f"{name}-graph"
    by_name = {cm["metadata"]["name"]: cm for cm in snapshot_config_maps(api, cm_name, ns)}
    assert cm_name in by_name, f"no snapshot ConfigMap {cm_name}: {sorted(by_name)}"
    index = by_name[cm_name]
    doc = snapshot_configmaps.decode(index, by_name.get)
    revision = index["data"][snapshot_configmaps.REVISION_KEY]
    assert info.get("revision") == revision, f"status says {info.get('revision')}, cm {revision}"
    shards = []
    if snapshot_configmaps.INDEX_KEY in index["data"]:
        shards = [
            s["name"] for s in json.loads(index["data"][snapshot_configmaps.INDEX_KEY])["shards"]
        ]
    assert sorted(by_name) == sorted([cm_name, *shards]), "stale ConfigMaps are left"
    summary = {key: sg["status"][key] for key in doc["summary"]}
    assert summary == doc["summary"], f"status {summary} != snapshot {doc['summary']}"
    return doc


def gaps(*faults: Fault) -> list[float]:
    """Seconds between the requests the faults saw, in order."""
    times = sorted(t for fault in faults for t in fault.hit_times)
    return [round(later - earlier, 2) for earlier, later in pairwise(times)]


def drop_watches(api: Api) -> None:
    api.server.call(api.emulator.drop_watches())


def converged(api: Api, expected: str, edges: set[tuple[str, str]]) -> snapshot.Document | None:
    """The snapshot once the status shows `expected` services/edges, Ready, and the snapshot
    holds exactly `edges`; None while not yet."""
    if counts(api, "shop") != expected or jsonpath(api, "sg", "shop", READY) != "True":
        return None
    doc = consistent(api)
    return doc if edges_of(doc) == edges else None


def status(api: Api, plural: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = api.kubectl.get(plural, name, "-n", "shop").get("status") or {}
    return found


# -- 500 -----------------------------------------------------------------------------------------


def test_status_patch_500s_are_retried_with_backoff(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "c"))
    failing = api.emulator.inject("PATCH", SG_STATUS, 500, times=3)
    retried = api.emulator.inject("PATCH", SG_STATUS, None, times=1)  # notes when it came
    operator = start_operator()
    doc = wait_for(lambda: converged(api, "3/2", {("a", "b"), ("b", "c")}), timeout=30)
    assert (failing.hits, retried.hits) == (3, 1)
    # The loop backs off 1, 2, 4 s between attempts, and never gives up.
    backoff = gaps(failing, retried)
    print(f"status patch: 3 x 500, retried after {backoff} s")
    assert [round(g) for g in backoff] == [1, 2, 4], backoff
    assert "will retry" in operator.log()
    assert doc["summary"]["services"] == 3

    # While running: a change whose status patch fails twice is written afterwards.
    failing = api.emulator.inject("PATCH", SG_STATUS, 500, times=2)
    api.kubectl.apply(sdep("c", "d"))
    wait_for(lambda: converged(api, "4/3", {("a", "b"), ("b", "c"), ("c", "d")}), timeout=20)
    assert failing.hits == 2
    assert status(api, "sdep", "c")["unresolvedTargets"] == ["d"]


def test_dependency_status_and_snapshot_500s_are_retried(
    api: Api, start_operator: StartOperator
) -> None:
    """A failed write of a ServiceDependency status or of the snapshot is retried without
    waiting for the next change (or the 5-minute resync)."""
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "c"))
    sdep_fault = api.emulator.inject("PATCH", r"/servicedependencies/a/status$", 500, times=2)
    start_operator()
    wait_for(lambda: converged(api, "3/2", {("a", "b"), ("b", "c")}), timeout=30)
    wait_for(lambda: status(api, "sdep", "a").get("resolvedTargets") == ["b"], timeout=20)
    assert sdep_fault.hits == 2
    assert status(api, "sdep", "b")["unresolvedTargets"] == ["c"]

    cm_fault = api.emulator.inject("PUT", CM_REPLACE, 500, times=2)
    api.kubectl.apply(sdep("c", "a"))
    # Meanwhile the status says why the snapshot is behind ...
    wait_for(
        lambda: (
            '"reason":"SnapshotWriteFailed"'
            in jsonpath(api, "sg", "shop", '{.status.conditions[?(@.type=="Ready")]}')
        ),
        timeout=20,
    )
    # ... and then it is written.
    doc = wait_for(lambda: converged(api, "3/3", {("a", "b"), ("b", "c"), ("c", "a")}), 20)
    assert cm_fault.hits == 2
    assert doc["cycles"] == [["a", "b", "c"]]
    assert reasons(api, "shop", "shop") == [("Warning", "CycleDetected")]
    assert all(status(api, "sdep", n)["inCycle"] for n in "abc")


# -- 409 -----------------------------------------------------------------------------------------


def test_conflicts_on_writes_converge(api: Api, start_operator: StartOperator) -> None:
    """409 on the snapshot's create (AlreadyExists, for an object that is not there) and
    replace (Conflict), on the ServiceGraph status and on a ServiceDependency status."""
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "c"))
    create = api.emulator.inject("POST", CM_CREATE, 409, times=1)
    sg_status = api.emulator.inject("PATCH", SG_STATUS, 409, times=1)
    dep_status = api.emulator.inject("PATCH", r"/servicedependencies/b/status$", 409, times=1)
    start_operator()
    wait_for(lambda: converged(api, "3/2", {("a", "b"), ("b", "c")}), timeout=30)
    wait_for(lambda: status(api, "sdep", "b").get("unresolvedTargets") == ["c"], timeout=20)
    assert (create.hits, sg_status.hits, dep_status.hits) == (1, 1, 1)

    replace = api.emulator.inject("PUT", CM_REPLACE, 409, times=2)
    sg_status = api.emulator.inject("PATCH", SG_STATUS, 409, times=1)
    api.kubectl.apply(sdep("c"))
    wait_for(lambda: status(api, "sdep", "b").get("resolvedTargets") == ["c"], timeout=20)
    api.kubectl.apply(sdep("c", "d"))
    wait_for(lambda: converged(api, "4/3", {("a", "b"), ("b", "c"), ("c", "d")}), timeout=20)
    assert (replace.hits, sg_status.hits) == (2, 1)


# -- 429 -----------------------------------------------------------------------------------------


def test_too_many_requests_on_writes_honours_retry_after(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    throttled = api.emulator.inject("PATCH", SG_STATUS, 429, times=2, headers={"Retry-After": "3"})
    retried = api.emulator.inject("PATCH", SG_STATUS, None, times=1)
    cm_throttled = api.emulator.inject("POST", CM_CREATE, 429, headers={"Retry-After": "1"})
    start_operator()
    wait_for(lambda: converged(api, "2/1", {("a", "b")}), timeout=30)
    assert (throttled.hits, retried.hits, cm_throttled.hits) == (2, 1, 1)
    waited = gaps(throttled, retried)
    print(f"status patch: 2 x 429 Retry-After 3, retried after {waited} s")
    assert all(3 <= gap < 6 for gap in waited), waited


def test_too_many_requests_on_list_and_watch(api: Api, start_operator: StartOperator) -> None:
    """Kopf's own calls: the initial list and a watch reconnection answered 429 are retried
    no sooner than Retry-After says."""
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    listed = api.emulator.inject("GET", SDEP_LIST, 429, headers={"Retry-After": "2"})
    relisted = api.emulator.inject("GET", SDEP_LIST, None)
    start_operator()
    wait_for(lambda: converged(api, "2/1", {("a", "b")}), timeout=30)
    assert (listed.hits, relisted.hits) == (1, 1)
    print(f"list: 429 Retry-After 2, retried after {gaps(listed, relisted)} s")
    assert 2 <= gaps(listed, relisted)[0] < 5

    watched = api.emulator.inject("GET", SDEP_WATCH, 429, times=2, headers={"Retry-After": "2"})
    rewatched = api.emulator.inject("GET", SDEP_WATCH, None)
    drop_watches(api)
    api.kubectl.apply(sdep("b", "c"))  # while the watch is down
    wait_for(lambda: converged(api, "3/2", {("a", "b"), ("b", "c")}), timeout=20)
    assert (watched.hits, rewatched.hits) == (2, 1)
    print(f"watch: 2 x 429 Retry-After 2, reconnected after {gaps(watched, rewatched)} s")
    assert all(2 <= gap < 5 for gap in gaps(watched, rewatched))


# -- dropped watch streams ---------------------------------------------------------------------


def test_dropped_watch_streams(api: Api, start_operator: StartOperator) -> None:
    """Watch streams end again and again while objects change: each reconnection resumes
    from the last resourceVersion seen, the index catches up, and nothing is replayed (no
    write without a change, no second event about the same cycle)."""
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("s0", "s1"))
    operator = start_operator()
    wait_for(lambda: converged(api, "2/1", {("s0", "s1")}), timeout=30)
    watches = api.emulator.inject("GET", r"watch=true", None, times=None)

    expected = {("s0", "s1")}
    for i in range(1, 9):
        drop_watches(api)
        api.kubectl.apply(sdep(f"s{i}", f"s{i + 1}"))
        expected.add((f"s{i}", f"s{i + 1}"))
        if i % 3 == 0:  # a deletion and a cycle's birth, too, with the stream down
            drop_watches(api)
            api.kubectl("delete", "sdep", f"s{i - 1}", "-n", "shop", "--wait=false")
            expected.discard((f"s{i - 1}", f"s{i}"))
    drop_watches(api)
    api.kubectl.apply(sdep("s9", "s8"))
    expected.add(("s9", "s8"))
    nodes = len({name for edge in expected for name in edge})
    wait_for(lambda: converged(api, f"{nodes}/{len(expected)}", expected), timeout=20)
    assert jsonpath(api, "sg", "shop", "{.status.cycles}") == "1"
    assert watches.hits >= 12, "the drops reopened the watches"

    # Drops without changes: a reconnection replays nothing, so nothing is written.
    reconciled = operator.idle_reconciliations("shop", "shop")
    before = (
        writes(api, SG_STATUS_PATCHES),
        writes(api, SDEP_STATUS_PATCHES),
        config_map_writes(api),
    )
    for _ in range(5):
        reopened = watches.hits
        drop_watches(api)
        wait_for(lambda reopened=reopened: watches.hits > reopened, timeout=10)
    # Then a change the loop reads that changes no result (a label: labels select), after
    # the reconnections in the same stream: once the loop recomputed for it, a replayed
    # event would have been taken in, and would show as a write.
    api.kubectl("label", "sdep", "s9", "-n", "shop", "touched=yes")
    operator.wait_for_reconciliation(reconciled, "shop", "shop")
    after = (
        writes(api, SG_STATUS_PATCHES),
        writes(api, SDEP_STATUS_PATCHES),
        config_map_writes(api),
    )
    assert after == before
    assert reasons(api, "shop", "shop") == [("Warning", "CycleDetected")]
    consistent(api)

"""A GitOps sync of 1,000 ServiceDependency objects: O(1) recomputations and status writes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_operator_support import (
    READY,
    SDEP_STATUS_PATCHES,
    SG_STATUS_PATCHES,
    config_map_writes,
    counts,
    graph,
    install,
    jsonpath,
    sdep,
    writes,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess

pytestmark = pytest.mark.e2e

SERVICES = 1000


def test_burst_of_a_thousand_objects(
    api: Api, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"))
    operator = start_operator()
    wait_for(lambda: counts(api, "shop") == "0/0", timeout=30)
    operator.wait_for_reconciliation(0, "shop", "shop")  # the first one's writes are done
    sg_writes, sdep_writes = writes(api, SG_STATUS_PATCHES), writes(api, SDEP_STATUS_PATCHES)
    cm_writes, recomputed = config_map_writes(api), operator.recomputations("shop", "shop")

    # svc-i calls the next three: 1,000 services, 2,994 edges, no cycle.
    items = [
        sdep(f"svc-{i:04d}", *(f"svc-{j:04d}" for j in range(i + 1, min(i + 4, SERVICES))))
        for i in range(SERVICES)
    ]
    manifest = tmp_path / "burst.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    started = time.monotonic()
    api.kubectl("apply", "-f", str(manifest))
    applied = time.monotonic() - started
    wait_for(lambda: counts(api, "shop") == f"{SERVICES}/2994", timeout=60, interval=0.05)
    converged = time.monotonic() - started
    assert jsonpath(api, "sg", "shop", READY) == "True"
    # Every object got its status (written after the graph's, so wait for them).
    last = f"svc-{SERVICES - 1:04d}"
    wait_for(lambda: jsonpath(api, "sdep", last, "{.status.observedGeneration}") == "1")
    wait_for(lambda: writes(api, SDEP_STATUS_PATCHES) - sdep_writes >= SERVICES, timeout=30)
    operator.idle_reconciliations("shop", "shop", timeout=30)  # and the rest of its writes

    status_writes = writes(api, SG_STATUS_PATCHES) - sg_writes
    recomputations_done = operator.recomputations("shop", "shop") - recomputed
    dependency_writes = writes(api, SDEP_STATUS_PATCHES) - sdep_writes
    snapshot_writes = config_map_writes(api) - cm_writes
    print(
        f"\nburst of {SERVICES}: kubectl apply {applied:.1f}s, converged {converged:.1f}s after "
        f"the apply started; {recomputations_done} recomputations, {status_writes} "
        f"ServiceGraph status writes, {dependency_writes} ServiceDependency status writes, "
        f"{snapshot_writes} snapshot ConfigMap write requests"
    )
    assert status_writes <= 5
    assert recomputations_done <= 10
    assert snapshot_writes <= 2 * 5  # create (409) + replace, per rewrite
    # Each object's status is written about once, not once per recomputation.
    assert dependency_writes <= SERVICES * 1.1

"""Two replicas with Kopf peering: one writes, the other stands by and takes over.

"Only one writes" is shown without telling the replicas' requests apart: the active replica
is frozen (SIGSTOP) while the standby starts and a ServiceDependency changes. Any write to
a status or a ConfigMap in that time can only come from the standby, and there is none. Then
the active replica is killed (SIGKILL); once its peering record expires the standby resumes
and converges. The expiry (60 s of Kopf's peering lifetime) is brought forward by ageing the
dead replica's record, which is what the passing of time would do.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.test_operator_support import (
    GROUP,
    counts,
    graph,
    install,
    sdep,
    snapshot_document,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess, StartOperator

pytestmark = pytest.mark.e2e

PEERING = "servicegraph-operator"
CREATE_SDEP = (GROUP, "servicedependencies", "", "create")


def peering(api: Api) -> dict[str, Any]:
    found: dict[str, Any] = api.kubectl.get("clusterkopfpeering", PEERING).get("status") or {}
    return found


def writes_since(api: Api, before: Counter[tuple[str, str, str, str]]) -> dict[Any, int]:
    """Write requests the API received since `before` (a copy of `api.emulator.writes`),
    leaving out peering records (kopf.dev): every replica writes its own."""
    now = Counter(api.emulator.writes)
    now.subtract(before)
    return {key: count for key, count in now.items() if count and key[0] != "kopf.dev"}


def holds(check: Callable[[], bool], seconds: float) -> None:
    """Assert that `check` stays true for `seconds`, looking every 50 ms: the one bounded
    wait left, for a replica that must not act and shows no sign of looking."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), "it stopped being true"
        time.sleep(0.05)


def replica(start_operator: StartOperator, name: str, priority: int) -> OperatorProcess:
    return start_operator(
        "--no-standalone", "--peering", PEERING, "--priority", str(priority), POD_ID=name
    )


def test_two_replicas_only_one_writes(api: Api, start_operator: StartOperator) -> None:
    install(api, "shop")
    api.kubectl.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}}
    )
    api.kubectl.apply(graph("shop"), sdep("a", "b"))
    active = replica(start_operator, "replica-a", 200)
    wait_for(lambda: counts(api, "shop") == "2/1", timeout=30)
    assert set(peering(api)) == {"replica-a"}

    # Freeze the active replica, then start the standby and change the graph: nothing is
    # written, neither when the standby starts nor after the change.
    assert active.process is not None
    active.process.send_signal(signal.SIGSTOP)
    try:
        frozen = Counter(api.emulator.writes)
        standby = replica(start_operator, "replica-b", 100)
        # Kopf starts paused until it has read the peering record: no write slips out
        # before the standby knows it is one.
        wait_for(lambda: set(peering(api)) == {"replica-a", "replica-b"}, timeout=20)
        api.kubectl.apply(sdep("b", "c"))
        # A paused replica watches nothing but the peering record, and Kopf starts paused
        # without saying so: there is no sign of it looking to wait for. Ten times the
        # debounce, watched all along, is the bound.
        holds(lambda: writes_since(api, frozen) == {CREATE_SDEP: 1}, seconds=3)
        assert standby.running and "Resuming operations" not in standby.log()
        # The only write is the test's own: kubectl creating the ServiceDependency.
        assert writes_since(api, frozen) == {CREATE_SDEP: 1}, "the standby wrote"
        assert counts(api, "shop") == "2/1"
    finally:
        active.process.send_signal(signal.SIGCONT)
    # Thawed, the active replica catches up: every write since comes from it.
    wait_for(lambda: counts(api, "shop") == "3/2", timeout=20)

    # The active replica dies. Until its record expires, the standby still waits ...
    assert active.stop(signal.SIGKILL) == -signal.SIGKILL
    dead = Counter(api.emulator.writes)
    api.kubectl.apply(sdep("c", "d"))
    holds(lambda: writes_since(api, dead) == {CREATE_SDEP: 1}, seconds=2)  # the same bound
    assert counts(api, "shop") == "3/2" and "Resuming operations" not in standby.log()
    # ... and once it has expired, the standby resumes and converges.
    record = peering(api)["replica-a"]
    expired = datetime.now(UTC) - timedelta(seconds=2 * int(record["lifetime"]))
    record["lastseen"] = expired.isoformat()
    api.kubectl(
        "patch",
        "clusterkopfpeering",
        PEERING,
        "--type=merge",
        "-p",
        json.dumps({"status": {"replica-a": record}}),
    )
    wait_for(lambda: "Resuming operations" in standby.log(), timeout=20)
    wait_for(lambda: counts(api, "shop") == "4/3", timeout=20)
    wait_for(lambda: set(peering(api)) == {"replica-b"}, timeout=10)  # the dead one cleaned up
    assert {(e["source"], e["target"]) for e in snapshot_document(api, "shop-graph")["edges"]} == {
        ("a", "b"),
        ("b", "c"),
        ("c", "d"),
    }


def test_a_missing_peering_object_is_said_not_waited_for_in_silence(
    api: Api, start_operator: StartOperator
) -> None:
    install(api, "shop")  # the peering CRDs, but no peering object
    operator = replica(start_operator, "lonely", 100)
    wait_for(lambda: "no ClusterKopfPeering 'servicegraph-operator'" in operator.log(), timeout=30)
    assert "--standalone" in operator.log()

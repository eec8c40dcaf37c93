"""Prometheus flaps under the running operator: down, 5xx, garbage, an empty answer. The
ObservedSourceHealthy condition follows each flap, and no observed edge's history is lost:
every snapshot a reader takes meanwhile holds the observed edges, and their lastSeen never
goes backwards."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from tests.e2e.test_operator_support import (
    condition,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_document,
)
from tests.support.emulator import Api
from tests.support.kubectl import KubectlError, wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import Edge, FakePrometheus

pytestmark = pytest.mark.e2e

# Traces report whatever service.name a process sets: names no manifest could declare.
HOSTILE = 'up{job="x"}'
EDGES = [Edge("a", "x", rate=2), Edge("a", HOSTILE, rate=1), Edge("$.items[*]", "a", rate=1)]
OBSERVED = {("a", "x"), ("a", HOSTILE), ("$.items[*]", "a")}


@dataclass
class Sample:
    last_seen: dict[tuple[str, str], datetime]
    healthy: str


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Reader:
    """Reads the snapshot and the condition over and over, as a dashboard would."""

    api: Api
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                doc = snapshot_document(self.api, "shop-graph")
                sg = self.api.kubectl.get("sg", "shop", "-n", "shop")
            except KubectlError as error:
                self.problems.append(str(error))
                continue
            seen = {}
            for edge in doc["edges"]:
                times = [s["lastSeen"] for s in edge["sources"] if s["kind"] == "otel"]
                if times:
                    seen[edge["source"], edge["target"]] = moment(times[0])
            self.samples.append(Sample(seen, condition(sg, "ObservedSourceHealthy")["status"]))


@pytest.fixture
def reader(api: Api) -> Iterator[Reader]:
    found = Reader(api)
    yield found
    found.stop.set()


def healthy(api: Api) -> dict[str, Any]:
    found: dict[str, Any] = condition(
        api.kubectl.get("sg", "shop", "-n", "shop"), "ObservedSourceHealthy"
    )
    return found


def test_prometheus_flaps_keep_the_observed_history(
    api: Api, start_operator: Callable[..., OperatorProcess], reader: Reader
) -> None:
    install(api, "shop")
    with FakePrometheus(EDGES, delay=1.5) as fake:
        observed = {
            "prometheus": {"url": fake.url, "timeout": "1s"},
            "interval": "1s",
            "window": "1m",
        }
        # Every poll's lastSeen is written, so the test can see it move.
        api.kubectl.apply(
            graph("shop", observed=observed, snapshot={"minInterval": "0s"}), sdep("a", "b")
        )
        start_operator()
        wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.observedEdges}") == "3", 30)
        wait_for(lambda: healthy(api)["status"] == "True", timeout=10)
        # The hostile names went through the status as data, nothing more.
        drift = api.kubectl.get("sg", "shop", "-n", "shop")["status"]["driftSamples"]
        assert sorted(map(tuple, (d.values() for d in drift["undeclared"]))) == sorted(OBSERVED)
        thread = threading.Thread(target=reader.run, daemon=True)
        thread.start()

        transitions = [healthy(api)["lastTransitionTime"]]

        def flap(break_it: Callable[[], None], reason: str, mend: Callable[[], None]) -> None:
            break_it()
            down = wait_for(lambda: (c := healthy(api))["reason"] == reason and c, timeout=20)
            assert down["status"] == "False"
            status = api.kubectl.get("sg", "shop", "-n", "shop")["status"]
            assert status["observedEdges"] == 3, "the last observations stay in the graph"
            assert status["observed"]["lastError"].startswith(reason)
            assert (
                condition(api.kubectl.get("sg", "shop", "-n", "shop"), "Ready")["status"] == "True"
            )
            mend()
            up = wait_for(lambda: (c := healthy(api))["reason"] == "Polled" and c, timeout=20)
            assert up["status"] == "True"
            transitions.extend([down["lastTransitionTime"], up["lastTransitionTime"]])

        def mode(name: str) -> Callable[[], None]:
            return lambda: setattr(fake, "mode", name)

        flap(fake.stop, "Unreachable", fake.start)
        flap(mode("unavailable"), "BadResponse", mode("ok"))
        flap(mode("slow"), "Timeout", mode("ok"))
        flap(mode("malformed"), "BadResponse", mode("ok"))
        flap(fake.stop, "Unreachable", fake.start)

        # Prometheus back but empty (its data lost): the edges are kept with their lastSeen.
        before = lastseen(api)
        fake.serve([])
        asked = len(fake.requests)
        wait_for(lambda: len(fake.requests) >= asked + 3, timeout=10)  # three polls
        after = lastseen(api)
        assert after == before, "an empty answer neither drops nor refreshes the edges"
        fake.serve(EDGES)
        wait_for(lambda: all(lastseen(api)[k] > before[k] for k in OBSERVED), timeout=10)
        reader.stop.set()
        thread.join(10)

    # The condition toggled with each flap, and its transition times moved forwards.
    assert transitions == sorted(transitions) and len(transitions) == 11
    # Every read of the snapshot held every observed edge, and no lastSeen went backwards.
    assert not reader.problems, reader.problems[:3]
    assert len(reader.samples) >= 20, len(reader.samples)
    assert {s.healthy for s in reader.samples} >= {"True", "False"}
    for earlier, later in pairwise(reader.samples):
        assert set(later.last_seen) == OBSERVED, later.last_seen
        for edge in OBSERVED:
            assert later.last_seen[edge] >= earlier.last_seen[edge], edge
    polls = sum(1 for r in fake.requests if r.path.endswith("/api/v1/query"))
    print(
        f"{len(transitions) - 1} transitions of ObservedSourceHealthy, {len(reader.samples)} "
        f"snapshot reads, {polls} Prometheus queries, no edge lost, no lastSeen backwards"
    )


def lastseen(api: Api) -> dict[tuple[str, str], datetime]:
    doc = snapshot_document(api, "shop-graph")
    return {
        (e["source"], e["target"]): moment(s["lastSeen"])
        for e in doc["edges"]
        for s in e["sources"]
        if s["kind"] == "otel"
    }

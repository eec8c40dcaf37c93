"""The statuses stay within their schema's limits, whatever the size of the graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from servicegraph.api import (
    MAX_CYCLE_SAMPLE_NAMES,
    MAX_DEPENDENCIES,
    MAX_LAST_ERROR,
    MAX_SAMPLES,
    ServiceDependencyStatus,
    ServiceGraphStatus,
)
from servicegraph.graph import (
    EdgeAttributes,
    Graph,
    Observation,
    ServiceDeclaration,
    SourceKind,
    Traffic,
    analyse,
)
from servicegraph.status import (
    MAX_CYCLES_IN_MESSAGE,
    MAX_MESSAGE_LENGTH,
    ObservedState,
    SnapshotInfo,
    bounded,
    cycle_sample,
    dependency_status,
    graph_status,
    invalid_dependency_status,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STATUS_BUDGET = 16 * 1024  # bytes of JSON for a whole ServiceGraph status
# The worst case: ten samples of 21 names of 253 characters, and the capped messages.
WORST_STATUS = 64 * 1024


def declare(name: str, *targets: str) -> ServiceDeclaration:
    return ServiceDeclaration(
        name, "shop", name, depends_on=tuple((t, EdgeAttributes()) for t in targets)
    )


def ring(size: int, prefix: str = "s") -> list[ServiceDeclaration]:
    """s0 -> s1 -> ... -> s{size-1} -> s0"""
    return [declare(f"{prefix}{i}", f"{prefix}{(i + 1) % size}") for i in range(size)]


def status_of(graph: Graph, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "generation": 3,
        "previous": {},
        "snapshot": SnapshotInfo("shop-graph", "abc123", 1000, 1, "2026-05-01T12:00:00Z"),
        "problem": None,
        "observed": None,
        "now": NOW,
        **overrides,
    }
    return graph_status(graph, **arguments)


def strings_and_lists(value: Any, where: str = "status") -> Iterator[tuple[str, Any]]:
    yield where, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings_and_lists(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings_and_lists(item, f"{where}[{index}]")


def assert_bounded(status: dict[str, Any], budget: int = STATUS_BUDGET) -> None:
    """Every string and list within the limits, the whole small, and the CRD model agrees."""
    for where, value in strings_and_lists(status):
        if isinstance(value, str):
            assert len(value) <= MAX_MESSAGE_LENGTH, where
        elif isinstance(value, list):
            assert len(value) <= MAX_CYCLE_SAMPLE_NAMES + 1, where
    for sample in status.get("cycleSamples", []):
        assert len(sample) <= MAX_CYCLE_SAMPLE_NAMES + 1
    assert len(status.get("cycleSamples", [])) <= MAX_SAMPLES
    for samples in status.get("driftSamples", {}).values():
        assert len(samples) <= MAX_SAMPLES
    assert len(json.dumps(status)) < budget
    ServiceGraphStatus.model_validate(status)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


@pytest.fixture(scope="module")
def big_ring() -> Graph:
    return analyse(ring(5000), now=NOW)


def test_a_ring_of_5000_services_gives_a_small_status_naming_the_real_cycle(
    big_ring: Graph,
) -> None:
    status = status_of(big_ring)
    assert_bounded(status)

    assert status["cycles"] == 1 and status["services"] == 5000
    (sample,) = status["cycleSamples"]
    assert sample == [f"s{i}" for i in range(MAX_CYCLE_SAMPLE_NAMES)] + ["and 4980 more"]
    acyclic = condition(status, "Acyclic")
    assert (acyclic["status"], acyclic["reason"]) == ("False", "CyclesFound")
    start = " -> ".join(f"s{i}" for i in range(MAX_CYCLE_SAMPLE_NAMES))
    assert acyclic["message"] == (
        f"1 unacknowledged cycle(s): {start} -> ... and 4980 more -> s0 "
        "(component of 5000 services)"
    )


def test_a_component_larger_than_its_cycle_says_how_large(big_ring: Graph) -> None:
    # s1 also calls s0 back: the shortest cycle is s0 -> s1 -> s0, in a component of 5000.
    chorded = analyse([declare("s1", "s2", "s0"), *ring(5000)[2:], ring(5000)[0]], now=NOW)
    status = status_of(chorded)
    assert_bounded(status)
    assert status["cycleSamples"] == [["s0", "s1", "and 4998 more"]]
    message = condition(status, "Acyclic")["message"]
    assert message.startswith("1 unacknowledged cycle(s): s0 -> s1 -> s0 (component of 5000")
    assert len(message) <= MAX_MESSAGE_LENGTH


def test_many_cycles_show_a_few_and_count_them_all() -> None:
    pairs = [d for i in range(50) for d in ring(2, prefix=f"p{i:02}-")]
    status = status_of(analyse(pairs, now=NOW))
    assert_bounded(status)
    assert status["cycles"] == 50
    assert len(status["cycleSamples"]) == MAX_SAMPLES
    assert status["cycleSamples"][0] == ["p00-0", "p00-1"]
    message = condition(status, "Acyclic")["message"]
    assert message.startswith(f"50 unacknowledged cycle(s), the first {MAX_CYCLES_IN_MESSAGE}: ")
    assert message.count("component of 2 services") == MAX_CYCLES_IN_MESSAGE


def test_long_names_in_many_big_cycles_still_fit() -> None:
    # Names at the schema's 253 characters: the message is cut, never the limit passed.
    long = [d for i in range(12) for d in ring(30, prefix=f"{'x' * 240}-{i:02}-")]
    status = status_of(analyse(long, now=NOW))
    assert_bounded(status, WORST_STATUS)
    message = condition(status, "Acyclic")["message"]
    assert len(message) == MAX_MESSAGE_LENGTH and message.endswith("...")
    assert message.startswith("12 unacknowledged cycle(s), the first 3: ")


def test_drift_samples_are_capped() -> None:
    observed = [
        Observation(f"caller{i}", f"callee{i}", SourceKind.OTEL, NOW - timedelta(minutes=1))
        for i in range(100)
    ]
    declared = [declare(f"d{i}", f"t{i}") for i in range(100)]
    graph = analyse(declared, observed, now=NOW, observing=True)
    status = status_of(graph)
    assert_bounded(status)
    assert (status["undeclared"], status["unobserved"]) == (100, 100)
    assert len(status["driftSamples"]["undeclared"]) == MAX_SAMPLES
    assert len(status["driftSamples"]["unobserved"]) == MAX_SAMPLES


def test_the_lowest_dependency_ceilings_are_listed_lowest_first_and_capped() -> None:
    # caller{i} calls backend{i}, which answers (100 - i) % of its requests, and a perfect one.
    observed = [
        Observation(
            f"caller{i:02d}",
            target,
            SourceKind.OTEL,
            NOW,
            traffic=Traffic(10.0, error_rate, None, ""),
        )
        for i in range(30)
        for target, error_rate in ((f"backend{i:02d}", i / 100), ("perfect", 0.0))
    ]
    status = status_of(analyse([], observed, now=NOW, observing=True))

    assert_bounded(status)
    ServiceGraphStatus.model_validate(status)
    assert status["lowestCeilings"] == [
        {
            "service": f"caller{i:02d}",
            "dependencyCeiling": (100 - i) / 100,
            "limitedBy": f"backend{i:02d}",
        }
        for i in range(29, 29 - MAX_SAMPLES, -1)
    ]  # caller00's ceiling is 100 %: nothing limits it, so it is never listed


def test_without_observations_no_ceiling_is_listed() -> None:
    assert status_of(analyse(ring(5), now=NOW))["lowestCeilings"] == []


def test_error_texts_are_capped() -> None:
    error = "connection refused; " * 5000
    observed = ObservedState(
        healthy=False,
        reason="QueryFailed",
        message=error,
        last_poll_time="2026-05-01T12:00:00Z",
        last_error=error,
    )
    status = status_of(
        analyse(ring(3), now=NOW), problem=("SnapshotWriteFailed", error), observed=observed
    )
    assert_bounded(status)
    assert len(status["observed"]["lastError"]) == MAX_LAST_ERROR
    assert status["observed"]["lastError"].endswith("...")
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SnapshotWriteFailed")
    assert ready["message"].startswith("connection refused; ")
    assert len(condition(status, "ObservedSourceHealthy")["message"]) == MAX_MESSAGE_LENGTH


def test_a_short_error_is_kept_whole() -> None:
    observed = ObservedState(False, "QueryFailed", "timed out", last_error="timed out")
    status = status_of(analyse([], now=NOW), observed=observed)
    assert status["observed"]["lastError"] == "timed out"
    assert condition(status, "ObservedSourceHealthy")["message"] == "timed out"


def test_bounded_cuts_with_an_ellipsis_only_when_needed() -> None:
    assert bounded("abc", 3) == "abc"
    assert bounded("abcdef", 5) == "ab..."


def test_a_short_cycle_sample_is_its_path() -> None:
    (cycle,) = analyse([declare("c", "b"), declare("b", "a"), declare("a", "c")], now=NOW).cycles
    assert cycle_sample(cycle) == ["a", "c", "b"]


def test_dependency_status_lists_are_capped() -> None:
    # Admission allows MAX_DEPENDENCIES targets; an object from an older schema may hold more.
    targets = [f"t{i:04}" for i in range(MAX_DEPENDENCIES + 100)]
    many = declare("app", *targets)
    graph = analyse([many, *(declare(t) for t in targets[::2])], now=NOW)
    status = dependency_status(
        many, graph, graph_ref="shop/shop", generation=1, previous={}, now=NOW
    )
    assert len(status["resolvedTargets"]) == len(targets[::2])
    assert len(status["unresolvedTargets"]) == len(targets[1::2])
    unresolved_only = analyse([many], now=NOW)
    capped = dependency_status(
        many, unresolved_only, graph_ref="shop/shop", generation=1, previous={}, now=NOW
    )
    assert capped["unresolvedTargets"] == targets[:MAX_DEPENDENCIES]
    assert capped["resolvedTargets"] == []
    ServiceDependencyStatus.model_validate(capped)


def test_an_invalid_spec_message_is_capped() -> None:
    status = invalid_dependency_status("x" * 40_000, generation=1, previous={}, now=NOW)
    assert len(status["conditions"][0]["message"]) == MAX_MESSAGE_LENGTH


def test_a_condition_keeps_its_transition_time_while_its_status_holds(big_ring: Graph) -> None:
    first = status_of(big_ring)
    later = status_of(big_ring, previous=first, now=NOW + timedelta(hours=1))
    assert condition(later, "Acyclic")["lastTransitionTime"] == "2026-05-01T12:00:00Z"
    fixed = status_of(analyse([], now=NOW), previous=later, now=NOW + timedelta(hours=2))
    assert condition(fixed, "Acyclic")["lastTransitionTime"] == "2026-05-01T14:00:00Z"


def source(name: str, healthy: bool | None, **figures: Any) -> ObservedState:
    reason = {True: "Polled", False: "Unreachable", None: "Pending"}[healthy]
    return ObservedState(
        healthy, reason, f"{name} says {reason}", name=name, type="istio", **figures
    )


def test_every_source_has_its_entry_and_the_condition_names_the_failing_one() -> None:
    states = [
        source("otel", True, edges=3, series=9),
        source("mesh", False, last_error="Unreachable: refused", edges=5),
        source("manifests", True, edges=16, objects=40, unresolved=1),
    ]
    status = status_of(analyse([], now=NOW), sources=states)
    assert status["sources"] == [
        {
            "name": "otel",
            "type": "istio",
            "healthy": True,
            "reason": "Polled",
            "edges": 3,
            "series": 9,
        },
        {
            "name": "mesh",
            "type": "istio",
            "healthy": False,
            "reason": "Unreachable",
            "lastError": "Unreachable: refused",
            "edges": 5,
        },
        {
            "name": "manifests",
            "type": "istio",
            "healthy": True,
            "reason": "Polled",
            "edges": 16,
            "objects": 40,
            "unresolved": 1,
        },
    ]
    ServiceGraphStatus.model_validate(status)  # within the CRD's schema
    healthy = condition(status, "ObservedSourceHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "Unreachable")
    assert healthy["message"] == "source mesh (istio): mesh says Unreachable"


def test_the_condition_of_several_sources_waits_for_all_then_counts_their_edges() -> None:
    waiting = status_of(
        analyse([], now=NOW), sources=[source("a", True, edges=1), source("b", None)]
    )
    pending = condition(waiting, "ObservedSourceHealthy")
    assert (pending["status"], pending["message"]) == ("Unknown", "waiting for the first poll of b")
    assert "healthy" not in waiting["sources"][1]
    ready = status_of(
        analyse([], now=NOW), sources=[source("a", True, edges=1), source("b", True, edges=2)]
    )
    assert condition(ready, "ObservedSourceHealthy")["message"] == (
        "2 sources healthy; edges: a 1, b 2"
    )
    two_failing = status_of(analyse([], now=NOW), sources=[source("a", False), source("b", False)])
    assert condition(two_failing, "ObservedSourceHealthy")["message"].endswith("; 1 more failing")


def test_a_graph_without_sources_has_no_sources_entry() -> None:
    status = status_of(analyse([], now=NOW))
    assert status["sources"] is None  # a merge patch removes what an earlier spec had
    assert not [c for c in status["conditions"] if c["type"] == "ObservedSourceHealthy"]

"""What the in-memory index keeps of a ServiceDependency: the declaration the graphs are built
from, and the status fields the operator writes, kept as canonical JSON (about a fifth of their
size as dicts, which ten thousand objects make tens of megabytes)."""

from __future__ import annotations

import sys
from typing import Any

from servicegraph.indexing import IndexedDependency, status_json

SPEC = {"team": "payments", "dependsOn": [{"service": "ledger"}, {"service": "fraud"}]}
STATUS = {
    "observedGeneration": 3,
    "service": "checkout",
    "conditions": [
        {
            "type": "Accepted",
            "status": "True",
            "reason": "InGraph",
            "message": "part of ServiceGraph shop/shop",
            "lastTransitionTime": "2026-12-04T19:17:45Z",
            "observedGeneration": 3,
        }
    ],
    "resolvedTargets": ["fraud", "ledger"],
    "unresolvedTargets": [],
    "inCycle": False,
}


def indexed(status: dict[str, Any]) -> IndexedDependency:
    return IndexedDependency.from_object("shop", "checkout", {}, SPEC, 3, status)


def deep_size(value: Any) -> int:
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(deep_size(k) + deep_size(v) for k, v in value.items())
    if isinstance(value, list):
        return size + sum(deep_size(item) for item in value)
    return size


def test_the_status_the_operator_writes_is_kept_and_read_back() -> None:
    entry = indexed({**STATUS, "somebodyElses": {"field": 1}})
    assert entry.status == STATUS
    assert entry.declaration is not None
    assert [target for target, _ in entry.declaration.depends_on] == ["ledger", "fraud"]


def test_it_is_kept_smaller_than_as_dicts() -> None:
    entry = indexed(STATUS)
    assert sys.getsizeof(entry.status_json) * 3 < deep_size(entry.status)


def test_equal_statuses_make_equal_entries_whatever_their_key_order() -> None:
    reordered = dict(reversed(list(STATUS.items())))
    assert indexed(reordered) == indexed(STATUS)
    assert status_json(reordered) == status_json(STATUS)
    assert indexed({**STATUS, "inCycle": True}) != indexed(STATUS)


def test_the_inputs_of_the_graphs_leave_the_status_out() -> None:
    entry = indexed(STATUS)
    assert entry.inputs().status == {}
    assert entry.inputs() == indexed({}).inputs()

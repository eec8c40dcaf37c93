"""What a year of polls costs: snapshot writes under steady traffic, memory under churning names.

    python bench/durability_bench.py [--quick]

Both run the operator's own code on a simulated clock (no waiting for real time):

1. Steady polls: a 10,000-service graph (the layered graph of the operator benchmark, every
   declared edge also observed) polled every 10 s for 5 minutes with stable traffic (rates
   jitter by 1 %, lastSeen moves with every poll). Counted: snapshot revisions a writer
   would write, under the old rule (every new revision) and under today's (topology at once,
   moving figures at most once per spec.snapshot.minInterval, 5 min by default), using the
   SnapshotStore's own decision.
2. Churn: a graph whose observed-only peers change names every poll (preview environments,
   pod IPs), polled every 10 s for an hour with a retention of 10 minutes. RSS and the
   size of the history every 10 simulated minutes: flat once the retention is reached.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import resource
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.operator_bench import manifests  # noqa: E402
from servicegraph import snapshot, snapshot_configmaps  # noqa: E402
from servicegraph.api import ServiceDependency, ServiceGraphSpec  # noqa: E402
from servicegraph.graph import (  # noqa: E402
    Observation,
    SourceKind,
    Traffic,
    merge_observations,
    prune_observations,
)
from servicegraph.snapshot_store import SnapshotStore  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)


class CountingKube:
    """Stands in for the API client: counts the ConfigMap writes the store makes."""

    def __init__(self) -> None:
        self.revisions = 0  # index writes: one per snapshot revision, after its shards

    async def create_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        self.revisions += "index.json" in body["data"] or (
            "revision" in body["data"] and "partNumber" not in body["data"]
        )

    async def replace_config_map(self, namespace: str, body: dict[str, Any]) -> bool:
        await self.create_config_map(namespace, body)
        return True

    async def delete_config_map(self, namespace: str, name: str) -> None:
        pass


def steady(services: int, polls: int, interval: float) -> dict[str, int]:
    spec = ServiceGraphSpec.model_validate(
        {"observed": {"prometheus": {"url": "http://prometheus:9090"}}}
    )
    declarations = [ServiceDependency.model_validate(m).declaration() for m in manifests(services)]
    rng = random.Random(1)
    base = {(d.name, t): rng.uniform(1, 100) for d in declarations for t, _ in d.depends_on}
    kube = CountingKube()
    store = SnapshotStore(
        kube=kube,  # type: ignore[arg-type]  # the store only creates and replaces
        namespace="bench",
        owner_reference=lambda: {"uid": "bench"},
        logger=logging.getLogger("bench"),
    )
    old_rule, revision = 0, None
    history: list[Observation] = []
    for poll in range(polls):
        now = START + timedelta(seconds=poll * interval)
        current = [
            Observation(
                a, b, SourceKind.OTEL, now, traffic=Traffic(rate * rng.uniform(0.99, 1.01), 0.0)
            )
            for (a, b), rate in base.items()
        ]
        history = merge_observations(history, current)
        graph = spec.analyse(declarations, history, now=now)
        canonical = snapshot.graph_json(graph, graph_ref=("bench", "steady"))
        if snapshot_configmaps.revision_of(canonical) != revision:
            old_rule += 1
            revision = snapshot_configmaps.revision_of(canonical)
        asyncio.run(
            store.write(
                canonical,
                name="steady-graph",
                topology=snapshot.topology_of(graph),
                now=now,
                min_interval=spec.snapshot.min_interval_seconds,
            )
        )
        del graph, canonical
    # A snapshot this size is sharded; the writes of one revision are counted as one.
    return {"polls": polls, "old": old_rule, "new": kube.revisions}


def rss_mib() -> float:
    """The process's resident memory now (not its peak: the steady run came first)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def churn(minutes: int, interval: float, retention: timedelta) -> list[tuple[int, int, int, float]]:
    """(simulated minute, history kept without retention, with it, RSS) every 10 minutes."""
    spec = ServiceGraphSpec.model_validate(
        {"observed": {"prometheus": {"url": "http://prometheus:9090"}}, "staleAfter": "5m"}
    )
    stable = [f"svc-{i}" for i in range(200)]
    history: list[Observation] = []
    unpruned = 0  # what the history held before retention existed: every pair ever seen
    rows = []
    polls = int(minutes * 60 / interval)
    for poll in range(polls):
        now = START + timedelta(seconds=poll * interval)
        peers = [f"10.{poll % 250}.{i // 250}.{i % 250}" for i in range(100)]
        current = [
            Observation(
                s, stable[(i + 1) % len(stable)], SourceKind.OTEL, now, traffic=Traffic(1, 0)
            )
            for i, s in enumerate(stable)
        ] + [
            Observation(stable[i % len(stable)], p, SourceKind.OTEL, now, traffic=Traffic(1, 0))
            for i, p in enumerate(peers)
        ]
        unpruned = len(stable) - 1 + (poll + 1) * len(peers)
        history, _ = prune_observations(
            merge_observations(history, current), now=now, retention=retention
        )
        graph = spec.analyse([], history, now=now)
        snapshot.graph_json(graph, graph_ref=("bench", "churn"))
        if (poll + 1) % int(600 / interval) == 0:
            gc.collect()
            rows.append(((poll + 1) * int(interval) // 60, unpruned, len(history), rss_mib()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 services, 20 minutes")
    args = parser.parse_args()
    services, minutes = (1000, 20) if args.quick else (10_000, 60)

    counts = steady(services, polls=30, interval=10.0)
    print(f"\n### Steady polls: {services:,} services, every 10 s for 5 minutes\n")
    print("| snapshot writes | old rule (every new revision) | minInterval 5m | budget |")
    print("|---|---|---|---|")
    print(f"| {counts['polls']} polls | {counts['old']} | {counts['new']} | at most 2 |")

    rows = churn(minutes, interval=10.0, retention=timedelta(minutes=10))
    print("\n### Churning names: 100 new peers per poll, every 10 s, retention 10 min\n")
    print("| simulated minutes | history without retention | with retention | RSS (MiB) |")
    print("|---|---|---|---|")
    for minute, unpruned, kept, peak in rows:
        print(f"| {minute} | {unpruned:,} | {kept:,} | {peak:.0f} |")


if __name__ == "__main__":
    main()

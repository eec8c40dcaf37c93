"""Kubernetes-source benchmark: entries from raw objects, then inference, at cluster scale.

    python bench/inference_bench.py [--sizes 1000,10000] [--repeat N] [--quick]

Each size is that many workloads (Deployments, a StatefulSet or a CronJob in ten) and as many
Services, spread over 20 namespaces. A workload reads a few env values, as real ones do: three
callees by `*_ADDR` (host:port), one by URL, one through a ConfigMap (`envFrom`), an OTLP
endpoint that must be skipped, one name of nothing, and an init container's `nc -z`; every
tenth is cross-namespace. Prints a markdown table of medians against the budget (2 s for
10,000 workloads and 10,000 Services).
"""

from __future__ import annotations

import argparse
import random
import statistics
from functools import partial
from time import perf_counter
from typing import Any

from servicegraph import addresses
from servicegraph.inference import entries_of, infer

BUDGET_SECONDS = 2.0
NAMESPACES = 20


def cluster(size: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    objects: list[dict[str, Any]] = []
    for i in range(size):
        ns = f"team-{i % NAMESPACES}"
        name = f"svc-{i}"

        def callee(near: bool = True, i: int = i) -> str:
            j = rng.randrange(size)
            return (
                f"svc-{j}"
                if near and j % NAMESPACES == i % NAMESPACES
                else f"svc-{j}.team-{j % NAMESPACES}"
            )

        kind = "StatefulSet" if i % 10 == 3 else "CronJob" if i % 10 == 7 else "Deployment"
        pod = {
            "metadata": {"labels": {"app.kubernetes.io/name": name, "tier": "backend"}},
            "spec": {
                "initContainers": [
                    {
                        "name": "wait",
                        "command": ["sh", "-c", f"until nc -z {callee()} 5432; do sleep 1; done"],
                    }
                ],
                "containers": [
                    {
                        "name": "main",
                        "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
                        "env": [
                            {"name": "PORT", "value": "8080"},
                            *(
                                {"name": f"DEP{k}_ADDR", "value": f"{callee()}:8080"}
                                for k in range(3)
                            ),
                            {"name": "API_URL", "value": f"http://{callee(False)}/v1"},
                            {
                                "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
                                "value": "http://otel-collector:4317",
                            },
                            {"name": "LEGACY_HOST", "value": f"retired-{i}"},
                            {"name": "LOG_LEVEL", "value": "info"},
                        ],
                        "args": ["--listen=:8080", f"--peer=http://{callee()}:9000"],
                    }
                ],
            },
        }
        spec: dict[str, Any] = {"template": pod}
        if kind == "CronJob":
            spec = {"jobTemplate": {"spec": {"template": pod}}}
        objects.append(
            {
                "apiVersion": "batch/v1" if kind == "CronJob" else "apps/v1",
                "kind": kind,
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
                "status": {"replicas": 2},
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": [{"port": 8080}]},
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-config", "namespace": ns},
                "data": {"CACHE_HOST": callee(), "FEATURE": "on"},
            }
        )
    return objects


def median_seconds(function: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = perf_counter()
        result = function()
        times.append(perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one small size, once (for tests)")
    args = parser.parse_args()
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    print(
        "| workloads + Services | entries from objects | infer, first | infer, again "
        "| total, first | budget | edges | unresolved |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        objects = cluster(size)

        read, listed = median_seconds(partial(entries_of, objects), repeat)
        addresses.references_cache_clear()
        first, _ = median_seconds(partial(infer, listed), 1)  # nothing seen before: the CLI
        inferred, found = median_seconds(partial(infer, listed), repeat)  # the operator, later
        total = read + first
        verdict = "pass" if total < BUDGET_SECONDS or size < 10_000 else "**over**"
        print(
            f"| {size:,} + {size:,} | {read * 1000:.0f} ms | {first * 1000:.0f} ms "
            f"| {inferred * 1000:.0f} ms "
            f"| {total * 1000:.0f} ms | < {BUDGET_SECONDS:.0f} s at 10,000: {verdict} "
            f"| {len(found.edges):,} | {len(found.unresolved):,} |"
        )


if __name__ == "__main__":
    main()

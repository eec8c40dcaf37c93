"""Liveness benchmark: /healthz latency while the real operator recomputes large graphs.

    python bench/liveness_bench.py [--services 10000] [--changes 5] [--quick]

N ServiceDependency objects (operator_bench's layered graph, about 5 calls each) go to an
in-memory Kubernetes API in one `kubectl apply` while `servicegraph run --liveness ...` watches
three ServiceGraphs in the same namespace: `all` selects every object, `shard-a` and `shard-b`
select half of them each by label. A separate probe process GETs /healthz every 20 ms, as a
kubelet would (a new connection each time), and records every latency. The samples are split
into: before the burst (the operator idle, for reference), during convergence (from the apply
until all three graphs are Ready with the final counts and the operator has stopped working),
and steady recomputes (one object changed every few seconds, until the operator is idle
again). The recomputations counted are the operator's own metric. The budget is printed
beside the numbers.

The probe is a process of its own so that the API emulator, which runs in this process,
does not share an interpreter lock with it and inflate its timings.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# operator_bench puts the repository root on sys.path, for `tests.support` below.
from operator_bench import (
    GROUP,
    NAMESPACE,
    ROOT,
    free_port,
    manifests,
    metric,
    peak_rss_mib,
    wait_until_idle,
)

from tests.support.emulator import Api, EmulatorServer, write_kubeconfig
from tests.support.kubectl import Kubectl, wait_for
from tests.support.operator_process import OperatorProcess

PROBE_INTERVAL = 0.02
PROBE_TIMEOUT = 10.0
CHANGE_INTERVAL = 5.0
BUDGET_P99_MS = 100.0
GRAPHS: dict[str, dict[str, str]] = {
    "all": {},
    "shard-a": {"shard": "a"},
    "shard-b": {"shard": "b"},
}


# -- the probe process ------------------------------------------------------------------------


def probe(url: str) -> None:
    """GET `url` every PROBE_INTERVAL until stdin closes; print [[sent, seconds, ok], ...].

    Ticks missed while a request was outstanding are skipped, not sent in a burst after it;
    the summary accounts for them (see `corrected`)."""
    import threading

    parts = urlsplit(url)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    samples: list[tuple[float, float, bool]] = []
    tick = time.monotonic()
    while not stop.is_set():
        sent = time.monotonic()
        ok = False
        try:
            connection = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=PROBE_TIMEOUT
            )
            connection.request("GET", parts.path or "/")
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
            connection.close()
        except OSError:
            pass
        samples.append((sent, time.monotonic() - sent, ok))
        tick += PROBE_INTERVAL
        now = time.monotonic()
        if tick < now:  # skip the ticks this request overran
            tick += PROBE_INTERVAL * ((now - tick) // PROBE_INTERVAL + 1)
        stop.wait(tick - now)
    json.dump(samples, sys.stdout)


class Prober:
    """The probe process: start it, then `stop()` for its samples."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--probe", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> list[tuple[float, float, bool]]:
        out, _ = self.process.communicate("", timeout=PROBE_TIMEOUT + 30)
        return [(float(s), float(d), bool(ok)) for s, d, ok in json.loads(out)]


# -- the scenario -----------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    start: float
    end: float
    recomputations: int | None  # None: the operator had nothing to do
    note: str


@dataclass
class Run:
    services: int
    phases: list[Phase]
    samples: list[tuple[float, float, bool]]
    peak_rss_mib: float


def sharded(services: int) -> list[dict[str, Any]]:
    """operator_bench's objects, alternately labelled shard=a and shard=b."""
    objects = manifests(services)
    for i, obj in enumerate(objects):
        obj["metadata"]["labels"] = {"shard": "ab"[i % 2]}
    return objects


def expected_counts(objects: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Each graph's (services, edges) once converged: its objects and whatever they call."""
    counts = {}
    for graph, labels in GRAPHS.items():
        members = [
            o
            for o in objects
            if all(o["metadata"]["labels"].get(k) == v for k, v in labels.items())
        ]
        names = {o["metadata"]["name"] for o in members}
        targets = {d["service"] for o in members for d in o["spec"]["dependsOn"]}
        edges = sum(len(o["spec"]["dependsOn"]) for o in members)
        counts[graph] = (len(names | targets), edges)
    return counts


def graph_statuses(api: Api) -> dict[str, dict[str, Any]]:
    listed = json.loads(api.kubectl("get", "servicegraphs", "-n", NAMESPACE, "-o", "json"))
    return {item["metadata"]["name"]: item.get("status") or {} for item in listed["items"]}


def converged(api: Api, expected: dict[str, tuple[int, int]]) -> bool:
    statuses = graph_statuses(api)
    for name, (services, edges) in expected.items():
        status = statuses.get(name, {})
        ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        if (status.get("services"), status.get("edges")) != (services, edges):
            return False
        if not ready or ready[0].get("status") != "True":
            return False
    return True


def run(services: int, changes: int, work: Path) -> Run:
    recomputations = "servicegraph_recomputations_total"
    with EmulatorServer() as server:
        kubeconfig = write_kubeconfig(work / "kubeconfig", server.url)
        api = Api(server, kubeconfig, Kubectl(kubeconfig, work / "cache", timeout=600))
        api.kubectl("apply", "-f", str(ROOT / "crds"))
        api.kubectl.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        for name, labels in GRAPHS.items():
            api.kubectl.apply(
                {
                    "apiVersion": f"{GROUP}/v1alpha1",
                    "kind": "ServiceGraph",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {"selector": {"matchLabels": labels}} if labels else {},
                }
            )
        port, liveness = free_port(), f"http://127.0.0.1:{free_port()}/healthz"
        operator = OperatorProcess(
            api,
            work / "operator.log",
            "--metrics-port",
            str(port),
            "--liveness",
            liveness,
            SERVICEGRAPH_DEBOUNCE="0.5",
            SERVICEGRAPH_DEBOUNCE_MAX="5",
        ).start()
        prober: Prober | None = None
        try:
            # All three (empty) graphs reconciled once: the operator is up and idle.
            wait_for(lambda: metric(port, recomputations) >= len(GRAPHS), timeout=60)
            wait_for(lambda: _healthy(liveness), timeout=30)
            prober = Prober(liveness)
            phases = []
            time.sleep(3)
            phases.append(Phase("before the burst (idle)", 0.0, time.monotonic(), None, ""))

            objects = sharded(services)
            expected = expected_counts(objects)
            (work / "burst.json").write_text(
                json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
            )
            before = metric(port, recomputations)
            started = time.monotonic()
            api.kubectl("apply", "-f", str(work / "burst.json"))
            applied = time.monotonic()
            wait_for(lambda: converged(api, expected), timeout=900, interval=1.0)
            ready = time.monotonic()
            idle = wait_until_idle(port, quiet=3.0, timeout=300) or time.monotonic()
            phases.append(
                Phase(
                    "during convergence",
                    started,
                    idle,
                    int(metric(port, recomputations) - before),
                    f"apply {applied - started:.1f} s, all Ready {ready - applied:.1f} s and "
                    f"idle {idle - applied:.1f} s after it",
                )
            )

            before = metric(port, recomputations)
            started = time.monotonic()
            for k in range(changes):
                changed = copy.deepcopy(objects[k % len(objects)])
                changed["spec"]["team"] = f"team-changed-{k}"
                api.kubectl.apply(changed)
                time.sleep(CHANGE_INTERVAL)
            idle = wait_until_idle(port, quiet=3.0, timeout=300) or time.monotonic()
            phases.append(
                Phase(
                    "steady recomputes",
                    started,
                    idle,
                    int(metric(port, recomputations) - before),
                    f"{changes} objects changed, one every {CHANGE_INTERVAL:.0f} s",
                )
            )
            samples, prober = prober.stop(), None
            rss = peak_rss_mib(operator.process.pid) if operator.process else float("nan")
            return Run(services, phases, samples, rss)
        finally:
            if prober is not None:
                prober.stop()
            operator.stop()


def _healthy(url: str) -> bool:
    parts = urlsplit(url)
    try:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        connection.request("GET", parts.path)
        return connection.getresponse().status == 200
    except OSError:
        return False


# -- the table --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def corrected(latencies: list[float]) -> list[float]:
    """The latencies a probe every PROBE_INTERVAL would have seen had it not waited for the
    previous answer: a request that took L stood in for the ticks it overran, which would
    have waited L - interval, L - 2 * interval, ..."""
    out = []
    for latency in latencies:
        out.append(latency)
        late = latency - PROBE_INTERVAL
        while late > 0:
            out.append(late)
            late -= PROBE_INTERVAL
    return out


def table(result: Run) -> str:
    lines = [
        f"| {result.services:,} services, 3 graphs | probes | failed | median | p95 | p99 | "
        f"max | p99 incl. skipped ticks | recomputations | budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in result.phases:
        inside = [s for s in result.samples if phase.start <= s[0] < phase.end]
        latencies = [d for _, d, _ in inside]
        failed = sum(1 for *_, ok in inside if not ok)
        budget = f"p99 < {BUDGET_P99_MS:.0f} ms" if phase.recomputations else ""
        lines.append(
            f"| {phase.name} | {len(inside):,} | {failed} | {_ms(percentile(latencies, 50))} | "
            f"{_ms(percentile(latencies, 95))} | {_ms(percentile(latencies, 99))} | "
            f"{_ms(max(latencies, default=float('nan')))} | "
            f"{_ms(percentile(corrected(latencies), 99))} | "
            f"{'-' if phase.recomputations is None else phase.recomputations} | {budget} |"
        )
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        probe(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000, help="ServiceDependency objects")
    parser.add_argument("--changes", type=int, default=5, help="objects changed after converging")
    parser.add_argument("--quick", action="store_true", help="1,000 services, for CI")
    args = parser.parse_args()
    services = 1_000 if args.quick else args.services
    with tempfile.TemporaryDirectory(prefix="servicegraph-liveness-") as tmp:
        result = run(services, args.changes, Path(tmp))
    print("\n### /healthz latency while the operator recomputes, real operator, in-memory API\n")
    print(table(result))
    for phase in result.phases:
        if phase.note:
            print(f"\n- {phase.name}: {phase.note}", end="")
    print(
        f"\n- operator peak RSS {result.peak_rss_mib:.0f} MiB"
        f"\n\nA probe every {PROBE_INTERVAL * 1000:.0f} ms, a new connection each, "
        f"{PROBE_TIMEOUT:.0f} s timeout. 'p99 incl. skipped ticks' also counts the probes a "
        "fixed-rate prober would have sent while one was stuck."
        f"\nThe project's budget: /healthz during a 10,000-service recompute, "
        f"p99 < {BUDGET_P99_MS:.0f} ms."
    )


if __name__ == "__main__":
    main()

"""`servicegraph check` and `servicegraph analyze` as a pull request's pipeline runs them.

    python bench/check_bench.py [--sizes 1000,10000] [--repeat 3] [--quick]

Each size is that many valid ServiceDependency objects (three calls each, a third of them soft,
in one namespace), in one file and in as many files; each command runs as a whole process, as
CI runs it. Prints a markdown table of medians against the budget (2 s at 10,000) and the
figures before the rules were evaluated natively.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter
from typing import Any

import yaml

BUDGET_SECONDS = 2.0
SERVICEGRAPH = Path(sys.executable).with_name("servicegraph")
# At 10,000 objects in one file, measured the same way on the machine of bench/README.md,
# when every CEL rule went through cel-python and jsonschema decided every object.
BEFORE = {"check": "12.2 s", "analyze": "23.0 s"}


def objects(size: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "graph.slo-engine.io/v1alpha1",
            "kind": "ServiceDependency",
            "metadata": {"name": f"svc-{i}", "namespace": "shop"},
            "spec": {
                "team": f"team-{i % 50}",
                "tier": ("critical", "high", "medium", "low")[i % 4],
                "dependsOn": [
                    {"service": f"svc-{j}", "criticality": "soft" if j % 3 else "hard"}
                    for j in range(i + 1, min(i + 4, size))
                ],
            },
        }
        for i in range(size)
    ]


def write(folder: Path, size: int) -> tuple[Path, Path]:
    """The objects in one file, and in one file each."""
    generated = objects(size)
    one = folder / f"one-{size}.yaml"
    one.write_text(yaml.safe_dump_all(generated), encoding="utf-8")
    many = folder / f"many-{size}"
    many.mkdir()
    for obj in generated:
        (many / f"{obj['metadata']['name']}.yaml").write_text(yaml.safe_dump(obj))
    return one, many


def seconds(command: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        runs.append(perf_counter() - started)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 objects, one run")
    args = parser.parse_args()
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    print("| objects | layout | check | analyze -o json | budget (< 2 s at 10,000) | before |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for size in sizes:
            layouts = zip(("one file", "a file each"), write(Path(work), size), strict=True)
            for layout, path in layouts:
                check = seconds([str(SERVICEGRAPH), "check", str(path)], repeat)
                analyze = seconds([str(SERVICEGRAPH), "analyze", str(path), "-o", "json"], repeat)
                verdict = "pass" if max(check, analyze) < BUDGET_SECONDS else "over"
                before = (
                    f"check {BEFORE['check']}, analyze {BEFORE['analyze']}"
                    if size == 10_000 and layout == "one file"
                    else ""
                )
                print(
                    f"| {size:,} | {layout} | {check:.2f} s | {analyze:.2f} s | "
                    f"{verdict if size == 10_000 else ''} | {before} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

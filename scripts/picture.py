"""The README's picture: the Online Boutique example as the operator draws it once it has
observed an hour of traffic, with one call nobody declared and one declared call not seen.

    make picture     (writes docs/online-boutique.dot and, through Graphviz, .svg and .png)
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servicegraph import pictures, snapshot
from servicegraph.api import ObservedSource, ServiceGraphSpec
from servicegraph.graph import Observation, SourceKind, Traffic
from servicegraph.manifests import load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "examples" / "online-boutique"
DOCS = ROOT / "docs"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# (caller, callee, requests/s, error ratio, p95 ms): what OpenTelemetry's service graph would
# report. checkoutservice -> emailservice is missing (declared, not observed), and
# recommendationservice -> adservice is seen though nobody declared it.
TRAFFIC = (
    ("loadgenerator", "frontend", 10.0, 0.002, 180.0),
    ("frontend", "adservice", 6.0, 0.0, 12.0),
    ("frontend", "cartservice", 8.0, 0.0, 9.0),
    ("frontend", "checkoutservice", 1.0, 0.01, 240.0),
    ("frontend", "currencyservice", 24.0, 0.03, 4.0),
    ("frontend", "productcatalogservice", 30.0, 0.0, 6.0),
    ("frontend", "recommendationservice", 5.0, 0.0, 35.0),
    ("frontend", "shippingservice", 2.0, 0.0, 8.0),
    ("checkoutservice", "cartservice", 1.0, 0.0, 9.0),
    ("checkoutservice", "currencyservice", 3.0, 0.03, 4.0),
    ("checkoutservice", "paymentservice", 1.0, 0.001, 60.0),
    ("checkoutservice", "productcatalogservice", 5.0, 0.0, 6.0),
    ("checkoutservice", "shippingservice", 2.0, 0.0, 8.0),
    ("recommendationservice", "productcatalogservice", 8.0, 0.0, 6.0),
    ("recommendationservice", "adservice", 0.5, 0.0, 11.0),
    ("cartservice", "redis-cart", 14.0, 0.0, 1.2),
)


def picture_dot() -> str:
    manifests = load([EXAMPLE])
    observations = [
        Observation(
            caller,
            callee,
            SourceKind.OTEL,
            NOW - timedelta(minutes=2),
            traffic=Traffic(rate, errors, p95, "database" if callee == "redis-cart" else ""),
        )
        for caller, callee, rate, errors, p95 in TRAFFIC
    ]
    observed = ObservedSource.model_validate({"prometheus": {"url": "http://prometheus:9090"}})
    graph = ServiceGraphSpec(observed=observed).analyse(
        [dependency.declaration() for dependency in manifests.dependencies],
        observations,
        now=NOW,
    )
    return pictures.to_dot(snapshot.to_document(graph))


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    dot = DOCS / "online-boutique.dot"
    dot.write_text(picture_dot(), encoding="utf-8")
    for fmt in ("svg", "png"):
        subprocess.run(
            ["dot", f"-T{fmt}", "-Gdpi=96" if fmt == "png" else "-Gdpi=72", str(dot)],
            stdout=(DOCS / f"online-boutique.{fmt}").open("wb"),
            check=True,
        )
    print(f"wrote {dot} and its .svg and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""docs/operations.md tells the truth about the monitoring kit: its alerts are exactly the
chart's, with their default `for` and severity, each explained; and every `servicegraph_*`
metric it names is one the operator exports."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from servicegraph.telemetry import METRICS
from tests.packaging.conftest import ROOT, one, render

GUIDE = ROOT / "docs" / "operations.md"


def section(title: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def chart_alerts() -> dict[str, dict[str, Any]]:
    """The chart's alerts, every one switched on (the defaults), by name."""
    rule = one(render("default", "--set", "metrics.prometheusRule.enabled=true"), "PrometheusRule")
    return {rule["alert"]: rule for group in rule["spec"]["groups"] for rule in group["rules"]}


def test_the_guide_lists_exactly_the_charts_alerts() -> None:
    alerts = section("Alerts")
    table = dict(re.findall(r"^\| `(ServiceGraph\w+)` \|.*\| ([^|]+) \|$", alerts, re.MULTILINE))
    explained = re.findall(r"^- \*\*`(ServiceGraph\w+)`\*\*", alerts, re.MULTILINE)
    rendered = chart_alerts()
    assert set(table) == set(rendered), "the alerts table of docs/operations.md"
    assert sorted(explained) == sorted(rendered), "what each alert means, in docs/operations.md"
    for name, defaults in table.items():
        rule = rendered[name]
        assert defaults.strip() == f"{rule['for']}, {rule['labels']['severity']}", name


def test_the_guide_names_no_alert_the_chart_lacks() -> None:
    named = set(re.findall(r"\bServiceGraph[A-Z]\w+", GUIDE.read_text(encoding="utf-8")))
    assert named - set(chart_alerts()) == set()


def exported() -> set[str]:
    """What the operator's metrics are called: each family's name, and the series it exposes."""
    names = set()
    for f in dataclasses.fields(METRICS):
        metric = getattr(METRICS, f.name)
        for family in metric.describe():
            if isinstance(metric, Counter):
                names.add(f"{family.name}_total")
            elif isinstance(metric, Histogram):
                names.add(family.name)
                names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
            else:
                assert isinstance(metric, Gauge)
                names.add(family.name)
    return names


def test_every_metric_the_guide_names_exists() -> None:
    named = set(re.findall(r"\bservicegraph_[a-z0-9_]*[a-z0-9]", GUIDE.read_text(encoding="utf-8")))
    assert len(named) > 10
    assert named - exported() == set()


def test_the_guide_names_every_metric() -> None:
    table = section("Metrics, spans and logs")
    families = {
        family.name
        for f in dataclasses.fields(METRICS)
        for family in getattr(METRICS, f.name).describe()
    }
    assert {name for name in families if not re.search(rf"\b{name}", table)} == set()

"""The chart's monitoring kit: the PrometheusRule's alerts run by the real promtool (syntax and
unit tests on synthetic series), the Grafana dashboard's queries parsed by it too, and every
servicegraph_* series they use is one the operator exports."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from servicegraph.telemetry import METRICS
from tests.packaging.conftest import CHART, NAMESPACE, RELEASE, one, render

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
JOB = f"{RELEASE}-metrics"


def rule_groups(*args: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(render("cluster-ha", *args), "PrometheusRule")["spec"][
        "groups"
    ]
    return groups


def promtool(*args: str, cwd: Path) -> str:
    assert Path(PROMTOOL).exists(), "promtool is missing: scripts/install-system-packages.sh"
    proc = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    out = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert "SUCCESS: 4 rules found" in out


def test_alerts_can_be_turned_off() -> None:
    (group,) = rule_groups("--set", "metrics.prometheusRule.alerts.operatorDown.enabled=false")
    assert [r["alert"] for r in group["rules"]] == [
        "ServiceGraphUnacknowledgedCycles",
        "ServiceGraphObservedSourceUnhealthy",
        "ServiceGraphSnapshotNotWritten",
    ]


def graph_series(metric: str, name: str, values: str) -> dict[str, str]:
    # As scraped with honorLabels: the graph's namespace, not the operator's.
    labels = f'namespace="shop", name="{name}", job="{JOB}", pod="operator-0"'
    return {"series": f"{metric}{{{labels}}}", "values": values}


def source_series(name: str, source: str, values: str) -> dict[str, str]:
    """servicegraph_observed_source_healthy of one source of graph shop/`name`."""
    series = graph_series("servicegraph_observed_source_healthy", name, values)
    return {**series, "series": series["series"].replace("}", f', source="{source}"}}')}


SNAPSHOT_WRITTEN = "servicegraph_snapshot_last_write_timestamp_seconds"


def graph(name: str, severity: str) -> dict[str, str]:
    """The labels of an alert about graph shop/`name`."""
    return {"severity": severity, "namespace": "shop", "name": name}


def case(eval_time: str, alertname: str, *alerts: dict[str, str]) -> dict[str, Any]:
    """At `eval_time`, alert `alertname` fires with these labels (and its annotations)."""
    return {
        "eval_time": eval_time,
        "alertname": alertname,
        "exp_alerts": [
            {"exp_labels": labels, "exp_annotations": annotations(alertname, labels)}
            for labels in alerts
        ],
    }


def test_alerts_fire_when_and_only_when_they_should(tmp_path: Path) -> None:
    """promtool's unit tests on synthetic series (1-minute steps, from t=0)."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    up = f'up{{job="{JOB}", namespace="{NAMESPACE}", pod="%s"}}'
    tests = [
        {
            "interval": "1m",
            "input_series": [
                graph_series("servicegraph_graph_cycles", "loop", "0 0 1x60"),
                graph_series("servicegraph_graph_cycles", "tree", "0x60"),
                source_series("blind", "mesh", "1 0x60"),
                source_series("blind", "otel", "1x60"),
                source_series("seeing", "otel", "1x60"),
            ],
            "alert_rule_test": [
                case("10m", "ServiceGraphUnacknowledgedCycles"),
                case("20m", "ServiceGraphUnacknowledgedCycles", graph("loop", "warning")),
                case("20m", "ServiceGraphObservedSourceUnhealthy"),
                case(
                    "40m",
                    "ServiceGraphObservedSourceUnhealthy",
                    {**graph("blind", "warning"), "source": "mesh"},
                ),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                # Confirmed every minute (value = the time); written once at t=0; never written.
                graph_series(SNAPSHOT_WRITTEN, "fresh", "0+60x120"),
                graph_series(SNAPSHOT_WRITTEN, "stuck", "0x120"),
                graph_series("servicegraph_graph_services", "fresh", "5x120"),
                graph_series("servicegraph_graph_services", "stuck", "5x120"),
                graph_series("servicegraph_graph_services", "never", "_x30 5x90"),
            ],
            "alert_rule_test": [
                case("30m", "ServiceGraphSnapshotNotWritten"),
                case("45m", "ServiceGraphSnapshotNotWritten", graph("never", "critical")),
                case(
                    "80m",
                    "ServiceGraphSnapshotNotWritten",
                    graph("never", "critical"),
                    graph("stuck", "critical"),
                ),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": up % "a", "values": "1x10 0x20 _x30"},
                {"series": up % "b", "values": "0x60"},
                {"series": f'up{{job="other", namespace="{NAMESPACE}"}}', "values": "1x60"},
            ],
            "alert_rule_test": [
                case("8m", "ServiceGraphOperatorDown"),
                case("20m", "ServiceGraphOperatorDown", {"severity": "critical"}),
                # Gone from service discovery altogether: absent() still fires.
                case("55m", "ServiceGraphOperatorDown", {"severity": "critical"}),
            ],
        },
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    assert "SUCCESS" in promtool("test", "rules", "tests.yaml", cwd=tmp_path)


def annotations(alertname: str, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations with $labels filled in, as Prometheus expands them."""
    (group,) = rule_groups()
    (rule,) = [r for r in group["rules"] if r["alert"] == alertname]
    expanded = {}
    for key, template in rule["annotations"].items():
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
        expanded[key] = text.replace("{{ $value }}", "1")
    return expanded


# -- the dashboard and the names of the series -------------------------------------------------


def dashboard() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(
        (CHART / "dashboards" / "servicegraph-operator.json").read_text()
    )
    return parsed


def dashboard_queries() -> list[str]:
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    variables = {"$__rate_interval": "5m", "$job": ".*", "$namespace": ".*", "$graph": ".*"}
    rules = []
    for i, query in enumerate(dashboard_queries()):
        for name, value in variables.items():
            query = query.replace(name, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]})
    )
    assert "SUCCESS" in promtool("check", "rules", "rules.yaml", cwd=tmp_path)


def exported_series() -> set[str]:
    """Names of the series the operator's metrics produce."""
    names = set()
    for f in dataclasses.fields(METRICS):
        metric = getattr(METRICS, f.name)
        base = metric._name
        if isinstance(metric, Counter):
            names.add(f"{base}_total")
        elif isinstance(metric, Histogram):
            names.update(f"{base}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            assert isinstance(metric, Gauge)
            names.add(base)
    return names


def used_series(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\bservicegraph_[a-z_]+", expr)}


def test_every_series_used_is_exported() -> None:
    (group,) = rule_groups()
    alerts = used_series([rule["expr"] for rule in group["rules"]])
    panels = used_series(dashboard_queries())
    assert alerts and panels
    assert alerts - exported_series() == set()
    assert panels - exported_series() == set()


@pytest.mark.parametrize("variable", ["job", "namespace", "graph"])
def test_dashboard_variables_are_used(variable: str) -> None:
    assert any(f"${variable}" in query for query in dashboard_queries())

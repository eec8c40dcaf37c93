"""`servicegraph analyze --prometheus`: drift of the Online Boutique against a real Prometheus.

The stack's boutique Prometheus serves every declared Online Boutique edge plus one that no
manifest declares (EXTRA_EDGE); CI runs exactly this to report drift without a cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicegraph.cli import main
from tests.integration.conftest import BOUTIQUE, EXTRA_EDGE, WINDOW, Stack, boutique_edges
from tests.support.prometheus import FakePrometheus, free_port

pytestmark = pytest.mark.integration

TOKEN = "ci-t0ken-5ecret"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, in its own process, as CI runs it."""
    exe = Path(sys.executable).with_name("servicegraph")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_the_boutique_example_reports_exactly_the_undeclared_edge(stack: Stack) -> None:
    report = report_of(
        run("analyze", str(BOUTIQUE), "--prometheus", stack.boutique_prometheus.url, "-o", "json")
    )
    extra = {"source": EXTRA_EDGE.client, "target": EXTRA_EDGE.server}
    assert report["drift"] == {"undeclared": [extra], "unobserved": []}
    declared = len(boutique_edges())
    assert declared == 16
    assert report["summary"] == {
        "services": 12,
        "edges": declared + 1,
        "declaredEdges": declared,
        "observedEdges": declared + 1,
        "staleEdges": 0,
        "cycles": 0,
        "undeclared": 1,
        "unobserved": 0,
    }
    assert report["observed"] == {
        "prometheus": stack.boutique_prometheus.url,
        "source": "otel",
        "metricPrefix": "traces_service_graph",
        "window": "1h",
        "minRequestRate": 0.0,
        "series": 2 * (declared + 1),  # rate and p95 of each edge; no failures, no failed rate
        "edges": declared + 1,
    }
    assert report["graph"] == {"namespace": "online-boutique", "name": "online-boutique"}


def test_the_table_names_the_drift(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    url = stack.boutique_prometheus.url
    assert main(["analyze", str(BOUTIQUE), "--prometheus", url, "--window", "30s"]) == 0
    out = capsys.readouterr().out
    assert f"undeclared: {EXTRA_EDGE.client} -> {EXTRA_EDGE.server}" in out
    assert "unobserved:" not in out
    assert f"observed: 17 edges in 34 series from {url} over 30s" in out


def test_the_graphs_spec_observed_gives_defaults_that_flags_override(
    stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "shop"
    shutil.copytree(BOUTIQUE, folder)
    graph_file = folder / "servicegraph.yaml"
    graph = yaml.safe_load(graph_file.read_text())
    graph["spec"]["observed"] = {
        "prometheus": {"url": "http://prometheus.monitoring:9090", "timeout": "10s"},
        "window": "30s",
        "minRequestRate": 1000,  # nothing is that busy: every declared edge is unobserved
    }
    graph_file.write_text(yaml.safe_dump(graph))
    url = stack.boutique_prometheus.url

    quiet = report_of(run("analyze", str(folder), "--prometheus", url, "-o", "json"))
    assert quiet["observed"]["window"] == "30s"
    assert quiet["observed"]["minRequestRate"] == 1000
    assert quiet["drift"]["undeclared"] == []
    assert len(quiet["drift"]["unobserved"]) == 16

    busy = report_of(
        run("analyze", str(folder), "--prometheus", url, "--min-request-rate", "0", "-o", "json")
    )
    assert busy["observed"]["window"] == "30s"
    assert busy["drift"]["unobserved"] == []
    assert busy["drift"]["undeclared"] == [{"source": "checkoutservice", "target": "adservice"}]


# --- failures: one line on stderr, exit 2 (no Prometheus binary needed) ----------------------


def test_a_refused_token_is_one_line_and_stays_secret(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # as `kubectl get secret ... | base64 -d` leaves it
    with FakePrometheus() as fake:
        fake.mode = "echo"  # 401, repeating the request headers
        result = run(
            "analyze",
            str(BOUTIQUE),
            "--prometheus",
            fake.url,
            "--bearer-token-file",
            str(token_file),
            "--header",
            "X-Scope-OrgID=team-a",
            "-o",
            "json",
        )
        sent = fake.requests[0].headers
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: Unauthorized: {fake.url} answered HTTP 401")
    assert result.stderr.count("\n") == 1
    assert TOKEN not in result.stderr
    assert sent["authorization"] == f"Bearer {TOKEN}"  # the newline of the file is gone
    assert sent["x-scope-orgid"] == "team-a"


def test_an_unreachable_prometheus_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("analyze", str(BOUTIQUE), "--prometheus", url)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: Unreachable: cannot reach {url}")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--window", "1h]) or vector(1"],
            "error: --window '1h]) or vector(1': expects a duration such as 30s, 5m, 1h30m or 7d "
            "(units ms, s, m, h, d, w)\n",
        ),
        (
            ["--metric-prefix", 'up{job="x"}'],
            "error: --metric-prefix 'up{job=\"x\"}': expects a Prometheus metric name prefix: "
            "letters, digits, '_' and ':', not starting with a digit\n",
        ),
        (
            ["--min-request-rate", "-1"],
            "error: --min-request-rate -1.0: should be greater than or equal to 0\n",
        ),
        (["--timeout", "soon"], "error: --timeout 'soon': expects a duration such as 30s"),
        (["--timeout", "0s"], "error: --timeout '0s': must be between 1s and 5m, not 0s\n"),
        (["--header", "X-Scope-OrgID"], "error: --header expects NAME=VALUE"),
        (["--bearer-token-file", "/nonexistent/token"], "error: --bearer-token-file: cannot read"),
        (["--ca-file", "/nonexistent/ca.crt"], "error: --ca-file: cannot read"),
    ],
)
def test_unsafe_or_broken_flags_are_refused_before_any_query(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakePrometheus() as fake:
        assert main(["analyze", str(BOUTIQUE), "--prometheus", fake.url, *flags]) == 2
        assert fake.requests == []
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_a_file_that_is_no_ca_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["analyze", str(BOUTIQUE), "--prometheus", url, "--ca-file", str(ca)]) == 2
    assert capsys.readouterr().err.startswith("error: --ca-file: not a PEM certificate")


def test_a_url_that_is_none_is_named_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(BOUTIQUE), "--prometheus", "not-a-url"]) == 2
    assert capsys.readouterr().err == (
        "error: --prometheus 'not-a-url': expects an http:// or https:// URL, such as "
        "http://prometheus.monitoring:9090\n"
    )


def test_observed_flags_need_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(BOUTIQUE), "--window", "30s"]) == 2
    assert capsys.readouterr().err == "error: --window needs --prometheus URL\n"


def test_slo_from_manifests_and_one_poll_names_the_failing_dependency(stack: Stack) -> None:
    # The sample exporter: frontend -> cartservice fails a quarter of its requests.
    url = stack.prometheus.url
    result = run(
        "slo", "frontend", "--from", str(BOUTIQUE), "--prometheus", url, "--window", WINDOW,
        "--availability", "99", "-o", "json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["achievable"] is False
    assert report["limitingDependencies"][0] == {"service": "cartservice", "availability": 0.75}
    cart = run("slo", "cartservice", "--from", str(BOUTIQUE), "--prometheus", url, "-o", "json")
    assert json.loads(cart.stdout)["availability"] == 0.75

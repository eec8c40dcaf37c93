"""`servicegraph slo` and the `slo` of `analyze -o json`, as a user runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicegraph.cli import main
from servicegraph.graph import (
    EdgeAttributes,
    Observation,
    ServiceDeclaration,
    SourceKind,
    Traffic,
    analyse,
)
from servicegraph.snapshot import to_document
from tests.unit.test_cli import BOUTIQUE, run

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SOFT = EdgeAttributes(criticality="soft")
ASYNC = EdgeAttributes(communication_mode="async")


def calls(source: str, target: str, rate: float, error_rate: float) -> Observation:
    return Observation(
        source, target, SourceKind.OTEL, NOW, traffic=Traffic(rate, error_rate, 12.0, "")
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """checkout calls payment (99 %) and currency (97 %) hard and sync, reviews softly and
    email asynchronously; web calls checkout; the figures come from one poll."""
    declarations = [
        ServiceDeclaration("web", "shop", "web", depends_on=(("checkout", EdgeAttributes()),)),
        ServiceDeclaration(
            "checkout",
            "shop",
            "checkout",
            depends_on=(
                ("payment", EdgeAttributes()),
                ("currency", EdgeAttributes()),
                ("reviews", SOFT),
                ("email", ASYNC),
                ("fraud", EdgeAttributes()),  # never observed: unknown
            ),
        ),
    ]
    observations = [
        calls("web", "checkout", 50, 0.002),
        calls("checkout", "payment", 20, 0.01),
        calls("checkout", "currency", 30, 0.03),
        calls("checkout", "reviews", 5, 0.5),
        calls("checkout", "email", 2, 0.0),
    ]
    graph = analyse(declarations, observations, now=NOW, observing=True)
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(to_document(graph, graph_ref=("shop", "shop"))), encoding="utf-8")
    return path


def slo_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = run("slo", *args, "-o", "json")
    assert result.stderr == ""
    report: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, report


def test_the_figures_of_a_service(shop: Path) -> None:
    code, report = slo_json("checkout", "--snapshot", str(shop))

    assert code == 0
    assert report == {
        "service": "checkout",
        "availability": 0.998,  # web's calls into it
        "dependencyCeiling": 0.9603,  # 0.99 * 0.97: reviews is soft, email async
        "dependencies": [
            {"service": "currency", "availability": 0.97},
            {"service": "fraud", "availability": None},
            {"service": "payment", "availability": 0.99},
        ],
        "unknownDependencies": ["fraud"],
        "impact": {"fails": ["web"], "failsCount": 1, "degrades": [], "degradesCount": 0},
        # Every dependency is a leaf; the first by name among the deepest.
        "syncDepth": 1,
        "syncChain": ["checkout", "currency"],
    }


def test_a_caller_is_held_back_by_its_direct_dependency_only(shop: Path) -> None:
    code, report = slo_json("web", "--snapshot", str(shop), "--availability", "99.9")
    assert code == 1
    # checkout's observed 99.8 % already includes what currency costs it: not counted twice.
    assert report["dependencyCeiling"] == 0.998
    assert report["limitingDependencies"] == [{"service": "checkout", "availability": 0.998}]
    assert report["syncChain"] == ["web", "checkout", "currency"]


def test_exit_1_when_the_target_is_out_of_reach(shop: Path) -> None:
    code, report = slo_json("checkout", "--snapshot", str(shop), "--availability", "99.5")

    assert code == 1
    assert report["target"] == 0.995
    assert report["achievable"] is False
    # Without currency the rest (payment, 99 %) still misses 99.5 %: both, weakest first.
    assert report["limitingDependencies"] == [
        {"service": "currency", "availability": 0.97},
        {"service": "payment", "availability": 0.99},
    ]


def test_exit_0_when_the_target_is_within_the_ceiling(shop: Path) -> None:
    code, report = slo_json("web", "--snapshot", str(shop), "--availability", "99.5%")
    assert code == 0
    assert (report["target"], report["achievable"], report["limitingDependencies"]) == (
        0.995,
        True,
        [],
    )


def test_exit_1_when_an_unobserved_dependency_leaves_it_open(shop: Path) -> None:
    # payment and currency allow 95 %, but fraud was never observed: no promise can be made.
    code, report = slo_json("checkout", "--snapshot", str(shop), "--availability", "95")
    assert code == 1
    assert (report["achievable"], report["limitingDependencies"]) == (None, [])
    table = run("slo", "checkout", "--snapshot", str(shop), "--availability", "95").stdout
    assert "95 %: cannot tell: no availability for fraud" in table


def test_the_table_speaks_in_percent(shop: Path) -> None:
    result = run("slo", "checkout", "--snapshot", str(shop), "--availability", "98")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["FIGURE", "VALUE"]
    text = "\n".join(lines)
    assert "availability         99.8 %" in text
    assert "96.03 % over 3 hard sync call(s); not observed, so not counted: fraud" in text
    assert "  currency           97 %" in text
    assert "target               98 %: not achievable; held back by currency (97 %)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--availability", "0"], "percentage above 0 and at most 100, such as 99.95, not '0'"),
        (["--availability", "100.5"], "not '100.5'"),
        (["--availability", "nan"], "not 'nan'"),
        (["--availability", "high"], "not 'high'"),
        (["--prometheus", "http://localhost:9090"], "--prometheus polls with --from PATH"),
        (["--window", "5m"], "--window needs --prometheus URL"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(shop: Path, args: list[str], message: str) -> None:
    result = run("slo", "checkout", "--snapshot", str(shop), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_service_exits_2(shop: Path) -> None:
    result = run("slo", "nope", "--snapshot", str(shop))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no service named 'nope' in the graph"


def test_from_manifests_without_observations_lists_every_dependency_as_unknown() -> None:
    code, report = slo_json("checkoutservice", "--from", str(BOUTIQUE))
    assert code == 0
    assert report["availability"] is None
    assert report["dependencyCeiling"] == 1.0
    assert report["unknownDependencies"] == [
        "cartservice",
        "currencyservice",
        "paymentservice",
        "productcatalogservice",
        "shippingservice",
    ]
    assert report["impact"]["fails"] == ["frontend", "loadgenerator"]
    assert report["syncChain"] == ["checkoutservice", "cartservice", "redis-cart"]


def test_analyze_json_has_the_figures_of_every_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(BOUTIQUE), "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["slo"]) == 12
    frontend = report["slo"]["frontend"]
    assert set(frontend) == {
        "availability",
        "dependencyCeiling",
        "weakestDependency",
        "unknownDependencies",
        "impact",
        "syncDepth",
        "syncChain",
    }
    assert frontend["syncChain"] == ["frontend", "checkoutservice", "cartservice", "redis-cart"]
    assert frontend["impact"] == {
        "fails": ["loadgenerator"],
        "failsCount": 1,
        "degrades": [],
        "degradesCount": 0,
    }


def test_a_snapshot_gives_the_figures_the_manifests_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--from", str(BOUTIQUE), "-o", "json"]) == 0
    path = tmp_path / "boutique.json"
    path.write_text(capsys.readouterr().out, encoding="utf-8")
    for service in ("frontend", "checkoutservice", "redis-cart"):
        assert slo_json(service, "--snapshot", str(path)) == slo_json(
            service, "--from", str(BOUTIQUE)
        )


def test_analyze_keeps_each_sync_chain_short_however_deep_the_graph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every service's whole chain would make the report grow with the square of the depth:
    the first 20 names, as the impact lists; syncDepth counts them all."""
    chain = [f"s{i:03}" for i in range(60)]
    objects = [
        {
            "apiVersion": "graph.slo-engine.io/v1alpha1",
            "kind": "ServiceDependency",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"dependsOn": [{"service": callee}] if callee else []},
        }
        for name, callee in zip(chain, [*chain[1:], None], strict=True)
    ]
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump_all(objects))
    assert main(["analyze", str(tmp_path), "-o", "json"]) == 0
    first = json.loads(capsys.readouterr().out)["slo"]["s000"]
    assert first["syncDepth"] == 59
    assert first["syncChain"] == chain[:20]
    assert main(["slo", "s000", "--from", str(tmp_path), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["syncChain"] == chain  # one service: all of it

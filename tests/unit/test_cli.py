"""The `servicegraph` command as a user runs it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicegraph.cli import main
from servicegraph.graph import Observation, ServiceDeclaration, SourceKind, analyse
from servicegraph.snapshot import to_document
from tests.support.binaries import needs_binary

ROOT = Path(__file__).resolve().parents[2]
BOUTIQUE = ROOT / "manifests" / "examples" / "online-boutique"
API = "graph.slo-engine.io/v1alpha1"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, in its own process."""
    exe = Path(sys.executable).with_name("servicegraph")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def write(path: Path, *objects: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    return path


def sdep(name: str, *targets: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceDependency",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"dependsOn": [{"service": t} for t in targets], **spec},
    }


def test_version_is_the_package_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert result.stdout.strip() == f"servicegraph {project['version']}"
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in (root / "LICENSE").read_text()


def test_check_passes_the_online_boutique_example() -> None:
    result = run("check", str(BOUTIQUE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 12 services, 16 edges, no unacknowledged cycle"


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"dependsOn": [{"service": "checkout"}]},
            "spec.dependsOn",
            "a service cannot depend on itself",
        ),
        (
            {"dependsOn": [{"service": "payment"}, {"service": "payment"}]},
            "spec.dependsOn[1].service",
            'Duplicate value: service="payment"',
        ),
        (
            {"dependsOn": [{"service": "payment", "criticality": "maybe"}]},
            "spec.dependsOn[0].criticality",
            'Unsupported value: "maybe"',
        ),
    ],
    ids=["self-dependency", "duplicate-target", "unknown-enum"],
)
def test_check_refuses_invalid_manifests_naming_file_object_and_field(
    tmp_path: Path, spec: dict[str, Any], field: str, message: str
) -> None:
    bad = write(tmp_path / "checkout.yaml", {**sdep("checkout"), "spec": spec})
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[0]
    assert line.startswith(f"{bad}: ServiceDependency shop/checkout: {field}: "), line
    assert message in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        None,  # an empty folder
        "just some notes, not YAML of any object\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    ],
    ids=["empty folder", "plain text", "no object of ours"],
)
def test_check_with_nothing_to_check_fails_unless_allowed(
    tmp_path: Path, content: str | None
) -> None:
    if content is not None:
        (tmp_path / "notes.yaml").write_text(content)
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: no ServiceDependency in {tmp_path} (--allow-empty passes anyway)\n"
    )
    allowed = run("check", "--allow-empty", str(tmp_path))
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ok: 0 services")


def test_check_reads_standard_input_as_a_pipe_gives_it() -> None:
    exe = Path(sys.executable).with_name("servicegraph")
    cycle = yaml.safe_dump_all([sdep("a", "b"), sdep("b", "a")])
    piped = subprocess.run(
        [str(exe), "check", "-"], input=cycle, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 1, piped.stderr
    assert "cycle: " in piped.stderr
    fine = yaml.safe_dump_all([sdep("a", "b"), sdep("b")])
    piped = subprocess.run(
        [str(exe), "check", "-"], input=fine, capture_output=True, text=True, timeout=60
    )
    assert (piped.returncode, piped.stdout) == (
        0,
        "ok: 2 services, 1 edges, no unacknowledged cycle\n",
    )
    bad = yaml.safe_dump({**sdep("a"), "kind": "ServiceDependancy"})
    piped = subprocess.run(
        [str(exe), "check", "-"], input=bad, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 2
    assert piped.stderr.startswith("<stdin>: ServiceDependancy shop/a: kind: Unsupported value")


@pytest.mark.parametrize(
    ("api_version", "kind", "message"),
    [
        (
            "graph.slo-engine.io/v1alpha1",
            "ServiceDependancy",
            'kind: Unsupported value: "ServiceDependancy": graph.slo-engine.io has the kinds '
            '"ServiceDependency", "ServiceGraph"',
        ),
        (
            "graph.slo-engine.io/v1",
            "ServiceDependency",
            'apiVersion: Unsupported value: "graph.slo-engine.io/v1": supported values: '
            '"graph.slo-engine.io/v1alpha1"',
        ),
    ],
)
def test_check_names_a_misspelt_kind_or_version_of_our_group(
    tmp_path: Path, api_version: str, kind: str, message: str
) -> None:
    typo = {**sdep("checkout", "payment"), "apiVersion": api_version, "kind": kind}
    bad = write(tmp_path / "checkout.yaml", sdep("payment"), typo)
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == f"{bad}: {kind} shop/checkout: {message}\n"


def test_check_reports_each_cycle_with_exit_1(tmp_path: Path) -> None:
    write(
        tmp_path / "all.yaml",
        sdep("a", "b"),
        sdep("b", "c"),
        sdep("c", "a"),
        sdep("x", "y"),
        sdep("y", "x"),
    )
    result = run("check", str(tmp_path))
    assert result.returncode == 1
    assert "cycle: a -> b -> c -> a" in result.stderr
    assert "cycle: x -> y -> x" in result.stderr


def test_acknowledged_cycle_passes(tmp_path: Path) -> None:
    graph = {
        "apiVersion": API,
        "kind": "ServiceGraph",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"acknowledgedCycles": [["b", "a"]]},
    }
    write(tmp_path / "all.yaml", sdep("a", "b"), sdep("b", "a"), graph)
    assert main(["check", str(tmp_path)]) == 0


def test_check_warns_about_undeclared_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.yaml", sdep("a", "ghost"))
    assert main(["check", str(tmp_path)]) == 0
    assert "warning: a depends on ghost, which no manifest declares" in capsys.readouterr().err


def test_many_invalid_objects_make_a_short_report(tmp_path: Path) -> None:
    bad = [sdep(f"s{i}", "a") for i in range(30)]
    for obj in bad:
        obj["spec"]["dependsOn"][0]["criticality"] = "sometimes"
    many = write(tmp_path / "many.yaml", *bad)
    few = write(tmp_path / "few.yaml", *bad[:2])
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith(f"{few}: ")] == [
        f"{few}: ServiceDependency shop/s{i}: spec.dependsOn[0].criticality: Unsupported value: "
        '"sometimes": supported values: "hard", "soft", "degraded"'
        for i in range(2)
    ]
    from_many = [line for line in lines if line.startswith(f"{many}: ")]
    assert len(from_many) == 11 and from_many[-1] == f"{many}: and 20 more"
    assert lines[-1] == "error: 32 invalid field(s) in 2 file(s)"


def test_two_objects_of_one_name_fail_naming_both_files(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", sdep("checkout", "payment"), sdep("payment"))
    second = write(tmp_path / "b.yaml", sdep("checkout"))
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        f'{second}: ServiceDependency shop/checkout: metadata.name: Duplicate value: "checkout": '
        f"also defined in {first}\n"
    )
    same_file = write(tmp_path / "a.yaml", sdep("payment"), sdep("payment"))
    second.unlink()
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.endswith("also defined earlier in the same file\n")
    assert result.stderr.startswith(f"{same_file}: ServiceDependency shop/payment: ")
    # Another namespace or another kind is another object.
    other = {**sdep("payment"), "metadata": {"name": "payment", "namespace": "billing"}}
    write(tmp_path / "a.yaml", sdep("payment"), sdep("checkout", "payment"), other)
    graph = {"apiVersion": API, "kind": "ServiceGraph", "metadata": {"name": "payment"}, "spec": {}}
    write(tmp_path / "graph.yaml", graph)
    assert run("check", str(tmp_path)).returncode == 0


def test_a_service_declared_twice_warns_and_fails_under_strict(tmp_path: Path) -> None:
    legacy = {
        **sdep("payment-legacy"),
        "spec": {"service": "payment", "dependsOn": []},
    }
    mine = write(tmp_path / "a.yaml", sdep("checkout", "payment"), sdep("payment"))
    theirs = write(tmp_path / "legacy.yaml", legacy)
    message = (
        f"service payment is declared by 2 objects: shop/payment ({mine}), "
        f"shop/payment-legacy ({theirs}); the first one counts\n"
    )
    lenient = run("check", str(tmp_path))
    assert lenient.returncode == 0, lenient.stderr
    assert lenient.stderr == f"warning: {message}"
    strict = run("check", "--strict", str(tmp_path))
    assert strict.returncode == 2
    assert strict.stderr == f"error: {message}1 warning(s), and --strict fails on warnings\n"
    theirs.unlink()
    assert run("check", "--strict", str(tmp_path)).returncode == 0


def test_strict_fails_on_a_dependency_nobody_declares(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", sdep("a", "ghost"))
    result = run("check", "--strict", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: a depends on ghost, which no manifest declares\n")


def test_graph_is_picked_by_namespace_and_name(tmp_path: Path) -> None:
    def graph(namespace: str, acknowledged: list[list[str]]) -> dict[str, Any]:
        return {
            "apiVersion": API,
            "kind": "ServiceGraph",
            "metadata": {"name": "shop", "namespace": namespace},
            "spec": {"acknowledgedCycles": acknowledged, "selector": {"namespaces": ["shop"]}},
        }

    write(tmp_path / "all.yaml", sdep("a", "b"), sdep("b", "a"))
    write(tmp_path / "graphs.yaml", graph("team-a", [["a", "b"]]), graph("team-b", []))
    several = run("check", str(tmp_path))
    assert several.returncode == 2
    assert several.stderr == (
        "error: the manifests hold several ServiceGraphs (team-a/shop, team-b/shop): pick one "
        "with --graph [NAMESPACE/]NAME\n"
    )
    assert run("check", "--graph", "shop", str(tmp_path)).returncode == 2  # still two
    assert run("check", "--graph", "team-a/shop", str(tmp_path)).returncode == 0
    assert run("check", "--graph", "team-b/shop", str(tmp_path)).returncode == 1
    analysed = run("analyze", "--graph", "team-a/shop", str(tmp_path), "-o", "json")
    assert json.loads(analysed.stdout)["graph"] == {"namespace": "team-a", "name": "shop"}
    missing = run("check", "--graph", "team-c/shop", str(tmp_path))
    assert missing.stderr == "error: no ServiceGraph 'team-c/shop' in the manifests\n"


def test_unreadable_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n", encoding="utf-8")
    result = run("check", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid YAML at line" in result.stderr
    missing = run("analyze", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
    assert "no such file or directory" in missing.stderr


def test_other_kinds_and_lists_are_read_like_kubectl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "deploy.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
    )
    write(
        tmp_path / "list.json",
        {"apiVersion": "v1", "kind": "List", "items": [sdep("a", "b"), sdep("b")]},
    )
    assert main(["analyze", str(tmp_path), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["services"] == 2


def test_analyze_json_has_the_summary_the_operator_writes() -> None:
    result = run("analyze", str(BOUTIQUE), "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"] == {
        "services": 12,
        "edges": 16,
        "declaredEdges": 16,
        "observedEdges": 0,
        "staleEdges": 0,
        "cycles": 0,
        "undeclared": 0,
        "unobserved": 0,
    }
    assert report["cycles"] == []
    assert report["drift"] == {"undeclared": [], "unobserved": []}
    assert report["graph"] == {"namespace": "online-boutique", "name": "online-boutique"}


def test_analyze_table_and_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(BOUTIQUE)]) == 0
    services, counts = capsys.readouterr().out.split("\n\n")
    rows = [line.split() for line in services.splitlines()]
    assert rows[0] == [
        "SERVICE",
        "TEAM",
        "TIER",
        "DECLARED",
        "FAN-IN",
        "FAN-OUT",
        "BLAST-RADIUS",
        "CYCLE",
        "DRIFT",
    ]
    by_name = {row[0]: row[1:] for row in rows[1:]}
    assert len(by_name) == 12
    # frontend calls seven services; three call productcatalogservice, and four fail with it
    # (frontend, checkoutservice, recommendationservice, loadgenerator).
    assert by_name["frontend"] == ["web", "critical", "yes", "1", "7", "1"]
    assert by_name["productcatalogservice"] == ["catalog", "critical", "yes", "3", "0", "4"]
    assert counts.splitlines()[0].split() == ["COUNT", "VALUE"]
    assert "edges           16" in counts
    assert main(["analyze", str(BOUTIQUE), "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["summary"]["edges"] == 16


def test_analyze_marks_cycles_and_services_nobody_declares(tmp_path: Path) -> None:
    write(tmp_path / "all.yaml", sdep("a", "b", "ghost", team="shop"), sdep("b", "a"))
    table = run("analyze", str(tmp_path))
    rows = {line.split()[0]: line.split() for line in table.stdout.split("\n\n")[0].splitlines()}
    assert rows["a"] == ["a", "shop", "yes", "1", "2", "1", "yes"]
    assert rows["ghost"] == ["ghost", "no", "1", "0", "2"]  # no team, no tier, no cycle
    assert "cycles: a -> b -> a" in table.stdout


def test_query_downstream_and_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["query", "checkoutservice", "--from", str(BOUTIQUE), "--depth", "2", "-o", "json"])
        == 0
    )
    down = json.loads(capsys.readouterr().out)
    assert down["nodes"] == sorted(
        [
            "checkoutservice",
            "cartservice",
            "currencyservice",
            "emailservice",
            "paymentservice",
            "productcatalogservice",
            "shippingservice",
            "redis-cart",
        ]
    )
    assert {"source": "cartservice", "target": "redis-cart"}.items() <= down["edges"][
        0
    ].items() or any(
        e["source"] == "cartservice" and e["target"] == "redis-cart" for e in down["edges"]
    )
    assert (
        main(
            [
                "query",
                "redis-cart",
                "--from",
                str(BOUTIQUE),
                "--direction",
                "upstream",
                "--depth",
                "10",
                "-o",
                "json",
            ]
        )
        == 0
    )
    up = json.loads(capsys.readouterr().out)
    assert up["nodes"] == [
        "cartservice",
        "checkoutservice",
        "frontend",
        "loadgenerator",
        "redis-cart",
    ]


def test_query_says_which_way_and_how_far_each_edge_is() -> None:
    both = ["query", "checkoutservice", "--from", str(BOUTIQUE), "--direction", "both"]
    table = run(*both, "--depth", "2")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == [
        "SOURCE",
        "TARGET",
        "DIRECTION",
        "HOP",
        "MODE",
        "CRITICALITY",
        "SOURCES",
        "STALE",
    ]
    shown = {(row[0], row[1]): (row[2], row[3]) for row in rows[1:]}
    assert shown[("checkoutservice", "paymentservice")] == ("downstream", "1")
    assert shown[("frontend", "checkoutservice")] == ("upstream", "1")
    assert shown[("cartservice", "redis-cart")] == ("downstream", "2")
    assert shown[("loadgenerator", "frontend")] == ("upstream", "2")
    assert [row[3] for row in rows[1:]] == sorted(row[3] for row in rows[1:])  # nearest first
    as_json = json.loads(run(*both, "--depth", "2", "-o", "json").stdout)
    hops = {(e["source"], e["target"]): e["hops"] for e in as_json["edges"]}
    assert hops[("cartservice", "redis-cart")] == {"downstream": 2}
    assert hops[("loadgenerator", "frontend")] == {"upstream": 2}
    assert len(hops) == len(rows) - 1


def test_an_edge_of_a_cycle_is_both_upstream_and_downstream(tmp_path: Path) -> None:
    graph = {
        "apiVersion": API,
        "kind": "ServiceGraph",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"acknowledgedCycles": [["a", "b"]]},
    }
    write(tmp_path / "all.yaml", sdep("a", "b"), sdep("b", "a"), graph)
    result = run("query", "a", "--from", str(tmp_path), "--direction", "both", "--depth", "2")
    rows = [line.split()[:4] for line in result.stdout.splitlines()[1:]]
    assert rows == [
        ["a", "b", "downstream,upstream", "1,2"],
        ["b", "a", "downstream,upstream", "2,1"],
    ]


def test_query_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "nosuch", "--from", str(BOUTIQUE)]) == 2
    assert capsys.readouterr().err == "error: no service named 'nosuch' in the graph\n"
    assert main(["query", "frontend", "--from", str(BOUTIQUE), "--depth", "11"]) == 2
    assert "--depth must be between 1 and 10" in capsys.readouterr().err


def test_query_a_snapshot_with_stale_edges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    old = Observation("adservice", "ghost", SourceKind.OTEL, last_seen=now - timedelta(days=30))
    graph = analyse([ServiceDeclaration("adservice")], [old], now=now)
    (tmp_path / "graph.json").write_text(json.dumps(to_document(graph)), encoding="utf-8")
    query = ["query", "adservice", "--snapshot", str(tmp_path / "graph.json"), "-o", "json"]
    assert main(query) == 0
    assert json.loads(capsys.readouterr().out)["nodes"] == ["adservice"]
    assert main([*query, "--include-stale"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["nodes"] == ["adservice", "ghost"]
    assert result["edges"][0]["stale"] is True


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "json"])
def test_export_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--from", str(BOUTIQUE), "-o", fmt]) == 0
    out = capsys.readouterr().out
    assert "checkoutservice" in out and "paymentservice" in out


@needs_binary("dot", "Graphviz renders the SVG export (apt-get install graphviz)")
def test_export_svg() -> None:
    result = run("export", "--from", str(BOUTIQUE), "-o", "svg")
    assert result.returncode == 0, result.stderr
    assert "<svg" in result.stdout and "checkoutservice" in result.stdout


def test_several_graphs_need_a_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graphs = [
        {
            "apiVersion": API,
            "kind": "ServiceGraph",
            "metadata": {"name": n, "namespace": "shop"},
            "spec": {},
        }
        for n in ("one", "two")
    ]
    write(tmp_path / "all.yaml", sdep("a"), *graphs)
    assert main(["analyze", str(tmp_path)]) == 2
    assert "pick one with --graph" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path), "--graph", "two", "-o", "json"]) == 0


def test_crds_command_prints_the_committed_crds() -> None:
    result = run("crds")
    committed = sorted((ROOT / "crds").glob("*.yaml"))
    assert [yaml.safe_load(p.read_text()) for p in committed] == list(
        yaml.safe_load_all(result.stdout)
    )


def test_kubectl_plugin_name_is_installed() -> None:
    exe = Path(sys.executable).with_name("kubectl-servicegraph")
    result = subprocess.run(
        [str(exe), "check", str(BOUTIQUE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

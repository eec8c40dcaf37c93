"""`kubectl servicegraph` as a user runs it: the real kubectl finds the `kubectl-servicegraph`
entry point on the PATH, and live queries read a ServiceGraph's snapshot through the kubeconfig
while the real operator keeps it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servicegraph import snapshot_configmaps
from servicegraph.cli import main
from tests.e2e.test_operator_support import (
    BOUTIQUE,
    BOUTIQUE_NAMESPACE,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_document,
)
from tests.support.emulator import Api, write_kubeconfig
from tests.support.kubectl import KUBECTL

pytestmark = pytest.mark.e2e

NS = BOUTIQUE_NAMESPACE
# The virtual environment's bin first: there kubectl finds kubectl-servicegraph.
VENV_BIN = Path(sys.executable).parent


def plugin(
    api: Api, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl servicegraph ARGS`, run by the real kubectl."""
    env = {
        **api.env(),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [KUBECTL, "servicegraph", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc.stdout


def offline(*args: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """The same command in this process, on the manifests: what the live answer must equal."""
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_kubectl_finds_the_plugin(api: Api) -> None:
    env = {**api.env(), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    listed = subprocess.run(
        [KUBECTL, "plugin", "list"], capture_output=True, text=True, env=env, check=False
    )
    assert str(VENV_BIN / "kubectl-servicegraph") in listed.stdout
    usage = ok(plugin(api, "--help"))
    assert usage.startswith("usage: kubectl servicegraph ")
    commands = usage.split("positional arguments:")[1].split("options:")[0]
    listed = {line.split()[0] for line in commands.splitlines() if re.match(r" {4}\w", line)}
    # Running the operator and printing its CRDs are no business of a kubectl plugin.
    assert listed == {"check", "analyze", "infer", "query", "slo", "export", "import"}
    assert ok(plugin(api, "query", "--help")).startswith("usage: kubectl servicegraph query ")


def test_kubectls_flags_choose_the_cluster_context_and_namespace(
    boutique: Api, tmp_path: Path
) -> None:
    """`-n NS --context C --kubeconfig F` as kubectl reads them: the file over $KUBECONFIG,
    the named context over the current one, -n over the context's namespace."""
    api = boutique
    two_contexts = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "nowhere",
        "clusters": [
            {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}},
            {"name": "shop", "cluster": {"server": api.url}},
        ],
        "users": [{"name": "user", "user": {}}],
        "contexts": [
            {"name": "nowhere", "context": {"cluster": "nowhere", "user": "user"}},
            {"name": "shop", "context": {"cluster": "shop", "user": "user", "namespace": "x"}},
        ],
    }
    kubeconfig = tmp_path / "kubeconfig-two-contexts"
    kubeconfig.write_text(json.dumps(two_contexts))
    unusable = tmp_path / "kubeconfig-unusable"
    unusable.write_text("not: a kubeconfig\n")
    flags = ("--kubeconfig", str(kubeconfig), "--context", "shop")
    query = ("query", "frontend", "--graph", NS, "-o", "json")
    out = ok(plugin(api, *query, "-n", NS, *flags, kubeconfig=unusable))
    assert "checkoutservice" in json.loads(out)["nodes"]
    out = ok(plugin(api, "export", "--graph", NS, "--namespace", NS, *flags, "-o", "mermaid"))
    assert out.startswith("flowchart LR") or "checkoutservice" in out
    # Without -n: the context's namespace, where no such graph is.
    missing = plugin(api, *query, *flags)
    assert (missing.returncode, missing.stderr) == (2, f"error: ServiceGraph x/{NS} not found\n")
    # Without --context: the current one, which reaches nothing.
    refused = plugin(api, *query, "-n", NS, "--kubeconfig", str(kubeconfig))
    assert refused.returncode == 2 and "cannot reach http://127.0.0.1:9" in refused.stderr
    disagree = plugin(api, "query", "frontend", "--graph", f"{NS}/{NS}", "-n", "other", *flags)
    assert disagree.stderr == (f"error: --graph {NS}/{NS} is in namespace {NS}, not -n other\n")
    offline = plugin(api, "query", "frontend", "--from", str(BOUTIQUE), "-n", NS)
    assert offline.stderr == ("error: -n reads a live graph: give --graph [NAMESPACE/]NAME alone\n")


def test_live_query_reads_the_snapshot_the_operator_wrote(
    boutique: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    api = boutique
    args = ("query", "checkoutservice", "--direction", "downstream", "--depth", "3", "-o", "json")
    live = json.loads(ok(plugin(api, *args, "--graph", f"{NS}/{NS}")))
    expected = offline(*args, "--from", str(BOUTIQUE), capsys=capsys)
    assert live["nodes"] == expected["nodes"]
    assert [(e["source"], e["target"]) for e in live["edges"]] == [
        (e["source"], e["target"]) for e in expected["edges"]
    ]
    assert "paymentservice" in live["nodes"]

    # The table too: the live one is the one the manifests give.
    upstream = ("query", "redis-cart", "--direction", "upstream", "--depth", "2")
    table = ok(plugin(api, *upstream, "--graph", f"{NS}/{NS}"))
    assert main([*upstream, "--from", str(BOUTIQUE)]) == 0
    assert table == capsys.readouterr().out
    assert [line.split()[:4] for line in table.splitlines()[1:]] == [
        ["cartservice", "redis-cart", "upstream", "1"],
        ["checkoutservice", "cartservice", "upstream", "2"],
        ["frontend", "cartservice", "upstream", "2"],
    ]


def test_live_export_is_the_snapshot(boutique: Api) -> None:
    api = boutique
    exported = json.loads(ok(plugin(api, "export", "--graph", f"{NS}/{NS}", "-o", "json")))
    stored = snapshot_document(api, f"{NS}-graph", NS)
    assert exported == json.loads(snapshot_configmaps.canonical_json(stored))
    mermaid = ok(plugin(api, "export", "--graph", f"{NS}/{NS}", "-o", "mermaid"))
    assert mermaid.startswith("flowchart") or mermaid.startswith("graph")
    assert "checkoutservice" in mermaid


def test_graph_name_alone_uses_the_contexts_namespace(boutique: Api, tmp_path: Path) -> None:
    api = boutique
    elsewhere = write_kubeconfig(tmp_path / "kubeconfig-boutique", api.url, namespace=NS)
    out = ok(plugin(api, "query", "frontend", "--graph", NS, "-o", "json", kubeconfig=elsewhere))
    assert "checkoutservice" in json.loads(out)["nodes"]
    # The test's own kubeconfig points at "default": no such graph there.
    missing = plugin(api, "query", "frontend", "--graph", NS)
    assert missing.returncode == 2
    assert missing.stderr == f"error: ServiceGraph default/{NS} not found\n"


def test_check_and_analyze_through_kubectl(boutique: Api) -> None:
    api = boutique
    assert (
        ok(plugin(api, "check", str(BOUTIQUE)))
        == "ok: 12 services, 16 edges, no unacknowledged cycle\n"
    )
    report = json.loads(ok(plugin(api, "analyze", str(BOUTIQUE), "-o", "json")))
    # What the operator wrote into the live status is what the CLI predicts from the files.
    status = api.kubectl.get("servicegraph", NS, "-n", NS)["status"]
    for key in ("services", "edges", "cycles"):
        assert report["summary"][key] == status[key]


def test_errors_are_one_line(api: Api, tmp_path: Path) -> None:
    install(api, "shop")
    missing = plugin(api, "query", "a", "--graph", "shop/nope")
    assert (missing.returncode, missing.stderr) == (2, "error: ServiceGraph shop/nope not found\n")

    api.kubectl.apply(graph("g"), sdep("a", "b"))  # no operator: no snapshot yet
    none_yet = plugin(api, "query", "a", "--graph", "shop/g")
    assert none_yet.returncode == 2
    assert none_yet.stderr.startswith("error: ServiceGraph shop/g has no snapshot yet")
    assert none_yet.stderr.count("\n") == 1

    nowhere = write_kubeconfig(tmp_path / "kubeconfig-nowhere", "http://127.0.0.1:9")
    refused = plugin(api, "query", "a", "--graph", "shop/g", kubeconfig=nowhere)
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "error: get ServiceGraph shop/g: cannot reach http://127.0.0.1:9: [Errno 111]"
    )
    assert refused.stderr.count("\n") == 1

    neither = plugin(api, "query", "a")
    assert neither.returncode == 2
    assert "--graph [NAMESPACE/]NAME" in neither.stderr


def test_live_query_reassembles_a_sharded_snapshot(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shards found by the snapshot label, the index named in status.snapshot.configMap."""
    install(api, "shop")
    api.kubectl.apply(graph("big", snapshot={"configMapName": "big-snapshot"}))
    uid = jsonpath(api, "servicegraph", "big", "{.metadata.uid}")
    assert main(["export", "--from", str(BOUTIQUE), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    write = snapshot_configmaps.encode(doc, "big-snapshot", gzip_threshold=0, max_part_bytes=256)
    assert len(write.shards) > 2
    owner = {
        "apiVersion": "graph.slo-engine.io/v1alpha1",
        "kind": "ServiceGraph",
        "name": "big",
        "uid": uid,
    }
    manifests = []
    for payload in write.in_write_order:
        body = payload.manifest()
        body["metadata"].update(namespace="shop", ownerReferences=[owner])
        manifests.append(body)
    api.kubectl.apply(*manifests)
    status = {"status": {"snapshot": {"configMap": "big-snapshot", "revision": write.revision}}}
    api.kubectl(
        "patch", "servicegraph", "big", "-n", "shop", "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    live = json.loads(ok(plugin(api, "export", "--graph", "shop/big", "-o", "json")))
    assert live == doc

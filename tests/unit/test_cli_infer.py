"""`servicegraph infer` and `analyze --infer-from`, through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.real_manifests import ONLINE_BOUTIQUE_EDGES, real_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples" / "online-boutique"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("servicegraph")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def test_json_lists_edges_with_their_evidence_and_the_unresolved() -> None:
    boutique = real_manifest("online-boutique/kubernetes-manifests.yaml")
    result = run("infer", str(boutique), "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {(e["source"], e["target"]) for e in report["edges"]} == ONLINE_BOUTIQUE_EDGES
    email = next(e for e in report["edges"] if e["target"] == "emailservice")
    assert email["evidence"] == [
        {
            "kind": "Deployment",
            "name": "checkoutservice",
            "container": "server",
            "field": "env[EMAIL_SERVICE_ADDR]",
            "value": "emailservice:5000",
            "namespace": "default",
        }
    ]
    assert report["unresolved"] == [
        {
            "source": "frontend",
            "reference": "shoppingassistantservice:80",
            "evidence": {
                "kind": "Deployment",
                "name": "frontend",
                "container": "server",
                "field": "env[SHOPPING_ASSISTANT_SERVICE_ADDR]",
                "value": "shoppingassistantservice:80",
                "namespace": "default",
            },
        }
    ]
    assert len(report["services"]) == 12


def test_yaml_drafts_declarations_that_pass_the_check(tmp_path: Path) -> None:
    boutique = real_manifest("online-boutique/kubernetes-manifests.yaml")
    result = run("infer", str(boutique), "-n", "shop", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    drafts = list(yaml.safe_load_all(result.stdout))
    assert len(drafts) == 12 and {d["metadata"]["namespace"] for d in drafts} == {"shop"}
    checkout = next(d for d in drafts if d["metadata"]["name"] == "checkoutservice")
    assert [d["service"] for d in checkout["spec"]["dependsOn"]] == [
        "cartservice",
        "currencyservice",
        "emailservice",
        "paymentservice",
        "productcatalogservice",
        "shippingservice",
    ]
    (tmp_path / "drafts.yaml").write_text(result.stdout)
    checked = run("check", str(tmp_path / "drafts.yaml"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""  # every target declared: no warning either


def test_the_table_and_a_multi_document_folder(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: web}\n"
        "  spec:\n    template:\n      metadata: {labels: {app: web}}\n"
        "      spec:\n        containers:\n        - name: web\n"
        "          env: [{name: API_URL, value: 'http://api:8080'}]\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: api}}\n"
    )
    result = run("infer", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "web" in result.stdout and "api" in result.stdout
    assert "Deployment/web web env[API_URL]" in result.stdout
    assert result.stdout.strip().endswith("2 services, 1 edges, 0 unresolved references")


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    for args in (
        ("infer", str(tmp_path / "missing.yaml")),
        ("infer", str(tmp_path / "broken.yaml")),
    ):
        result = run(*args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_analyze_reports_drift_against_what_the_manifests_imply(tmp_path: Path) -> None:
    boutique = real_manifest("online-boutique/kubernetes-manifests.yaml")
    same = run("analyze", str(EXAMPLES), "--infer-from", str(boutique), "-o", "json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["drift"] == {"undeclared": [], "unobserved": []}
    # checkoutservice stops naming emailservice; adservice starts naming currencyservice
    text = boutique.read_text().replace(
        '          - name: EMAIL_SERVICE_ADDR\n            value: "emailservice:5000"\n', ""
    )
    currency = '        - name: CURRENCY_ADDR\n          value: "currencyservice:7000"\n'
    text = text.replace('          value: "9555"\n', '          value: "9555"\n' + currency, 1)
    (tmp_path / "changed.yaml").write_text(text)
    drifted = run(
        "analyze", str(EXAMPLES), "--infer-from", str(tmp_path / "changed.yaml"), "-o", "json"
    )
    assert drifted.returncode == 0, drifted.stderr
    report = json.loads(drifted.stdout)
    assert report["drift"] == {
        "undeclared": [{"source": "adservice", "target": "currencyservice"}],
        "unobserved": [{"source": "checkoutservice", "target": "emailservice"}],
    }
    services = {service["name"]: service for service in report["services"]}
    assert services["adservice"]["drift"] == {"undeclared": ["currencyservice"], "unobserved": []}
    assert services["checkoutservice"]["drift"] == {
        "undeclared": [],
        "unobserved": ["emailservice"],
    }
    assert services["adservice"]["fanOut"] == 1 and services["currencyservice"]["fanIn"] == 3
    table = run("analyze", str(EXAMPLES), "--infer-from", str(tmp_path / "changed.yaml"))
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines() if line}
    assert rows["adservice"][-1] == "+currencyservice"
    assert rows["checkoutservice"][-1] == "-emailservice"

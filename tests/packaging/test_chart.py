"""The Helm chart: lint, render every mode, validate every rendered object against the
Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail), and keep the chart's
copies of the CRDs, its values schema and the values table of docs/installing.md honest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from servicegraph.crds import render_crds
from tests.packaging.conftest import (
    CHART,
    CI_VALUES,
    MODES,
    NAMESPACE,
    RELEASE,
    ROOT,
    HelmError,
    helm,
    objects,
    one,
    render,
)

# The chart's floor (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
# Kinds of CRDs kubernetes-validate has no schema for, checked against their own CRD schema.
CRD_SCHEMAS = {
    ("kopf.dev/v1", "ClusterKopfPeering"): ROOT / "crds" / "kopf.dev_clusterkopfpeerings.yaml",
    ("kopf.dev/v1", "KopfPeering"): ROOT / "crds" / "kopf.dev_kopfpeerings.yaml",
}
# The Prometheus Operator's kinds: their required shape, checked by hand.
MONITORING = {"ServiceMonitor", "PrometheusRule"}


def test_every_mode_is_covered() -> None:
    assert {"default", "namespaced", "cluster-ha", "install"} <= set(MODES)


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint(mode: str) -> None:
    out = helm("lint", "--strict", str(CHART), "--values", str(CI_VALUES / f"{mode}-values.yaml"))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("mode", MODES)
def test_rendered_objects_are_valid(mode: str) -> None:
    rendered = render(mode, "--include-crds")
    assert rendered
    for obj in rendered:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMAS:
            validate_against_crd(obj, CRD_SCHEMAS[key])
        elif obj["kind"] in MONITORING:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert obj["metadata"]["namespace"] == NAMESPACE
        else:
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    name = f"{obj['kind']} {obj['metadata'].get('name')}"
                    pytest.fail(f"{mode}: {name} is invalid for Kubernetes {version}: {error}")


def validate_against_crd(obj: dict[str, Any], crd_path: Path) -> None:
    crd = yaml.safe_load(crd_path.read_text())
    (version,) = crd["spec"]["versions"]
    assert obj["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.validate(body, version["schema"]["openAPIV3Schema"])
    assert ("namespace" in obj["metadata"]) == (crd["spec"]["scope"] == "Namespaced")


def test_the_validation_can_fail() -> None:
    """A typo in a rendered object is caught, or the test above proves nothing."""
    deployment = one(render("default"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy "] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_chart_crds_are_the_generated_ones() -> None:
    """charts/.../crds/ holds exactly what `servicegraph crds` writes (make crds keeps both)."""
    chart_crds = {p.name: p.read_text() for p in (CHART / "crds").iterdir()}
    assert chart_crds == render_crds()
    assert chart_crds == {p.name: p.read_text() for p in (ROOT / "crds").iterdir()}


def test_values_schema_refuses_mistakes() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    for path in CI_VALUES.glob("*-values.yaml"):
        jsonschema.validate(merge(defaults, yaml.safe_load(path.read_text()) or {}), schema)
    for mistake in (
        ["--set", "replicaCount=two"],
        ["--set", "watchNamespace[0]=shop"],  # a typo of watchNamespaces
        ["--set", "watchNamespaces[0]=team-*"],  # RBAC needs exact namespace names
        ["--set", "image.digest=latest"],
        ["--set", "operator.logFormat=xml"],
        ["--set", "metrics.prometheusRule.alerts.operatorDown.for=5 minutes"],
    ):
        with pytest.raises(HelmError, match="values don't meet the specifications of the schema"):
            render("default", *mistake)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicaCount=2", "--set", "peering.enabled=false"], "needs peering"),
        (["--set", "replicaCount=3", "--set", "operator.priority=7"], "freezes them all"),
        (["--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"],
         "needs metrics.enabled"),
    ],
)  # fmt: skip
def test_contradictions_fail_with_a_reason(values: list[str], message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render("default", *values)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of values.yaml; a map that is empty or free-form (labels, resources, probes,
    security contexts) counts as one key."""
    keys = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not FREE_FORM.match(dotted):
            keys.extend(leaves(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


FREE_FORM = re.compile(
    r"^(resources|podSecurityContext|securityContext|livenessProbe|readinessProbe"
    r"|metrics\.grafanaDashboard\.labels)$"
)


def test_installing_guide_documents_every_value() -> None:
    """The values table of docs/installing.md ("Values") has a row for every value, and no row
    for a value that is gone."""
    guide = (ROOT / "docs" / "installing.md").read_text()
    section = guide.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.\[\]]+)` \|", section, re.MULTILINE))
    values = set(leaves(yaml.safe_load((CHART / "values.yaml").read_text())))
    assert values - documented == set(), "values missing from the table in docs/installing.md"
    assert documented - values == set(), "rows in docs/installing.md of values that do not exist"


def test_dashboard_is_shipped_when_asked() -> None:
    rendered = render("cluster-ha")
    dashboards = [
        cm for cm in objects(rendered, "ConfigMap") if cm["metadata"]["name"].endswith("-dashboard")
    ]
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "SLO"}
    (body,) = dashboard["data"].values()
    assert json.loads(body)["uid"] == "servicegraph-operator"
    assert objects(render("default"), "ConfigMap") == []


def notes(*values: str) -> str:
    """What `helm install` prints after installing (NOTES.txt), without a cluster."""
    out = helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *values
    )
    return out.split("NOTES:\n", 1)[1]


def test_notes_warn_that_the_default_image_is_not_published() -> None:
    default = notes()
    assert default.startswith(
        "WARNING: image.repository is left at its default, "
        "ghcr.io/slo-engine/servicegraph-operator, which no\nregistry publishes"
    )
    own = notes("--set", "image.repository=registry.example.com/platform/servicegraph")
    assert "WARNING" not in own
    assert own.startswith("The servicegraph operator is installed as")


def spread(*values: str) -> list[dict[str, Any]]:
    deployment = one(render("default", *values), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("topologySpreadConstraints", []))


def test_several_replicas_are_spread_over_nodes_and_zones_by_default() -> None:
    assert spread() == []  # one replica: nothing to spread
    constraints = spread("--set", "replicaCount=3")
    assert [c["topologyKey"] for c in constraints] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    deployment = one(render("default", "--set", "replicaCount=3"), "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for constraint in constraints:
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"  # soft: never unschedulable
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]  # this rollout's pods only
    # The values' own placement wins; and spreading can be turned off.
    mine = '[{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}]'
    assert spread("--set", "replicaCount=3", "--set-json", f"topologySpreadConstraints={mine}") == [
        {"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}
    ]
    affinity = '{"nodeAffinity": {}}'
    assert spread("--set", "replicaCount=3", "--set-json", f"affinity={affinity}") == []
    assert spread("--set", "replicaCount=3", "--set", "spreadReplicas=false") == []

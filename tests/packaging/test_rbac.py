"""Least privilege, both ways: the chart grants exactly the rules below (a change to them must
change this test and the "RBAC" section of docs/installing.md), and the real operator, run
against an API server that logs every request, asks for nothing those rules do not grant."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_operator_support import graph, install, jsonpath, sdep
from tests.packaging.audit import AuditLog, allowed, audited_api, grants
from tests.packaging.conftest import NAMESPACE, RELEASE, objects, one, render
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess

ACCOUNT = (NAMESPACE, RELEASE)
G = "graph.slo-engine.io"
OPERATOR = {
    (G, "servicedependencies", "get"),
    (G, "servicedependencies", "list"),
    (G, "servicedependencies", "watch"),
    (G, "servicegraphs", "get"),
    (G, "servicegraphs", "list"),
    (G, "servicegraphs", "watch"),
    (G, "servicegraphs", "patch"),
    (G, "servicedependencies/status", "patch"),
    (G, "servicegraphs/status", "patch"),
    ("", "configmaps", "get"),
    ("", "configmaps", "list"),
    ("", "configmaps", "create"),
    ("", "configmaps", "update"),
    ("", "configmaps", "delete"),
    ("", "events", "create"),
    ("", "secrets", "get"),
}
CRD_DISCOVERY = {
    ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")
}
NAMESPACE_DISCOVERY = {("", "namespaces", v) for v in ("list", "watch")}


def peering(plural: str) -> set[tuple[str, str, str]]:
    return {("kopf.dev", plural, verb) for verb in ("get", "list", "watch", "patch")}


def rbac(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    return [o for o in rendered if o["kind"] in kinds]


def test_cluster_mode_grants() -> None:
    rendered = rbac(render("default"))
    # Cluster-wide, the operator reads Namespaces' labels: the cross-namespace grants.
    cluster = OPERATOR | CRD_DISCOVERY | NAMESPACE_DISCOVERY
    assert grants(rendered, ACCOUNT, None) == cluster
    assert objects(rendered, "Role") == []
    ha = rbac(render("cluster-ha"))
    assert grants(ha, ACCOUNT, None) == cluster | peering("clusterkopfpeerings")


def test_namespaced_mode_grants() -> None:
    rendered = rbac(render("namespaced"))
    # Cluster-wide: read-only discovery, nothing of the operator's own work.
    assert grants(rendered, ACCOUNT, None) == CRD_DISCOVERY | NAMESPACE_DISCOVERY
    for namespace in ("shop", "payments"):
        assert grants(rendered, ACCOUNT, namespace) == (
            OPERATOR | CRD_DISCOVERY | NAMESPACE_DISCOVERY | peering("kopfpeerings")
        )
    assert grants(rendered, ACCOUNT, "kube-system") == CRD_DISCOVERY | NAMESPACE_DISCOVERY
    (secrets,) = [
        rule
        for role in objects(rendered, "Role")[:1]
        for rule in role["rules"]
        if "secrets" in rule["resources"]
    ]
    assert secrets == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["prometheus-token", "prometheus-ca"],
    }


def test_namespaced_mode_can_do_without_any_cluster_scoped_object() -> None:
    rendered = render("namespaced-minimal")
    assert [o["kind"] for o in rendered if "namespace" not in o["metadata"]] == []
    assert grants(rbac(rendered), ACCOUNT, "team-a") == OPERATOR - {("", "secrets", "get")}


def test_no_wildcards_and_no_reading_every_secret() -> None:
    for mode in ("default", "namespaced", "cluster-ha"):
        for role in rbac(render(mode)):
            for rule in role.get("rules", []):
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], (mode, role["metadata"]["name"], rule)
                if "secrets" in rule["resources"]:
                    assert rule["verbs"] == ["get"], "list or watch would read every Secret"


def test_users_get_the_kinds_through_the_default_roles() -> None:
    roles = {r["metadata"]["name"]: r for r in objects(render("default"), "ClusterRole")}
    view, edit = roles[f"{RELEASE}-view"], roles[f"{RELEASE}-edit"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert {v for rule in view["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}


# -- what the operator really does ----------------------------------------------------------

# Granted, but not exercised by the scenario below, each for a reason.
NOT_EXERCISED = {
    # `get` of an object adds nothing to `list` of its kind; Kopf lists and watches.
    (G, "servicedependencies", "get"),
    (G, "servicegraphs", "get"),
    ("", "configmaps", "get"),
    ("kopf.dev", "clusterkopfpeerings", "get"),
    ("kopf.dev", "kopfpeerings", "get"),
    # Shards of a snapshot past 1 MiB gzipped, deleted when it shrinks: a big graph only.
    ("", "configmaps", "delete"),
}


def exercise(api: Any, log: AuditLog, tmp_path: Path, *args: str) -> None:
    """The operator's whole life: start, reconcile a graph with a cycle and an observed
    source behind a Secret, rewrite the snapshot, lose the graph, stop."""
    install(api, "shop")
    api.kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prometheus-token", "namespace": "shop"},
            "stringData": {"token": "t0ken"},
        },
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": RELEASE}},
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": RELEASE, "namespace": "shop"},
        },
        graph(
            "shop",
            observed={
                "prometheus": {
                    "url": "http://127.0.0.1:9",  # nobody there: the poll fails after the Secret
                    "bearerTokenSecretRef": {"name": "prometheus-token", "key": "token"},
                    "timeout": "1s",
                },
                "interval": "1m",
            },
        ),
        sdep("a", "b"),
        sdep("b", "a"),
    )
    process = OperatorProcess(api, tmp_path / "operator.log", *args).start()
    try:
        wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.cycles}") == "1", timeout=30)
        # The poller reads the Secret before it polls (and fails, slowly: no need to wait).
        wait_for(lambda: [r for r in log.by_operator() if r.resource == "secrets"], timeout=30)
        wait_for(lambda: api.kubectl.get("events", "-n", "shop")["items"])
        api.kubectl.apply(sdep("c", "a"))  # a new revision: the snapshot is replaced
        wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.services}") == "3", timeout=30)
        api.kubectl("delete", "servicegraph", "shop", "-n", "shop", "--wait=false")
        wait_for(lambda: not api.kubectl.get("servicegraphs", "-n", "shop")["items"], timeout=30)
        time.sleep(1.0)
    except Exception:
        print(process.log()[-6000:])
        raise
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("mode", "args", "peering_plural"),
    [
        ("cluster-ha", ("--no-standalone", "--peering", RELEASE), "clusterkopfpeerings"),
        (
            "namespaced",
            ("--no-standalone", "--peering", RELEASE, "--namespace", "shop"),
            "kopfpeerings",
        ),
    ],
    ids=["cluster", "namespaced"],
)
def test_the_operator_needs_nothing_more(
    mode: str, args: tuple[str, ...], peering_plural: str, tmp_path: Path
) -> None:
    rendered = rbac(
        render(
            mode, "--set", "watchNamespaces={shop}" if mode == "namespaced" else "replicaCount=3"
        )
    )
    with audited_api(tmp_path) as (api, log):
        exercise(api, log, tmp_path, *args)
        requests = log.by_operator()
    denied = sorted({str(r) for r in requests if not allowed(r, rendered, ACCOUNT)})
    assert denied == [], "the chart's RBAC would refuse these requests of the operator"

    used = {(r.group, r.resource_path, r.verb) for r in requests}
    namespace = "shop" if mode == "namespaced" else None
    granted = grants(rendered, ACCOUNT, namespace)
    unused = granted - used - NOT_EXERCISED
    assert unused == set(), "granted but never used: drop it or say why in NOT_EXERCISED"
    # Everything that looks like the operator's work was seen: the scenario is thorough.
    assert {(G, "servicegraphs/status", "patch"), ("", "secrets", "get")} <= used
    assert ("kopf.dev", peering_plural, "patch") in used


MANIFESTS = (
    {
        ("apps", plural, verb)
        for plural in ("deployments", "statefulsets", "daemonsets")
        for verb in ("list", "watch")
    }
    | {("batch", plural, verb) for plural in ("jobs", "cronjobs") for verb in ("list", "watch")}
    | {("", plural, verb) for plural in ("services", "configmaps") for verb in ("list", "watch")}
)


def test_the_kubernetes_source_adds_only_reading_its_kinds() -> None:
    on = rbac(render("default", "--set", "sources.kubernetes.enabled=true"))
    assert grants(on, ACCOUNT, None) == (OPERATOR | CRD_DISCOVERY | NAMESPACE_DISCOVERY | MANIFESTS)
    env = {
        e["name"]: e.get("value")
        for e in one(render("default", "--set", "sources.kubernetes.enabled=true"), "Deployment")[
            "spec"
        ]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SERVICEGRAPH_WATCH_MANIFESTS"] == "true"
    # Off, nothing of it but the snapshots' own ConfigMap listing.
    assert grants(rbac(render("default")), ACCOUNT, None) & MANIFESTS == {
        ("", "configmaps", "list")
    }


def test_the_operator_watching_manifests_needs_nothing_more(tmp_path: Path) -> None:
    rendered = rbac(render("default", "--set", "sources.kubernetes.enabled=true"))
    with audited_api(tmp_path) as (api, log):
        exercise(api, log, tmp_path, "--standalone", "--watch-manifests")
        requests = log.by_operator()
    denied = sorted({str(r) for r in requests if not allowed(r, rendered, ACCOUNT)})
    assert denied == [], "the chart's RBAC would refuse these requests of the operator"
    used = {(r.group, r.resource_path, r.verb) for r in requests}
    assert used >= MANIFESTS

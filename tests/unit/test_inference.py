"""The kubernetes source: what manifests imply, on real manifests written by others and on
each rule alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import yaml
from hypothesis import given, settings

from servicegraph.graph import Evidence
from servicegraph.inference import (
    ConfigMapEntry,
    Inference,
    ManifestEntry,
    WorkloadEntry,
    entry_of,
    infer,
)
from tests.support.real_manifests import ONLINE_BOUTIQUE_EDGES, real_manifest


def load(path: Path, namespace: str) -> list[ManifestEntry]:
    """The entries of a file applied with `kubectl apply -n NAMESPACE`."""
    entries = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            doc.setdefault("metadata", {}).setdefault("namespace", namespace)
            entry = entry_of(doc)
            if entry is not None:
                entries.append(entry)
    return entries


def pairs(inference: Inference) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in inference.edges}


def deployment(
    name: str,
    env: dict[str, Any] | None = None,
    *,
    labels: dict[str, str] | None = None,
    namespace: str = "shop",
    kind: str = "Deployment",
    **container: Any,
) -> dict[str, Any]:
    template = {
        "metadata": {"labels": labels or {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "env": [
                        {"name": k, "value": v} if isinstance(v, str) else {"name": k, **v}
                        for k, v in (env or {}).items()
                    ],
                    **container,
                }
            ]
        },
    }
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": template}}}
    return {
        "apiVersion": "batch/v1" if kind in ("Job", "CronJob") else "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def service(
    name: str, selector: dict[str, str] | None = None, namespace: str = "shop"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector if selector is not None else {"app": name}},
    }


def infer_objects(*objects: dict[str, Any]) -> Inference:
    return infer(e for e in map(entry_of, objects) if e is not None)


SERVED = [service(n) for n in ("db", "kafka", "cache", "api")] + [
    deployment(n) for n in ("db", "kafka", "cache", "api")
]


def calls_of(env: dict[str, Any] | None = None, **container: Any) -> set[tuple[str, str]]:
    return {
        pair
        for pair in pairs(infer_objects(deployment("app", env, **container), *SERVED))
        if pair[0] == "app"
    }


# --- real manifests ----------------------------------------------------------------------------


def test_online_boutique_gives_the_topology_analyzers_sixteen_edges() -> None:
    found = infer(load(real_manifest("online-boutique/kubernetes-manifests.yaml"), "default"))
    assert pairs(found) == ONLINE_BOUTIQUE_EDGES
    assert [(u.source, u.reference) for u in found.unresolved] == [
        ("frontend", "shoppingassistantservice:80")
    ]
    assert found.unresolved[0].evidence == Evidence(
        "Deployment",
        "frontend",
        "server",
        "env[SHOPPING_ASSISTANT_SERVICE_ADDR]",
        "shoppingassistantservice:80",
        "default",
    )


# The OpenTelemetry demo, applied as its file is written: `kubectl apply -n otel-demo`.
# Every application call the demo's env, init containers and arguments name, and why:
OTEL_DEMO_EDGES = {
    # Kafka in KAFKA_ADDR and the init containers' `nc -z kafka 9092`; Postgres through
    # DB_CONNECTION_STRING `Host=postgresql;...`
    ("accounting", "kafka"),
    ("accounting", "postgresql"),
    ("checkout", "kafka"),
    ("fraud-detection", "kafka"),
    # *_ADDR, as host:port or as a URL (EMAIL_ADDR, SHIPPING_ADDR, QUOTE_ADDR)
    ("cart", "valkey-cart"),
    ("checkout", "cart"),
    ("checkout", "currency"),
    ("checkout", "email"),
    ("checkout", "payment"),
    ("checkout", "product-catalog"),
    ("checkout", "shipping"),
    ("frontend", "ad"),
    ("frontend", "cart"),
    ("frontend", "checkout"),
    ("frontend", "currency"),
    ("frontend", "product-catalog"),
    ("frontend", "recommendation"),
    ("frontend", "shipping"),
    ("recommendation", "product-catalog"),
    ("shipping", "quote"),
    ("load-generator", "frontend-proxy"),  # LOCUST_HOST=http://frontend-proxy:8080
    # the feature flags: a bare name in FLAGD_HOST, an address variable
    *(
        (caller, "flagd")
        for caller in (
            "ad",
            "cart",
            "checkout",
            "email",
            "fraud-detection",
            "frontend",
            "frontend-proxy",
            "load-generator",
            "payment",
            "product-catalog",
            "recommendation",
        )
    ),
    # the proxy routes the demo's UIs: *_HOST names (the Jaeger UI is the jaeger workload)
    ("frontend-proxy", "frontend"),
    ("frontend-proxy", "grafana"),
    ("frontend-proxy", "image-provider"),
    ("frontend-proxy", "jaeger"),
    ("frontend-proxy", "load-generator"),
    # Jaeger's --prometheus.server-url: a real query of Prometheus, not telemetry export
    ("jaeger", "prometheus"),
}


def test_the_opentelemetry_demo_gives_its_application_calls_and_no_plumbing() -> None:
    entries = load(real_manifest("opentelemetry-demo/opentelemetry-demo.yaml"), "otel-demo")
    found = infer(entries)
    assert pairs(found) == OTEL_DEMO_EDGES
    # No telemetry plumbing: every workload's OTEL_EXPORTER_OTLP_ENDPOINT names the collector
    # (through $(OTEL_COLLECTOR_NAME)), flagd's FLAGD_OTEL_COLLECTOR_URI its OTLP port.
    assert not {pair for pair in pairs(found) if "opentelemetry-collector" in pair}
    assert all(source != target for source, target in pairs(found))
    # No edge to what has no Service: flagd-ui (FLAGD_UI_HOST) and opensearch's seed host.
    services = {e.name for e in entries if not isinstance(e, (WorkloadEntry, ConfigMapEntry))}
    names = {w.service_name: w for w in entries if isinstance(w, WorkloadEntry)}
    assert all(
        any(s in services for s in (target, names[target].name)) or target == "jaeger"
        for _, target in pairs(found)
    )
    assert [(u.source, u.reference) for u in found.unresolved] == [
        ("frontend-proxy", "flagd-ui"),
        ("opensearch", "opensearch-cluster-master-headless"),
    ]
    # METRICS_STORAGE_TYPE=prometheus is a word, not a call
    assert all(
        e.field != "env[METRICS_STORAGE_TYPE]" for edge in found.edges for e in edge.evidence
    )
    # each node is named as traces name it: the component label through OTEL_SERVICE_NAME
    assert "checkout" in found.services and "checkoutservice" not in found.services
    kafka = next(e for e in found.edges if (e.source, e.target) == ("checkout", "kafka"))
    assert kafka.attributes.communication_mode == "async"


# --- the rules, one at a time ------------------------------------------------------------------


def test_every_address_form_of_a_service() -> None:
    for value in (
        "db",
        "db:5432",
        "db.shop",
        "db.shop:5432",
        "db.shop.svc",
        "db.shop.svc.cluster.local:5432",
    ):
        assert calls_of({"DB_HOST": value}) == {("app", "db")}, value


def test_urls_and_connection_strings() -> None:
    for value in (
        "postgres://user:secret@db/orders",
        "http://api:8080/v1",
        "Host=db;Username=u;Password=p",
        "Server=db,1433;Database=x",
        "PLAINTEXT://kafka:9092",
        "redis://cache:6379/0",
        "kafka:9092,kafka.shop:9093",
    ):
        assert calls_of({"CONFIG": value}), value


def test_a_bare_name_counts_only_in_an_address_variable() -> None:
    assert calls_of({"FLAGD_HOST": "api"}) == {("app", "api")}
    assert calls_of({"CACHE_ADDR": "cache"}) == {("app", "cache")}
    assert calls_of({"METRICS_STORAGE_TYPE": "db"}) == set()
    assert calls_of({"MODE": "kafka"}) == set()


def test_variables_are_expanded_as_kubernetes_does() -> None:
    env = {"DB_NAME": "db", "DB_URL": "postgres://$(DB_NAME):5432/x", "ESCAPED": "$$(DB_NAME):1"}
    found = infer_objects(deployment("app", env), *SERVED)
    (edge,) = [e for e in found.edges if e.source == "app"]
    assert {e.value for e in edge.evidence} == {"postgres://db:5432/x"}


def test_commands_and_arguments() -> None:
    assert calls_of(command=["sh", "-c", "until nc -z -v -w30 kafka 9092; do sleep 2; done"]) == {
        ("app", "kafka")
    }
    assert calls_of(args=["--upstream=http://api:8080", "--port", "8080"]) == {("app", "api")}
    assert calls_of(args=["--cache-addr", "cache:6379"]) == {("app", "cache")}


def test_config_maps_named_by_env_from_and_key_refs() -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "shop"},
        "data": {"DB_HOST": "db", "KAFKA_URL": "kafka:9092"},
    }
    from_all = deployment("app", envFrom=[{"configMapRef": {"name": "settings"}}])
    found = infer_objects(from_all, config, *SERVED)
    assert {(e.source, e.target) for e in found.edges if e.source == "app"} == {
        ("app", "db"),
        ("app", "kafka"),
    }
    fields = {ev.field for e in found.edges for ev in e.evidence if e.source == "app"}
    assert fields == {"envFrom[settings][DB_HOST]", "envFrom[settings][KAFKA_URL]"}
    one_key = deployment(
        "app",
        {"CACHE_URL": {"valueFrom": {"configMapKeyRef": {"name": "settings", "key": "KAFKA_URL"}}}},
    )
    assert {(e.source, e.target) for e in infer_objects(one_key, config, *SERVED).edges} >= {
        ("app", "kafka")
    }


def test_what_is_never_a_dependency() -> None:
    assert (
        calls_of(
            {
                "LISTEN_ADDR": ":8080",
                "BIND_HOST": "0.0.0.0",
                "SELF_URL": "http://localhost:8080",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://api:4317",
                "TRACES_ENDPOINT": "http://api:4318/v1/traces",
                "PEER_ADDR": "10.0.0.7:8080",
            }
        )
        == set()
    )
    itself = infer_objects(deployment("api", {"SELF_ADDR": "api:8080"}), service("api"))
    assert pairs(itself) == set()


def test_a_name_without_a_service_is_unresolved_with_its_evidence() -> None:
    found = infer_objects(
        deployment("app", {"SEARCH_ADDR": "search:9200", "MODE": "fast"}), *SERVED
    )
    assert pairs(found) == set()
    (unresolved,) = found.unresolved
    assert (unresolved.source, unresolved.reference) == ("app", "search:9200")
    assert unresolved.evidence.field == "env[SEARCH_ADDR]"
    external = infer_objects(deployment("app", {"API_URL": "https://api.stripe.com/v1"}))
    assert external.unresolved == ()  # an external name is no Service of ours


def test_the_selector_names_the_callee_and_traces_name_the_caller() -> None:
    caller = deployment(
        "checkout-v2",
        {
            "OTEL_SERVICE_NAME": {
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/component']"}
                }
            },
            "PAYMENTS_ADDR": "payments-svc:8080",
        },
        labels={"app.kubernetes.io/component": "checkout", "app": "checkout-v2"},
    )
    callee = deployment(
        "payments-deploy",
        {"OTEL_RESOURCE_ATTRIBUTES": "team=x,service.name=payment"},
        labels={"tier": "pay"},
    )
    found = infer_objects(caller, callee, service("payments-svc", {"tier": "pay"}))
    assert pairs(found) == {("checkout", "payment")}
    named = [
        WorkloadEntry.from_object(
            deployment("w", labels={"app.kubernetes.io/name": "shop", "app": "x"})
        ),
        WorkloadEntry.from_object(deployment("w", labels={"app": "x"})),
        WorkloadEntry.from_object(deployment("w", labels={"other": "y"})),
    ]
    assert [w.service_name for w in named if w] == ["shop", "x", "w"]
    unselected = infer_objects(
        deployment("app", {"MAIL_HOST": "mail"}), service("mail", {"app": "nobody"})
    )
    assert pairs(unselected) == {("app", "mail")}  # no workload serves it: the Service's name


def test_other_namespaces_need_the_qualified_name() -> None:
    other = [service("db", namespace="data"), deployment("db", namespace="data")]
    assert pairs(infer_objects(deployment("app", {"DB_HOST": "db"}), *other)) == set()
    assert pairs(infer_objects(deployment("app", {"DB_HOST": "db.data"}), *other)) == {
        ("app", "db")
    }


def test_every_workload_kind_and_the_openshift_annotation() -> None:
    for kind in ("StatefulSet", "DaemonSet", "Job", "CronJob"):
        assert pairs(
            infer_objects(deployment("app", {"API_URL": "http://api"}, kind=kind), *SERVED)
        ) == {("app", "api")}, kind
    annotated = deployment("app")
    annotated["metadata"]["annotations"] = {
        "app.openshift.io/connects-to": json.dumps(
            ["api", {"apiVersion": "apps/v1", "kind": "Deployment", "name": "db"}, "ghost"]
        )
    }
    found = infer_objects(annotated, *SERVED)
    assert pairs(found) == {("app", "api"), ("app", "db")}
    assert [(u.source, u.reference) for u in found.unresolved] == [("app", "ghost")]
    annotated["metadata"]["annotations"] = {"app.openshift.io/connects-to": "api, cache"}
    assert pairs(infer_objects(annotated, *SERVED)) == {("app", "api"), ("app", "cache")}


def test_malformed_objects_are_skipped_never_raised() -> None:
    for body in (
        {},
        {"kind": "Deployment", "apiVersion": "apps/v1"},
        {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "x"}, "spec": []},
        {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "x"},
            "spec": {
                "template": {"spec": {"containers": [1, {"env": "no"}, {"env": [{"value": 3}]}]}}
            },
        },
        {"kind": "Service", "apiVersion": "v1", "metadata": {"name": 5}},
        {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"k": 1}},
        {"kind": "Deployment", "apiVersion": "extensions/v1beta1", "metadata": {"name": "old"}},
        {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"}},
    ):
        entry = entry_of(body)
        infer([entry] if entry is not None else [])


def test_an_entry_keeps_only_what_inference_reads() -> None:
    body = deployment("app", {"API_URL": "http://api"})
    changed = json.loads(json.dumps(body))
    changed["status"] = {"replicas": 3}
    changed["metadata"]["resourceVersion"] = "42"
    changed["spec"]["replicas"] = 5
    assert entry_of(body) == entry_of(changed)  # nothing wakes for a status or a scale
    big = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dash", "namespace": "shop"},
        "data": {"dashboard.json": "x" * 100_000, "HOST": "db"},
    }
    entry = entry_of(big)
    assert isinstance(entry, ConfigMapEntry) and entry.data == (("HOST", "db"),)


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(len(SERVED) + 3)))
def test_the_order_of_the_objects_never_matters(order: list[int]) -> None:
    objects = [
        *SERVED,
        deployment("app", {"DB_HOST": "db", "KAFKA": "kafka:9092", "X_URL": "http://ghost:1"}),
        deployment("web", {"API_URL": "http://api", "CACHE_ADDR": "cache"}),
        deployment("app2", {"DB_HOST": "db"}, labels={"app": "app"}),
    ]
    reference = infer_objects(*objects)
    assert infer_objects(*(objects[i] for i in order)) == reference

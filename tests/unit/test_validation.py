"""Admission rules, offline: the generated schema, list-map keys and CEL, applied to objects."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from servicegraph.api import SERVICE_DEPENDENCY, SERVICE_GRAPH
from servicegraph.cel_reference import rule_holds
from servicegraph.crds import object_schema
from servicegraph.validation import validate

API = "graph.slo-engine.io/v1alpha1"


def dependency(spec: dict[str, Any], name: str = "checkout") -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceDependency",
        "metadata": {"name": name},
        "spec": spec,
    }


def graph(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ServiceGraph", "metadata": {"name": "g"}, "spec": spec}


def messages(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate(obj)]


VALID = [
    dependency({}),
    dependency({"service": "checkout", "team": "commerce", "tier": "critical"}),
    dependency(
        {
            "dependsOn": [
                {
                    "service": "payment",
                    "communicationMode": "async",
                    "criticality": "degraded",
                    "protocol": "grpc",
                    "timeoutMs": 500,
                    "retry": {"maxRetries": 3, "backoffMs": 100, "backoffMultiplier": 2.0},
                },
                {"service": "cart.v2"},
            ]
        }
    ),
    # spec.service names the service, so depending on the object's name is fine
    dependency({"service": "checkout-v2", "dependsOn": [{"service": "checkout"}]}),
    graph({}),
    graph(
        {
            "selector": {"namespaces": ["*"], "matchLabels": {"team": "a"}},
            "observed": {
                "prometheus": {
                    "url": "https://mimir:8080/prometheus",
                    "headers": {"X-Scope-OrgID": "a"},
                },
                "interval": "5m",
                "window": "1h30m",
            },
            "staleAfter": "72h",
            "acknowledgedCycles": [["a", "b"]],
        }
    ),
]


@pytest.mark.parametrize("obj", VALID)
def test_valid_objects_pass(obj: dict[str, Any]) -> None:
    assert messages(obj) == []


INVALID = [
    (
        dependency({"dependsOn": [{"service": "checkout"}]}),
        "spec.dependsOn: Invalid value: a service cannot depend on itself",
    ),
    (
        dependency({"service": "pay", "dependsOn": [{"service": "pay"}]}),
        "spec.dependsOn: Invalid value: a service cannot depend on itself",
    ),
    (
        dependency({"dependsOn": [{"service": "a"}, {"service": "b"}, {"service": "a"}]}),
        'spec.dependsOn[2].service: Duplicate value: service="a" (already at index 0)',
    ),
    (
        dependency({"dependsOn": [{"service": "a", "communicationMode": "sometimes"}]}),
        'spec.dependsOn[0].communicationMode: Unsupported value: "sometimes": '
        'supported values: "sync", "async"',
    ),
    (dependency({"tier": "gold"}), 'spec.tier: Unsupported value: "gold"'),
    (
        dependency({"dependsOn": [{"service": "a", "timeoutMs": 0}]}),
        "spec.dependsOn[0].timeoutMs: Invalid value: 0: should be greater than or equal to 1",
    ),
    (
        dependency({"dependsOn": [{"service": "a", "retry": {"maxRetries": 1000}}]}),
        "spec.dependsOn[0].retry.maxRetries: Invalid value: 1000",
    ),
    (
        dependency({"dependsOn": [{"service": 'up{job="x"}'}]}),
        'spec.dependsOn[0].service: Invalid value: "up{job=\\"x\\"}"',
    ),
    (dependency({"dependson": []}), "spec.dependson: unknown field"),
    (dependency({}, name="Not_A_Name"), "metadata.name: Invalid value: 'Not_A_Name'"),
    (
        graph({"selector": {"namespaces": ["*", "shop"]}}),
        "spec.selector.namespaces: Invalid value: '*'",
    ),
    (graph({"staleAfter": "a week"}), 'spec.staleAfter: Invalid value: "a week"'),
    (
        graph({"observed": {"prometheus": {"url": "http://p"}, "window": "5m]) or vector(1"}}),
        "spec.observed.window: Invalid value",
    ),
    (
        graph({"observed": {"prometheus": {"url": "http://p"}, "metricPrefix": "x{a=1}"}}),
        "spec.observed.metricPrefix: Invalid value",
    ),
    (
        graph({"observed": {"prometheus": {"url": "file:///etc/passwd"}}}),
        "spec.observed.prometheus.url",
    ),
    (graph({"acknowledgedCycles": [["a"]]}), "spec.acknowledgedCycles[0]: Invalid value"),
]


@pytest.mark.parametrize(("obj", "expected"), INVALID)
def test_invalid_objects_name_the_field(obj: dict[str, Any], expected: str) -> None:
    found = messages(obj)
    assert any(m.startswith(expected) for m in found), found


def test_schema_alone_accepts_and_refuses_the_same_objects() -> None:
    """jsonschema on the CRD's openAPIV3Schema agrees with the schema part of admission."""
    schemas = {
        "ServiceDependency": object_schema(SERVICE_DEPENDENCY),
        "ServiceGraph": object_schema(SERVICE_GRAPH),
    }
    for obj in VALID:
        jsonschema.Draft4Validator(schemas[obj["kind"]]).validate(obj)
    bad_enum = dependency({"dependsOn": [{"service": "a", "criticality": "meh"}]})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schemas["ServiceDependency"]).validate(bad_enum)


@pytest.mark.parametrize(
    ("rule", "value", "holds"),
    [
        ("!self.exists(n, n == '*') || size(self) == 1", ["*"], True),
        ("!self.exists(n, n == '*') || size(self) == 1", ["a", "b"], True),
        ("!self.exists(n, n == '*') || size(self) == 1", ["*", "b"], False),
        # an evaluation error (no such field) counts as a refusal, as in the API server
        ("self.missing == 1", {}, False),
    ],
)
def test_cel_rules_evaluate(rule: str, value: Any, holds: bool) -> None:
    assert rule_holds(rule, value) is holds


def test_wrong_api_version_and_kind_are_named() -> None:
    assert messages({**dependency({}), "apiVersion": "graph.slo-engine.io/v2"})[0].startswith(
        "apiVersion"
    )
    assert messages({**dependency({}), "kind": "Nope"})[0].startswith("kind")

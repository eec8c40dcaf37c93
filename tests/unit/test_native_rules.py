"""What makes `check` fast, against the references it replaces: the CRDs' CEL rules in Python
(native_rules) against cel-python, the schema compiled by fastjsonschema against jsonschema,
and the shortcuts of validation against its full walks; same verdicts on generated objects,
and every CRD rule has a counterpart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from servicegraph.api import KINDS
from servicegraph.cel_reference import rule_holds
from servicegraph.crds import JsonSchema, object_schema
from servicegraph.native_rules import native
from servicegraph.validation import (
    MAX_DEPTH,
    _passes_schema,
    _passes_strictly,
    _readable,
    _schema,
    _schema_errors,
    _structure_errors,
    _unreadable,
    validate,
)
from tests.unit import test_field_fuzz as field_fuzz


def rules(schema: JsonSchema) -> Iterator[str]:
    yield from (rule["rule"] for rule in schema.get("x-kubernetes-validations", []))
    for sub in schema.get("properties", {}).values():
        yield from rules(sub)
    if "items" in schema:
        yield from rules(schema["items"])


ALL_RULES = sorted({rule for kind in KINDS for rule in rules(object_schema(kind))})


@pytest.mark.parametrize("rule", ALL_RULES)
def test_every_crd_rule_has_a_native_counterpart(rule: str) -> None:
    assert native(rule) is not None, f"no Python counterpart in native_rules for: {rule}"


def test_an_unknown_rule_has_none() -> None:
    assert native("self.size() > 2") is None


def applied(schema: JsonSchema, value: Any) -> Iterator[tuple[str, Any]]:
    """Each rule with the value it applies to, as validation walks the object."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield rule["rule"], value
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in schema.get("properties", {}):
                yield from applied(schema["properties"][key], sub)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from applied(schema["items"], item)


def agree(obj: dict[str, Any]) -> None:
    """Native and CEL verdicts are the same for every rule of an object the schema lets through
    (the API server runs CEL on no other; on others cel-python lets an error inside a macro
    escape `true || ...`, where the API server's CEL absorbs it)."""
    kind = next(k for k in KINDS if k.kind == obj["kind"])
    schema = object_schema(kind)
    assume(not list(_schema_errors(schema, obj)) and not _structure_errors(schema, obj, ""))
    checked = 0
    for rule, value in applied(object_schema(kind), obj):
        counterpart = native(rule)
        assert counterpart is not None
        assert counterpart(value) is rule_holds(rule, value), (rule, value)
        checked += 1
    assert checked


NAMES = st.sampled_from(["a", "b", "c"])
# Durations as users write them, with mistakes: an unknown unit, an overflowing number,
# junk between terms, nothing at all.
DURATIONS = st.one_of(
    st.builds(
        lambda terms: "".join(terms),
        st.lists(
            st.tuples(st.integers(0, 10**10), st.sampled_from(["ms", "s", "m", "h", "d", "w"])).map(
                lambda t: f"{t[0]}{t[1]}"
            ),
            min_size=1,
            max_size=3,
        ),
    ),
    st.sampled_from(["", "5", "5x", "1h-30m", "99999999999999999999h", "1y", "0s", "10s"]),
    st.text(alphabet="0123456789smhdwx-", max_size=12),
)


# Durations the schema lets through: terms of at most nine digits, at most 32 characters.
VALID_DURATIONS = (
    st.lists(
        st.tuples(st.integers(0, 10**9 - 1), st.sampled_from(["ms", "s", "m", "h", "d", "w"])).map(
            lambda t: f"{t[0]}{t[1]}"
        ),
        min_size=1,
        max_size=3,
    )
    .map("".join)
    .filter(lambda text: len(text) <= 32)
)


@st.composite
def service_dependencies(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["service"] = draw(NAMES)
    if draw(st.booleans()):
        spec["dependsOn"] = [{"service": name} for name in draw(st.lists(NAMES, unique=True))]
    obj: dict[str, Any] = {
        "apiVersion": "graph.slo-engine.io/v1alpha1",
        "kind": "ServiceDependency",
        "metadata": {"name": draw(NAMES), "namespace": "shop"},
    }
    if draw(st.booleans()) or spec:
        obj["spec"] = spec
    return obj


@st.composite
def sources(draw: st.DrawFn) -> dict[str, Any]:
    source: dict[str, Any] = {
        "name": draw(st.sampled_from(["otel", "mesh", "manual", "k8s"])),
        "type": draw(st.sampled_from(["otel", "istio", "linkerd", "kubernetes"])),
    }
    if draw(st.booleans()):
        source["prometheus"] = {"url": "http://prometheus:9090"}
        if draw(st.booleans()):
            source["prometheus"]["timeout"] = draw(VALID_DURATIONS)
    for field in ("interval", "window", "retention"):
        if draw(st.booleans()):
            source[field] = draw(VALID_DURATIONS)
    if draw(st.booleans()):
        source["metricPrefix"] = "traces"
    return source


@st.composite
def service_graphs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["staleAfter"] = draw(VALID_DURATIONS)
    if draw(st.booleans()):
        observed: dict[str, Any] = {"prometheus": {"url": "http://prometheus:9090"}}
        for field in ("interval", "window", "retention"):
            if draw(st.booleans()):
                observed[field] = draw(VALID_DURATIONS)
        spec["observed"] = observed
    if draw(st.booleans()):
        spec["sources"] = draw(st.lists(sources(), max_size=3))
    if draw(st.booleans()):
        spec["selector"] = {"namespaces": draw(st.lists(st.sampled_from(["*", "a", "b"])))}
    if draw(st.booleans()):
        spec["snapshot"] = {"minInterval": draw(VALID_DURATIONS)}
    return {
        "apiVersion": "graph.slo-engine.io/v1alpha1",
        "kind": "ServiceGraph",
        "metadata": {"name": "g", "namespace": "shop"},
        "spec": spec,
    }


@settings(max_examples=300, deadline=None)
@given(service_dependencies())
def test_service_dependency_rules_agree_with_cel(obj: dict[str, Any]) -> None:
    agree(obj)


@settings(max_examples=500, deadline=None)
@given(service_graphs())
def test_service_graph_rules_agree_with_cel(obj: dict[str, Any]) -> None:
    agree(obj)


@settings(max_examples=300, deadline=None)
@given(DURATIONS)
def test_duration_ranges_agree_with_cel_on_any_text(text: str) -> None:
    for rule in ALL_RULES:
        if rule.startswith("[self.findAll"):
            counterpart = native(rule)
            assert counterpart is not None
            assert counterpart(text) is rule_holds(rule, text), (rule, text)


def test_validate_gives_the_same_verdicts_as_before() -> None:
    looping = {
        "apiVersion": "graph.slo-engine.io/v1alpha1",
        "kind": "ServiceDependency",
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {"dependsOn": [{"service": "b"}, {"service": "a"}]},
    }
    assert [str(e) for e in validate(looping)] == [
        "spec.dependsOn: Invalid value: a service cannot depend on itself"
    ]


# --- the schema's verdict, compiled -------------------------------------------------------


# Objects of both kinds, valid or not, some with fields the schema does not know.
ANY_OBJECT = st.one_of(
    field_fuzz.objects(),
    service_dependencies(),
    service_graphs(),
    st.builds(
        lambda obj, junk: {**obj, "spec": {**obj.get("spec", {}), **junk}},
        service_dependencies(),
        st.dictionaries(
            st.sampled_from(["team", "tier", "service", "dependsOn", "extra"]),
            field_fuzz.anything | st.none() | st.booleans(),
            max_size=2,
        ),
    ),
)


@settings(max_examples=400, deadline=None)
@given(ANY_OBJECT)
def test_the_compiled_schema_gives_jsonschemas_verdict(obj: dict[str, Any]) -> None:
    """fastjsonschema decides; jsonschema, the reference, words the errors: they must agree."""
    assume(_unreadable(obj) is None)  # refused before the schema is asked
    kind = next(k for k in KINDS if k.kind == obj["kind"])
    with_errors = bool(list(_schema_errors(object_schema(kind), obj)))
    assert _passes_schema(kind.kind, obj) is not with_errors, obj


# --- validation's shortcuts against its full walks ----------------------------------------


@settings(max_examples=400, deadline=None)
@given(ANY_OBJECT)
def test_the_strict_verdict_is_the_schemas_and_the_unknown_fields(obj: dict[str, Any]) -> None:
    """One compiled verdict stands for the schema's and the structure walk's unknown fields;
    when it passes, the walk of the lists alone finds what the whole walk finds."""
    assume(_unreadable(obj) is None)
    schema = _schema(obj["kind"])
    structure = _structure_errors(schema, obj, "")
    unknown = [e for e in structure if e.message == "unknown field"]
    clean = not list(_schema_errors(schema, obj)) and not unknown
    assert _passes_strictly(obj["kind"], obj) is clean, (obj, unknown)
    if clean:
        assert _structure_errors(schema, obj, "", lists_only=True) == structure


def test_the_walk_of_the_lists_finds_duplicates() -> None:
    obj = {
        "apiVersion": "graph.slo-engine.io/v1alpha1",
        "kind": "ServiceDependency",
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {"dependsOn": [{"service": "b"}, {"service": "c"}, {"service": "b"}]},
    }
    assert _passes_strictly("ServiceDependency", obj)
    (duplicate,) = _structure_errors(_schema("ServiceDependency"), obj, "", lists_only=True)
    assert str(duplicate) == (
        'spec.dependsOn[2].service: Duplicate value: service="b" (already at index 0)'
    )


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**63 + 1),
    st.integers(min_value=-(2**63) - 1, max_value=-(2**63) + 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=12,
)


def nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = {"x": [value]} if depth % 2 else [value]
    return value


@settings(max_examples=500, deadline=None)
@given(VALUES, st.integers(0, MAX_DEPTH + 3))
def test_the_quick_readability_check_agrees_with_the_full_walk(value: Any, depth: int) -> None:
    """What YAML builds (dicts, lists, strings, numbers, booleans, null), nested near the limit."""
    deep = nested(value, depth)
    assert _readable(deep) is (_unreadable(deep) is None), deep

"""The Kubernetes CEL functions validation.py adds to cel-python behave as the API server's."""

from __future__ import annotations

from typing import Any

import pytest

from servicegraph.api import KINDS
from servicegraph.cel_reference import evaluate, program, rule_holds, rule_message
from servicegraph.crds import object_schema


def cel(expression: str, value: Any = None) -> Any:
    return evaluate(expression, value)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'1h30m'.find('[0-9]+')", "1"),
        ("'abc'.find('[0-9]+')", ""),
        ("'1h30m'.find('[a-z]+')", "h"),
        ("'1h30m'.findAll('[0-9]+[a-z]+')", ["1h", "30m"]),
        ("'1h30m15s'.findAll('[0-9]+[a-z]+', 2)", ["1h", "30m"]),
        ("'1h30m'.findAll('[0-9]+[a-z]+', -1)", ["1h", "30m"]),
        ("'1h30m'.findAll('[0-9]+[a-z]+', 0)", []),
        ("'abc'.findAll('[0-9]+')", []),
        # a group in the regex: findAll returns whole matches, not groups (Python's findall would)
        ("'1h30m'.findAll('([0-9]+)(h|m)')", ["1h", "30m"]),
        ("[1, 2, 3].sum()", 6),
        ("[1.5, 2.5].sum()", 4.0),
        ("[].sum()", 0),
        ("['1h', '2m'].map(t, int(t.find('[0-9]+'))).sum()", 3),
    ],
)
def test_functions(expression: str, expected: Any) -> None:
    assert cel(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "[9223372036854775807, 1].sum()",  # int64 overflow is an error, not a wrap-around
        "[1, 'a'].sum()",
        "'abc'.find('(')",  # not a regex
        "'abc'.findAll('[')",
    ],
)
def test_errors_make_a_rule_fail(expression: str) -> None:
    assert not rule_holds(f"{expression} == 0", None)


def _rules(node: dict[str, Any]) -> list[dict[str, str]]:
    found = list(node.get("x-kubernetes-validations", []))
    for sub in node.get("properties", {}).values():
        found += _rules(sub)
    if "items" in node:
        found += _rules(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        found += _rules(node["additionalProperties"])
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_rule_of_the_crds_compiles_offline(kind: Any) -> None:
    rules = _rules(object_schema(kind))
    assert rules
    for rule in rules:
        program(rule["rule"])
        if "messageExpression" in rule:
            program(rule["messageExpression"])


def test_message_expression_falls_back_to_the_message() -> None:
    rule = {"rule": "false", "message": "static", "messageExpression": "self.missing"}
    assert rule_message(rule, {}) == "static"
    assert rule_message({**rule, "messageExpression": "''"}, {}) == "static"
    assert rule_message({**rule, "messageExpression": "'dynamic ' + self"}, "x") == "dynamic x"

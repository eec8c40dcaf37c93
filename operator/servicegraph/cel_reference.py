"""The CRDs' CEL rules as cel-python evaluates them: the reference `native_rules` is checked
against, and what words a failed rule's `messageExpression`. With the Kubernetes CEL functions
our rules use and cel-python lacks."""

from __future__ import annotations

from functools import cache
from typing import Any

import celpy
import celpy.adapter
import celpy.celtypes
import celpy.evaluation
import re2  # type: ignore[import-untyped]  # RE2, as the API server's CEL (and cel-python) use

# Kubernetes CEL extensions our rules use that cel-python lacks, with the API server's meaning
# (k8s.io/apiserver/pkg/cel/library: regex.go, lists.go).


def _cel_find(text: Any, pattern: Any) -> Any:
    """`<string>.find(<regex>)`: the first match, or "" when there is none."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        return celpy.evaluation.CELEvalError("no such overload: find", TypeError, (text, pattern))
    try:
        match = re2.search(pattern, text)
    except re2.error as exc:
        return celpy.evaluation.CELEvalError("find: invalid regex", type(exc), exc.args)
    return celpy.celtypes.StringType(match.group(0) if match else "")


def _cel_find_all(text: Any, pattern: Any, limit: Any = None) -> Any:
    """`<string>.findAll(<regex>[, <int> limit])`: every non-overlapping match, left to right;
    a negative limit means all, 0 none."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        return celpy.evaluation.CELEvalError(
            "no such overload: findAll", TypeError, (text, pattern)
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        return celpy.evaluation.CELEvalError("no such overload: findAll", TypeError, (limit,))
    try:
        matches = [celpy.celtypes.StringType(m.group(0)) for m in re2.finditer(pattern, text)]
    except re2.error as exc:
        return celpy.evaluation.CELEvalError("findAll: invalid regex", type(exc), exc.args)
    if limit is not None and limit >= 0:
        matches = matches[:limit]
    return celpy.celtypes.ListType(matches)


def _cel_sum(items: Any) -> Any:
    """`<list<T>>.sum()` for int, uint, double and duration lists; an empty list is int 0.
    int64 overflow is an evaluation error, as in the API server."""
    if not isinstance(items, list):
        return celpy.evaluation.CELEvalError("no such overload: sum", TypeError, (items,))
    if not items:
        return celpy.celtypes.IntType(0)
    kinds = (
        celpy.celtypes.IntType,
        celpy.celtypes.UintType,
        celpy.celtypes.DoubleType,
        celpy.celtypes.DurationType,
    )
    kind = next((k for k in kinds if isinstance(items[0], k)), None)
    if kind is None or any(type(item) is not type(items[0]) for item in items):
        return celpy.evaluation.CELEvalError("no such overload: sum", TypeError, (items,))
    total = items[0]
    try:
        for item in items[1:]:
            total = total + item
    except (ValueError, OverflowError) as exc:
        return celpy.evaluation.CELEvalError("sum: overflow", type(exc), exc.args)
    return total


KUBERNETES_FUNCTIONS: dict[str, Any] = {
    "find": _cel_find,
    "findAll": _cel_find_all,
    "sum": _cel_sum,
}


@cache
def program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=KUBERNETES_FUNCTIONS)


def evaluate(expression: str, value: Any) -> Any:
    return program(expression).evaluate({"self": celpy.adapter.json_to_cel(value)})


def rule_holds(rule: str, value: Any) -> bool:
    try:
        return bool(evaluate(rule, value))
    # The API server refuses an object whose rule cannot evaluate; cel-python raises ValueError
    # for a value outside its 64-bit types.
    except (celpy.evaluation.CELEvalError, ValueError, OverflowError):
        return False


def rule_message(rule: dict[str, str], value: Any) -> str:
    """The rule's messageExpression when it yields a non-empty string, else its message, as the
    API server reports a failed rule."""
    fallback = rule.get("message", rule["rule"])
    expression = rule.get("messageExpression")
    if expression is None:
        return fallback
    try:
        message = evaluate(expression, value)
    except celpy.evaluation.CELEvalError:
        return fallback
    return str(message) if isinstance(message, str) and message.strip() else fallback

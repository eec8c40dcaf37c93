"""The CRDs' CEL rules in plain Python, for `servicegraph check` at pull-request speed.

cel-python interprets a rule by walking its parse tree: about 1.5 ms an object, 15 s of a
10,000-object check. Each rule the CRDs carry has a counterpart here, keyed by the rule's text,
that gives the same verdict on every object the schema lets through (CEL runs only on those);
cel-python stays the reference: tests/unit/test_native_rules.py checks both agree on
generated objects, and fails when a CRD rule has no counterpart.

An evaluation error makes a CEL rule fail, so a counterpart that meets what it cannot read
(a missing key, a wrong type) fails too, and so does int64 overflow, as in the API server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Final

from servicegraph.api import DEFAULT_STALE_AFTER, STALE_AFTER_CEL, UNIT_MILLIS, cel_millis

Rule = Callable[[Any], bool]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TERM = re.compile(r"[0-9]+[a-z]+")
_DIGITS = re.compile(r"[0-9]+")
_LETTERS = re.compile(r"[a-z]+")


class _Unreadable(Exception):
    """What makes a CEL rule's evaluation fail."""


def _int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Unreadable("int64 overflow")
    return value


def _millis(text: Any) -> int:
    """`cel_millis(text)` evaluated: the terms found, each number times its unit, summed."""
    if not isinstance(text, str):
        raise _Unreadable("no such overload")
    total = 0
    for term in _TERM.findall(text):
        number = _int64(int(_DIGITS.search(term).group(0)))  # type: ignore[union-attr]
        unit = UNIT_MILLIS.get(_LETTERS.search(term).group(0))  # type: ignore[union-attr]
        if unit is None:
            raise _Unreadable("no such key")
        total = _int64(total + _int64(number * unit))
    return total


def _field(value: Any, key: str) -> Any:
    if not isinstance(value, Mapping) or key not in value:
        raise _Unreadable(f"no such key: {key}")
    return value[key]


def _has(value: Any, key: str) -> bool:
    if not isinstance(value, Mapping):
        raise _Unreadable("has() of a non-object")
    return key in value


def _items(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Unreadable("no such overload")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unreadable("no such overload")
    return value


def _no_self_dependency(obj: Any) -> bool:
    if not _has(obj, "spec") or not _has(_field(obj, "spec"), "dependsOn"):
        return True
    spec = obj["spec"]
    dependencies = _items(spec["dependsOn"])
    if not dependencies:  # all() of nothing holds without looking at the name
        return True
    own = _field(spec, "service") if _has(spec, "service") else _field(obj.get("metadata"), "name")
    return all(_string(_field(d, "service")) != _string(own) for d in dependencies)


def _stale_after_millis(spec: Any) -> int:
    return _millis(_field(spec, "staleAfter") if _has(spec, "staleAfter") else DEFAULT_STALE_AFTER)


def _observed_retention_covers_stale_after(spec: Any) -> bool:
    if not (_has(spec, "observed") and _has(_field(spec, "observed"), "retention")):
        return True
    return _millis(spec["observed"]["retention"]) >= _stale_after_millis(spec)


def _source_retentions_cover_stale_after(spec: Any) -> bool:
    if not _has(spec, "sources"):
        return True
    sources = _items(spec["sources"])
    if all(not _has(source, "retention") for source in sources):
        return True
    stale_after = _stale_after_millis(spec)
    return all(
        not _has(source, "retention") or _millis(source["retention"]) >= stale_after
        for source in sources
    )


def _observed_is_the_otel_source(spec: Any) -> bool:
    if not _has(spec, "observed") or not _has(spec, "sources"):
        return True
    return all(_string(_field(s, "name")) != "otel" for s in _items(spec["sources"]))


def _one_kubernetes_source(spec: Any) -> bool:
    if not _has(spec, "sources"):
        return True
    kinds = [_string(_field(s, "type")) for s in _items(spec["sources"])]
    return kinds.count("kubernetes") <= 1


def _star_stands_alone(namespaces: Any) -> bool:
    names = [_string(n) for n in _items(namespaces)]
    return "*" not in names or len(names) == 1


def _prometheus_unless_kubernetes(source: Any) -> bool:
    kubernetes = _string(_field(source, "type")) == "kubernetes"
    return not _has(source, "prometheus") if kubernetes else _has(source, "prometheus")


def _metric_prefix_only_for_otel(source: Any) -> bool:
    return not _has(source, "metricPrefix") or _string(_field(source, "type")) == "otel"


def _not_manual(name: Any) -> bool:
    return _string(name) != "manual"


# The rules api.py writes, by their text.
RULES: Final[dict[str, Rule]] = {
    "!has(self.spec) || !has(self.spec.dependsOn) || self.spec.dependsOn.all(d, d.service != "
    "(has(self.spec.service) ? self.spec.service : self.metadata.name))": _no_self_dependency,
    "!(has(self.observed) && has(self.observed.retention)) || "
    f"{cel_millis('self.observed.retention')} >= "
    f"{cel_millis(STALE_AFTER_CEL)}": _observed_retention_covers_stale_after,
    "!has(self.sources) || self.sources.all(s, !has(s.retention) || "
    f"{cel_millis('s.retention')} >= {cel_millis(STALE_AFTER_CEL)})": (
        _source_retentions_cover_stale_after
    ),
    "!has(self.observed) || !has(self.sources) || self.sources.all(s, s.name != 'otel')": (
        _observed_is_the_otel_source
    ),
    "!has(self.sources) || self.sources.filter(s, s.type == 'kubernetes').size() <= 1": (
        _one_kubernetes_source
    ),
    "!self.exists(n, n == '*') || size(self) == 1": _star_stands_alone,
    "self.type == 'kubernetes' ? !has(self.prometheus) : has(self.prometheus)": (
        _prometheus_unless_kubernetes
    ),
    "!has(self.metricPrefix) || self.type == 'otel'": _metric_prefix_only_for_otel,
    "self != 'manual'": _not_manual,
}
# A DurationRange's rule: the duration's milliseconds within the bounds.
_DURATION_RANGE = re.compile(
    re.escape(f"[{cel_millis('self')}].all(ms, ms >= ") + r"(\d+) && ms <= (\d+)\)"
)


@cache
def native(rule: str) -> Rule | None:
    """The Python counterpart of CEL `rule`, or None when there is none."""
    found = RULES.get(rule)
    if found is not None:
        return _failing_when_unreadable(found)
    bounds = _DURATION_RANGE.fullmatch(rule)
    if bounds is not None:
        low, high = int(bounds[1]), int(bounds[2])
        return _failing_when_unreadable(lambda value: low <= _millis(value) <= high)
    return None


def _failing_when_unreadable(rule: Rule) -> Rule:
    def holds(value: Any) -> bool:
        try:
            return bool(rule(value))
        except _Unreadable:
            return False

    return holds

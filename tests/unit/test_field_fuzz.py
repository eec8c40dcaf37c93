"""Absurd values in every duration and number field: a clear answer, never a traceback."""

from __future__ import annotations

import contextlib
import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servicegraph.api import API_VERSION, ServiceDependency, ServiceGraph
from servicegraph.cli import main
from servicegraph.validation import validate

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# Compile the CEL rules before Hypothesis runs: the CEL library raises the recursion limit
# when it first does, and Hypothesis warns when that happens inside a test.
_WARM = {"prometheus": {"url": "http://p:9090"}}
assert (
    validate(
        {
            "apiVersion": API_VERSION,
            "kind": "ServiceGraph",
            "metadata": {"name": "a"},
            "spec": {"observed": _WARM, "snapshot": {"minInterval": "1m"}},
        }
    )
    == []
)
GRAPH_DURATIONS = [
    ("staleAfter",),
    ("observed", "interval"),
    ("observed", "window"),
    ("observed", "retention"),
    ("observed", "prometheus", "timeout"),
    ("snapshot", "minInterval"),
]
GRAPH_NUMBERS = [("observed", "minRequestRate")]
DEPENDENCY_NUMBERS = [
    ("timeoutMs",),
    ("retry", "maxRetries"),
    ("retry", "backoffMs"),
    ("retry", "backoffMultiplier"),
]

huge_int = st.integers(1, 10_000).map(lambda n: 10**n - 1)
numbers = (
    st.integers(-(2**70), 2**70)
    | huge_int
    | huge_int.map(lambda n: -n)
    | st.floats()  # NaN and infinities included
    | st.sampled_from([0, -1, 0.5, 1e9, 1e9 + 1, 3_600_000, 3_600_001, True, False, None])
)
durations = (
    st.from_regex(r"\A([0-9]{1,40}(ms|s|m|h|d|w)){1,3}\Z")
    | st.sampled_from(["0s", "0ms", "10s", "24h", "9999999999999999999999999999999w", "-1h"])
    | st.sampled_from(["1.5h", "1h ", "1H", "", "h", "8760h1ms", "30d", "31d", "1w", "5m1ms"])
    | st.integers(1, 10_000).map(lambda n: "9" * n + "s")
)
anything = numbers | durations | st.text(max_size=20) | st.lists(st.integers(), max_size=2)


def put(node: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    *parents, last = path
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        spec: dict[str, Any] = {"observed": {"prometheus": {"url": "http://p:9090"}}}
        fields = [(p, durations | anything) for p in GRAPH_DURATIONS]
        fields += [(p, numbers | anything) for p in GRAPH_NUMBERS]
        kind = "ServiceGraph"
    else:
        entry: dict[str, Any] = {"service": "b"}
        spec = {"dependsOn": [entry]}
        fields = [(("dependsOn", *p), numbers | anything) for p in DEPENDENCY_NUMBERS]
        kind = "ServiceDependency"
    for path, strategy in fields:
        if draw(st.booleans()):
            value = draw(strategy)
            if path[0] == "dependsOn":
                put(spec["dependsOn"][0], path[1:], value)
            else:
                put(spec, path, value)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "a"}, "spec": spec}


def dump(obj: Any) -> str:
    """YAML of `obj`, 10,000-digit numbers included (the reader keeps Python's 4300 limit)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return yaml.safe_dump(obj)
    finally:
        sys.set_int_max_str_digits(limit)


def check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path)])
    return code, out.getvalue(), err.getvalue()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(obj=objects())
@example(
    obj={
        "apiVersion": API_VERSION,
        "kind": "ServiceGraph",
        "metadata": {"name": "a"},
        "spec": {"staleAfter": "9999999999999999999999999999999w"},
    }
)
def test_every_duration_and_number_field(obj: dict[str, Any], tmp_path: Path) -> None:
    errors = validate(obj)
    assert all(len(str(e)) <= 600 for e in errors)
    model = ServiceGraph if obj["kind"] == "ServiceGraph" else ServiceDependency
    try:
        parsed: Any = model.model_validate(obj)
    except ValidationError:
        parsed = None
    if not errors:  # what admission lets through, the models read
        assert parsed is not None
    path = tmp_path / "m.yaml"
    path.write_text(dump(obj), encoding="utf-8")
    code, out, err = check(path)
    assert code in (0, 1, 2)
    assert "Traceback" not in err + out
    if code == 2:
        assert err and all(
            str(path) in line or line.startswith("error: ") for line in err.splitlines()
        )
    else:
        assert not errors
    if isinstance(parsed, ServiceGraph):
        parsed.spec.analyse([], now=NOW)
    elif isinstance(parsed, ServiceDependency):
        ServiceGraph(metadata={"name": "g"}).spec.analyse([parsed.declaration()], now=NOW)

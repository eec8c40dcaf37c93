"""Every duration and number of the API has a range, the same in the models and in the CRD."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servicegraph.api import (
    API_VERSION,
    DURATION_PATTERN,
    KINDS,
    MAX_CYCLE_SAMPLE_NAMES,
    MAX_DEPENDENCIES,
    ObservedSource,
    PrometheusEndpoint,
    ServiceGraph,
    ServiceGraphSpec,
    SnapshotSpec,
    cel_millis,
    duration_millis,
    parse_duration,
)
from servicegraph.cel_reference import evaluate
from servicegraph.cli import main
from servicegraph.crds import object_schema
from servicegraph.validation import validate
from tests.unit.test_crds import schema_nodes

PROMETHEUS = {"url": "http://prometheus:9090"}

# (path under spec, minimum, maximum, default)
BOUNDED = [
    ("observed.interval", "1s", "24h", "15m"),
    ("observed.window", "10s", "30d", "1h"),
    ("observed.retention", "10s", "8760h", None),
    ("observed.prometheus.timeout", "1s", "5m", "30s"),
    ("staleAfter", "10s", "8760h", "168h"),
    ("snapshot.minInterval", "0s", "24h", "5m"),
]


def graph(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceGraph",
        "metadata": {"name": "g"},
        "spec": spec,
    }


def spec_with(path: str, value: Any) -> dict[str, Any]:
    """A valid spec with `value` at `path`, whatever the retention rule says of it."""
    if path == "staleAfter":  # without observation, so that retention is no constraint
        return {"staleAfter": value}
    spec: dict[str, Any] = {"observed": {"prometheus": dict(PROMETHEUS)}}
    if path == "observed.retention":
        spec["staleAfter"] = "10s"
    node = spec
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return spec


def model_errors(spec: dict[str, Any]) -> list[str]:
    try:
        ServiceGraph.model_validate(graph(spec))
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in e['loc'])}: Invalid value: {e['msg']}" for e in exc.errors()
        ]
    return []


def millis_text(ms: int) -> str:
    return f"{ms}ms"


@pytest.mark.parametrize(("path", "low", "high", "default"), BOUNDED)
def test_bounds_are_the_same_in_the_models_and_the_crd(
    path: str, low: str, high: str, default: str | None
) -> None:
    for inside in (v for v in (low, high, default) if v is not None):
        assert validate(graph(spec_with(path, inside))) == []
        assert model_errors(spec_with(path, inside)) == []
    outside = [f"{high}1ms"]
    if duration_millis(low) > 0:
        outside.append(millis_text(duration_millis(low) - 1))
    for value in outside:
        message = f"spec.{path}: Invalid value: must be between {low} and {high}, not {value}"
        # Below its minimum, a retention is also shorter than any staleAfter: both are said.
        assert message in [str(e) for e in validate(graph(spec_with(path, value)))]
        assert message in model_errors(spec_with(path, value))


def test_defaults_and_seconds() -> None:
    spec = ServiceGraphSpec.model_validate({"observed": {"prometheus": PROMETHEUS}})
    assert spec.observed is not None
    assert spec.observed.interval_seconds == 900
    assert spec.observed.window_seconds == 3600
    assert spec.observed.retention is None
    assert spec.retention_seconds(spec.observed) == 30 * 86400
    longer = ServiceGraphSpec.model_validate(
        {"observed": {"prometheus": PROMETHEUS}, "staleAfter": "1000h"}
    )
    assert longer.observed is not None
    assert (
        longer.retention_seconds(longer.observed) == 1000 * 3600
    )  # a stale edge lives to be seen stale
    given = ServiceGraphSpec.model_validate(
        {"observed": {"prometheus": PROMETHEUS, "retention": "200h"}}
    )
    assert given.observed is not None
    assert given.retention_seconds(given.observed) == 200 * 3600
    assert spec.observed.prometheus.timeout_seconds == 30
    assert spec.stale_after_seconds == 7 * 86400
    assert spec.snapshot.min_interval == "5m"
    assert spec.snapshot.min_interval_seconds == 300
    assert SnapshotSpec(min_interval="0s").min_interval_seconds == 0
    assert (
        ObservedSource(
            prometheus=PrometheusEndpoint(url=PROMETHEUS["url"]), interval="1h30m"
        ).interval_seconds
        == 5400
    )


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\A([0-9]{1,9}(ms|s|m|h|d|w)){1,3}\Z"))
def test_the_cel_rule_counts_as_python_does(text: str) -> None:
    assert evaluate(cel_millis("self"), text) == duration_millis(text)
    assert parse_duration(text) == duration_millis(text) / 1000


def _rule(path: str) -> dict[str, str]:
    node = object_schema(KINDS[1])["properties"]["spec"]
    for part in path.split("."):
        node = node["properties"][part]
    (rule,) = node["x-kubernetes-validations"]
    return rule


def test_interval_0s_is_refused() -> None:
    spec = spec_with("observed.interval", "0s")
    message = "must be between 1s and 24h, not 0s"
    with pytest.raises(ValidationError, match=message):
        ServiceGraphSpec.model_validate(spec)
    rule = _rule("observed.interval")
    assert not evaluate(rule["rule"], "0s")
    assert evaluate(rule["messageExpression"], "0s") == message
    assert evaluate(rule["rule"], "1s")
    assert [str(e) for e in validate(graph(spec))] == [
        f"spec.observed.interval: Invalid value: {message}"
    ]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


HUGE = "9999999999999999999999999999999w"


@pytest.mark.parametrize("command", ["check", "analyze"])
@pytest.mark.parametrize("path", ["staleAfter", "observed.interval", "snapshot.minInterval"])
def test_a_huge_duration_is_refused_by_the_cli(command: str, path: str, tmp_path: Path) -> None:
    manifest = tmp_path / "graph.yaml"
    manifest.write_text(yaml.safe_dump(graph(spec_with(path, HUGE))), encoding="utf-8")
    code, out, err = run(command, str(manifest))
    assert not out
    assert code == 2
    assert "Traceback" not in err and "Error" not in err
    assert f"spec.{path}" in err and len(err.splitlines()) == 1


def test_parse_duration_never_overflows() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("9" * 400 + "w")
    with pytest.raises(ValueError):
        parse_duration("9" * 5000 + "w")  # more digits than Python converts
    assert parse_duration(HUGE) > 0  # existing callers still get a number for a valid grammar


def test_the_pattern_bounds_the_digits() -> None:
    assert validate(graph({"staleAfter": "999999999m"}))  # nine digits: pattern ok, range not
    errors = [str(e) for e in validate(graph({"staleAfter": "1000000000m"}))]
    assert errors == [
        f"spec.staleAfter: Invalid value: \"1000000000m\": should match '{DURATION_PATTERN}'"
    ]


@pytest.mark.parametrize(
    ("retention", "stale_after", "ok"),
    [
        ("1h", None, False),  # default staleAfter 168h
        ("168h", None, True),
        ("100h", "101h", False),
        ("6060m", "101h", True),  # equal
        (None, "721h", True),  # no retention given: it follows staleAfter
        (None, "8760h", True),
    ],
)
def test_retention_is_at_least_stale_after(
    retention: str | None, stale_after: str | None, ok: bool
) -> None:
    spec: dict[str, Any] = {"observed": {"prometheus": PROMETHEUS}}
    if retention is not None:
        spec["observed"]["retention"] = retention
    if stale_after is not None:
        spec["staleAfter"] = stale_after
    shown = (retention, stale_after or "168h")
    message = (
        f"spec: Invalid value: observed.retention ({shown[0]}) must be at least "
        f"staleAfter ({shown[1]})"
    )
    expected = [] if ok else [message]
    assert [str(e) for e in validate(graph(spec))] == expected
    assert model_errors(spec) == expected


def test_retention_rule_does_not_apply_without_observation() -> None:
    assert validate(graph({"staleAfter": "8760h"})) == []
    assert model_errors({"staleAfter": "8760h"}) == []


@pytest.mark.parametrize(
    "rate", [float("nan"), float("inf"), -float("inf"), -1, 1e9 + 1, "1", True, [1]]
)
def test_min_request_rate_is_a_finite_number_in_range(rate: Any) -> None:
    assert model_errors(spec_with("observed.minRequestRate", rate))


def test_min_request_rate_bounds() -> None:
    for rate in (0, 0.5, 1e9):
        assert validate(graph(spec_with("observed.minRequestRate", rate))) == []
        assert model_errors(spec_with("observed.minRequestRate", rate)) == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_number_of_a_spec_has_a_range(kind: Any) -> None:
    for path, node in schema_nodes(object_schema(kind)["properties"]["spec"], "spec"):
        if node["type"] in ("integer", "number"):
            assert "minimum" in node and "maximum" in node, path
            assert math.isfinite(node["minimum"]) and math.isfinite(node["maximum"]), path


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_string_and_list_of_a_status_is_bounded(kind: Any) -> None:
    for path, node in schema_nodes(object_schema(kind)["properties"]["status"], "status"):
        if node["type"] == "string" and "enum" not in node:
            assert "maxLength" in node, path
        if node["type"] == "array":
            assert "maxItems" in node, path
        if node["type"] == "integer":
            assert node.get("minimum") == 0, path


def test_status_bounds() -> None:
    status = object_schema(KINDS[1])["properties"]["status"]["properties"]
    samples = status["cycleSamples"]
    assert samples["maxItems"] == 10
    assert samples["items"]["maxItems"] == MAX_CYCLE_SAMPLE_NAMES + 1
    assert status["observed"]["properties"]["lastError"]["maxLength"] == 1024
    conditions = status["conditions"]["items"]["properties"]
    assert conditions["message"]["maxLength"] == 32768
    dependency = object_schema(KINDS[0])["properties"]["status"]["properties"]
    for field in ("resolvedTargets", "unresolvedTargets"):
        assert dependency[field]["maxItems"] == MAX_DEPENDENCIES

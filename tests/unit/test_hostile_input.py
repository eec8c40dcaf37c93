"""Bad input, tried: random and hostile manifests through `servicegraph check` (and the
loading and admission checks under it), and hostile service names through the engine and the
snapshot. Each gets a clear error or a correct result: never a traceback, never a hang.

A hang fails too: every example runs under a Hypothesis deadline, the named cases under an
explicit time limit.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from servicegraph import export, pictures, snapshot, snapshot_configmaps
from servicegraph.api import API_VERSION, MAX_DEPENDENCIES, ServiceDependency, ServiceGraph
from servicegraph.cli import main
from servicegraph.graph import (
    Direction,
    EdgeAttributes,
    Observation,
    ServiceDeclaration,
    SourceKind,
)
from servicegraph.graph import analyse as analyse_graph
from servicegraph.manifest_yaml import MAX_FILE_BYTES, ManifestError
from servicegraph.manifests import load
from servicegraph.validation import FieldError, validate
from tests.unit.test_export import parse_dot, parse_mermaid

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# Compile the CEL rules now: the CEL library raises the recursion limit when it first does,
# and Hypothesis warns when that happens inside a test.
for _warm_up in (
    {"kind": "ServiceDependency", "spec": {"dependsOn": [{"service": "b"}]}},
    {"kind": "ServiceGraph", "spec": {"selector": {"namespaces": ["shop"]}}},
):
    assert validate({"apiVersion": API_VERSION, "metadata": {"name": "a"}, **_warm_up}) == []

# Names a careless template, a confused user or an attacker might put where a name goes.
HOSTILE = [
    'up{job="x"}',
    "sum(rate(x[5m]))",
    'traces_service_graph_request_total{client="a"} or vector(1)',
    "$.items[*]",
    "{.status}",
    "{{ .Values.name }}",
    "../../etc/passwd",
    "a\x00b",
    "\x1b[31mred",
    "ünïcødé-ßervice",
    "服务",
    "😀",
    "e\u0301",  # combining accent
    "\u202eevil",  # right-to-left override
    "\ufeffbom",
    "",
    " ",
    "-leading",
    "trailing-",
    "a" * 254,
    "x" * 10_000,
    "null",
    "true",
    "1e3",
    "0x1F",
    "~",
    "*",
    "&anchor",
    "!!python/object:os.system",
    "<script>alert(1)</script>",
    "'; DROP TABLE services; --",
    "line\nbreak",
]
long_text = st.builds(lambda c, n: c * n, st.characters(), st.integers(200, 5000))
hostile_text = st.sampled_from(HOSTILE) | st.text(max_size=30) | long_text
valid_name = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_text
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(HOSTILE), children, max_size=5)
    ),
    max_leaves=12,
)


@st.composite
def dependencies(draw: st.DrawFn) -> Any:
    """Mostly dependsOn entries, each field mostly right, sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    entry: dict[str, Any] = {"service": draw(valid_name | hostile_text)}
    optional = {
        "communicationMode": st.sampled_from(["sync", "async"]) | hostile_text,
        "criticality": st.sampled_from(["hard", "soft", "degraded"]) | json_values,
        "protocol": st.sampled_from(["http", "grpc", "kafka"]) | hostile_text,
        "timeoutMs": st.integers(-(2**64), 2**64) | json_values,
        "retry": st.fixed_dictionaries(
            {},
            optional={
                "maxRetries": st.integers(-5, 200),
                "backoffMs": st.integers(-5, 10**9),
                "backoffMultiplier": st.floats(allow_nan=False, allow_infinity=False),
            },
        )
        | json_values,
        draw(st.sampled_from(HOSTILE)): json_values,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            entry[key] = draw(strategy)
    return entry


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    """One document: sometimes not even an object, mostly one of our kinds with hostile parts."""
    roll = draw(st.integers(0, 19))
    if roll == 0:
        return draw(json_values)
    kind = draw(st.sampled_from(["ServiceDependency", "ServiceGraph"]))
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION if roll > 2 else draw(hostile_text),
        "kind": kind if roll > 1 else draw(json_values),
        "metadata": {
            "name": draw(valid_name) if roll > 4 else draw(json_values),
            "namespace": draw(st.sampled_from(["shop", "other"]) | hostile_text),
        },
    }
    if draw(st.booleans()):
        doc["metadata"]["labels"] = draw(
            st.dictionaries(valid_name | hostile_text, valid_name | json_values, max_size=3)
        )
    if kind == "ServiceDependency":
        spec: dict[str, Any] = {"dependsOn": draw(st.lists(dependencies(), max_size=5))}
        for key, strategy in {
            "service": valid_name | hostile_text,
            "team": valid_name | json_values,
            "tier": st.sampled_from(["critical", "high", "medium", "low"]) | hostile_text,
        }.items():
            if draw(st.booleans()):
                spec[key] = draw(strategy)
    else:
        spec = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "selector": st.fixed_dictionaries(
                        {},
                        optional={
                            "namespaces": st.lists(valid_name | hostile_text, max_size=3),
                            "matchLabels": st.dictionaries(valid_name, valid_name | json_values),
                        },
                    )
                    | json_values,
                    "staleAfter": st.sampled_from(["1h", "168h", "15m"]) | hostile_text,
                    "acknowledgedCycles": st.lists(
                        st.lists(valid_name | hostile_text, max_size=3), max_size=3
                    )
                    | json_values,
                    "observed": st.fixed_dictionaries(
                        {"prometheus": st.fixed_dictionaries({"url": hostile_text})},
                        optional={"metricPrefix": hostile_text, "interval": hostile_text},
                    )
                    | json_values,
                },
            )
        )
    if draw(st.integers(0, 5)) == 0:
        spec[draw(st.sampled_from(HOSTILE))] = draw(json_values)
    doc["spec"] = spec
    return doc


# Objects at the edge of valid: the values admission and the models must agree on.
edge_names = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,12}[A-Za-z0-9])?\Z") | st.sampled_from(
    ["a" * 253, "a" * 254, "a\n", "a.b_c-D", "-a", "a-", "a b", "ü", "a" * 63, "a" * 64]
)
edge_numbers = (
    st.integers(-2, 3_600_002)
    | st.sampled_from([0, 1, 100, 101, 3_600_000, 3_600_001, 2**63, True, False, 1.0, 2.5, "1"])
    | st.floats(-1, 12, allow_nan=False)
)
edge_durations = st.sampled_from(["1h", "15m", "30s", "1h30m", "0s", "1x", "h", "", "1h\n", "7d"])


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ServiceDependency", "ServiceGraph"]))
    metadata: dict[str, Any] = {"name": draw(valid_name | edge_names)}
    for key, strategy in {
        "namespace": st.sampled_from(["shop", "a" * 63, "a" * 64, "Shop", "shop\n"]),
        "labels": st.dictionaries(
            st.sampled_from(["app", "example.com/team", "a/b/c", "", "-x", "x" * 64]),
            st.sampled_from(["", "v1", "x" * 63, "x" * 64, "a b", "a\n"]) | edge_numbers,
            max_size=2,
        ),
        "annotations": st.dictionaries(st.sampled_from(["note", "x/y"]), valid_name | edge_numbers),
        "generation": st.integers(0, 3) | st.sampled_from([True, "1", 1.0, None]),
    }.items():
        if draw(st.booleans()):
            metadata[key] = draw(strategy)

    def maybe(fields: dict[str, Any]) -> dict[str, Any]:
        return {k: draw(v) for k, v in fields.items() if draw(st.integers(0, 2)) == 0}

    if kind == "ServiceDependency":
        targets = st.sampled_from(["b", "c", "d"]) | edge_names
        retry = st.fixed_dictionaries(
            {},
            optional={
                "maxRetries": edge_numbers,
                "backoffMs": edge_numbers,
                "backoffMultiplier": edge_numbers,
            },
        )
        entry = st.builds(
            lambda service, rest: {"service": service, **rest},
            targets,
            st.fixed_dictionaries(
                {},
                optional={
                    "communicationMode": st.sampled_from(["sync", "async", "Sync"]),
                    "criticality": st.sampled_from(["hard", "soft", "degraded", "none"]),
                    "protocol": st.sampled_from(["http", "grpc", "sql", "HTTP", None]),
                    "timeoutMs": edge_numbers,
                    "retry": retry,
                },
            ),
        )
        spec = maybe(
            {
                "service": edge_names,
                "team": valid_name | edge_names,
                "tier": st.sampled_from(["critical", "low", "none", None]),
                "dependsOn": st.lists(entry, max_size=4),
            }
        )
    else:
        prometheus = st.fixed_dictionaries(
            {"url": st.sampled_from(["http://p:9090", "https://p", "ftp://p", "http://a b"])},
            optional={
                "headers": st.dictionaries(st.sampled_from(["X-Scope-OrgID", "a b"]), valid_name),
                "timeout": edge_durations,
                "bearerTokenSecretRef": st.fixed_dictionaries(
                    {"name": valid_name | edge_names, "key": edge_names}
                ),
            },
        )
        spec = maybe(
            {
                "selector": st.fixed_dictionaries(
                    {},
                    optional={
                        "namespaces": st.lists(
                            st.sampled_from(["*", "shop", "Shop", "a" * 64, ""]), max_size=3
                        ),
                        "matchLabels": st.dictionaries(valid_name, valid_name | edge_names),
                    },
                ),
                "observed": st.fixed_dictionaries(
                    {"prometheus": prometheus},
                    optional={
                        "metricPrefix": st.sampled_from(["traces_service_graph", "a:b", "1a", ""]),
                        "interval": edge_durations,
                        "window": edge_durations,
                        "minRequestRate": edge_numbers,
                    },
                ),
                "staleAfter": edge_durations,
                "acknowledgedCycles": st.lists(st.lists(edge_names, max_size=3), max_size=2),
                "snapshot": st.fixed_dictionaries({}, optional={"configMapName": edge_names}),
            }
        )
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


# -- running the CLI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


def check(*paths: Path) -> Outcome:
    """`servicegraph check PATHS` in this process. Any exception is a crash: it propagates."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", *(str(p) for p in paths)])
    return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - started)


def assert_clear(outcome: Outcome, path: Path) -> None:
    """Exit 0/1 with a summary, or 2 with errors in short lines that name the file (or, for
    the whole set, say "error:")."""
    assert outcome.code in (0, 1, 2), outcome
    assert "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    if outcome.code == 0:
        assert outcome.stdout.startswith("ok: "), outcome
    elif outcome.code == 1:
        assert lines[-1].endswith("unacknowledged cycle(s)"), outcome
    else:
        assert lines, "an invalid input says why"
        for line in lines:
            assert str(path) in line or line.startswith("error: "), line
            assert len(line) <= 600 + len(str(path)), f"{len(line)} characters: {line[:200]}"


def dump(docs: list[Any], style: str) -> str:
    if style == "json":
        return "\n".join(json.dumps(d, ensure_ascii=False) for d in docs[:1])  # one per file
    if style == "list":
        return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": docs})
    return yaml.safe_dump_all(docs, allow_unicode=style == "unicode")


@settings(
    max_examples=150,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    docs=st.lists(near_valid() | manifests(), min_size=1, max_size=3),
    style=st.sampled_from(["yaml", "unicode", "json", "list"]),
)
def test_random_manifests_get_a_clear_answer(docs: list[Any], style: str, tmp_path: Path) -> None:
    path = tmp_path / ("m.json" if style == "json" else "m.yaml")
    path.write_text(dump(docs, style), encoding="utf-8")
    outcome = check(path)
    event(f"exit {outcome.code}")
    assert_clear(outcome, path)
    # What check accepted is what the models read, and its summary is the engine's answer.
    if outcome.code in (0, 1):
        loaded = load([path])
        assert not loaded.problems
        if not loaded.graphs:  # no ServiceGraph: every object is in the one graph
            declarations = [d.declaration() for d in loaded.dependencies]
            summary = analyse_graph(declarations, now=NOW).summary()
            assert outcome.code == (1 if summary.cycles else 0)
            if outcome.code == 0:
                assert outcome.stdout == (
                    f"ok: {summary.services} services, {summary.edges} edges, "
                    "no unacknowledged cycle\n"
                )


@settings(max_examples=400, deadline=2000)
@given(obj=near_valid() | manifests())
def test_admission_and_the_models_agree(obj: Any) -> None:
    """validate() never raises and its messages stay short; an object it lets through is one
    the models read (else the operator would get objects it cannot use)."""
    errors = validate(obj)
    assert all(isinstance(e, FieldError) and len(str(e)) <= 600 for e in errors), errors
    if not errors:
        model = ServiceDependency if obj["kind"] == "ServiceDependency" else ServiceGraph
        model.model_validate(obj)


@settings(max_examples=300, deadline=2000)
@given(value=json_values)
def test_anything_at_all_is_refused_cleanly(value: Any) -> None:
    errors = validate(value)
    assert errors and all(len(str(e)) <= 600 for e in errors)


# -- named hostile inputs ------------------------------------------------------------------------

MANIFEST_HEAD = f"apiVersion: {API_VERSION}\nkind: ServiceDependency\nmetadata:\n  name: a\n"


def billion_laughs(levels: int = 9, where: str = "spec") -> str:
    """Nine nested aliases of nine: 9**9 (387 million) strings once copied out."""
    lines = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    anchors = "\n".join(lines)
    if where == "labels":
        return f"{MANIFEST_HEAD}  x-bomb:\n{anchors}\n  labels: *l{levels - 1}\nspec: {{}}\n"
    return f"{MANIFEST_HEAD}spec:\n  bomb:\n{anchors}\n  dependsOn: *l{levels - 1}\n"


def deep(depth: int, flow: bool) -> str:
    if flow:
        return f"{MANIFEST_HEAD}spec:\n  dependsOn: {'[' * depth}{']' * depth}\n"
    nested = "".join("  " * i + "- \n" for i in range(depth))
    return f"{MANIFEST_HEAD}spec:\n  dependsOn:\n" + nested


def many_targets(count: int, valid: bool = True) -> str:
    targets = [{"service": f"t{i}" if valid else f"bad name {i}"} for i in range(count)]
    doc = {"apiVersion": API_VERSION, "kind": "ServiceDependency", "metadata": {"name": "a"}}
    return json.dumps({**doc, "spec": {"dependsOn": targets}})


def many_objects(count: int) -> str:
    return yaml.safe_dump_all(
        {
            "apiVersion": API_VERSION,
            "kind": "ServiceDependency",
            "metadata": {"name": f"s{i}", "namespace": "shop"},
            "spec": {"dependsOn": [{"service": f"s{(i + 1) % count}"}]},
        }
        for i in range(count)
    )


@dataclass(frozen=True)
class Case:
    name: str
    content: Callable[[], str | bytes]
    code: int  # the exit code expected
    says: str  # in what it prints
    limit: float = 10.0  # seconds: long enough for a loaded CI machine, far short of a hang
    suffix: str = ".yaml"


CASES = [
    Case("billion laughs in spec", billion_laughs, 2, "excessive aliasing"),
    Case("billion laughs in labels", lambda: billion_laughs(where="labels"), 2, "aliasing"),
    Case("aliases under the limit", lambda: billion_laughs(levels=5), 2, "of type object"),
    Case(
        "alias that contains itself",
        lambda: MANIFEST_HEAD + "spec:\n  dependsOn: &a [*a]\n",
        2,
        "contains it",
    ),
    Case(
        "merge key from itself",
        lambda: MANIFEST_HEAD + "spec: &s\n  <<: *s\n",
        2,
        "invalid YAML",
    ),
    Case("flow nesting 100,000 deep", lambda: deep(100_000, flow=True), 2, "invalid YAML"),
    Case("flow nesting 990 deep", lambda: deep(990, flow=True), 2, "more than 64 levels deep"),
    Case("block nesting 1,500 deep", lambda: deep(1_500, flow=False), 2, "invalid YAML"),
    Case(
        "10,000 dependsOn entries",
        lambda: many_targets(10_000),
        2,
        f"may not have more than {MAX_DEPENDENCIES} items",
        suffix=".json",
    ),
    Case(
        "10,000 invalid dependsOn entries",
        lambda: many_targets(10_000, valid=False),
        2,
        f"may not have more than {MAX_DEPENDENCIES} items",
        suffix=".json",
    ),
    Case(f"{MAX_DEPENDENCIES} dependsOn entries", lambda: many_targets(512), 0, "ok: 513 services"),
    Case("2,000 objects in one file", lambda: many_objects(2_000), 1, "cycle", limit=15),
    Case(
        "a 10 MB name",
        lambda: MANIFEST_HEAD.replace("name: a", "name: " + "a" * 10_000_000) + "spec: {}\n",
        2,
        "metadata.name: Invalid value",
    ),
    Case(
        "a 10 MB service name",
        lambda: MANIFEST_HEAD + "spec:\n  dependsOn: [{service: " + "b" * 10_000_000 + "}]\n",
        2,
        "Too long",
    ),
    Case("NUL bytes", lambda: MANIFEST_HEAD + "spec: {team: a\x00b}\n", 2, "invalid YAML"),
    Case("invalid UTF-8", lambda: MANIFEST_HEAD.encode() + b"spec: {team: \xff\xfe}\n", 2, "UTF"),
    Case("UTF-16", lambda: (MANIFEST_HEAD + "spec: {}\n").encode("utf-16"), 2, "cannot read"),
    Case("binary noise", lambda: bytes(range(256)) * 100, 2, "cannot read"),
    Case("empty file", lambda: "", 2, "no ServiceDependency"),
    Case(
        "only comments and separators",
        lambda: "# hi\n---\n---\n...\n",
        2,
        "no ServiceDependency",
    ),
    Case("a List whose items are not a list", lambda: "kind: List\nitems: 5\n", 2, "must be a"),
    Case("a scalar document", lambda: "just a string\n", 2, "no ServiceDependency"),
    Case(
        "a date where a string goes", lambda: MANIFEST_HEAD + "spec: {team: 2024-01-01}\n", 0, "ok"
    ),
    Case(
        "a label that is a number",
        lambda: MANIFEST_HEAD.replace("name: a", "name: a\n  labels: {v: 1}") + "spec: {}\n",
        2,
        "metadata.labels",
    ),
    Case(
        "NaN",
        lambda: MANIFEST_HEAD + "spec: {dependsOn: [{service: b, timeoutMs: .nan}]}\n",
        2,
        "JSON",
    ),
    Case(
        "infinity",
        lambda: (
            MANIFEST_HEAD + "spec: {dependsOn: [{service: b, retry: {backoffMultiplier: .inf}}]}\n"
        ),
        2,
        "JSON",
    ),
    Case(
        "an integer of 5,000 digits",
        lambda: (
            MANIFEST_HEAD + "spec: {dependsOn: [{service: b, timeoutMs: " + "9" * 5000 + "}]}\n"
        ),
        2,
        "invalid integer",
    ),
    Case(
        "!!binary", lambda: MANIFEST_HEAD + "spec: {team: !!binary aGVsbG8=}\n", 2, "no JSON form"
    ),
    Case("!!set", lambda: MANIFEST_HEAD + "spec: {team: !!set {a, b}}\n", 2, "no JSON form"),
    Case(
        "!!python/object",
        lambda: MANIFEST_HEAD + "spec: !!python/object:os.system {}\n",
        2,
        "invalid YAML",
    ),
    Case("an unhashable key", lambda: MANIFEST_HEAD + "spec: {? [a, b] : c}\n", 2, "invalid YAML"),
    Case(
        "a list where a service goes, twice",
        lambda: MANIFEST_HEAD + "spec: {dependsOn: [{service: [a]}, {service: [a]}]}\n",
        2,
        "Duplicate value",
    ),
    Case(
        "kind is a list",
        lambda: f"apiVersion: {API_VERSION}\nkind: [ServiceDependency]\n",
        2,
        "kind: Unsupported value",
    ),
    Case(
        "PromQL and JSONPath as names",
        lambda: (
            MANIFEST_HEAD
            + "spec:\n  service: 'up{job=\"x\"}'\n"
            + '  dependsOn: [{service: "$.items[*]"}, {service: "{.status}"},\n'
            + "    {service: ../../etc}]\n"
        ),
        2,
        "should match",
    ),
    Case(
        "deep JSON",
        lambda: '{"a": ' * 50_000 + "1" + "}" * 50_000,
        2,
        "invalid YAML",
        suffix=".json",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file(case: Case, tmp_path: Path) -> None:
    path = tmp_path / f"manifest{case.suffix}"
    content = case.content()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    outcome = check(path)
    print(f"{case.name}: exit {outcome.code} in {outcome.seconds:.2f}s")
    assert outcome.seconds < case.limit, f"{outcome.seconds:.1f}s"
    assert_clear(outcome, path)
    assert outcome.code == case.code, outcome
    assert case.says in outcome.stdout + outcome.stderr, outcome


def test_a_50_mb_file_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as out:  # a real 50 MB file of manifests, not a sparse one
        chunk = many_objects(100).encode()
        while out.tell() < 50 * 2**20:
            out.write(chunk)
    outcome = check(path)
    assert outcome.seconds < 1, outcome.seconds
    assert outcome.code == 2
    assert outcome.stderr.strip() == (
        f"error: {path}: 50.0 MiB is more than the {MAX_FILE_BYTES // 2**20} MiB a manifest "
        "file may hold; split it into several files"
    )


def test_a_folder_with_a_symlink_loop_and_a_fifo(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "a.yaml").write_text(MANIFEST_HEAD + "spec: {}\n")
    os.mkfifo(folder / "pipe.yaml")
    started = time.monotonic()
    outcome = check(folder)
    assert time.monotonic() - started < 5
    assert outcome.code == 0 and outcome.stdout.startswith("ok: 1 services"), outcome


def test_load_refuses_what_check_refuses(tmp_path: Path) -> None:
    """The library call under `check` raises ManifestError (never anything else)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    with pytest.raises(ManifestError, match="excessive aliasing"):
        load([path])


# -- hostile names through the engine and the snapshot -----------------------------------------

# What traces may report as service.name: anything but control characters (the Prometheus
# poller drops those), any length the poller keeps.
observed_names = st.sampled_from([h for h in HOSTILE if h.isprintable() and h]) | st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60
)


@settings(max_examples=120, deadline=3000)
@given(
    edges=st.lists(st.tuples(observed_names, observed_names), min_size=1, max_size=25),
    declared=st.lists(st.tuples(valid_name, valid_name), max_size=10),
    ages=st.lists(st.integers(0, 400), min_size=1, max_size=25),
)
@example(edges=[(h, "a") for h in HOSTILE if h.isprintable() and h], declared=[], ages=[1])
def test_hostile_observed_names_survive_the_engine_and_the_snapshot(
    edges: list[tuple[str, str]], declared: list[tuple[str, str]], ages: list[int]
) -> None:
    observations = [
        Observation(s, t, SourceKind.OTEL, NOW - timedelta(hours=ages[i % len(ages)]))
        for i, (s, t) in enumerate(edges)
        if s != t
    ]
    declarations = [
        ServiceDeclaration(s, "shop", s, depends_on=((t, EdgeAttributes()),))
        for s, t in dict(declared).items()
        if s != t
    ]
    graph = analyse_graph(declarations, observations, now=NOW, observing=True)
    doc = snapshot.to_document(graph, graph_ref=("shop", "g"))
    expected = {(o.source, o.target) for o in observations} | {
        (d.name, t) for d in declarations for t, _ in d.depends_on
    }
    assert {(e["source"], e["target"]) for e in doc["edges"]} == expected

    # The snapshot: every encoding round-trips, byte for byte, and so does the graph.
    for threshold in (10**9, 0):
        write = snapshot_configmaps.encode(
            doc, "g-graph", gzip_threshold=threshold, max_part_bytes=2000
        )
        by_name = {p.name: p.manifest() for p in write.in_write_order}
        assert snapshot_configmaps.decode(by_name["g-graph"], by_name.get) == doc
    again = snapshot.graph_from_document(doc)
    assert snapshot.to_document(again, graph_ref=("shop", "g")) == doc
    assert snapshot.observations_from_document(doc) or not observations

    # Queries find every hostile name; pictures keep each name one node.
    for name in list(graph.nodes)[:5]:
        sub = again.query(name, Direction.BOTH, 2, True)
        assert name in sub.nodes
    nodes, drawn = parse_dot(pictures.to_dot(doc))
    assert set(nodes) == set(graph.nodes) and set(drawn) == expected
    mermaid_nodes, mermaid_edges = parse_mermaid(pictures.to_mermaid(doc))
    assert len(mermaid_nodes) == len(graph.nodes) and len(mermaid_edges) == len(expected)
    json.loads(export.to_json(doc))


def test_query_by_a_hostile_name_from_the_cli(tmp_path: Path) -> None:
    names = [h for h in HOSTILE if h.isprintable() and h and not h.startswith("-")]
    graph = analyse_graph(
        [], [Observation(n, "sink", SourceKind.OTEL, NOW) for n in names], now=NOW
    )
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot.to_document(graph)))
    for name in names:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["query", name, "--snapshot", str(path), "-o", "json"]) == 0
        result = json.loads(out.getvalue())
        assert result["nodes"] == sorted([name, "sink"]) and result["service"] == name
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["query", "nobody{}", "--snapshot", str(path)]) == 2
    assert err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()


@pytest.mark.parametrize("output", ["json", "node-link", "dot", "mermaid", "graphml", "gexf"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: doc["nodes"][0].update(name="\ud800"), "surrogates not allowed"),
        (lambda doc: doc["nodes"][0].pop("team"), "malformed snapshot document: KeyError('team')"),
        (lambda doc: doc.update(graph=["shop"]), "malformed snapshot document: graph is ['shop']"),
        (lambda doc: doc["nodes"][1]["slo"].update(syncNext="a"), "syncNext goes round"),
        (lambda doc: doc["nodes"][0]["slo"].update(syncNext="zz"), "KeyError('zz')"),
    ],
    ids=["lone-surrogate", "missing-field", "bad-graph-ref", "sync-loop", "sync-to-nowhere"],
)
def test_exports_of_a_broken_snapshot_file_say_what_is_wrong(
    tmp_path: Path, output: str, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    graph = analyse_graph([], [Observation("a", "b", SourceKind.OTEL, NOW)], now=NOW)
    doc = snapshot.to_document(graph, graph_ref=("shop", "g"))
    change(doc)
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(doc), encoding="ascii")  # JSON escapes keep the surrogate
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["export", "--snapshot", str(path), "-o", output]) == 2
    assert err.getvalue().startswith("error: ") and message in err.getvalue()

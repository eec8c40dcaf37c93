"""The Argo CD health checks (Lua) of both kinds, run by Debian's lua5.1 as Argo CD runs them:
`obj` is a global holding the object, the script returns `{status, message}`.

Each kind's health_test.yaml is read as Argo CD's own resource_customizations tests are; then the
checks meet statuses made by the operator's own status functions, so the Lua and the operator
cannot drift apart unnoticed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from servicegraph.api import ServiceGraphSpec
from servicegraph.graph import EdgeAttributes, ServiceDeclaration
from servicegraph.status import SnapshotInfo, dependency_status, graph_status
from tests.support.binaries import needs_binary

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
# Argo CD's own layout (health.lua, health_test.yaml, testdata/), kept with the tests since its
# test data holds objects of our kinds, which `servicegraph check manifests/` would read.
CUSTOMIZATIONS = Path(__file__).parent / "resource_customizations" / "graph.slo-engine.io"
KINDS = ("ServiceGraph", "ServiceDependency")
LUA = shutil.which("lua5.1") or "/usr/bin/lua5.1"
needs_lua = needs_binary(
    "lua5.1", "Argo CD runs the health checks in Lua 5.1 (apt-get install lua5.1)"
)
# Loads the check as Argo CD does (a chunk returning a table) and prints status, then message.
RUNNER = """
local check = assert(loadfile(arg[1]))
local hs = check()
assert(type(hs) == "table", "the check returned " .. type(hs) .. ", not a table")
io.write(tostring(hs.status), "\\n", tostring(hs.message or ""))
"""


def lua_literal(value: Any) -> str:
    """`value` (from YAML or JSON) as a Lua expression, converted as Argo CD converts objects."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\{ord(c)}" for c in value)
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(f"no Lua form for {type(value).__name__}")


def health(kind: str, obj: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    """(status, message) of `obj` by the kind's health.lua."""
    script = tmp_path / "run.lua"
    script.write_text(f"obj = {lua_literal(obj)}\n{RUNNER}", encoding="utf-8")
    proc = subprocess.run(
        [LUA, str(script), str(CUSTOMIZATIONS / kind / "health.lua")],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    status, _, message = proc.stdout.partition("\n")
    return status, message


def cases() -> list[Any]:
    found = []
    for kind in KINDS:
        spec = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())
        for test in spec["tests"]:
            found.append(pytest.param(kind, test, id=f"{kind}/{Path(test['inputPath']).stem}"))
    return found


@needs_lua
def test_lua51_is_there() -> None:
    assert Path(LUA).exists(), "lua5.1 is missing: run scripts/install-system-packages.sh"


@needs_lua
@pytest.mark.parametrize(("kind", "test"), cases())
def test_health_test_yaml(kind: str, test: dict[str, Any], tmp_path: Path) -> None:
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / test["inputPath"]).read_text())
    assert obj["kind"] == kind
    expected = test["healthStatus"]
    assert health(kind, obj, tmp_path) == (expected["status"], expected["message"])


def test_layout_is_argo_cds() -> None:
    """Every kind has health.lua, health_test.yaml and testdata/, and every testdata file is
    used (Argo CD's own layout, so the folder can be contributed upstream as it is)."""
    for kind in KINDS:
        folder = CUSTOMIZATIONS / kind
        assert (folder / "health.lua").is_file()
        tests = yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
        used = {test["inputPath"] for test in tests}
        present = {f"testdata/{p.name}" for p in (folder / "testdata").iterdir()}
        assert used == present
        statuses = {test["healthStatus"]["status"] for test in tests}
        assert statuses == {"Healthy", "Progressing", "Degraded"}


def test_argocd_cm_holds_the_same_lua() -> None:
    cm = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    for kind in KINDS:
        key = f"resource.customizations.health.graph.slo-engine.io_{kind}"
        assert cm["data"][key] == (CUSTOMIZATIONS / kind / "health.lua").read_text()


# -- against what the operator writes ----------------------------------------------------------

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def graph_object(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "graph.slo-engine.io/v1alpha1",
        "kind": "ServiceGraph",
        "metadata": {"name": "shop", "namespace": "shop", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def analysed(*declarations: ServiceDeclaration, acknowledged: list[list[str]] | None = None) -> Any:
    spec = ServiceGraphSpec.model_validate({"acknowledgedCycles": acknowledged or []})
    return spec.analyse(list(declarations), [], now=NOW)


def declare(name: str, *targets: str, object_name: str | None = None) -> ServiceDeclaration:
    return ServiceDeclaration(
        name=name,
        depends_on=tuple((t, EdgeAttributes()) for t in targets),
        namespace="shop",
        object_name=object_name or name,
    )


SNAPSHOT = SnapshotInfo("shop-graph", "0123456789abcdef", 100, 0, "2026-11-20T09:00:00Z")


@needs_lua
def test_operator_status_of_a_reconciled_graph_is_healthy(tmp_path: Path) -> None:
    graph = analysed(declare("a", "b"), declare("b"))
    status = graph_status(
        graph,
        generation=4,
        previous={},
        snapshot=SNAPSHOT,
        problem=None,
        observed=None,
        now=NOW,
    )
    assert health("ServiceGraph", graph_object(4, status), tmp_path) == (
        "Healthy",
        "2 services, 1 edges",
    )
    # The user edits the spec: until the operator catches up, Argo CD waits.
    assert health("ServiceGraph", graph_object(5, status), tmp_path)[0] == "Progressing"


@needs_lua
def test_operator_status_with_a_cycle_stays_healthy_and_says_so(tmp_path: Path) -> None:
    graph = analysed(declare("a", "b"), declare("b", "a"))
    status = graph_status(
        graph,
        generation=1,
        previous={},
        snapshot=SNAPSHOT,
        problem=None,
        observed=None,
        now=NOW,
    )
    state, message = health("ServiceGraph", graph_object(1, status), tmp_path)
    assert state == "Healthy"
    assert "1 unacknowledged cycle(s): a -> b -> a" in message


@needs_lua
def test_operator_status_without_a_snapshot_is_degraded(tmp_path: Path) -> None:
    error = "create configmap shop/shop-graph: 403 forbidden"
    status = graph_status(
        analysed(declare("a")),
        generation=1,
        previous={},
        snapshot=None,
        problem=("SnapshotWriteFailed", error),
        observed=None,
        now=NOW,
    )
    assert health("ServiceGraph", graph_object(1, status), tmp_path) == ("Degraded", error)


@needs_lua
def test_operator_status_of_dependencies(tmp_path: Path) -> None:
    winner, loser = declare("a", "b"), declare("a", "c", object_name="a-copy")
    graph = analysed(winner, loser)
    obj: dict[str, Any] = {
        "kind": "ServiceDependency",
        "metadata": {"name": "a", "namespace": "shop", "generation": 2},
    }
    obj["status"] = dependency_status(
        winner, graph, graph_ref="shop/shop", generation=2, previous={}, now=NOW
    )
    assert health("ServiceDependency", obj, tmp_path) == (
        "Healthy",
        "part of ServiceGraph shop/shop; not declared by anyone: b",
    )
    obj["metadata"]["name"] = "a-copy"
    obj["status"] = dependency_status(
        loser, graph, graph_ref="shop/shop", generation=2, previous={}, now=NOW
    )
    state, message = health("ServiceDependency", obj, tmp_path)
    assert (state, message) == ("Degraded", obj["status"]["conditions"][0]["message"])
    assert "already declared by shop/a" in message

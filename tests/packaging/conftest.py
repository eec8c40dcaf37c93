"""The chart rendered by the real helm (`scripts/tools.py` installs it into .tools/bin).

render("namespaced")                      # helm template with ci/namespaced-values.yaml
render("default", "--set", "a=b")         # extra helm arguments
objects(render(...), "Deployment")        # the rendered objects of one kind
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHART = ROOT / "charts" / "servicegraph-operator"
CI_VALUES = CHART / "ci"
# Every values file under ci/ is one mode CI lints, renders and validates.
MODES = sorted(p.name.removesuffix("-values.yaml") for p in CI_VALUES.glob("*-values.yaml"))
RELEASE = "servicegraph-operator"
NAMESPACE = "servicegraph-system"


def helm_binary() -> str:
    pinned = ROOT / ".tools" / "bin" / "helm"
    if pinned.exists():
        return str(pinned)
    found = shutil.which("helm")
    if found is None:
        pytest.fail("no helm: run `python scripts/tools.py` (make setup does) to install it")
    return found


def helm(*args: str) -> str:
    proc = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


class HelmError(AssertionError):
    pass


@functools.cache
def _render(mode: str, extra: tuple[str, ...]) -> str:
    return helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--values",
        str(CI_VALUES / f"{mode}-values.yaml"),
        *extra,
    )


def render(mode: str, *extra: str) -> list[dict[str, Any]]:
    """The objects `helm template` renders for ci/<mode>-values.yaml (fresh copies)."""
    return [doc for doc in yaml.safe_load_all(_render(mode, tuple(extra))) if doc]


def objects(rendered: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered if doc["kind"] == kind]


def one(rendered: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = objects(rendered, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]

"""The GitHub Actions workflows (.github/workflows/): each passes actionlint and validates against
the workflow schema that check-jsonschema vendors, and says what the project needs, which no
linter knows: the test job runs the command the README and .ci/run give, every `make TARGET` is a
Makefile target, the kind job creates the cluster tests/kind/conftest.py pins, every action is
pinned, every job has a timeout and the token reads only.

actionlint runs here as its WebAssembly build under Node.js (scripts/actionlint.cjs; scripts/
tools.py installs it). That build is actionlint 1.6.22: it checks syntax, expressions,
contexts, job dependencies and runner labels (GitHub's up to ubuntu-22.04; a newer label needs
a newer build) but runs no shellcheck. The workflow's own actionlint job runs the current
release, with shellcheck on every run step.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kind.conftest import KIND_NODE_IMAGE, KIND_VERSION
from tests.kind.test_real_cluster import MIN_KUBERNETES_MINOR
from tests.packaging.conftest import ROOT
from tests.support.binaries import require_binary

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
ACTIONLINT = ROOT / "scripts" / "actionlint.cjs"
# An action at a major (or more precise) version tag, or at a commit.
PINNED = re.compile(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})")
NODE_IMAGE = re.compile(r"kindest/node:v1\.(\d+)\.\d+(@sha256:[0-9a-f]{64})?")


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    node = require_binary("node", "runs actionlint on the workflows")
    return subprocess.run(
        [node, str(ACTIONLINT), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_there_is_a_workflow() -> None:
    assert WORKFLOWS, "no workflow under .github/workflows"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_schema(path: Path) -> None:
    proc = schema_check(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(path: Path) -> None:
    proc = actionlint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# A workflow the schema accepts, and changes to it that it must refuse.
VALID = """\
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    steps:
      - run: 'true'
"""
BROKEN = {
    "a job without runs-on": ("    runs-on: ubuntu-latest\n", ""),
    "a misspelt job key": ("timeout-minutes:", "timeout-minute:"),
    "an unknown event": ("on: push", "on: pushed"),
    "a step that runs and uses": (
        "      - run: 'true'\n",
        "      - run: 'true'\n        uses: a/b@v1\n",
    ),
}


def test_the_schema_and_actionlint_accept_a_valid_workflow(tmp_path: Path) -> None:
    path = tmp_path / "valid.yml"
    path.write_text(VALID)
    for proc in (schema_check(path), actionlint(path)):
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("change", BROKEN.values(), ids=BROKEN.keys())
def test_the_schema_refuses_a_broken_workflow(change: tuple[str, str], tmp_path: Path) -> None:
    old, new = change
    assert old in VALID
    path = tmp_path / "broken.yml"
    path.write_text(VALID.replace(old, new))
    proc = schema_check(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr


# What actionlint refuses that the schema lets through: the KIND of error it reports.
LINT_BROKEN = {
    "an undefined context property": (
        ("run: 'true'", "run: echo ${{ github.no_such_property }}"),
        "expression",
    ),
    "a needs naming no job": (
        ("    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n    needs: [b]\n"),
        "job-needs",
    ),
    "an unknown runner label": (
        ("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest"),
        "runner-label",
    ),
}


@pytest.mark.parametrize("case", LINT_BROKEN.values(), ids=LINT_BROKEN.keys())
def test_actionlint_refuses_what_the_schema_accepts(
    case: tuple[tuple[str, str], str], tmp_path: Path
) -> None:
    (old, new), kind = case
    assert old in VALID
    path = tmp_path / "broken.yml"
    path.write_text(VALID.replace(old, new))
    assert schema_check(path).returncode == 0, "the schema alone refuses it"
    proc = actionlint(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{path}:" in proc.stdout and proc.stdout.rstrip().endswith(f"[{kind}]"), proc.stdout


def workflow(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def all_jobs() -> dict[str, dict[str, Any]]:
    """Every job of every workflow, by `FILE:JOB`."""
    return {
        f"{path.name}:{name}": job
        for path in WORKFLOWS
        for name, job in workflow(path)["jobs"].items()
    }


def job(name: str) -> dict[str, Any]:
    (found,) = (job for key, job in all_jobs().items() if key.endswith(f":{name}"))
    return found


def run_scripts(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def command_lines(job: dict[str, Any]) -> list[list[str]]:
    """Each line of the job's run steps, split into words as the shell does."""
    return [
        shlex.split(line)
        for script in run_scripts(job)
        for line in script.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def readme_commands() -> list[str]:
    """The commands of the README's "Try it" block, without their comments."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n## Try it\n" in text, "README.md has no 'Try it' section"
    section = text.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the 'Try it' section has no sh block"
    lines = (line.split("#", 1)[0].strip() for line in block.group(1).splitlines())
    return [line for line in lines if line]


def ci_command() -> str:
    """What .ci/run runs: its last command."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")][-1]


def test_the_test_job_runs_the_readmes_test_command() -> None:
    command = ci_command()
    assert command in readme_commands(), f".ci/run runs {command!r}, which the README omits"
    test = job("test")
    assert test.get("env", {}).get("CI") == "true", "a missing program must fail, not skip"
    words = shlex.split(command)
    runs = [line for line in command_lines(test) if line[-len(words) :] == words]
    assert runs, f"the test job does not run {command!r}"
    for line in runs:
        if line[0] == "sudo":  # sudo starts from a clean environment
            assert any(word.startswith("CI=") for word in line), line


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set()
    for match in re.finditer(r"^([^\s#:=$][^:=]*?)\s*:(?!=)", text, re.MULTILINE):
        targets.update(match.group(1).split())
    return targets


def test_every_make_target_exists() -> None:
    targets = makefile_targets()
    assert {"setup", "test", "tools", "image"} <= targets
    for name, found in all_jobs().items():
        for script in run_scripts(found):
            for match in re.finditer(r"(?<![\w./-])make\s+([^|;&)\n]*)", script):
                # Words after `make`: targets, then VAR=value assignments and options.
                wanted = [w for w in match.group(1).split() if "=" not in w and w[0] != "-"]
                assert wanted, f"{name}: `make` without a target runs the first one"
                assert set(wanted) <= targets, f"{name}: no Makefile target {wanted}"


def test_the_kind_job_makes_the_cluster_the_suite_pins() -> None:
    kind = job("kind")
    env = kind.get("env", {})
    assert env.get("KIND_VERSION") == KIND_VERSION
    assert env.get("SERVICEGRAPH_KIND_NODE_IMAGE") == KIND_NODE_IMAGE
    node = NODE_IMAGE.fullmatch(KIND_NODE_IMAGE)
    assert node, f"not a kindest/node image of Kubernetes 1.x: {KIND_NODE_IMAGE}"
    assert int(node.group(1)) >= MIN_KUBERNETES_MINOR
    # kubectl talks to a server at most one minor away from its own.
    (kubectl,) = (s for s in kind["steps"] if s.get("uses", "").startswith("azure/setup-kubectl"))
    version = re.fullmatch(r"v1\.(\d+)\.\d+", str(kubectl["with"]["version"]))
    assert version, kubectl
    assert abs(int(version.group(1)) - int(node.group(1))) <= 1
    assert any("pytest" in line and "tests/kind" in line for line in command_lines(kind))
    assert any(any("kind]" in word for word in line) for line in command_lines(kind)), (
        "the kind job does not install the kind extra (pytest-kind)"
    )


def test_every_action_is_pinned() -> None:
    for name, found in all_jobs().items():
        for step in found["steps"]:
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert PINNED.fullmatch(uses), f"{name}: {uses} is not pinned to a version"


def test_every_job_has_a_timeout() -> None:
    for name, found in all_jobs().items():
        minutes = found.get("timeout-minutes")
        assert isinstance(minutes, int) and 0 < minutes <= 90, f"{name}: timeout {minutes!r}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_token_only_reads_and_superseded_runs_stop(path: Path) -> None:
    loaded = workflow(path)
    assert loaded.get("permissions") == {"contents": "read"}
    for name, found in loaded["jobs"].items():
        widened = {k: v for k, v in found.get("permissions", {}).items() if v == "write"}
        assert not widened, f"{name} writes {widened}"
    assert loaded.get("concurrency", {}).get("cancel-in-progress") is True

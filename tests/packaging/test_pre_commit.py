"""The pre-commit hook as a platform team's manifests repository uses it: `pre-commit try-repo`
installs this repository's hook in its own environment and runs it on a repository of
manifests; it passes good ones and refuses a cycle and an invalid object."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.test_cli import sdep

ROOT = Path(__file__).resolve().parents[2]
PRE_COMMIT = Path(sys.executable).with_name("pre-commit")


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def try_repo(folder: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo ROOT servicegraph-check --all-files` in `folder`."""
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(home),  # the hook's own environment, made once per test run
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(PRE_COMMIT), "try-repo", str(ROOT), "servicegraph-check", "--all-files"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


@pytest.fixture
def manifests_repository(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests-repo"
    (folder / "shop").mkdir(parents=True)
    git(folder, "init", "-q")
    git(folder, "config", "user.email", "team@example.com")
    git(folder, "config", "user.name", "team")
    return folder


def commit(folder: Path, name: str, *objects: dict[str, object]) -> None:
    (folder / "shop" / name).write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", name)


def test_pre_commit_passes_good_manifests_and_refuses_a_cycle(
    manifests_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("pre-commit-home")
    repo = manifests_repository
    commit(repo, "checkout.yaml", sdep("checkout", "payment"), sdep("payment"))
    good = try_repo(repo, home)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "servicegraph check" in good.stdout and "Passed" in good.stdout

    commit(repo, "payment.yaml", sdep("ledger", "checkout"))
    (repo / "shop" / "checkout.yaml").write_text(
        yaml.safe_dump_all([sdep("checkout", "payment"), sdep("payment", "ledger")])
    )
    git(repo, "add", "-A")
    cycle = try_repo(repo, home)
    assert cycle.returncode == 1, cycle.stdout
    assert "Failed" in cycle.stdout
    assert "cycle: checkout -> payment -> ledger -> checkout" in cycle.stdout

    bad = sdep("cart")
    bad["spec"]["dependsOn"] = [{"service": "checkout", "criticality": "sometimes"}]
    commit(repo, "cart.yaml", bad)
    invalid = try_repo(repo, home)
    assert invalid.returncode == 1
    assert 'spec.dependsOn[0].criticality: Unsupported value: "sometimes"' in invalid.stdout

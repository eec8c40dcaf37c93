"""The kubectl plugin as krew installs it: the archive `make plugin` builds holds what
.krew.yaml names, the manifest follows krew's rules, and the real kubectl runs the plugin
unpacked from the archive."""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support.kubectl import KUBECTL
from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path]:
    module = load_script("plugin_archive")
    return module, module.build_archive(tmp_path_factory.mktemp("dist"))


def manifest(module: ModuleType, archive: Path) -> dict[str, Any]:
    text = module.render_manifest(
        module.tag(), "https://example.com/releases", {archive.name: module.sha256_of(archive)}
    )
    assert "{{" not in text
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_the_manifest_follows_krews_rules(built: tuple[ModuleType, Path]) -> None:
    module, archive = built
    plugin = manifest(module, archive)
    assert plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert plugin["kind"] == "Plugin"
    # krew: the name is the command after `kubectl`, lower case, and the binary kubectl-<name>.
    assert plugin["metadata"]["name"] == "servicegraph"
    spec = plugin["spec"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", spec["version"])
    assert spec["version"] == module.tag()
    assert spec["homepage"].startswith("https://")
    assert len(spec["shortDescription"]) <= 50 and "kubectl" not in spec["shortDescription"]
    assert spec["description"] and spec["caveats"]
    platforms = {
        (p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"]): p
        for p in spec["platforms"]
    }
    assert set(platforms) == {(o, a) for o in ("linux", "darwin") for a in ("amd64", "arm64")}
    for (os_name, arch), entry in platforms.items():
        assert entry["bin"] == "kubectl-servicegraph"
        assert entry["uri"] == (
            f"https://example.com/releases/{module.archive_name(module.tag(), os_name, arch)}"
        )
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        assert {f["from"] for f in entry["files"]} == {"kubectl-servicegraph", "LICENSE"}
    here = platforms[module.host_platform()]
    assert here["sha256"] == module.sha256_of(archive)


def test_kubectl_runs_the_plugin_from_its_archive(
    built: tuple[ModuleType, Path], tmp_path: Path
) -> None:
    module, archive = built
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["LICENSE", "kubectl-servicegraph"]
        tar.extractall(tmp_path / "plugin", filter="data")
    binary = tmp_path / "plugin" / "kubectl-servicegraph"
    assert os.access(binary, os.X_OK)
    # As krew links it: a folder on the PATH, the package's own virtual environment not on it.
    system = os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])
    env = {
        "PATH": f"{tmp_path / 'plugin'}{os.pathsep}{system}",
        "HOME": str(tmp_path),  # where shiv unpacks (~/.shiv)
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
    }
    version = subprocess.run(
        [KUBECTL, "servicegraph", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"kubectl servicegraph {module.tag().removeprefix('v')}"
    checked = subprocess.run(
        [
            KUBECTL,
            "servicegraph",
            "check",
            str(ROOT / "manifests" / "examples" / "online-boutique"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert checked.stdout == "ok: 12 services, 16 edges, no unacknowledged cycle\n", checked.stderr

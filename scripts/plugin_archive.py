"""The krew archive of `kubectl servicegraph` for this machine's platform, and the manifest.

    make plugin                      dist/kubectl-servicegraph_v<version>_<os>_<arch>.tar.gz
    python scripts/plugin_archive.py --manifest https://example.com/releases/v0.1.0
                                     also prints .krew.yaml filled in for that release URL

The archive holds `kubectl-servicegraph`, a shiv zipapp of the package and its dependencies
(compiled ones included, hence one archive per platform, built on it), and the LICENSE, as
.krew.yaml's `files` list them.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
TEMPLATE = ROOT / ".krew.yaml"
ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_URI_AND_SHA = re.compile(r'\{\{\s*addURIAndSha\s+"([^"]+)"\s+\.TagName\s*\}\}')


def tag() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return f"v{project['version']}"


def host_platform() -> tuple[str, str]:
    """krew's os and arch of this machine."""
    machine = platform.machine().lower()
    if sys.platform not in ("linux", "darwin") or machine not in ARCHITECTURES:
        raise SystemExit(f"error: krew has no platform for {sys.platform}/{machine}")
    return sys.platform, ARCHITECTURES[machine]


def archive_name(version: str, os_name: str, arch: str) -> str:
    return f"kubectl-servicegraph_{version}_{os_name}_{arch}.tar.gz"


def build_archive(out: Path = DIST) -> Path:
    """Build the zipapp with shiv and pack it with the LICENSE; return the archive's path."""
    os_name, arch = host_platform()
    out.mkdir(parents=True, exist_ok=True)
    archive = out / archive_name(tag(), os_name, arch)
    with tempfile.TemporaryDirectory() as work:
        app = Path(work) / "kubectl-servicegraph"
        subprocess.run(
            [
                str(Path(sys.executable).with_name("shiv")),
                "--compressed",
                "--console-script",
                "kubectl-servicegraph",
                "--python",
                "/usr/bin/env python3",
                "--output-file",
                str(app),
                "--quiet",
                str(ROOT),
            ],
            check=True,
        )
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(app, arcname="kubectl-servicegraph")
            tar.add(ROOT / "LICENSE", arcname="LICENSE")
    return archive


def render_manifest(version: str, release_url: str, sha256s: dict[str, str]) -> str:
    """.krew.yaml for `version`, its archives under `release_url`; a platform's sha256 from
    `sha256s` (by archive name), or the placeholder krew refuses for one not built here."""

    def uri_and_sha(match: re.Match[str]) -> str:
        name = match[1].replace("{{ .TagName }}", version).rsplit("/", 1)[1]
        sha = sha256s.get(name, "0" * 64)
        return f'uri: {release_url.rstrip("/")}/{name}\n    sha256: "{sha}"'

    text = TEMPLATE.read_text(encoding="utf-8")
    return _URI_AND_SHA.sub(uri_and_sha, text).replace("{{ .TagName }}", version)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", metavar="RELEASE_URL", help="also print .krew.yaml for it")
    args = parser.parse_args()
    archive = build_archive()
    print(f"wrote {archive} (sha256 {sha256_of(archive)})", file=sys.stderr)
    if args.manifest:
        print(render_manifest(tag(), args.manifest, {archive.name: sha256_of(archive)}), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

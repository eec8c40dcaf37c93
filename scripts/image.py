#!/usr/bin/env python3
"""Build the operator's container image with podman or docker.

    make image                  FROM the public python:3.11-slim-bookworm (needs a registry)
    make image OFFLINE=1        with no registry and no index inside the build: the base made
                                from Debian's packages by debootstrap (root), the Python
                                packages built into wheels on this machine first
    python scripts/image.py --offline --tag localhost/servicegraph-operator:dev
    make image CONTAINER_ENGINE=docker
                                with docker even where podman is installed (`kind load
                                docker-image` reads docker's images)

Prints the image's name when done. The offline base (`localhost/servicegraph-base:bookworm`)
is made once and reused; it holds Debian's python3 (3.11, as the public base) and nothing else:
no documentation, locales or package lists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PROJECT["project"]["version"]
DEFAULT_TAG = f"localhost/servicegraph-operator:{VERSION}"
OFFLINE_BASE = "localhost/servicegraph-base:bookworm"
WHEELS = ROOT / "build" / "wheels"
# What debootstrap leaves that an image never reads.
BASE_LEAVES_OUT = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
)


class ImageError(Exception):
    pass


ENGINES = ("podman", "docker")


def engine_command(name: str | None = None) -> list[str]:
    """The engine `name`, else podman (preferred: it needs no daemon) or docker, with the
    options this host needs.

    podman runs through runc with cgroupfs: crun refuses hosts whose cgroups are in hybrid mode,
    and the systemd cgroup manager needs a systemd session a CI job may not have."""
    for candidate in ENGINES if name is None else (name,):
        if found := shutil.which(candidate):
            podman_options = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
            return [found, *(podman_options if candidate == "podman" else [])]
    raise ImageError(
        f"{name} is not installed"
        if name
        else "neither podman nor docker is installed (make system-packages installs podman)"
    )


def is_podman(engine: list[str]) -> bool:
    return Path(engine[0]).name == "podman"


# podman raises the open-file and process limits of what it runs past the defaults, which a
# sandboxed host refuses; these are the usual defaults, plenty for a build or the operator.
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def run(command: list[str], **kwargs: object) -> None:
    proc = subprocess.run(command, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise ImageError(f"`{' '.join(command[:4])} ...` exited {proc.returncode}")


def image_exists(engine: list[str], name: str) -> bool:
    proc = subprocess.run([*engine, "image", "inspect", name], capture_output=True, check=False)
    return proc.returncode == 0


def offline_base(engine: list[str]) -> str:
    """The Debian base image, made with debootstrap unless it exists."""
    if image_exists(engine, OFFLINE_BASE):
        return OFFLINE_BASE
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageError("debootstrap is missing (make system-packages installs it)")
    with tempfile.TemporaryDirectory(prefix="servicegraph-base-") as tmp:
        root = Path(tmp) / "rootfs"
        print(f"making {OFFLINE_BASE} with debootstrap (about a minute)", file=sys.stderr)
        run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(root),
            ],
            stdout=subprocess.DEVNULL,
        )
        for leftover in BASE_LEAVES_OUT:
            shutil.rmtree(root / leftover, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run([*engine, "import", "-", OFFLINE_BASE], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise ImageError("tar of the debootstrap root failed")
    return OFFLINE_BASE


def host_wheels() -> Path:
    """Wheels of the package's dependencies and of its build backend, for a build that reaches
    no index. Built with this Python, which must be the base's minor version (3.11)."""
    if sys.version_info[:2] != (3, 11):
        raise ImageError(
            f"the offline build needs Python 3.11 here (this is {sys.version.split()[0]})"
        )
    WHEELS.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "wheel", "--wheel-dir", str(WHEELS), str(ROOT)])
    run([*pip, "download", "--dest", str(WHEELS), *PROJECT["build-system"]["requires"]])
    return WHEELS


def build(tag: str, offline: bool, engine_name: str | None = None) -> str:
    engine = engine_command(engine_name)
    command = [*engine, "build", "--tag", tag, "--build-arg", f"VERSION={VERSION}"]
    if offline:
        if not is_podman(engine):
            raise ImageError("--offline mounts the wheels into the build, which needs podman")
        command += [
            "--build-arg",
            f"PYTHON_IMAGE={offline_base(engine)}",
            "--build-arg",
            "PIP_INSTALL_OPTIONS=--no-index --find-links /wheels",
            "--volume",
            f"{host_wheels()}:/wheels:ro",
            "--network",
            "none",
        ]
    if is_podman(engine):
        command += [*LIMITS, "--layers"]
    run([*command, str(ROOT)])
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"default {DEFAULT_TAG}")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="base made by debootstrap and wheels built here: no registry, no index in the build",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get("CONTAINER_ENGINE") or None,
        help="default: $CONTAINER_ENGINE, else podman when installed, else docker",
    )
    args = parser.parse_args(argv)
    try:
        print(build(args.tag, args.offline, args.engine))
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

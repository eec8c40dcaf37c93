"""Tests that run a program of the machine (prometheus, lua5.1, dot, openssl): without it they
skip on a developer's machine and fail in CI (`CI=true`), where a skip would hide that the
test never ran.

    require_binary("dot", "renders the SVG export")    # in a test or fixture: the path
    @needs_binary("lua5.1", "runs the Argo CD checks")  # the marker form, for a test or module

The marker is checked before each test by `check_markers`, called from tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

MARKER = "needs_binary"


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require_binary(name: str, why: str) -> str:
    """The path of program `name`; if it is not on PATH, skip the test, or fail it in CI."""
    found = shutil.which(name)
    if found is None:
        reason = f"`{name}` is not installed (not on PATH): {why}"
        if in_ci():
            pytest.fail(f"{reason} [CI=true: a missing program fails, it does not skip]")
        pytest.skip(reason)
    return found


def needs_binary(name: str, why: str) -> pytest.MarkDecorator:
    """`require_binary(name, why)` before the test, as a marker (where skipif was)."""
    return getattr(pytest.mark, MARKER)(name, why)


def check_markers(item: Any) -> None:
    """Call `require_binary` for each `needs_binary` marker of a test item."""
    for marker in item.iter_markers(MARKER):
        require_binary(*marker.args, **marker.kwargs)

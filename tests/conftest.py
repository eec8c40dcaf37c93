"""Fixtures and hooks shared by every suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `python -m pytest` puts the repository root on sys.path, a bare `pytest` does not.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support import binaries  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{binaries.MARKER}(name, why): the test runs program `name`; without it the test "
        "skips, or fails when CI=true (tests/support/binaries.py)",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    binaries.check_markers(item)

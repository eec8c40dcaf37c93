"""A test whose program is missing skips on a developer's machine and fails in CI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.binaries import check_markers, needs_binary, require_binary

pytest_plugins = ["pytester"]

MISSING = "servicegraph-no-such-program"


def test_missing_program_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"`{MISSING}`.*: it is tested"):
        require_binary(MISSING, "it is tested")


@pytest.mark.parametrize("ci", [None, "false", "1"])
def test_missing_program_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_binary(MISSING, "it is tested")


def test_present_program_gives_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert require_binary(Path(sys.executable).name, "it is tested") == sys.executable


class Item:
    """What check_markers uses of a pytest.Item."""

    def __init__(self, *marks: pytest.MarkDecorator) -> None:
        self.marks = [mark.mark for mark in marks]

    def iter_markers(self, name: str) -> list[pytest.Mark]:
        return [mark for mark in self.marks if mark.name == name]


def test_marker_form_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    item = Item(pytest.mark.e2e, needs_binary(MISSING, "it is tested"))
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        check_markers(item)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        check_markers(item)
    check_markers(Item(needs_binary(Path(sys.executable).name, "it is tested")))


def test_a_marked_test_fails_in_ci_and_skips_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker as the suites use it, through tests/conftest.py's hooks, in a pytest run."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", str(root))
    pytester.makeconftest("from tests.conftest import pytest_configure, pytest_runtest_setup")
    pytester.makepyfile(
        f"""
        from tests.support.binaries import needs_binary

        @needs_binary({MISSING!r}, "it is tested")
        def test_marked():
            raise AssertionError("ran without its program")
        """
    )
    monkeypatch.setenv("CI", "true")
    pytester.runpytest_subprocess("--strict-markers").assert_outcomes(errors=1)
    monkeypatch.setenv("CI", "false")
    pytester.runpytest_subprocess("--strict-markers").assert_outcomes(skipped=1)

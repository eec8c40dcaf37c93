"""Fixtures for the end-to-end suite: a fresh in-memory Kubernetes API per test.

    def test_something(api, http):
        api.kubectl.apply({...})                    # the real kubectl, as a user
        http.get('/api/v1/namespaces/default/configmaps')   # raw HTTP, as a client library
        subprocess.Popen([...], env=api.env())      # an operator process: KUBECONFIG is set
        api.emulator.writes[...]; api.emulator.inject(...)  # counters and fault injection

Everything is per test (own port, kubeconfig, kubectl cache), so tests run in parallel.

A test fails when the log of an operator it started shows a traceback, or Kopf saying a
handler or daemon failed (and restarting it): faults the tests inject must be coped with in
warnings, not in crashes. A test that must tolerate one says why:

    @pytest.mark.allow_operator_errors("why this test expects the operator to break")
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kmock
import pytest

# `python -m pytest` puts the repository root on sys.path, a bare `pytest` does not.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.e2e.test_operator_support import (  # noqa: E402
    BOUTIQUE,
    BOUTIQUE_NAMESPACE,
    READY,
    install,
    jsonpath,
)
from tests.support.emulator import Api, EmulatorServer, write_kubeconfig  # noqa: E402
from tests.support.kubectl import Kubectl, wait_for  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402

ALLOW_ERRORS = "allow_operator_errors"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{ALLOW_ERRORS}(reason): the operator's log may show tracebacks and failed handlers "
        "or daemons in this test (otherwise they fail it); say why",
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """A running ApiEmulator on its own 127.0.0.1 port, a kubeconfig for it, and kubectl."""
    with EmulatorServer() as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        yield Api(server, kubeconfig, Kubectl(kubeconfig, tmp_path / "kubectl-cache"))
        # API errors (404, 409, ...) are answers; anything else is a bug of the emulator.
        bugs = [e for e in server.emulator.errors if not isinstance(e, kmock.KubernetesError)]
    if bugs:
        pytest.fail(f"the API emulator failed internally: {bugs!r}")


@pytest.fixture(scope="module")
def boutique(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """Online Boutique applied with kubectl and reconciled by the operator, on an API of the
    module's own: the tests using it only read, so one operator serves them all."""
    folder = tmp_path_factory.mktemp("boutique")
    ns = BOUTIQUE_NAMESPACE
    with EmulatorServer() as server:
        kubeconfig = write_kubeconfig(folder / "kubeconfig", server.url)
        api = Api(server, kubeconfig, Kubectl(kubeconfig, folder / "kubectl-cache"))
        install(api, ns)  # the folder's namespace.yaml comes after the objects in it
        api.kubectl("apply", "-f", str(BOUTIQUE))
        operator = OperatorProcess(api, folder / "operator.log").start()
        try:
            wait_for(lambda: jsonpath(api, "servicegraph", ns, READY, ns) == "True", timeout=30)
            wait_for(lambda: jsonpath(api, "servicegraph", ns, "{.status.snapshot.revision}", ns))
            yield api
        except Exception:
            print(operator.log()[-6000:])
            raise
        finally:
            operator.stop()
        bugs = [e for e in server.emulator.errors if not isinstance(e, kmock.KubernetesError)]
    assert not bugs, f"the API emulator failed internally: {bugs!r}"


@pytest.fixture
def http(api: Api) -> Iterator[httpx.Client]:
    """An HTTP client for the emulator (base URL set, JSON in and out)."""
    with httpx.Client(base_url=api.url, timeout=10) as client:
        yield client


@pytest.fixture
def start_operator(
    api: Api, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start `servicegraph run` against the test's API; stopped at the end, log shown on failure."""
    started: list[OperatorProcess] = []

    def start(*args: str, **environment: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        process = OperatorProcess(api, log, *args, **environment).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for process in started:
            print(f"--- {process.log_path.name} ---\n{process.log()[-6000:]}")
    allowed = request.node.get_closest_marker(ALLOW_ERRORS)
    if allowed is not None:
        assert allowed.args and allowed.args[0], f"@pytest.mark.{ALLOW_ERRORS} needs a reason"
        return
    broken = {process.log_path.name: process.broken_lines() for process in started}
    if any(broken.values()):
        pytest.fail(
            "the operator broke (a traceback, or a handler or daemon that failed):\n"
            + "\n".join(
                f"--- {log} ---\n" + "\n".join(readable(line) for line in lines[:5])
                for log, lines in broken.items()
                if lines
            ),
            pytrace=False,
        )


def readable(line: str) -> str:
    """A log line as a person reads it: a JSON record's message, then its traceback."""
    try:
        record = json.loads(line)
        text = "\n".join(str(record[key]) for key in ("message", "exc_info") if key in record)
    except (ValueError, TypeError):
        text = line
    return "\n".join(text.splitlines()[:40])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

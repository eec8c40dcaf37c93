"""Every `servicegraph`, `kubectl servicegraph` and `make` command in the code blocks of the
README and of the guides in docs/ (README.md and docs/*.md; a file without code blocks, such as
the generated API reference, has none), run as written: from a folder holding the repository's
manifests, charts and CRDs (plus the files the examples name as the reader's own: `k8s/`,
`bad/`, `graph.json`, `./chart`, `catalog-info.yaml`), with the kubeconfig of an API where the
operator keeps Online Boutique's graph, and a real Prometheus wherever an example names one. A
new example in any of them is a new test here, named by its file and line.

Where a document shows a session (`$ command`, then what it prints), the first line printed
must be the document's, and `$ echo $?` after it is the exit code expected. Python examples run
in the same folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from servicegraph.observed import PrometheusQuery
from tests.e2e.test_operator_slo import boutique_edges
from tests.e2e.test_operator_support import BOUTIQUE, ROOT, install, sdep
from tests.support.binaries import require_binary
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import TEST_ENVIRONMENT, free_port
from tests.support.prometheus import PrometheusServer, ServiceGraphExporter
from tests.support.real_manifests import real_manifest

pytestmark = pytest.mark.e2e

# The documents whose examples run: the README, then the guides.
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
TOOLS_BIN = ROOT / ".tools" / "bin"
# The addresses the examples give Prometheus; the test's own server answers instead.
PROMETHEUS_URL = re.compile(r"http://[a-z0-9.-]+:9090")
# Exit codes other than 0 that an example is meant to end with, and why.
EXPECTED_EXIT = {
    # The traffic served (tests/e2e/test_operator_slo.py) fails 3 % of currencyservice's calls.
    "servicegraph slo checkoutservice --from manifests/examples/online-boutique "
    "--prometheus http://localhost:9090 --availability 99.9": 1,
    # The live graph has no observed source: whether the target holds cannot be told.
    "servicegraph slo checkoutservice --graph online-boutique/online-boutique "
    "--availability 99.9": 1,
}
# The test running this one.
DRY_RUN = {"make test"}


@dataclass(frozen=True)
class Example:
    document: str  # relative to the repository: README.md, docs/cli.md
    line: int
    command: str
    first_output_line: str | None = None
    exit_code: int = 0


def examples() -> list[Example]:
    """Commands of ours in the documents' code blocks: in `sh` blocks every command line (with
    its continuations, without its comment); in other blocks the `$ ` lines of a session."""
    found: list[Example] = []
    for document in DOCUMENTS:
        name = document.relative_to(ROOT).as_posix()
        text = document.read_text(encoding="utf-8")
        for block in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            language, body = block.groups()
            first_line = text.count("\n", 0, block.start(2)) + 1
            lines = body.splitlines()
            if language == "sh":
                found += _script(name, lines, first_line)
            else:
                found += _session(name, lines, first_line)
    return [example for example in found if _ours(example.command)]


def _script(document: str, lines: list[str], first_line: int) -> Iterator[Example]:
    command, start = "", 0
    for number, line in enumerate(lines, first_line):
        if not command:
            start = number
        command += line.rstrip("\\").strip() + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        command = re.sub(r"\s+#.*$", "", command).strip()
        if command and not command.startswith("#"):
            yield Example(document, start, command)
        command = ""


def _session(document: str, lines: list[str], first_line: int) -> Iterator[Example]:
    sessions: list[tuple[int, str, list[str]]] = []
    for number, line in enumerate(lines, first_line):
        if line.startswith("$ "):
            sessions.append((number, line[2:].strip(), []))
        elif sessions:
            sessions[-1][2].append(line)
    for index, (number, command, output) in enumerate(sessions):
        if command == "echo $?":
            continue
        following = sessions[index + 1] if index + 1 < len(sessions) else None
        exit_code = int(following[2][0]) if following and following[1] == "echo $?" else 0
        yield Example(document, number, command, output[0] if output else None, exit_code)


def _ours(command: str) -> bool:
    return bool(re.match(r"(servicegraph|kubectl servicegraph|make)\b", command)) or (
        "| servicegraph" in command
    )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping Online Boutique's calls as OpenTelemetry reports them."""
    require_binary("prometheus", "the documents' examples poll a real Prometheus")
    edges = boutique_edges()
    with ServiceGraphExporter(edges) as exporter:
        server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [exporter.target])
        try:
            server.start()
            rate = PrometheusQuery("http://unused", window="30s").promql["rate"]
            server.wait_for_series(rate, len(edges))
            yield server.url
        finally:
            server.stop()


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a reader would run the examples: a clone, with files of their own beside it."""
    folder = tmp_path_factory.mktemp("reader")
    for name in ("manifests", "charts", "crds", "Makefile"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "k8s").mkdir()
    shutil.copy(real_manifest("online-boutique/kubernetes-manifests.yaml"), folder / "k8s")
    (folder / "bad").mkdir()
    checkout = sdep("checkout", "payment", "payment")
    (folder / "bad" / "checkout.yaml").write_text(yaml.safe_dump(checkout), encoding="utf-8")
    chart = folder / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: shop\nversion: 0.1.0\n")
    for manifest in BOUTIQUE.glob("*.yaml"):
        shutil.copy(manifest, chart / "templates")
    for name, fmt in (("graph.json", "json"), ("catalog-info.yaml", "backstage")):
        exported = subprocess.run(
            [str(VENV_BIN / "servicegraph"), "export", "--from", str(BOUTIQUE), "-o", fmt],
            capture_output=True,
            text=True,
            check=True,
        )
        (folder / name).write_text(exported.stdout, encoding="utf-8")
    return folder


def environment(api: Api) -> dict[str, str]:
    path = os.pathsep.join([str(VENV_BIN), str(TOOLS_BIN), os.environ.get("PATH", "")])
    return {**api.env(), "PATH": path, "SERVICEGRAPH_METRICS_PORT": str(free_port())}


@pytest.mark.parametrize(
    "example", examples(), ids=lambda e: f"{e.document} line {e.line}: {e.command}"
)
def test_documented_example_runs_as_written(
    example: Example, request: pytest.FixtureRequest, reader_folder: Path
) -> None:
    command = example.command
    if command == "servicegraph run":
        request.getfixturevalue("readme_run")
        return
    if command in DRY_RUN:  # what runs this very test: that the target exists is enough
        command = command.replace("make ", "make -n ", 1)
    api: Api = request.getfixturevalue("boutique")
    if PROMETHEUS_URL.search(command):
        command = PROMETHEUS_URL.sub(request.getfixturevalue("prometheus"), command)
    make = command.startswith("make ")
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=ROOT if make else reader_folder,
        env=environment(api),
        capture_output=True,
        text=True,
        timeout=600 if make else 120,
        check=False,
    )
    expected = EXPECTED_EXIT.get(example.command, example.exit_code)
    assert done.returncode == expected, (
        f"{example.document} line {example.line}: `{command}` exited {done.returncode}:\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    if example.first_output_line is not None:
        printed = (done.stdout + done.stderr).splitlines()
        assert printed and printed[0].split() == example.first_output_line.split()


def python_examples() -> list[tuple[str, int, str]]:
    """(document, line, code) of every `python` block of the documents."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        found += [
            (
                document.relative_to(ROOT).as_posix(),
                text.count("\n", 0, block.start(1)) + 1,
                block[1],
            )
            for block in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)
        ]
    return found


@pytest.mark.parametrize(
    ("document", "line", "code"),
    python_examples(),
    ids=[f"{document} line {line}" for document, line, _ in python_examples()],
)
def test_documented_python_runs_as_written(
    document: str, line: int, code: str, reader_folder: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=reader_folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{document} line {line}:\n{done.stderr[-3000:]}"
    assert done.stdout, f"{document} line {line} printed nothing"


@pytest.fixture
def readme_run(api: Api, tmp_path: Path) -> None:
    """`servicegraph run` after `kubectl apply -f crds/`: it starts, serves its metrics, and
    stops cleanly when asked to, as in a pod."""
    install(api)
    env = {**environment(api), **TEST_ENVIRONMENT}
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "servicegraph"), "run"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        metrics = f"http://127.0.0.1:{env['SERVICEGRAPH_METRICS_PORT']}/metrics"
        wait_for(lambda: _answers(metrics), timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "run.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

"""`make demo KEEP=1` as a newcomer uses it: the demo converges, then keeps its API and operator
running and says which KUBECONFIG to export; kubectl against it sees the graph change with an
edit; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.kubectl import Kubectl, KubectlError, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NS = "online-boutique"
EDGES = "{.status.edges}"


def test_make_demo_keep_leaves_a_cluster_to_try(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        ["make", "--no-print-directory", "demo", "KEEP=1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C reaches the whole group, as in a terminal
    )
    lines: list[str] = []
    assert demo.stdout is not None
    stdout = demo.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any("Press Ctrl-C to stop." in line for line in lines), timeout=120)
        exported = next(m for line in lines if (m := re.match(r"  export KUBECONFIG=(\S+)", line)))
        kubectl = Kubectl(Path(exported[1]), tmp_path / "kubectl-cache")
        names = kubectl("get", "slo-engine", "-n", NS, "-o", "name").split()
        assert "servicegraph.graph.slo-engine.io/online-boutique" in names
        assert kubectl("get", "servicegraph", NS, "-n", NS, "-o", f"jsonpath={EDGES}") == "16"
        # The edit the demo suggests: adservice calls one more service.
        kubectl(
            "patch",
            "servicedependency",
            "adservice",
            "-n",
            NS,
            "--type",
            "merge",
            "-p",
            '{"spec": {"dependsOn": [{"service": "currencyservice"}]}}',
        )
        wait_for(
            lambda: kubectl("get", "servicegraph", NS, "-n", NS, "-o", f"jsonpath={EDGES}") == "17",
            timeout=30,
        )
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=60)
        reader.join(timeout=10)
    output = "".join(lines)
    # make reports the interrupt as make does (killed by SIGINT); the demo stops cleanly.
    assert code in (0, -signal.SIGINT), output[-3000:]
    assert "stopping" in output and "Traceback" not in output, output[-3000:]

    def stopped() -> bool:
        try:
            kubectl("get", "namespace", NS)
        except KubectlError:
            return True
        return False

    wait_for(stopped, timeout=30)  # the API is gone with it

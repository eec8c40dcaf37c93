"""The operator end to end, with no cluster: an in-memory Kubernetes API on 127.0.0.1, the real
kubectl, the CRDs and the Online Boutique example, and `servicegraph run` reconciling them.

    make demo            (or: .venv/bin/python scripts/demo.py)
    make demo KEEP=1     (or: --keep) keeps the API and the operator running until Ctrl-C, and
                         prints the KUBECONFIG to export to try kubectl against them
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.emulator import EmulatorServer, write_kubeconfig  # noqa: E402
from tests.support.kubectl import Kubectl, KubectlError, wait_for  # noqa: E402

EXAMPLE = ROOT / "manifests" / "examples" / "online-boutique"
NAMESPACE = "online-boutique"


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(kubectl: Kubectl, *args: str) -> str:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    out = kubectl(*args)
    print(out, end="" if out.endswith("\n") else "\n", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", action="store_true", help="keep the API and the operator running until Ctrl-C"
    )
    keep = parser.parse_args(argv).keep
    work = Path(tempfile.mkdtemp(prefix="servicegraph-demo-"))
    with EmulatorServer() as server:
        kubeconfig = write_kubeconfig(work / "kubeconfig", server.url)
        kubectl = Kubectl(kubeconfig, work / "kubectl-cache")
        step(f"An in-memory Kubernetes API is serving at {server.url}")
        show(kubectl, "apply", "-f", str(ROOT / "crds"))
        show(kubectl, "apply", "-f", str(EXAMPLE / "namespace.yaml"))
        show(kubectl, "apply", "-f", str(EXAMPLE))

        step("Starting the operator: servicegraph run --standalone")
        env = {**kubectl.env, "PYTHONUNBUFFERED": "1"}
        log = (work / "operator.log").open("w")
        exe = Path(sys.executable).with_name("servicegraph")
        operator = subprocess.Popen(
            [str(exe), "run", "--standalone", "--metrics-port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            started = time.monotonic()
            ready = '{.status.conditions[?(@.type=="Ready")].status}'
            wait_for(
                lambda: (
                    kubectl(
                        "get", "servicegraph", NAMESPACE, "-n", NAMESPACE, "-o", f"jsonpath={ready}"
                    )
                    == "True"
                ),
                timeout=60,
            )
            print(f"converged in {time.monotonic() - started:.1f} s")
            step("What the operator wrote")
            show(kubectl, "get", "slo-engine", "-n", NAMESPACE)
            show(kubectl, "get", "servicegraph", NAMESPACE, "-n", NAMESPACE, "-o", "wide")
            show(kubectl, "get", "configmap", "-n", NAMESPACE, "-l", "graph.slo-engine.io/snapshot")
            snapshot = work / "snapshot.yaml"
            snapshot.write_text(
                kubectl("get", "configmap", f"{NAMESPACE}-graph", "-n", NAMESPACE, "-o", "yaml")
            )
            step("Querying the snapshot: who breaks when redis-cart does?")
            cli = Path(sys.executable).with_name("servicegraph")
            command = [
                str(cli),
                "query",
                "redis-cart",
                "--snapshot",
                str(snapshot),
                "--direction",
                "upstream",
                "--depth",
                "10",
            ]
            print(f"$ servicegraph {' '.join(command[1:])}", flush=True)
            subprocess.run(command, check=True)
            step("Done")
            print(
                f"The snapshot is the ConfigMap {NAMESPACE}/{NAMESPACE}-graph, saved to {snapshot}"
            )
            print(f"The operator's log is {work / 'operator.log'}")
            print(
                "On a real cluster: kubectl apply -f crds/, then `servicegraph run` "
                "with KUBECONFIG set."
            )
            if keep:
                wait_for_interrupt(kubeconfig)
        except (KubectlError, TimeoutError, AssertionError) as error:
            print(f"error: the demo did not converge: {error}", file=sys.stderr)
            print((work / "operator.log").read_text()[-4000:], file=sys.stderr)
            return 1
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                operator.kill()
    return 0


def wait_for_interrupt(kubeconfig: Path) -> None:
    """Until Ctrl-C (or SIGTERM): the API and the operator stay up for the reader to try."""
    step("Still running: try it from another shell")
    bin_dir = Path(sys.executable).parent
    print(
        f"""  export KUBECONFIG={kubeconfig}
  export PATH={bin_dir}:$PATH      # for kubectl servicegraph
  kubectl get slo-engine -n {NAMESPACE}
  kubectl edit servicedependency adservice -n {NAMESPACE}   # add a dependsOn entry
  kubectl get servicegraph -n {NAMESPACE} -w                 # and watch EDGES change
  kubectl servicegraph query frontend --graph {NAMESPACE}/{NAMESPACE} --depth 2
Press Ctrl-C to stop.""",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("stopping", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

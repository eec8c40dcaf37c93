"""The operator's pod meets the Pod Security Standards' "restricted" profile in every mode, and
runs on a read-only root filesystem. The rules are those of the profile as the API server's
PodSecurity admission applies them (baseline's and restricted's), for a pod template."""

from __future__ import annotations

from typing import Any

import pytest

from tests.packaging.conftest import MODES, one, render

# Volume types "restricted" allows.
ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What keeps pod spec `pod` from the "restricted" profile (plus a read-only root
    filesystem, which the profile does not demand and this operator does)."""
    problems = []
    pod_sc = pod.get("securityContext") or {}
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} is set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} is of a forbidden type {kinds}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl['name']} is not safe")
    if pod_sc.get("runAsUser") == 0:
        problems.append("the pod runs as user 0")
    if (pod_sc.get("seLinuxOptions") or {}).get("type") not in (
        None, "", "container_t", "container_init_t", "container_kvm_t",
    ):  # fmt: skip
        problems.append("the pod sets a forbidden SELinux type")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = f"container {c['name']}"
        if sc.get("privileged"):
            problems.append(f"{name} is privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name} does not set allowPrivilegeEscalation: false")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name} does not drop ALL capabilities")
        if not set(capabilities.get("add", [])) <= ALLOWED_CAPABILITIES:
            problems.append(f"{name} adds capabilities {capabilities['add']}")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{name} may run as root (runAsNonRoot is not true)")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name} runs as user 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name} has seccomp profile {seccomp}, not RuntimeDefault")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name} sets procMount")
        if any(port.get("hostPort") for port in c.get("ports", [])):
            problems.append(f"{name} uses a host port")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name} has a writable root filesystem")
    return problems


def pod_of(*args: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(render(*args), "Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("mode", MODES)
def test_the_pod_is_restricted(mode: str) -> None:
    assert restricted_violations(pod_of(mode)) == []


@pytest.mark.parametrize(
    ("values", "violation"),
    [
        ("securityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation"),
        ("securityContext.readOnlyRootFilesystem=false", "writable root filesystem"),
        ("securityContext.runAsNonRoot=false", "may run as root"),
        ("podSecurityContext.runAsUser=0", "runs as user 0"),
        ("securityContext.capabilities.drop=null", "does not drop ALL"),
        ("securityContext.seccompProfile.type=Unconfined", "seccomp profile Unconfined"),
    ],
)
def test_the_check_catches_each_rule(values: str, violation: str) -> None:
    """Loosening any one setting is caught: the check above can fail."""
    problems = restricted_violations(pod_of("default", "--set", values))
    assert any(violation in p for p in problems), problems


def test_the_writable_places_are_emptydirs() -> None:
    """With a read-only root, the only writable path is /tmp, an emptyDir with a size limit."""
    pod = pod_of("default")
    (container,) = pod["containers"]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]

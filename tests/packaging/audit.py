"""What the operator asks of the API server, as RBAC sees it: an audit log of the in-memory API.

    with audited_api(tmp_path) as (api, log):
        ...run the operator against `api`...
    log.by_operator()   # [ApiRequest(verb, group, resource, subresource, namespace, name, ...)]

and `allowed(request, rbac_objects, service_account)`, Kubernetes' RBAC authorizer in small:
is this request granted by these rendered ClusterRoles, Roles and bindings?
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
from kmock._internal import rendering

from tests.support.emulator import Api, ApiEmulator, EmulatorServer, write_kubeconfig
from tests.support.kubectl import Kubectl

VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class ApiRequest:
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str | None
    name: str | None
    user_agent: str = field(compare=False)
    body: Any = field(default=None, compare=False, hash=False)

    @property
    def resource_path(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        group = self.group or "core"
        return f"{self.verb} {group}/{self.resource_path} {self.name or ''}{where}".strip()


def attributes(method: str, path: str, query: Mapping[str, str]) -> tuple[Any, ...] | None:
    """(verb, group, resource, subresource, namespace, name) of a resource request; None for
    discovery and other non-resource URLs (which every authenticated user may read)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if method == "GET":
        verb = "watch" if query.get("watch") in ("true", "1") else "get" if name else "list"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = VERBS[method]
    return verb, group, resource, subresource or "", namespace, name


@attrs.define(kw_only=True)
class RecordingEmulator(ApiEmulator):
    """The test API, keeping every resource request it is sent."""

    requests: list[ApiRequest] = attrs.field(factory=list, init=False)

    async def _handle(self, request: rendering.Request) -> Any:
        found = attributes(request.method, request.url.path, request.url.query)
        if found is not None:
            agent = next((v for k, v in request.headers.items() if k.lower() == "user-agent"), "")
            try:
                body = json.loads(request.body) if request.body else None
            except ValueError:
                body = None
            self.requests.append(ApiRequest(*found, user_agent=agent, body=body))
        return await super()._handle(request)


@dataclass
class AuditLog:
    emulator: RecordingEmulator

    def by_operator(self) -> list[ApiRequest]:
        """Requests not made by kubectl (the test's own, as a user)."""
        return [r for r in list(self.emulator.requests) if not r.user_agent.startswith("kubectl")]


@contextmanager
def audited_api(tmp_path: Path) -> Iterator[tuple[Api, AuditLog]]:
    emulator = RecordingEmulator()
    with EmulatorServer(emulator) as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        yield (
            Api(server, kubeconfig, Kubectl(kubeconfig, tmp_path / "kubectl-cache")),
            AuditLog(emulator),
        )


# -- RBAC ------------------------------------------------------------------------------------


def rules_for(
    rbac: list[dict[str, Any]], account: tuple[str, str], namespace: str | None
) -> list[dict[str, Any]]:
    """The rules granted to ServiceAccount `account` (namespace, name) cluster-wide (namespace
    None) or in `namespace` (cluster-wide grants included)."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in rbac}
    subject = {"kind": "ServiceAccount", "namespace": account[0], "name": account[1]}
    granted = []
    for binding in rbac:
        kind = binding["kind"]
        if kind not in ("ClusterRoleBinding", "RoleBinding") or subject not in binding["subjects"]:
            continue
        if kind == "RoleBinding" and binding["metadata"]["namespace"] != namespace:
            continue
        ref = binding["roleRef"]
        role_namespace = None if ref["kind"] == "ClusterRole" else binding["metadata"]["namespace"]
        granted.extend(roles[ref["kind"], role_namespace, ref["name"]]["rules"])
    return granted


def allowed(request: ApiRequest, rbac: list[dict[str, Any]], account: tuple[str, str]) -> bool:
    for rule in rules_for(rbac, account, request.namespace):
        names = rule.get("resourceNames") or []
        if (
            request.group in rule["apiGroups"]
            and request.resource_path in rule["resources"]
            and request.verb in rule["verbs"]
            # resourceNames cannot limit list, watch or create (kube-apiserver's rule)
            and (not names or (request.name in names and request.verb not in ("list", "create")))
        ):
            return True
    return False


def grants(
    rbac: list[dict[str, Any]], account: tuple[str, str], namespace: str | None
) -> set[tuple[str, str, str]]:
    """(group, resource, verb) granted in `namespace` (None: cluster-wide)."""
    return {
        (group, resource, verb)
        for rule in rules_for(rbac, account, namespace)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }

"""The kubernetes source: the dependencies a cluster's own manifests imply.

Pure: plain dicts in (the objects as the API returns them), edges out. A workload
(Deployment, StatefulSet, DaemonSet, Job, CronJob) depends on a Service when one of its
containers or init containers names one of the Service's addresses (`svc`, `svc.ns`,
`svc.ns.svc`, `svc.ns.svc.cluster.local`, with or without a port) in an env value (with
Kubernetes' `$(VAR)` expansion, and the values of the ConfigMaps `envFrom` and
`configMapKeyRef` name), an argument or a command (`addresses` finds them); the Service's
selector says which workload serves it. OpenShift's `app.openshift.io/connects-to` annotation
names workloads directly.

Not dependencies: the workload itself, localhost and listen addresses, and the telemetry
pipeline (`OTEL_*` variables, OTLP's ports 4317 and 4318). A name no Service in scope carries
makes no edge: it is `Unresolved`, with its evidence.

Node names are what traces call the service: `OTEL_SERVICE_NAME` (a literal, or a pod label
through `fieldRef`), else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the
`app.kubernetes.io/name` label, else `app`, else the workload's name. Calls to message brokers
(Kafka, AMQP, NATS, MQTT schemes or ports) are async, every other call sync and hard.

The entries keep only what inference reads, so the operator's index of 10,000 objects stays
small, and compare equal when nothing it reads changed (a status update wakes nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from servicegraph.addresses import HostReference, references_in
from servicegraph.graph import EdgeAttributes, Evidence, Observation, SourceKind, without_gc

WORKLOAD_KINDS: Final = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
CONNECTS_TO: Final = "app.openshift.io/connects-to"
MAX_VALUE_LENGTH: Final = 512  # of an evidence value
MAX_EVIDENCE: Final = 3  # per edge: enough to find it, bounded for the snapshot
# ConfigMaps can hold dashboards and whole config files; env values are short.
MAX_CONFIG_VALUE: Final = 4096
MAX_CONFIG_BYTES: Final = 64 * 1024
MAX_STRINGS: Final = 256  # per container: env entries, arguments and command words each
CLUSTER_DOMAIN: Final = "svc.cluster.local"
TELEMETRY_PREFIX: Final = "OTEL_"
_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")
_FIELD_LABEL = re.compile(r"^metadata\.labels\['([^']+)'\]$")
ASYNC: Final = EdgeAttributes(communication_mode="async", criticality="soft")
SYNC: Final = EdgeAttributes()


@dataclass(frozen=True, slots=True)
class EnvVar:
    name: str
    value: str | None  # a literal; None when it comes from elsewhere
    config_map: tuple[str, str] | None = None  # (ConfigMap, key) of a configMapKeyRef
    label: str | None = None  # the pod label a fieldRef reads


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    env: tuple[EnvVar, ...] = ()
    env_from: tuple[tuple[str, str], ...] = ()  # (ConfigMap, prefix)
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkloadEntry:
    namespace: str
    name: str
    kind: str
    labels: tuple[tuple[str, str], ...]  # the pod template's
    containers: tuple[Container, ...]
    connects_to: tuple[str, ...] = ()

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> WorkloadEntry | None:
        kind = body.get("kind")
        metadata = _mapping(body.get("metadata"))
        name = metadata.get("name")
        if kind not in WORKLOAD_KINDS or not isinstance(name, str):
            return None
        spec = _mapping(body.get("spec"))
        if kind == "CronJob":
            spec = _mapping(_mapping(spec.get("jobTemplate")).get("spec"))
        template = _mapping(spec.get("template"))
        pod = _mapping(template.get("spec"))
        containers = [
            _container(c)
            for key in ("initContainers", "containers")
            for c in _list(pod.get(key))
            if isinstance(c, Mapping)
        ]
        return cls(
            namespace=str(metadata.get("namespace") or ""),
            name=name,
            kind=str(kind),
            labels=_string_pairs(_mapping(template.get("metadata")).get("labels")),
            containers=tuple(containers),
            connects_to=_connects_to(_mapping(metadata.get("annotations")).get(CONNECTS_TO)),
        )

    @property
    def service_name(self) -> str:
        """What traces call it (see the module's rules)."""
        labels = dict(self.labels)
        for container in self.containers:
            for var in container.env:
                if var.name == "OTEL_SERVICE_NAME":
                    if var.value:
                        return var.value
                    if var.label and labels.get(var.label):
                        return labels[var.label]
        for container in self.containers:
            for var in container.env:
                if var.name == "OTEL_RESOURCE_ATTRIBUTES" and var.value:
                    for pair in var.value.split(","):
                        key, _, value = pair.partition("=")
                        if key.strip() == "service.name" and value.strip():
                            return value.strip()
        return labels.get("app.kubernetes.io/name") or labels.get("app") or self.name


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    namespace: str
    name: str
    selector: tuple[tuple[str, str], ...]

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> ServiceEntry | None:
        metadata = _mapping(body.get("metadata"))
        name = metadata.get("name")
        if body.get("kind") != "Service" or not isinstance(name, str):
            return None
        return cls(
            str(metadata.get("namespace") or ""),
            name,
            _string_pairs(_mapping(body.get("spec")).get("selector")),
        )

    def selects(self, workload: WorkloadEntry) -> bool:
        labels = dict(workload.labels)
        return bool(self.selector) and all(labels.get(k) == v for k, v in self.selector)


@dataclass(frozen=True, slots=True)
class ConfigMapEntry:
    namespace: str
    name: str
    data: tuple[tuple[str, str], ...]  # short values only (MAX_CONFIG_VALUE, MAX_CONFIG_BYTES)

    @classmethod
    def from_object(cls, body: Mapping[str, Any]) -> ConfigMapEntry | None:
        metadata = _mapping(body.get("metadata"))
        name = metadata.get("name")
        if body.get("kind") != "ConfigMap" or not isinstance(name, str):
            return None
        kept, size = [], 0
        for key, value in sorted(_mapping(body.get("data")).items()):
            if isinstance(key, str) and isinstance(value, str) and len(value) <= MAX_CONFIG_VALUE:
                size += len(key) + len(value)
                if size > MAX_CONFIG_BYTES:
                    break
                kept.append((key, value))
        return cls(str(metadata.get("namespace") or ""), name, tuple(kept))


ManifestEntry = WorkloadEntry | ServiceEntry | ConfigMapEntry


def entry_of(body: Mapping[str, Any]) -> ManifestEntry | None:
    """What inference keeps of an object; None for every other kind, or no usable object."""
    if not isinstance(body, Mapping):
        return None
    kind, version = body.get("kind"), body.get("apiVersion")
    if kind in WORKLOAD_KINDS and version == WORKLOAD_KINDS[kind]:
        return WorkloadEntry.from_object(body)
    if kind == "Service" and version == "v1":
        return ServiceEntry.from_object(body)
    if kind == "ConfigMap" and version == "v1":
        return ConfigMapEntry.from_object(body)
    return None


@dataclass(frozen=True, slots=True)
class InferredEdge:
    source: str
    target: str
    evidence: tuple[Evidence, ...]
    attributes: EdgeAttributes


@dataclass(frozen=True, slots=True)
class Unresolved:
    source: str
    reference: str
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Inference:
    services: tuple[str, ...]
    edges: tuple[InferredEdge, ...]
    unresolved: tuple[Unresolved, ...]


@without_gc
def entries_of(bodies: Iterable[Mapping[str, Any]]) -> list[ManifestEntry]:
    """The entries of many objects at once (a folder of manifests, a benchmark)."""
    return [entry for entry in map(entry_of, bodies) if entry is not None]


@without_gc
def infer(entries: Iterable[ManifestEntry]) -> Inference:
    """Every edge the manifests imply, sorted; the same whatever the order of `entries`."""
    workloads: list[WorkloadEntry] = []
    services: list[ServiceEntry] = []
    config_maps: dict[tuple[str, str], dict[str, str]] = {}
    for entry in entries:
        if isinstance(entry, WorkloadEntry):
            workloads.append(entry)
        elif isinstance(entry, ServiceEntry):
            services.append(entry)
        else:
            config_maps[(entry.namespace, entry.name)] = dict(entry.data)
    workloads.sort(key=lambda w: (w.namespace, w.name, w.kind))
    namespaces = {w.namespace for w in workloads} | {s.namespace for s in services}
    names = {(w.namespace, w.name): w.service_name for w in workloads}
    by_labels = _workloads_by_label(workloads)
    # address -> (namespace, the names the Service's workloads carry); short forms per namespace
    targets: dict[tuple[str, str], tuple[str, ...]] = {}
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        serving = _serving(service, by_labels)
        target = tuple(sorted({names[(w.namespace, w.name)] for w in serving})) or (service.name,)
        ns = service.namespace
        for address in (
            f"{service.name}.{ns}",
            f"{service.name}.{ns}.svc",
            f"{service.name}.{ns}.{CLUSTER_DOMAIN}",
        ):
            targets[("", address)] = target
        targets[(ns, service.name)] = target

    found: dict[tuple[str, str], tuple[list[Evidence], bool]] = {}
    unresolved: dict[tuple[str, str], Unresolved] = {}
    for workload in workloads:
        caller = names[(workload.namespace, workload.name)]
        for container, field, value, reference in _references(workload, config_maps):
            served = targets.get((workload.namespace, reference.host)) or targets.get(
                ("", reference.host)
            )
            evidence = Evidence(
                workload.kind,
                workload.name,
                container,
                field,
                value[:MAX_VALUE_LENGTH],
                workload.namespace,
            )
            if served is None:
                if _names_a_service(reference.host, namespaces):
                    unresolved.setdefault(
                        (caller, reference.text), Unresolved(caller, reference.text, evidence)
                    )
                continue
            for callee in served:
                if callee != caller:
                    kept, messaging = found.setdefault((caller, callee), ([], False))
                    kept.append(evidence)
                    found[(caller, callee)] = (kept, messaging or reference.messaging)
        for named in workload.connects_to:
            connected = names.get((workload.namespace, named))
            evidence = Evidence(
                workload.kind,
                workload.name,
                None,
                f"annotations[{CONNECTS_TO}]",
                named,
                workload.namespace,
            )
            if connected is None:
                unresolved.setdefault((caller, named), Unresolved(caller, named, evidence))
            elif connected != caller:
                found.setdefault((caller, connected), ([], False))[0].append(evidence)

    edges = tuple(
        InferredEdge(
            source,
            target,
            (evidence[0],)
            if len(evidence) == 1
            else tuple(sorted(set(evidence), key=_evidence_order)[:MAX_EVIDENCE]),
            ASYNC if messaging else SYNC,
        )
        for (source, target), (evidence, messaging) in sorted(found.items())
    )
    return Inference(
        services=tuple(
            sorted(set(names.values()) | {t for e in edges for t in (e.source, e.target)})
        ),
        edges=edges,
        unresolved=tuple(sorted(unresolved.values(), key=lambda u: (u.source, u.reference))),
    )


def observations_of(
    inference: Inference, *, now: datetime, source_name: str = ""
) -> list[Observation]:
    """The inferred edges as the engine takes them: kind kubernetes, confidence 0.5."""
    return [
        Observation(
            edge.source,
            edge.target,
            SourceKind.KUBERNETES,
            now,
            edge.attributes,
            source_name=source_name,
            evidence=edge.evidence,
        )
        for edge in inference.edges
    ]


# --- internals ---------------------------------------------------------------------------------


def _references(
    workload: WorkloadEntry, config_maps: Mapping[tuple[str, str], Mapping[str, str]]
) -> Iterable[tuple[str, str, str, HostReference]]:
    """(container, field, value, reference) for every host each container names."""
    for container in workload.containers:
        env: dict[str, str] = {}
        sources: list[tuple[str, str, str]] = []  # (variable, field, value)
        for config_map, prefix in container.env_from:
            for key, value in config_maps.get((workload.namespace, config_map), {}).items():
                env[prefix + key] = value
                sources.append((prefix + key, f"envFrom[{config_map}][{key}]", value))
        for var in container.env:
            if var.value is not None:
                value = _expand(var.value, env)
            elif var.config_map is not None:
                found = config_maps.get((workload.namespace, var.config_map[0]), {})
                if var.config_map[1] not in found:
                    continue
                value = found[var.config_map[1]]
            else:
                continue
            env[var.name] = value
            sources.append((var.name, f"env[{var.name}]", value))
        for variable, field, value in sources:
            if variable.upper().startswith(TELEMETRY_PREFIX):
                continue  # the telemetry pipeline, not the application
            for reference in references_in(value, variable=variable):
                yield container.name, field, value, reference
        for key in ("command", "args"):
            for position, word in enumerate(getattr(container, key)):
                value = _expand(word, env)
                for reference in references_in(value, command=True):
                    yield container.name, f"{key}[{position}]", value, reference


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known variables replaced, `$$` an escaped `$`, unknown
    references left as they are."""
    if "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _VARIABLE.sub(replace, value)


def _names_a_service(host: str, namespaces: set[str]) -> bool:
    """Whether an unresolved host looks like a Service's address (not an external name)."""
    parts = host.split(".")
    if len(parts) == 1:
        return True
    if host.endswith(".svc") or host.endswith("." + CLUSTER_DOMAIN):
        return True
    return len(parts) == 2 and parts[1] in namespaces


def _workloads_by_label(
    workloads: Sequence[WorkloadEntry],
) -> dict[tuple[str, str, str], list[WorkloadEntry]]:
    index: dict[tuple[str, str, str], list[WorkloadEntry]] = {}
    for workload in workloads:
        for key, value in workload.labels:
            index.setdefault((workload.namespace, key, value), []).append(workload)
    return index


def _serving(
    service: ServiceEntry, by_labels: Mapping[tuple[str, str, str], list[WorkloadEntry]]
) -> list[WorkloadEntry]:
    if not service.selector:
        return []
    key, value = service.selector[0]
    return [w for w in by_labels.get((service.namespace, key, value), []) if service.selects(w)]


def _evidence_order(evidence: Evidence) -> tuple[str, ...]:
    return (
        evidence.namespace or "",
        evidence.kind,
        evidence.name,
        evidence.container or "",
        evidence.field,
    )


def _container(raw: Mapping[str, Any]) -> Container:
    env = []
    for item in _list(raw.get("env"))[:MAX_STRINGS]:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            continue
        value = item.get("value")
        source = _mapping(item.get("valueFrom"))
        key_ref = _mapping(source.get("configMapKeyRef"))
        field_path = _mapping(source.get("fieldRef")).get("fieldPath")
        label = _FIELD_LABEL.match(field_path) if isinstance(field_path, str) else None
        env.append(
            EnvVar(
                item["name"],
                value if isinstance(value, str) else None,
                (str(key_ref["name"]), str(key_ref["key"]))
                if isinstance(key_ref.get("name"), str) and isinstance(key_ref.get("key"), str)
                else None,
                label[1] if label else None,
            )
        )
    env_from = tuple(
        (str(ref["name"]), str(item.get("prefix") or ""))
        for item in _list(raw.get("envFrom"))
        if isinstance(item, Mapping)
        for ref in [_mapping(item.get("configMapRef"))]
        if isinstance(ref.get("name"), str)
    )
    return Container(
        name=str(raw.get("name") or ""),
        env=tuple(env),
        env_from=env_from,
        command=_strings(raw.get("command")),
        args=_strings(raw.get("args")),
    )


def _connects_to(raw: Any) -> tuple[str, ...]:
    """The annotation's forms: a JSON array of names or of {"apiVersion", "kind", "name"}, or
    names separated by commas."""
    if not isinstance(raw, str) or not raw.strip():
        return ()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = [part.strip() for part in raw.split(",")]
    if not isinstance(parsed, list):
        return ()
    names = []
    for item in parsed[:MAX_STRINGS]:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name:
            names.append(name)
    return tuple(sorted(set(names)))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in _list(value)[:MAX_STRINGS] if isinstance(v, str))


def _string_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (k, v) for k, v in _mapping(value).items() if isinstance(k, str) and isinstance(v, str)
        )
    )

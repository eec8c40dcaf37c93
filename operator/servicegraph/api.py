"""The API contract: pydantic models of the ServiceDependency and ServiceGraph custom resources.

The CRDs in `crds/` are generated from these models (see `crds.py`), so a field, default,
enum or range changes here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from servicegraph.graph import (
    EdgeAttributes,
    Graph,
    Observation,
    Retry,
    ServiceDeclaration,
    analyse,
)

GROUP: Final = "graph.slo-engine.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "graph.slo-engine.io/v1alpha1"
CATEGORY = "slo-engine"

# What OpenTelemetry's service.name looks like in practice; anything else (spaces, quotes,
# braces) could not be a real service and would be unsafe to paste into PromQL or JSONPath.
SERVICE_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$"
# Go / Prometheus durations as users write them: 30s, 15m, 1h30m, 168h.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w))+$"
METRIC_PREFIX_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

ServiceName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=SERVICE_NAME_PATTERN)
]
Duration = Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN)]
ResourceName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]
SecretKey = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
]
NamespaceName = Annotated[str, StringConstraints(min_length=1, max_length=63)]
ShortText = Annotated[str, StringConstraints(max_length=253)]

MAX_DEPENDENCIES = 512
MAX_SAMPLES = 10


class ApiModel(BaseModel):
    """Fields are camelCase on the wire, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )


class Tier(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class CommunicationMode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class Criticality(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    DEGRADED = "degraded"


class Protocol(StrEnum):
    HTTP = "http"
    GRPC = "grpc"
    KAFKA = "kafka"
    AMQP = "amqp"
    SQL = "sql"
    REDIS = "redis"
    OTHER = "other"


class RetryPolicy(ApiModel):
    """How the caller retries a failed call."""

    max_retries: int = Field(3, ge=0, le=100, description="Retries after the first attempt.")
    backoff_ms: int = Field(100, ge=0, le=3_600_000, description="Delay before the first retry.")
    backoff_multiplier: float = Field(2.0, ge=1.0, le=10.0, description="Growth of the delay.")


class Dependency(ApiModel):
    """One service this service calls."""

    service: ServiceName = Field(description="The called service's name (its service.name).")
    communication_mode: CommunicationMode = Field(
        CommunicationMode.SYNC, description="sync: the caller waits; async: through a queue."
    )
    criticality: Criticality = Field(
        Criticality.HARD,
        description="hard: the caller fails without it; soft: it degrades; degraded: optional.",
    )
    protocol: Protocol | None = Field(None, description="Wire protocol of the call.")
    timeout_ms: int | None = Field(None, ge=1, le=3_600_000, description="Call timeout.")
    retry: RetryPolicy | None = Field(None, description="Retry policy of the caller.")


class ServiceDependencySpec(ApiModel):
    """A service and what it calls."""

    service: ServiceName | None = Field(
        None, description="The service's name as OpenTelemetry reports it; default metadata.name."
    )
    team: Annotated[str, StringConstraints(max_length=63, pattern=DNS_SUBDOMAIN_PATTERN)] | None = (
        Field(None, description="Owning team.")
    )
    tier: Tier | None = Field(None, description="Business tier of the service.")
    depends_on: list[Dependency] = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="Services this service calls, at most one entry per target.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["service"],
        },
    )


class Condition(ApiModel):
    """metav1.Condition."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316)]
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(None, ge=0)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    message: Annotated[str, StringConstraints(max_length=32768)] = ""


def _conditions_field() -> Any:
    return Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class ServiceDependencyStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = _conditions_field()
    resolved_targets: list[str] = Field(default_factory=list)
    unresolved_targets: list[str] = Field(default_factory=list)
    in_cycle: bool | None = None


class SecretKeyRef(ApiModel):
    """A key of a Secret in the ServiceGraph's namespace."""

    name: ResourceName
    key: SecretKey


class PrometheusEndpoint(ApiModel):
    """A Prometheus-compatible query API (Prometheus, Thanos, Mimir, Cortex)."""

    url: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$")]
    headers: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict,
        description="Extra request headers, such as X-Scope-OrgID for a Mimir tenant.",
        json_schema_extra={"maxProperties": 32},
    )
    bearer_token_secret_ref: SecretKeyRef | None = None
    ca_secret_ref: SecretKeyRef | None = None
    timeout: Duration = "30s"


class ObservedSource(ApiModel):
    """Where observed dependencies come from: OpenTelemetry service-graph metrics."""

    prometheus: PrometheusEndpoint
    metric_prefix: Annotated[
        str, StringConstraints(max_length=200, pattern=METRIC_PREFIX_PATTERN)
    ] = Field("traces_service_graph", description="Prefix of the service-graph metrics.")
    interval: Duration = Field("15m", description="How often to poll.")
    window: Duration = Field("1h", description="How far back an observation counts.")
    min_request_rate: float = Field(
        0.0, ge=0, description="Requests per second below which an observed edge is noise."
    )


class GraphSelector(ApiModel):
    """Which ServiceDependency objects make up the graph."""

    namespaces: list[
        Annotated[
            str,
            StringConstraints(
                min_length=1, max_length=63, pattern=r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"
            ),
        ]
    ] = Field(
        default_factory=list,
        max_length=256,
        description='Namespaces to read; empty means the graph\'s own namespace, ["*"] all.',
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "x-kubernetes-validations": [
                {
                    "rule": "!self.exists(n, n == '*') || size(self) == 1",
                    "message": "'*' selects every namespace and cannot be combined with names",
                }
            ],
        },
    )
    match_labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, description="Labels a ServiceDependency must carry."
    )

    def selects(self, namespace: str | None, labels: Mapping[str, str], home: str | None) -> bool:
        """Whether an object in `namespace` with `labels` belongs to a graph living in `home`."""
        namespaces: list[str | None] = [*self.namespaces] or [home]
        if "*" not in namespaces and namespace not in namespaces:
            return False
        return all(labels.get(key) == value for key, value in self.match_labels.items())


class SnapshotSpec(ApiModel):
    config_map_name: ResourceName | None = Field(
        None, description="Name of the snapshot ConfigMap; default <graph name>-graph."
    )


class ServiceGraphSpec(ApiModel):
    """What to merge into one graph, and how."""

    selector: GraphSelector = Field(default_factory=GraphSelector)
    observed: ObservedSource | None = Field(
        None, description="Observed dependencies; absent means a declared-only graph."
    )
    stale_after: Duration = Field(
        "168h", description="An observed edge not seen for this long is stale."
    )
    acknowledged_cycles: list[
        Annotated[list[ServiceName], Field(min_length=2, max_length=MAX_DEPENDENCIES)]
    ] = Field(
        default_factory=list,
        max_length=256,
        description="Known cycles (their members, in any order) that raise no warning.",
    )
    snapshot: SnapshotSpec = Field(default_factory=SnapshotSpec)

    def analyse(
        self,
        declarations: Iterable[ServiceDeclaration],
        observations: Iterable[Observation] = (),
        *,
        now: datetime,
    ) -> Graph:
        """The graph this spec asks for, from the selected declarations and the observations."""
        return analyse(
            declarations,
            observations,
            now=now,
            stale_after=timedelta(seconds=parse_duration(self.stale_after)),
            acknowledged_cycles=self.acknowledged_cycles,
            observing=self.observed is not None,
        )


class ObservedStatus(ApiModel):
    last_poll_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    last_success_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    last_error: str | None = None
    series: int | None = Field(None, ge=0)


class SnapshotStatus(ApiModel):
    config_map: str | None = None
    revision: str | None = None
    bytes: int | None = Field(None, ge=0)
    shards: int | None = Field(None, ge=0)
    updated_at: str | None = Field(None, json_schema_extra={"format": "date-time"})


class EdgeRef(ApiModel):
    source: str
    target: str


class DriftSamples(ApiModel):
    undeclared: list[EdgeRef] = Field(default_factory=list, max_length=MAX_SAMPLES)
    unobserved: list[EdgeRef] = Field(default_factory=list, max_length=MAX_SAMPLES)


class ServiceGraphStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = _conditions_field()
    services: int = 0
    edges: int = 0
    declared_edges: int = 0
    observed_edges: int = 0
    stale_edges: int = 0
    cycles: int = 0
    undeclared: int = 0
    unobserved: int = 0
    drift: int = Field(0, description="undeclared + unobserved.")
    cycle_samples: list[list[str]] = Field(default_factory=list, max_length=MAX_SAMPLES)
    drift_samples: DriftSamples = Field(default_factory=DriftSamples)
    observed: ObservedStatus | None = None
    snapshot: SnapshotStatus | None = None


class ObjectMeta(BaseModel):
    """The parts of metadata this project reads; the API server owns the rest."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None


class ServiceDependency(ApiModel):
    api_version: Literal["graph.slo-engine.io/v1alpha1"] = "graph.slo-engine.io/v1alpha1"
    kind: Literal["ServiceDependency"] = "ServiceDependency"
    metadata: ObjectMeta
    spec: ServiceDependencySpec = Field(default_factory=ServiceDependencySpec)
    status: ServiceDependencyStatus | None = None

    @property
    def service(self) -> str:
        return self.spec.service or self.metadata.name

    def declaration(self) -> ServiceDeclaration:
        """What the graph engine needs of this object."""
        return ServiceDeclaration(
            name=self.service,
            namespace=self.metadata.namespace,
            object_name=self.metadata.name,
            team=self.spec.team,
            tier=self.spec.tier,
            depends_on=tuple(
                (
                    dep.service,
                    EdgeAttributes(
                        communication_mode=dep.communication_mode,
                        criticality=dep.criticality,
                        protocol=dep.protocol,
                        timeout_ms=dep.timeout_ms,
                        retry=Retry(
                            dep.retry.max_retries,
                            dep.retry.backoff_ms,
                            dep.retry.backoff_multiplier,
                        )
                        if dep.retry
                        else None,
                    ),
                )
                for dep in self.spec.depends_on
            ),
        )


class ServiceGraph(ApiModel):
    api_version: Literal["graph.slo-engine.io/v1alpha1"] = "graph.slo-engine.io/v1alpha1"
    kind: Literal["ServiceGraph"] = "ServiceGraph"
    metadata: ObjectMeta
    spec: ServiceGraphSpec = Field(default_factory=ServiceGraphSpec)
    status: ServiceGraphStatus | None = None

    @property
    def snapshot_name(self) -> str:
        return self.spec.snapshot.config_map_name or f"{self.metadata.name}-graph"


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 1h30m (the DURATION_PATTERN grammar)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 15m, 1h30m, 168h)")
    return sum(int(n) * units[u] for n, u in parts)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ResourceKind:
    """What a CRD says about a kind beyond its schema."""

    model: type[ApiModel]
    kind: str
    plural: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    # Rules over the whole object: only these can see metadata.name.
    object_rules: tuple[dict[str, str], ...] = field(default=())


def _condition_column(name: str, condition: str) -> PrinterColumn:
    return PrinterColumn(name, "string", f'.status.conditions[?(@.type=="{condition}")].status')


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")

SERVICE_DEPENDENCY = ResourceKind(
    model=ServiceDependency,
    kind="ServiceDependency",
    plural="servicedependencies",
    short_names=("sdep",),
    printer_columns=(
        PrinterColumn(
            "Service", "string", ".spec.service", "Service name; default the object's name"
        ),
        PrinterColumn("Team", "string", ".spec.team"),
        PrinterColumn("Tier", "string", ".spec.tier"),
        _condition_column("Accepted", "Accepted"),
        PrinterColumn("In-Cycle", "boolean", ".status.inCycle"),
        PrinterColumn("Unresolved", "string", ".status.unresolvedTargets", priority=1),
        _AGE,
    ),
    object_rules=(
        {
            "rule": "!has(self.spec) || !has(self.spec.dependsOn) || self.spec.dependsOn.all(d, "
            "d.service != (has(self.spec.service) ? self.spec.service : self.metadata.name))",
            "message": "a service cannot depend on itself",
            "fieldPath": ".spec.dependsOn",
            "reason": "FieldValueInvalid",
        },
    ),
)

SERVICE_GRAPH = ResourceKind(
    model=ServiceGraph,
    kind="ServiceGraph",
    plural="servicegraphs",
    short_names=("sg",),
    printer_columns=(
        PrinterColumn("Services", "integer", ".status.services"),
        PrinterColumn("Edges", "integer", ".status.edges"),
        PrinterColumn("Cycles", "integer", ".status.cycles"),
        PrinterColumn("Stale", "integer", ".status.staleEdges"),
        PrinterColumn("Drift", "integer", ".status.drift"),
        _condition_column("Ready", "Ready"),
        PrinterColumn("Snapshot", "string", ".status.snapshot.configMap", priority=1),
        _AGE,
    ),
)

KINDS = (SERVICE_DEPENDENCY, SERVICE_GRAPH)

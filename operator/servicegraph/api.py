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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    JsonValue,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from servicegraph.graph import (
    EdgeAttributes,
    Graph,
    Observation,
    Retry,
    ServiceDeclaration,
    SourceKind,
    analyse,
)

GROUP: Final = "graph.slo-engine.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "graph.slo-engine.io/v1alpha1"
CATEGORY = "slo-engine"

# What OpenTelemetry's service.name looks like in practice; anything else (spaces, quotes,
# braces) could not be a real service and would be unsafe to paste into PromQL or JSONPath.
SERVICE_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$"
# Go / Prometheus durations as users write them: 30s, 15m, 1h30m, 168h, 7d, 2w. At most nine
# digits a term and 32 characters in all (DURATION_MAX_LENGTH), so no duration exceeds about
# 1.8e18 ms: the CRD's CEL rules count in int64 milliseconds and cannot overflow, and neither
# can Python's float (a 30-digit "staleAfter" used to crash `timedelta`).
DURATION_PATTERN = r"^([0-9]{1,9}(ms|s|m|h|d|w))+$"
DURATION_MAX_LENGTH = 32
METRIC_PREFIX_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
URL_PATTERN = r"^https?://[^\s]+$"
# What each pattern means, for messages to people (flags); manifests keep the API server's
# wording, which quotes the pattern.
PATTERN_MEANINGS: Final = {
    SERVICE_NAME_PATTERN: "a service name: letters, digits, '.', '_' and '-', starting and "
    "ending with a letter or digit",
    DURATION_PATTERN: "a duration such as 30s, 5m, 1h30m or 7d (units ms, s, m, h, d, w)",
    METRIC_PREFIX_PATTERN: "a Prometheus metric name prefix: letters, digits, '_' and ':', "
    "not starting with a digit",
    DNS_SUBDOMAIN_PATTERN: "a Kubernetes name: lower-case letters, digits, '-' and '.'",
    DNS_LABEL_PATTERN: "a DNS label: lower-case letters, digits and '-'",
    URL_PATTERN: "an http:// or https:// URL, such as http://prometheus.monitoring:9090",
}

ServiceName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=SERVICE_NAME_PATTERN)
]
Duration = Annotated[
    str, StringConstraints(max_length=DURATION_MAX_LENGTH, pattern=DURATION_PATTERN)
]
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
# A cycle sample holds its first MAX_CYCLE_SAMPLE_NAMES members and then, for a longer cycle,
# one "and N more" entry (see `status.cycle_sample`).
MAX_CYCLE_SAMPLE_NAMES = 20
MAX_LAST_ERROR = 1024
MAX_CONDITIONS = 32
# RFC 3339 timestamps as the API server writes them, with room for fractions and offsets.
MAX_TIMESTAMP_LENGTH = 64
MAX_REQUEST_RATE = 1e9
StatusName = Annotated[str, StringConstraints(max_length=253)]
Timestamp = Annotated[str, StringConstraints(max_length=MAX_TIMESTAMP_LENGTH)]

UNIT_MILLIS: Final = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}


def duration_millis(text: str) -> int:
    """Exact milliseconds in a duration such as 1h30m (units ms s m h d w, any number of
    digits); ValueError for anything else."""
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text[:40]!r} (expected e.g. 30s, 15m, 1h30m, 168h)")
    return sum(int(n) * UNIT_MILLIS[u] for n, u in parts)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as 1h30m; ValueError for what is no duration, or one too
    long for a float."""
    try:
        return duration_millis(text) / 1000
    except OverflowError:
        raise ValueError(f"duration too long: {text[:40]!r}") from None


def cel_millis(expr: str) -> str:
    """CEL for the milliseconds in the duration string `expr`, as `duration_millis` counts.

    CEL's own `duration()` knows neither `d` nor `w`, so the rule splits the string into terms
    with the Kubernetes regex library (`findAll`, `find`) and adds them up with the lists
    library (`sum`), both in every supported Kubernetes release. The bounded pattern keeps the
    int64 sum from overflowing; cel_reference.py provides the same functions offline, and
    native_rules.py the rules in Python."""
    units = ", ".join(f"'{unit}': {ms}" for unit, ms in UNIT_MILLIS.items())
    return (
        f"{expr}.findAll('[0-9]+[a-z]+')"
        f".map(t, int(t.find('[0-9]+')) * {{{units}}}[t.find('[a-z]+')]).sum()"
    )


@dataclass(frozen=True)
class DurationRange:
    """Bounds of a duration field, enforced by the models and by the CRD's CEL rule alike.

    Use as `Annotated[Duration, DurationRange("10s", "24h")]`."""

    minimum: str
    maximum: str

    @property
    def message(self) -> str:
        return f"must be between {self.minimum} and {self.maximum}"

    def check(self, value: str) -> str:
        millis = duration_millis(value)
        if not duration_millis(self.minimum) <= millis <= duration_millis(self.maximum):
            raise PydanticCustomError(
                "duration_range",
                "{message}, not {value}",
                {"message": self.message, "value": value},
            )
        return value

    def cel_rule(self) -> dict[str, str]:
        low, high = duration_millis(self.minimum), duration_millis(self.maximum)
        return {
            "rule": f"[{cel_millis('self')}].all(ms, ms >= {low} && ms <= {high})",
            "message": self.message,
            "messageExpression": f"'{self.message}, not ' + self",
        }

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-validations"] = [self.cel_rule()]
        return json_schema


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

    max_retries: int = Field(
        3, ge=0, le=100, strict=True, description="Retries after the first attempt."
    )
    backoff_ms: int = Field(
        100, ge=0, le=3_600_000, strict=True, description="Delay before the first retry."
    )
    backoff_multiplier: float = Field(
        2.0, ge=1.0, le=10.0, strict=True, allow_inf_nan=False, description="Growth of the delay."
    )


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
    timeout_ms: int | None = Field(
        None, ge=1, le=3_600_000, strict=True, description="Call timeout."
    )
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
    last_transition_time: Timestamp = Field(json_schema_extra={"format": "date-time"})
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    message: Annotated[str, StringConstraints(max_length=32768)] = ""


def _conditions_field() -> Any:
    return Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class ServiceDependencyStatus(ApiModel):
    observed_generation: int | None = Field(None, ge=0)
    service: StatusName | None = Field(
        None, description="The service this object declares: spec.service, or the object's name."
    )
    conditions: list[Condition] = _conditions_field()
    resolved_targets: list[StatusName] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    unresolved_targets: list[StatusName] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    in_cycle: bool | None = None


class SecretKeyRef(ApiModel):
    """A key of a Secret in the ServiceGraph's namespace."""

    name: ResourceName
    key: SecretKey


class PrometheusEndpoint(ApiModel):
    """A Prometheus-compatible query API (Prometheus, Thanos, Mimir, Cortex)."""

    url: Annotated[str, StringConstraints(max_length=2048, pattern=URL_PATTERN)]
    headers: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict,
        description="Extra request headers, such as X-Scope-OrgID for a Mimir tenant.",
        json_schema_extra={"maxProperties": 32},
    )
    bearer_token_secret_ref: SecretKeyRef | None = None
    ca_secret_ref: SecretKeyRef | None = None
    timeout: Annotated[Duration, DurationRange("1s", "5m")] = Field(
        "30s", description="How long one query may take."
    )

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)


class PolledSource(ApiModel):
    """What every polled source has: how often, how far back, what is noise, how long kept."""

    interval: Annotated[Duration, DurationRange("1s", "24h")] = Field(
        "15m", description="How often to poll."
    )
    window: Annotated[Duration, DurationRange("10s", "30d")] = Field(
        "1h", description="How far back an observation counts."
    )
    min_request_rate: float = Field(
        0.0,
        ge=0,
        le=MAX_REQUEST_RATE,
        strict=True,
        allow_inf_nan=False,
        description="Requests per second below which an observed edge is noise.",
    )
    retention: Annotated[Duration, DurationRange("10s", "8760h")] | None = Field(
        None,
        description="An edge or node that only observation knows and nobody has seen within "
        "the retention leaves the graph and the snapshot. At least staleAfter; default 720h "
        "(30 days), or staleAfter when that is longer.",
    )

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)


DEFAULT_METRIC_PREFIX: Final = "traces_service_graph"
MetricPrefix = Annotated[str, StringConstraints(max_length=200, pattern=METRIC_PREFIX_PATTERN)]


class ObservedSource(PolledSource):
    """Where observed dependencies come from: OpenTelemetry service-graph metrics.

    The graph's first source, kept as it was; `spec.sources` names more, of every type."""

    prometheus: PrometheusEndpoint
    metric_prefix: MetricPrefix = Field(
        DEFAULT_METRIC_PREFIX, description="Prefix of the service-graph metrics."
    )


class SourceType(StrEnum):
    """What a source reads: OpenTelemetry service-graph metrics, a service mesh's metrics
    (both from Prometheus), or the cluster's own workloads and Services."""

    OTEL = "otel"
    ISTIO = "istio"
    LINKERD = "linkerd"
    KUBERNETES = "kubernetes"


SOURCE_KINDS: Final[Mapping[SourceType, SourceKind]] = {
    SourceType.OTEL: SourceKind.OTEL,
    SourceType.ISTIO: SourceKind.SERVICE_MESH,
    SourceType.LINKERD: SourceKind.SERVICE_MESH,
    SourceType.KUBERNETES: SourceKind.KUBERNETES,
}
MAX_SOURCES: Final = 8
LEGACY_SOURCE_NAME: Final = "otel"  # what `spec.observed` is called among the sources
RESERVED_SOURCE_NAMES: Final = frozenset({SourceKind.MANUAL.value})


class DiscoverySource(PolledSource):
    """One source of observed or inferred dependencies.

    `otel`, `istio` and `linkerd` read a Prometheus-compatible API (each source its own:
    Linkerd's viz extension ships its own Prometheus); `kubernetes` reads the workloads,
    Services and ConfigMaps of the graph's namespaces through watches, and polls nothing:
    its `interval` is how often the edges it infers are marked seen."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'kubernetes' ? !has(self.prometheus) "
                    ": has(self.prometheus)",
                    "message": "prometheus is required for otel, istio and linkerd sources, "
                    "and not allowed for a kubernetes source",
                },
                {
                    "rule": "!has(self.metricPrefix) || self.type == 'otel'",
                    "message": "metricPrefix is only for otel sources",
                },
            ]
        }
    )

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
    ] = Field(
        description="The source's name in the status and the snapshot; unique in the graph.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self != 'manual'", "message": "'manual' names declared edges"}
            ]
        },
    )
    type: SourceType
    prometheus: PrometheusEndpoint | None = None
    metric_prefix: MetricPrefix | None = Field(
        None,
        description="Prefix of the service-graph metrics (otel only); default "
        f"{DEFAULT_METRIC_PREFIX}.",
    )

    @model_validator(mode="after")
    def _fits_its_type(self) -> DiscoverySource:
        if self.name in RESERVED_SOURCE_NAMES:
            raise PydanticCustomError("reserved_name", "'manual' names declared edges")
        metrics = self.type != SourceType.KUBERNETES
        if metrics != (self.prometheus is not None):
            raise PydanticCustomError(
                "source_prometheus",
                "prometheus is required for otel, istio and linkerd sources, and not allowed "
                "for a kubernetes source",
            )
        if self.metric_prefix is not None and self.type != SourceType.OTEL:
            raise PydanticCustomError("source_prefix", "metricPrefix is only for otel sources")
        return self

    @property
    def kind(self) -> SourceKind:
        return SOURCE_KINDS[SourceType(self.type)]

    @property
    def reporter(self) -> str:
        """The name its sightings carry (`graph.Observation.source_name`)."""
        return self.name

    @classmethod
    def from_observed(cls, observed: ObservedSource) -> DiscoverySource:
        """`spec.observed` as one of the sources; its sightings keep the name they always had."""
        return cls(
            name=LEGACY_SOURCE_NAME,
            type=SourceType.OTEL,
            prometheus=observed.prometheus,
            metric_prefix=observed.metric_prefix,
            interval=observed.interval,
            window=observed.window,
            min_request_rate=observed.min_request_rate,
            retention=observed.retention,
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
        if not self.selects_namespace(namespace, home):
            return False
        return all(labels.get(key) == value for key, value in self.match_labels.items())

    def selects_namespace(self, namespace: str | None, home: str | None) -> bool:
        """Whether the graph reads `namespace`: its ServiceDependency objects, and for a
        kubernetes source its workloads, Services and ConfigMaps (labels do not apply)."""
        namespaces: list[str | None] = [*self.namespaces] or [home]
        return "*" in namespaces or namespace in namespaces


class SnapshotSpec(ApiModel):
    config_map_name: ResourceName | None = Field(
        None, description="Name of the snapshot ConfigMap; default <graph name>-graph."
    )
    min_interval: Annotated[Duration, DurationRange("0s", "24h")] = Field(
        "5m",
        description="Attribute-only changes (rates, latencies, lastSeen) are written at most "
        "this often; topology changes are written at once.",
    )

    @property
    def min_interval_seconds(self) -> float:
        return parse_duration(self.min_interval)


DEFAULT_STALE_AFTER: Final = "168h"
DEFAULT_RETENTION: Final = "720h"


STALE_AFTER_CEL = f"(has(self.staleAfter) ? self.staleAfter : '{DEFAULT_STALE_AFTER}')"


def _retention_rules() -> list[JsonValue]:
    """Every source's retention >= spec.staleAfter, with the defaults the API server would
    apply (the offline check sees objects before defaulting)."""
    stale = STALE_AFTER_CEL
    given = "has(self.observed) && has(self.observed.retention)"
    each = (
        f"!has(self.sources) || self.sources.all(s, !has(s.retention) || "
        f"{cel_millis('s.retention')} >= {cel_millis(stale)})"
    )
    return [
        {
            "rule": f"!({given}) || {cel_millis('self.observed.retention')} >= {cel_millis(stale)}",
            "message": "observed.retention must be at least staleAfter",
            "messageExpression": f"'observed.retention (' + ({given} ? self.observed.retention "
            f": '') + ') must be at least staleAfter (' + {stale} + ')'",
        },
        {
            "rule": each,
            "message": "the retention of every source must be at least staleAfter",
            "messageExpression": f"'the retention of every source must be at least "
            f"staleAfter (' + {stale} + ')'",
        },
        {
            "rule": f"!has(self.observed) || !has(self.sources) || "
            f"self.sources.all(s, s.name != '{LEGACY_SOURCE_NAME}')",
            "message": f"spec.observed is the source named '{LEGACY_SOURCE_NAME}': "
            "name the others otherwise",
        },
        {
            "rule": "!has(self.sources) || "
            "self.sources.filter(s, s.type == 'kubernetes').size() <= 1",
            "message": "at most one kubernetes source",
        },
    ]


def _retention_message(where: str, retention: str, stale_after: str) -> str:
    return f"{where} ({retention}) must be at least staleAfter ({stale_after})"


class ServiceGraphSpec(ApiModel):
    """What to merge into one graph, and how."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _retention_rules()})

    selector: GraphSelector = Field(default_factory=GraphSelector)
    observed: ObservedSource | None = Field(
        None,
        description="OpenTelemetry service-graph metrics: the source named "
        f"'{LEGACY_SOURCE_NAME}'. With no sources at all the graph is declared-only.",
    )
    sources: list[DiscoverySource] = Field(
        default_factory=list,
        max_length=MAX_SOURCES,
        description="More sources: OpenTelemetry, Istio and Linkerd metrics, each from its own "
        "Prometheus, and the cluster's own manifests (type kubernetes).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    stale_after: Annotated[Duration, DurationRange("10s", "8760h")] = Field(
        DEFAULT_STALE_AFTER, description="An observed edge not seen for this long is stale."
    )
    acknowledged_cycles: list[
        Annotated[list[ServiceName], Field(min_length=2, max_length=MAX_DEPENDENCIES)]
    ] = Field(
        default_factory=list,
        max_length=256,
        description="Known cycles (their members, in any order) that raise no warning.",
    )
    snapshot: SnapshotSpec = Field(default_factory=SnapshotSpec)

    @model_validator(mode="after")
    def _sources_fit_together(self) -> ServiceGraphSpec:
        names = [source.name for source in self.sources]
        if self.observed is not None and LEGACY_SOURCE_NAME in names:
            raise PydanticCustomError(
                "source_name_taken",
                f"spec.observed is the source named '{LEGACY_SOURCE_NAME}': name the others "
                "otherwise",
            )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise PydanticCustomError(
                "duplicate_source", "two sources named {name}", {"name": duplicates[0]}
            )
        if sum(1 for source in self.sources if source.type == SourceType.KUBERNETES) > 1:
            raise PydanticCustomError("kubernetes_sources", "at most one kubernetes source")
        stale = duration_millis(self.stale_after)
        if (
            self.observed is not None
            and self.observed.retention is not None
            and duration_millis(self.observed.retention) < stale
        ):
            raise PydanticCustomError(
                "retention_shorter_than_stale_after",
                _retention_message("observed.retention", self.observed.retention, self.stale_after),
            )
        for source in self.sources:
            if source.retention is not None and duration_millis(source.retention) < stale:
                raise PydanticCustomError(
                    "retention_shorter_than_stale_after",
                    _retention_message(
                        f"the retention of source {source.name}", source.retention, self.stale_after
                    ),
                )
        return self

    @property
    def stale_after_seconds(self) -> float:
        return parse_duration(self.stale_after)

    def all_sources(self) -> list[DiscoverySource]:
        """`spec.observed` (as the source named otel) and `spec.sources`, in that order."""
        legacy = [] if self.observed is None else [DiscoverySource.from_observed(self.observed)]
        return [*legacy, *self.sources]

    def retention_seconds(self, source: PolledSource) -> float:
        """How long `source`'s history is kept: its retention, else 720h or staleAfter when
        that is longer (a stale edge must live to be seen stale)."""
        if source.retention is not None:
            return parse_duration(source.retention)
        return max(parse_duration(DEFAULT_RETENTION), self.stale_after_seconds)

    def analyse(
        self,
        declarations: Iterable[ServiceDeclaration],
        observations: Iterable[Observation] = (),
        *,
        now: datetime,
        home_namespace: str | None = None,
        figures: bool = True,
    ) -> Graph:
        """The graph this spec asks for, from the selected declarations and the observations,
        for a ServiceGraph living in `home_namespace` (see `graph.analyse` for `figures`)."""
        return analyse(
            declarations,
            observations,
            now=now,
            stale_after=timedelta(seconds=self.stale_after_seconds),
            acknowledged_cycles=self.acknowledged_cycles,
            observing=bool(self.observed is not None or self.sources),
            home_namespace=home_namespace,
            figures=figures,
        )


class ObservedStatus(ApiModel):
    last_poll_time: Timestamp | None = Field(None, json_schema_extra={"format": "date-time"})
    last_success_time: Timestamp | None = Field(None, json_schema_extra={"format": "date-time"})
    last_error: Annotated[str, StringConstraints(max_length=MAX_LAST_ERROR)] | None = None
    series: int | None = Field(None, ge=0)


MAX_SOURCE_STATUSES: Final = MAX_SOURCES + 1  # spec.sources and spec.observed


class SourceStatus(ApiModel):
    """What one source has shown so far."""

    name: StatusName
    type: Annotated[str, StringConstraints(max_length=63)]
    healthy: bool | None = Field(None, description="Absent until its first poll.")
    reason: Annotated[str, StringConstraints(max_length=1024)] | None = None
    last_poll_time: Timestamp | None = Field(None, json_schema_extra={"format": "date-time"})
    last_success_time: Timestamp | None = Field(None, json_schema_extra={"format": "date-time"})
    last_error: Annotated[str, StringConstraints(max_length=MAX_LAST_ERROR)] | None = None
    edges: int | None = Field(None, ge=0, description="Edges its last poll reported.")
    series: int | None = Field(None, ge=0, description="Series in its last answers (metrics).")
    objects: int | None = Field(
        None, ge=0, description="Workloads, Services and ConfigMaps read (kubernetes)."
    )
    unresolved: int | None = Field(
        None, ge=0, description="References to a name no Service in scope carries (kubernetes)."
    )


class SnapshotStatus(ApiModel):
    config_map: StatusName | None = None
    revision: Annotated[str, StringConstraints(max_length=128)] | None = None
    bytes: int | None = Field(None, ge=0)
    shards: int | None = Field(None, ge=0)
    updated_at: Timestamp | None = Field(None, json_schema_extra={"format": "date-time"})


class EdgeRef(ApiModel):
    source: StatusName
    target: StatusName


class DriftSamples(ApiModel):
    undeclared: list[EdgeRef] = Field(default_factory=list, max_length=MAX_SAMPLES)
    unobserved: list[EdgeRef] = Field(default_factory=list, max_length=MAX_SAMPLES)


class CeilingSample(ApiModel):
    service: StatusName
    dependency_ceiling: float = Field(
        ge=0, le=1, description="Product of the availabilities of its hard sync dependencies."
    )
    limited_by: StatusName | None = Field(
        None, description="Its hard sync dependency with the lowest availability."
    )


class ServiceGraphStatus(ApiModel):
    observed_generation: int | None = Field(None, ge=0)
    conditions: list[Condition] = _conditions_field()
    services: int = Field(0, ge=0)
    edges: int = Field(0, ge=0)
    declared_edges: int = Field(0, ge=0)
    observed_edges: int = Field(0, ge=0)
    stale_edges: int = Field(0, ge=0)
    cycles: int = Field(0, ge=0)
    undeclared: int = Field(0, ge=0)
    unobserved: int = Field(0, ge=0)
    drift: int = Field(0, ge=0, description="undeclared + unobserved.")
    cycle_samples: list[
        Annotated[list[StatusName], Field(max_length=MAX_CYCLE_SAMPLE_NAMES + 1)]
    ] = Field(
        default_factory=list,
        max_length=MAX_SAMPLES,
        description="Up to 10 cycles, each its first 20 members and then 'and N more'.",
    )
    drift_samples: DriftSamples = Field(default_factory=DriftSamples)
    lowest_ceilings: list[CeilingSample] = Field(
        default_factory=list,
        max_length=MAX_SAMPLES,
        description="Up to 10 services whose dependencies allow the lowest availability, "
        "lowest first.",
    )
    observed: ObservedStatus | None = None
    sources: Annotated[list[SourceStatus], Field(max_length=MAX_SOURCE_STATUSES)] | None = Field(
        None, description="Each source's health and figures, spec.observed (named otel) first."
    )
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
        # From the status: spec.service defaults to the object's name, which a column's
        # JSONPath cannot express.
        PrinterColumn(
            "Service", "string", ".status.service", "The service declared: spec.service or name"
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

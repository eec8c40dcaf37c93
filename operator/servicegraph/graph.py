"""The graph engine: declared and observed dependencies in, an analysed graph out.

Pure: no Kubernetes, no HTTP. Every rule of the graph lives here:
- an edge A -> B means "A calls B" (A depends on B);
- several sources may report an edge; each keeps its own lastSeen (and, for an edge inferred
  from manifests, its evidence), and the attributes of the most trusted source win (manual 1.0
  > service mesh 0.9 > OpenTelemetry 0.7 > kubernetes 0.5); a source is named, so two of one
  kind (two meshes, two Prometheus servers) keep their own sightings;
- a service that is called but never declared becomes a placeholder node (declared = False);
- an edge is stale when no source declares it and no source has seen it within `stale_after`;
  stale edges are kept and flagged, and left out of cycles, blast radius and queries;
- cycles are the strongly connected components of two or more services; each is reported once,
  with its members and a real cycle through it: the shortest one from its smallest member back
  to it (smallest names first on a tie); an acknowledged cycle (same members) raises no alarm;
- drift: `undeclared` edges are observed but not declared, `unobserved` edges are declared but
  not observed within `stale_after` (only when an observed source is configured);
- observation history keeps each sighting's lastSeen to the second, and forgets sightings not
  seen within the retention; a name only they knew leaves the graph with them;
- downstream of a service is what it calls, upstream is who calls it; the blast radius of a
  service is the number of services that depend on it, directly or transitively;
- the graph is a networkx DiGraph (`Graph.network`, live edges only): components,
  condensation, traversals and paths come from networkx; each service's SLO figures
  (availability, dependency ceiling, impact, sync depth) are `slo`'s.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property, wraps
from typing import ParamSpec, TypeVar

import networkx as nx

from servicegraph.cycles import Cycle, find_cycle
from servicegraph.dependents import Dependents
from servicegraph.slo import ServiceSLO, hard_sync_network, service_slos


class SourceKind(StrEnum):
    MANUAL = "manual"
    SERVICE_MESH = "service-mesh"
    OTEL = "otel"
    KUBERNETES = "kubernetes"


CONFIDENCE: Mapping[SourceKind, float] = {
    SourceKind.MANUAL: 1.0,
    SourceKind.SERVICE_MESH: 0.9,
    SourceKind.OTEL: 0.7,
    SourceKind.KUBERNETES: 0.5,
}


class Direction(StrEnum):
    DOWNSTREAM = "downstream"
    UPSTREAM = "upstream"
    BOTH = "both"


class NodeRole(StrEnum):
    SERVICE = "service"
    DATABASE = "database"
    VIRTUAL = "virtual"


MAX_DEPTH = 10

P = ParamSpec("P")
R = TypeVar("R")


def without_gc(function: Callable[P, R]) -> Callable[P, R]:
    """Run with the cyclic garbage collector paused.

    A large graph allocates millions of small objects without reference cycles; the collector
    scans them again and again and doubles the time, finding nothing to free.
    """

    @wraps(function)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@dataclass(frozen=True, slots=True)
class Retry:
    max_retries: int
    backoff_ms: int
    backoff_multiplier: float


@dataclass(frozen=True, slots=True)
class EdgeAttributes:
    """How a caller uses a dependency."""

    communication_mode: str = "sync"
    criticality: str = "hard"
    protocol: str | None = None
    timeout_ms: int | None = None
    retry: Retry | None = None


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the traces say about an edge over the observation window."""

    request_rate: float
    error_rate: float
    p95_latency_ms: float | None = None
    connection_type: str = ""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a manifest names a dependency: the object, its container, the field and its value."""

    kind: str  # Deployment, StatefulSet, DaemonSet, Job, CronJob
    name: str
    container: str | None
    field: str  # e.g. env[PRODUCT_CATALOG_SERVICE_ADDR], args[2], annotations[...]
    value: str
    namespace: str | None = None


class VirtualEnd(StrEnum):
    """Which end of an observed edge is no real service (a caller outside the mesh, a
    passthrough): that node is marked virtual unless something declares it."""

    NONE = ""
    SOURCE = "source"
    TARGET = "target"


@dataclass(frozen=True, slots=True)
class ServiceDeclaration:
    """One ServiceDependency object, reduced to what the graph needs."""

    name: str
    namespace: str | None = None
    object_name: str | None = None
    team: str | None = None
    tier: str | None = None
    depends_on: tuple[tuple[str, EdgeAttributes], ...] = ()


@dataclass(frozen=True, slots=True)
class Observation:
    """One non-manual source's evidence that `source` calls `target`."""

    source: str
    target: str
    kind: SourceKind
    last_seen: datetime
    attributes: EdgeAttributes = EdgeAttributes()
    traffic: Traffic | None = None
    source_name: str = ""  # the ServiceGraph's name for the source; "" means its kind
    evidence: tuple[Evidence, ...] = ()
    virtual: VirtualEnd = VirtualEnd.NONE

    @property
    def reporter(self) -> str:
        """The source that saw it: its name, or its kind when it has none."""
        return self.source_name or self.kind.value

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.target, self.reporter)


@dataclass(frozen=True, slots=True)
class Sighting:
    """One source of an edge, as kept on the edge."""

    kind: SourceKind
    last_seen: datetime | None  # None for a declaration: it holds as long as the object exists
    attributes: EdgeAttributes
    traffic: Traffic | None = None
    name: str = ""  # the source's name (see `Observation.source_name`); "" means its kind
    evidence: tuple[Evidence, ...] = ()
    virtual: VirtualEnd = VirtualEnd.NONE

    @property
    def confidence(self) -> float:
        return CONFIDENCE[self.kind]

    @property
    def reporter(self) -> str:
        return self.name or self.kind.value


@dataclass(slots=True)
class Node:
    name: str
    declared: bool
    namespace: str | None = None
    object_name: str | None = None
    team: str | None = None
    tier: str | None = None
    role: NodeRole = NodeRole.SERVICE
    blast_radius: int = 0
    in_cycle: bool = False
    slo: ServiceSLO | None = None  # set by `analyse`, read back from a snapshot


@dataclass(slots=True)
class Edge:
    source: str
    target: str
    sources: dict[str, Sighting]  # by reporter: "manual" for the declaration, else source names
    stale: bool = False

    @property
    def winner(self) -> Sighting:
        declared = self.sources.get(SourceKind.MANUAL)
        if declared is not None:  # the most trusted, and most edges are declared
            return declared
        if len(self.sources) == 1:
            return next(iter(self.sources.values()))
        # Two sources of one kind: the one seen last, then by name, so input order never decides.
        return max(
            self.sources.values(),
            key=lambda s: (s.confidence, s.last_seen.timestamp() if s.last_seen else 0.0, s.name),
        )

    @property
    def attributes(self) -> EdgeAttributes:
        return self.winner.attributes

    @property
    def confidence(self) -> float:
        return self.winner.confidence

    @property
    def declared(self) -> bool:
        return SourceKind.MANUAL in self.sources

    @property
    def observed(self) -> bool:
        return any(s.kind != SourceKind.MANUAL for s in self.sources.values())

    @property
    def traffic(self) -> Traffic | None:
        """The freshest traffic figures any source reported."""
        reported = [s for s in self.sources.values() if s.traffic is not None]
        if not reported:
            return None
        # On a tie in time, the most trusted source, so input order never decides.
        return max(
            reported,
            key=lambda s: (s.last_seen.timestamp() if s.last_seen else 0.0, s.confidence),
        ).traffic


@dataclass(frozen=True, slots=True)
class Summary:
    services: int
    edges: int
    declared_edges: int
    observed_edges: int
    stale_edges: int
    cycles: int
    undeclared: int
    unobserved: int

    @property
    def drift(self) -> int:
        return self.undeclared + self.unobserved


@dataclass(frozen=True, slots=True)
class Conflict:
    """Several objects declare the same service: one in the graph's own namespace wins, else the
    first by namespace/name."""

    service: str
    winner: tuple[str | None, str | None]
    losers: tuple[tuple[str | None, str | None], ...]


@dataclass
class Graph:
    """An analysed graph. Build it with `analyse`."""

    nodes: dict[str, Node]
    edges: dict[tuple[str, str], Edge]
    cycles: list[Cycle] = field(default_factory=list)
    acknowledged_cycles: list[Cycle] = field(default_factory=list)
    undeclared: list[tuple[str, str]] = field(default_factory=list)
    unobserved: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    def summary(self) -> Summary:
        edges = self.edges.values()
        return Summary(
            services=len(self.nodes),
            edges=len(self.edges),
            declared_edges=sum(1 for e in edges if e.declared),
            observed_edges=sum(1 for e in edges if e.observed),
            stale_edges=sum(1 for e in edges if e.stale),
            cycles=len(self.cycles),
            undeclared=len(self.undeclared),
            unobserved=len(self.unobserved),
        )

    @cached_property
    def network(self) -> nx.DiGraph[str]:
        """The live graph: every node, sorted, and every edge that is not stale."""
        return self.build_network(include_stale=False)

    @cached_property
    def network_with_stale(self) -> nx.DiGraph[str]:
        return self.build_network(include_stale=True)

    @cached_property
    def hard_sync_network(self) -> nx.DiGraph[str]:
        """The live edges that are hard sync calls (`slo.is_hard_sync`), over every node."""
        return hard_sync_network(self.network, self.edges)

    def build_network(self, *, include_stale: bool = False) -> nx.DiGraph[str]:
        """A new DiGraph of the graph; `network` keeps one, this does not."""
        network: nx.DiGraph[str] = nx.DiGraph()
        # Nodes sorted: `Dependents` numbers them in this order, and lists names by number.
        # Edges in any order: every path the engine picks breaks ties by name.
        network.add_nodes_from(sorted(self.nodes))
        network.add_edges_from(
            key for key, edge in self.edges.items() if include_stale or not edge.stale
        )
        return network

    def to_networkx(self) -> nx.DiGraph[str]:
        """A copy of the whole graph for your own analyses, stale edges included, with the
        attributes of the snapshot on every node and edge (see `graph_networkx`)."""
        from servicegraph.graph_networkx import to_networkx
        from servicegraph.snapshot import to_document

        return to_networkx(to_document(self))

    def sync_chain(self, service: str, limit: int | None = None) -> tuple[str, ...]:
        """The service's deepest chain of hard sync calls, starting with it: each name calls
        the next (`ServiceSLO.sync_next`, followed); its first `limit` names when given."""
        chain = [service]
        while (
            (limit is None or len(chain) < limit)
            and (node := self.nodes.get(chain[-1])) is not None
            and node.slo
            and node.slo.sync_next
        ):
            chain.append(node.slo.sync_next)
            if len(chain) > len(self.nodes):
                raise ValueError(f"the sync chain of {service} goes round: {chain[-5:]}")
        return tuple(chain)

    def impact_of(self, service: str) -> tuple[list[str], list[str]]:
        """Every service that fails with `service`, and every one that degrades, by name."""
        if service not in self.nodes:
            raise UnknownServiceError(service)
        fails = nx.ancestors(self.hard_sync_network, service)
        degrades = nx.ancestors(self.network, service) - fails
        return sorted(fails), sorted(degrades)

    def query(
        self,
        service: str,
        direction: Direction | str = Direction.DOWNSTREAM,
        depth: int = 1,
        include_stale: bool = False,
    ) -> Graph:
        """The subgraph within `depth` calls of `service` (the predecessor's dependency query):
        the services that many calls away, and every edge leaving one closer than that."""
        reached = self.reach(service, direction, depth, include_stale)
        nodes = {service, *(name for edge in reached for name in edge)}
        return Graph(
            nodes={name: self.nodes[name] for name in sorted(nodes)},
            edges={key: self.edges[key] for key in sorted(reached)},
        )

    def reach(
        self,
        service: str,
        direction: Direction | str = Direction.DOWNSTREAM,
        depth: int = 1,
        include_stale: bool = False,
    ) -> dict[tuple[str, str], dict[Direction, int]]:
        """The edges of `query`, each with the way it was reached: downstream at hop n (a
        call n calls away from `service`) or upstream at hop n (n calls towards it); an edge
        of a cycle can be both."""
        if service not in self.nodes:
            raise UnknownServiceError(service)
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, not {depth}")
        direction = Direction(direction)
        network = self.network_with_stale if include_stale else self.network
        reached: dict[tuple[str, str], dict[Direction, int]] = {}
        for walk in (Direction.DOWNSTREAM, Direction.UPSTREAM):
            if direction in (walk, Direction.BOTH):
                _walk(network, service, depth, walk, reached)
        return reached


def _walk(
    network: nx.DiGraph[str],
    service: str,
    depth: int,
    walk: Direction,
    reached: dict[tuple[str, str], dict[Direction, int]],
) -> None:
    """Add to `reached` every call leaving a service fewer than `depth` calls from `service`,
    with its hop; an upstream walk follows calls backwards."""
    upstream = walk == Direction.UPSTREAM
    walked = network.reverse(copy=False) if upstream else network
    distance = nx.single_source_shortest_path_length(walked, service, cutoff=depth - 1)
    for name, hops in distance.items():
        for other in walked.succ[name]:
            edge = (other, name) if upstream else (name, other)
            reached.setdefault(edge, {})[walk] = hops + 1


class UnknownServiceError(KeyError):
    def __str__(self) -> str:
        return f"no service named {self.args[0]!r} in the graph"


def merge_observations(
    previous: Iterable[Observation], current: Iterable[Observation]
) -> list[Observation]:
    """Fold a new poll into the history: fresh sightings replace old ones, absent ones stay.

    lastSeen is kept to the whole second, so a snapshot does not change with every poll's
    microseconds. Call `prune_observations` after it, or the history grows for ever.
    """
    merged: dict[tuple[str, str, str], Observation] = {}
    for obs in (*previous, *current):
        obs = _to_the_second(obs)
        old = merged.get(obs.key)
        if old is None or obs.last_seen >= old.last_seen:
            merged[obs.key] = obs
    return list(merged.values())


def prune_observations(
    observations: Iterable[Observation], *, now: datetime, retention: timedelta
) -> tuple[list[Observation], int]:
    """The observations seen within `retention` of `now`, and how many were dropped.

    One seen exactly at the horizon is kept, like the stale rule. A node exists only through
    declarations and edges, so a name that only dropped observations knew leaves the graph.
    A retention shorter than `stale_after` forgets edges before they can show as stale.
    """
    horizon = now - retention
    kept: list[Observation] = []
    dropped = 0
    for obs in observations:
        if obs.last_seen >= horizon:
            kept.append(obs)
        else:
            dropped += 1
    return kept, dropped


def _to_the_second(obs: Observation) -> Observation:
    if obs.last_seen.microsecond == 0:
        return obs
    return replace(obs, last_seen=obs.last_seen.replace(microsecond=0))


@without_gc
def analyse(
    declarations: Iterable[ServiceDeclaration],
    observations: Iterable[Observation] = (),
    *,
    now: datetime,
    stale_after: timedelta = timedelta(hours=168),
    acknowledged_cycles: Iterable[Iterable[str]] = (),
    observing: bool = False,
    home_namespace: str | None = None,
    figures: bool = True,
) -> Graph:
    """Merge everything into one graph and find its cycles, drift, staleness and blast radius.

    `observing` says an observed source is configured, so declared edges can be unobserved.
    `home_namespace` is the graph's own: its objects win a duplicate service against others.
    Without `figures`, no node gets SLO figures or a blast radius (a check needs neither).
    """
    nodes, edges, conflicts = _merge(declarations, observations, home_namespace)
    horizon = now - stale_after
    graph = Graph(nodes=dict(sorted(nodes.items())), edges=edges, conflicts=conflicts)
    for key, edge in edges.items():  # one pass: 50,000 edges are worth not walking thrice
        declared = SourceKind.MANUAL in edge.sources
        seen = any(
            s.last_seen is not None and s.last_seen >= horizon
            for s in edge.sources.values()
            if s.kind != SourceKind.MANUAL
        )
        edge.stale = not declared and not seen
        if declared and observing and not seen:
            graph.unobserved.append(key)
        elif not declared and seen:  # observed, not declared, not stale
            graph.undeclared.append(key)
    graph.undeclared.sort()
    graph.unobserved.sort()
    # Not kept in `graph.network`: the operator only writes the analysed graph out, and 50,000
    # edges in a DiGraph are 20 MiB; a query builds it again when it is asked for.
    network = graph.build_network()
    # Every service's callers at once, for the figures; a check needs the components only.
    everyone = Dependents.of(network) if figures else None
    components = everyone.members if everyone else nx.strongly_connected_components(network)

    acknowledged_sets = {frozenset(members) for members in acknowledged_cycles}
    for members in components:
        if len(members) < 2:
            continue
        for name in members:
            nodes[name].in_cycle = True
        cycle = find_cycle(members, network)
        kept = (
            graph.acknowledged_cycles if frozenset(members) in acknowledged_sets else graph.cycles
        )
        kept.append(cycle)
    graph.cycles.sort()
    graph.acknowledged_cycles.sort()
    if everyone is not None:
        set_slo_figures(graph, network, everyone)  # empties network: its last use

    return graph


def set_slo_figures(
    graph: Graph, network: nx.DiGraph[str] | None = None, everyone: Dependents | None = None
) -> None:
    """Each node's SLO figures and blast radius; `network` is the live graph (as
    `graph.build_network()` makes it) and `everyone` its Dependents, when already at hand:
    both are emptied (see `slo.service_slos`)."""
    network = graph.build_network() if network is None else network
    for name, figures in service_slos(
        network, graph.edges, everyone or Dependents.of(network)
    ).items():
        node = graph.nodes[name]
        node.blast_radius = figures.fails + figures.degrades
        node.slo = figures


def _merge(
    declarations: Iterable[ServiceDeclaration],
    observations: Iterable[Observation],
    home_namespace: str | None = None,
) -> tuple[dict[str, Node], dict[tuple[str, str], Edge], list[Conflict]]:
    by_service: dict[str, list[ServiceDeclaration]] = {}
    for decl in declarations:
        by_service.setdefault(decl.name, []).append(decl)

    nodes: dict[str, Node] = {}
    edges: dict[tuple[str, str], Edge] = {}
    conflicts = []
    for name, decls in by_service.items():
        decls.sort(
            key=lambda d: (d.namespace != home_namespace, d.namespace or "", d.object_name or "")
        )
        decl = decls[0]
        if len(decls) > 1:
            conflicts.append(
                Conflict(
                    name,
                    (decl.namespace, decl.object_name),
                    tuple((d.namespace, d.object_name) for d in decls[1:]),
                )
            )
        nodes[name] = Node(name, True, decl.namespace, decl.object_name, decl.team, decl.tier)
        for target, attributes in decl.depends_on:
            if target == name:
                continue  # admission refuses this; a stray one must not make a cycle of one
            edges[(name, target)] = Edge(
                name, target, {SourceKind.MANUAL: Sighting(SourceKind.MANUAL, None, attributes)}
            )

    for obs in observations:
        if obs.source == obs.target:
            continue  # a service calling itself is not a dependency
        edge = edges.get((obs.source, obs.target))
        if edge is None:
            edge = edges[(obs.source, obs.target)] = Edge(obs.source, obs.target, {})
        known = edge.sources.get(obs.reporter)
        if known is None or (known.last_seen is not None and obs.last_seen >= known.last_seen):
            edge.sources[obs.reporter] = Sighting(
                obs.kind,
                obs.last_seen,
                obs.attributes,
                obs.traffic,
                obs.source_name,
                obs.evidence,
                obs.virtual,
            )

    for source, target in edges:
        for name in (source, target):
            if name not in nodes:
                nodes[name] = Node(name, declared=False)
    for edge in edges.values():
        for sighting in edge.sources.values():
            if sighting.virtual:
                end = edge.source if sighting.virtual == VirtualEnd.SOURCE else edge.target
                if not nodes[end].declared:
                    nodes[end].role = NodeRole.VIRTUAL
        if nodes[edge.target].declared:
            continue
        traffic = edge.traffic
        if traffic is not None:
            if traffic.connection_type == "database":
                nodes[edge.target].role = NodeRole.DATABASE
            elif traffic.connection_type == "virtual_node":
                nodes[edge.target].role = NodeRole.VIRTUAL
    return nodes, edges, conflicts

"""The graph engine: declared and observed dependencies in, an analysed graph out.

Pure: no Kubernetes, no HTTP. Every rule of the graph lives here:
- an edge A -> B means "A calls B" (A depends on B);
- several sources may report an edge; each keeps its own lastSeen, and the attributes of the
  most trusted source win (manual 1.0 > service mesh 0.9 > OpenTelemetry 0.7 > kubernetes 0.5);
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
  service is the number of services that depend on it, directly or transitively.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property, wraps
from typing import ParamSpec, TypeVar, overload


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

    @property
    def key(self) -> tuple[str, str, SourceKind]:
        return (self.source, self.target, self.kind)


@dataclass(frozen=True, slots=True)
class Sighting:
    """One source of an edge, as kept on the edge."""

    kind: SourceKind
    last_seen: datetime | None  # None for a declaration: it holds as long as the object exists
    attributes: EdgeAttributes
    traffic: Traffic | None = None

    @property
    def confidence(self) -> float:
        return CONFIDENCE[self.kind]


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


@dataclass(slots=True)
class Edge:
    source: str
    target: str
    sources: dict[SourceKind, Sighting]
    stale: bool = False

    @property
    def winner(self) -> Sighting:
        return max(self.sources.values(), key=lambda s: s.confidence)

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
        return any(kind != SourceKind.MANUAL for kind in self.sources)

    @property
    def traffic(self) -> Traffic | None:
        """The freshest traffic figures any source reported."""
        reported = [s for s in self.sources.values() if s.traffic is not None]
        if not reported:
            return None
        return max(reported, key=lambda s: s.last_seen.timestamp() if s.last_seen else 0.0).traffic


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


@dataclass(frozen=True, slots=True, order=True)
class Cycle(Sequence[str]):
    """A strongly connected component of two or more services, and a real cycle through it.

    `members` is the whole component, sorted; acknowledgement, `in_cycle` and alarms are about
    it. As a sequence a Cycle is its members, so `frozenset(cycle)` is the component.
    `path` is the shortest cycle through the smallest member, starting there: each name calls
    the next and the last calls the first, over live (non-stale) edges. It may leave members
    out; `describe` says how many the component holds.
    """

    members: tuple[str, ...]
    path: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[str]:
        return iter(self.members)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self.members[index]

    def describe(self, max_names: int | None = None) -> str:
        """For people: the path, closed on itself, and the size of the component.

        `a -> b -> a (component of 3 services: a, b, c)`; with `max_names`, the path and the
        member list each show at most that many names, then say how many more there are.
        """
        shown = self.path if max_names is None else self.path[:max_names]
        arrow = " -> ".join(shown)
        if len(shown) < len(self.path):
            arrow += f" -> ... and {len(self.path) - len(shown)} more"
        text = f"{arrow} -> {self.path[0]} (component of {self.size} services"
        if len(self.path) < self.size:  # the path leaves some out: name them
            listed = self.members if max_names is None else self.members[:max_names]
            text += ": " + ", ".join(listed)
            if len(listed) < self.size:
                text += f" and {self.size - len(listed)} more"
        return text + ")"


def find_cycle(members: Iterable[str], callees: Mapping[str, Iterable[str]]) -> Cycle:
    """The Cycle of one strongly connected component, given who calls whom.

    Breadth-first from the smallest member back to itself, inside the component, visiting
    callees smallest name first: the first way back found is a shortest cycle.
    """
    ordered = tuple(sorted(members))
    if len(ordered) < 2:
        raise ValueError(f"a cycle needs two services or more, not {list(ordered)}")
    inside = set(ordered)
    start = ordered[0]
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        for callee in sorted(c for c in callees.get(name, ()) if c in inside):
            if callee == start:
                back = [name]
                while back[-1] != start:
                    back.append(parent[back[-1]])
                return Cycle(ordered, tuple(reversed(back)))
            if callee not in parent:
                parent[callee] = name
                queue.append(callee)
    raise ValueError(f"{', '.join(ordered)} is not a strongly connected component")


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
    def _adjacency(self) -> dict[bool, tuple[dict[str, list[str]], dict[str, list[str]]]]:
        """(callees, callers) per node, with and without stale edges."""
        result: dict[bool, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}
        for include_stale in (False, True):
            callees: dict[str, list[str]] = {name: [] for name in self.nodes}
            callers: dict[str, list[str]] = {name: [] for name in self.nodes}
            for (source, target), edge in self.edges.items():
                if include_stale or not edge.stale:
                    callees[source].append(target)
                    callers[target].append(source)
            result[include_stale] = (callees, callers)
        return result

    def query(
        self,
        service: str,
        direction: Direction | str = Direction.DOWNSTREAM,
        depth: int = 1,
        include_stale: bool = False,
    ) -> Graph:
        """The subgraph within `depth` calls of `service` (the predecessor's dependency query)."""
        if service not in self.nodes:
            raise UnknownServiceError(service)
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, not {depth}")
        direction = Direction(direction)
        callees, callers = self._adjacency[include_stale]
        nodes = {service}
        edges: set[tuple[str, str]] = set()
        if direction in (Direction.DOWNSTREAM, Direction.BOTH):
            _walk(service, callees, depth, nodes, edges, forward=True)
        if direction in (Direction.UPSTREAM, Direction.BOTH):
            _walk(service, callers, depth, nodes, edges, forward=False)
        return Graph(
            nodes={name: self.nodes[name] for name in sorted(nodes)},
            edges={key: self.edges[key] for key in sorted(edges)},
        )


class UnknownServiceError(KeyError):
    def __str__(self) -> str:
        return f"no service named {self.args[0]!r} in the graph"


def _walk(
    start: str,
    neighbours: dict[str, list[str]],
    depth: int,
    nodes: set[str],
    edges: set[tuple[str, str]],
    *,
    forward: bool,
) -> None:
    distance = {start: 0}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if distance[current] == depth:
            continue
        for other in neighbours[current]:
            edges.add((current, other) if forward else (other, current))
            if other not in distance:
                distance[other] = distance[current] + 1
                nodes.add(other)
                queue.append(other)


def merge_observations(
    previous: Iterable[Observation], current: Iterable[Observation]
) -> list[Observation]:
    """Fold a new poll into the history: fresh sightings replace old ones, absent ones stay.

    lastSeen is kept to the whole second, so a snapshot does not change with every poll's
    microseconds. Call `prune_observations` after it, or the history grows for ever.
    """
    merged: dict[tuple[str, str, SourceKind], Observation] = {}
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
) -> Graph:
    """Merge everything into one graph and find its cycles, drift, staleness and blast radius.

    `observing` says an observed source is configured, so declared edges can be unobserved.
    `home_namespace` is the graph's own: its objects win a duplicate service against others.
    """
    nodes, edges, conflicts = _merge(declarations, observations, home_namespace)
    horizon = now - stale_after
    for edge in edges.values():
        edge.stale = not edge.declared and all(
            s.last_seen is not None and s.last_seen < horizon for s in edge.sources.values()
        )

    callees: dict[str, list[str]] = {name: [] for name in nodes}
    for (source, target), edge in edges.items():
        if not edge.stale:
            callees[source].append(target)
    components = [sorted(c) for c in _strongly_connected_components(callees)]

    acknowledged_sets = {frozenset(members) for members in acknowledged_cycles}
    cycles: list[Cycle] = []
    acknowledged: list[Cycle] = []
    for members in components:
        if len(members) < 2:
            continue
        for name in members:
            nodes[name].in_cycle = True
        cycle = find_cycle(members, callees)
        (acknowledged if frozenset(members) in acknowledged_sets else cycles).append(cycle)
    _set_blast_radius(callees, components, nodes)

    undeclared = sorted(
        key for key, edge in edges.items() if edge.observed and not edge.declared and not edge.stale
    )
    unobserved = sorted(
        key
        for key, edge in edges.items()
        if observing
        and edge.declared
        and not any(
            s.last_seen is not None and s.last_seen >= horizon
            for kind, s in edge.sources.items()
            if kind != SourceKind.MANUAL
        )
    )
    return Graph(
        nodes=dict(sorted(nodes.items())),
        edges=edges,
        cycles=sorted(cycles),
        acknowledged_cycles=sorted(acknowledged),
        undeclared=undeclared,
        unobserved=unobserved,
        conflicts=conflicts,
    )


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
        known = edge.sources.get(obs.kind)
        if known is None or (known.last_seen is not None and obs.last_seen >= known.last_seen):
            edge.sources[obs.kind] = Sighting(obs.kind, obs.last_seen, obs.attributes, obs.traffic)

    for source, target in edges:
        for name in (source, target):
            if name not in nodes:
                nodes[name] = Node(name, declared=False)
    for edge in edges.values():
        traffic = edge.traffic
        if traffic is not None and not nodes[edge.target].declared:
            if traffic.connection_type == "database":
                nodes[edge.target].role = NodeRole.DATABASE
            elif traffic.connection_type == "virtual_node":
                nodes[edge.target].role = NodeRole.VIRTUAL
    return nodes, edges, conflicts


def _strongly_connected_components(callees: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: components come out callees first.

    Written out rather than taken from networkx: its graph object costs 25 MiB (import and
    copy) at 10,000 services, the whole margin of the operator's memory budget. The property
    tests check it against mutual reachability on random graphs.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in callees:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(callees[root]))]
        while work:
            node, pending = work[-1]
            for callee in pending:
                if callee not in index:
                    index[callee] = low[callee] = len(index)
                    stack.append(callee)
                    on_stack.add(callee)
                    work.append((callee, iter(callees[callee])))
                    break
                if callee in on_stack:
                    low[node] = min(low[node], index[callee])
            else:  # every callee seen: node is done
                work.pop()
                if work:
                    caller = work[-1][0]
                    low[caller] = min(low[caller], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def _set_blast_radius(
    callees: Mapping[str, list[str]], components: list[list[str]], nodes: dict[str, Node]
) -> None:
    """Count every node's transitive callers at once: bitsets over the condensation DAG.

    Tarjan gives the components callees first, so walking them backwards visits callers
    before callees: each component ORs in its callers' sets, complete by then. One pass over
    the edges instead of one traversal per service.
    """
    component_of = {name: i for i, members in enumerate(components) for name in members}
    position = {name: i for i, name in enumerate(nodes)}
    member_bits = [0] * len(components)
    for i, members in enumerate(components):
        for name in members:
            member_bits[i] |= 1 << position[name]
    callers_of: list[set[int]] = [set() for _ in components]
    for source, targets in callees.items():
        for target in targets:
            a, b = component_of[source], component_of[target]
            if a != b:
                callers_of[b].add(a)
    upstream = [0] * len(components)
    for i in reversed(range(len(components))):
        acc = 0
        for caller in callers_of[i]:
            acc |= upstream[caller] | member_bits[caller]
        upstream[i] = acc
    for i, members in enumerate(components):
        radius = upstream[i].bit_count() + len(members) - 1
        for name in members:
            nodes[name].blast_radius = radius

"""What an SLO owner can act on, per service: availability, dependency ceiling, impact, sync depth.

Pure: networkx and nothing else. Definitions (the README has them with a worked example):
- a *hard sync* edge is a live edge whose winning attributes say `criticality: hard` and
  `communicationMode: sync`; an edge only observed is one unless its traffic is messaging;
- availability: `1 - sum(failed rate in) / sum(request rate in)` over the service's live
  incoming edges, as reported by the last poll of the most trusted source that reported any
  (a source's last poll: its newest lastSeen in the graph); absent when nothing was observed;
- dependency ceiling: the product of the availabilities of the service's direct hard sync
  dependencies; those with no availability are listed as unknown, not guessed;
- impact: the services that reach it through hard sync edges only fail with it; the other
  services that reach it (every path crosses a soft, degraded or async edge) degrade;
- sync depth: the most hard sync calls in a chain below the service, on the condensation (a
  cycle counts once), and that chain as real calls; out of each component it takes, among the
  calls into the deepest next component, the one to the smallest name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import networkx as nx

from servicegraph.cycles import next_hops_to
from servicegraph.dependents import Dependents, release

if TYPE_CHECKING:
    from servicegraph.graph import Edge, EdgeAttributes

MAX_IMPACT_NAMES = 20  # names kept per impact list; the counts are always whole
DIGITS = 6  # availabilities are rounded to 0.0001 %, so a snapshot does not move on noise


def is_hard_sync(attributes: EdgeAttributes) -> bool:
    return attributes.criticality == "hard" and attributes.communication_mode == "sync"


@dataclass(frozen=True, slots=True)
class ServiceSLO:
    """The SLO figures of one service. Availabilities are ratios (0.9995 is 99.95 %)."""

    availability: float | None
    dependency_ceiling: float
    weakest_dependency: str | None  # the direct hard sync dependency least available
    unknown_dependencies: tuple[str, ...]
    fails: int  # how many services fail with this one
    degrades: int  # how many degrade
    fails_names: tuple[str, ...]  # the first MAX_IMPACT_NAMES of them, by name
    degrades_names: tuple[str, ...]
    sync_depth: int
    sync_next: str | None  # the next service of its deepest chain (`Graph.sync_chain`)


def hard_sync_network(
    network: nx.DiGraph[str], edges: Mapping[tuple[str, str], Edge]
) -> nx.DiGraph[str]:
    """The edges of `network` that are hard sync calls, over all of its nodes, in its order:
    `network` itself when they all are (declarations default to hard sync)."""
    calls = [key for key in network.edges if is_hard_sync(edges[key].attributes)]
    if len(calls) == network.number_of_edges():
        return network
    hard: nx.DiGraph[str] = nx.DiGraph()
    hard.add_nodes_from(network)
    hard.add_edges_from(calls)
    return hard


def observed_availability(edges: Iterable[Edge]) -> dict[str, float]:
    """Each observed service's availability as a server (see the module's definition)."""
    live = [edge for edge in edges if not edge.stale]
    latest: dict[str, datetime] = {}
    for edge in live:
        for reporter, sighting in edge.sources.items():
            if sighting.traffic is not None and sighting.last_seen is not None:
                known = latest.get(reporter)
                if known is None or sighting.last_seen > known:
                    latest[reporter] = sighting.last_seen
    # per service: confidence of the best source so far, its request and failed rates
    totals: dict[str, tuple[float, list[float], list[float]]] = {}
    for edge in live:
        for reporter, sighting in edge.sources.items():
            traffic = sighting.traffic
            if traffic is None or sighting.last_seen != latest.get(reporter):
                continue
            confidence, rates, failed = totals.get(edge.target, (-1.0, [], []))
            if sighting.confidence > confidence:
                confidence, rates, failed = sighting.confidence, [], []
                totals[edge.target] = (confidence, rates, failed)
            elif sighting.confidence < confidence:
                continue
            rates.append(traffic.request_rate)
            failed.append(traffic.request_rate * traffic.error_rate)
    # fsum rounds the exact sum once, so the order of the edges cannot tip the last digit
    availability = {}
    for name, (_, rates, failed) in totals.items():
        rate = math.fsum(rates)
        if rate > 0:
            availability[name] = round(1.0 - min(1.0, math.fsum(failed) / rate), DIGITS)
    return availability


def service_slos(
    network: nx.DiGraph[str], edges: Mapping[tuple[str, str], Edge], everyone: Dependents
) -> dict[str, ServiceSLO]:
    """Every service's figures, each analysis one pass over the graph.

    `network` is the live graph with its nodes added sorted, `everyone` its Dependents; this is
    the network's last use: it is emptied (`release`) as soon as it is done with, so that the
    live and the hard sync graphs are never in memory at once.
    """
    availability = observed_availability(edges.values())
    hard = hard_sync_network(network, edges)
    if hard is network:  # every live edge is a hard sync call: the same graph, counted once
        failing = everyone
    else:
        release(network)
        failing = Dependents.of(hard)
    chains = _sync_chains(hard, failing)
    reaching, reaching_component = everyone.callers, everyone.mapping
    failing_bits, failing_component = failing.callers, failing.mapping
    result = {}
    for position, name in enumerate(hard):
        own = 1 << position  # both Dependents number the nodes alike: hard has network's order
        fails = failing_bits[failing_component[name]] ^ own
        degrades = reaching[reaching_component[name]] ^ own ^ fails  # fails is a subset
        dependencies = hard.succ[name]
        known = {d: availability[d] for d in dependencies if d in availability}
        depth, onward = chains[name]
        result[name] = ServiceSLO(
            availability=availability.get(name),
            dependency_ceiling=ceiling_of(known.values()),
            weakest_dependency=min(known, key=lambda d: (known[d], d)) if known else None,
            unknown_dependencies=tuple(sorted(d for d in dependencies if d not in availability)),
            fails=fails.bit_count(),
            degrades=degrades.bit_count(),
            fails_names=tuple(failing.first_names(fails, MAX_IMPACT_NAMES)),
            degrades_names=tuple(failing.first_names(degrades, MAX_IMPACT_NAMES)),
            sync_depth=depth,
            sync_next=onward,
        )
    release(hard)
    return result


def _sync_chains(hard: nx.DiGraph[str], failing: Dependents) -> dict[str, tuple[int, str | None]]:
    """Each service's sync depth and the next service of its chain, callees before callers
    over the condensation.

    networkx's `dag_longest_path` gives the one longest path of a whole DAG; a longest path
    from every node is this dynamic programme over `nx.topological_sort`. Each chain is the
    next hop and then the chain of that hop, so one name per service holds them all: a chain
    each would take services times depth (74 deep in a layered 10,000-service graph).
    """
    mapping = failing.mapping
    depth: dict[int, int] = {}
    chain: dict[str, tuple[int, str | None]] = {}
    for component in reversed(failing.order):
        members = failing.members[component]
        # The way out: the call into the deepest next component, smallest callee, then caller.
        best: tuple[int, str, str] | None = None
        for caller in members:
            for callee in hard.succ[caller]:
                onward = mapping[callee]
                if onward != component:
                    key = (-depth[onward], callee, caller)
                    if best is None or key < best:
                        best = key
        if best is None:
            depth[component] = 0
            for name in members:
                chain[name] = (0, None)
            continue
        depth[component] = 1 - best[0]
        _, callee, caller = best
        inside = next_hops_to(hard.subgraph(members), caller) if len(members) > 1 else {}
        for name in members:
            chain[name] = (depth[component], callee if name == caller else inside[name])
    return chain


def limiting_dependencies(availabilities: Mapping[str, float], target: float) -> list[str]:
    """The fewest dependencies, weakest first, without which the ceiling would reach `target`.

    Taking the weakest out first raises the product most, so the greedy answer is the
    shortest one. Empty when the target is met already.
    """
    if not 0 <= target <= 1:
        raise ValueError(f"a target is a ratio from 0 to 1, not {target!r}")
    ordered = sorted(availabilities.items(), key=lambda item: (item[1], item[0]))
    for count in range(len(ordered) + 1):
        if ceiling_of(value for _, value in ordered[count:]) >= target:
            return [name for name, _ in ordered[:count]]
    raise AssertionError("an empty product is 1, which meets any target up to 1")


def ceiling_of(availabilities: Iterable[float]) -> float:
    return round(float(math.prod(availabilities)), DIGITS)

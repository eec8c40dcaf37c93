"""What `servicegraph slo SERVICE` says: one service's SLO figures, and whether a target holds.

Pure. The figures are `slo`'s; here they become the command's JSON and table.
"""

from __future__ import annotations

from typing import Any

from servicegraph.graph import Graph, UnknownServiceError
from servicegraph.slo import limiting_dependencies


def service_report(graph: Graph, service: str, target: float | None = None) -> dict[str, Any]:
    """The JSON of `servicegraph slo`: figures, full impact lists, and with a `target`
    (a ratio, 0.9995 for 99.95 %) whether the dependency ceiling allows it: `achievable` is
    None (cannot tell) when the known dependencies allow it but some have no availability."""
    node = graph.nodes.get(service)
    if node is None or node.slo is None:
        raise UnknownServiceError(service)
    figures = node.slo
    fails, degrades = graph.impact_of(service)
    availability = {
        name: other.slo.availability
        for name in graph.hard_sync_network.succ[service]
        if (other := graph.nodes[name]).slo is not None
    }
    report: dict[str, Any] = {
        "service": service,
        "availability": figures.availability,
        "dependencyCeiling": figures.dependency_ceiling,
        "dependencies": [
            {"service": name, "availability": availability.get(name)}
            for name in sorted(graph.hard_sync_network.succ[service])
        ],
        "unknownDependencies": list(figures.unknown_dependencies),
        "impact": {
            "fails": fails,
            "failsCount": len(fails),
            "degrades": degrades,
            "degradesCount": len(degrades),
        },
        "syncDepth": figures.sync_depth,
        "syncChain": list(graph.sync_chain(service)),
    }
    if target is not None:
        known = {name: value for name, value in availability.items() if value is not None}
        report["target"] = target
        if target > figures.dependency_ceiling:
            report["achievable"] = False
        else:
            report["achievable"] = None if figures.unknown_dependencies else True
        report["limitingDependencies"] = [
            {"service": name, "availability": known[name]}
            for name in limiting_dependencies(known, target)
        ]
    return report


def percent(ratio: float | None) -> str:
    """0.9995 -> "99.95 %"; None -> "unknown"."""
    if ratio is None:
        return "unknown"
    return f"{ratio * 100:.4f}".rstrip("0").rstrip(".") + " %"


def report_rows(report: dict[str, Any]) -> list[list[str]]:
    """The report as FIGURE / VALUE rows for people."""
    dependencies = report["dependencies"]
    unknown = report["unknownDependencies"]
    ceiling = f"{percent(report['dependencyCeiling'])} over {len(dependencies)} hard sync call(s)"
    if unknown:
        ceiling += f"; not observed, so not counted: {', '.join(unknown)}"
    impact = report["impact"]
    rows = [
        ["service", report["service"]],
        [
            "availability",
            percent(report["availability"])
            if report["availability"] is not None
            else "unknown (nobody was observed calling it)",
        ],
        ["dependency ceiling", ceiling],
        *[
            [f"  {dependency['service']}", percent(dependency["availability"])]
            for dependency in dependencies
        ],
        ["fails with it", _names(impact["fails"])],
        ["degrades with it", _names(impact["degrades"])],
        ["sync depth", f"{report['syncDepth']}: {' -> '.join(report['syncChain'])}"],
    ]
    if "target" in report:
        if report["achievable"]:
            verdict = "achievable"
        elif report["achievable"] is None:
            verdict = f"cannot tell: no availability for {', '.join(unknown)}"
        else:
            limiting = ", ".join(
                f"{d['service']} ({percent(d['availability'])})"
                for d in report["limitingDependencies"]
            )
            verdict = f"not achievable; held back by {limiting}"
        rows.append(["target", f"{percent(report['target'])}: {verdict}"])
    return rows


def _names(names: list[str]) -> str:
    return f"{len(names)}: {', '.join(names)}" if names else "0"

"""`servicegraph` (also `kubectl servicegraph`): check, analyse, query and export the graph."""

from __future__ import annotations

import argparse
import gc
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from servicegraph import (
    __version__,
    analysis_report,
    backstage,
    export,
    inference,
    inference_report,
    pictures,
    settings,
    slo_report,
    snapshot,
    snapshot_configmaps,
    snapshot_files,
    snapshot_schema,
)
from servicegraph.api import (
    PATTERN_MEANINGS,
    DiscoverySource,
    ObservedSource,
    ServiceDependency,
    ServiceGraph,
    ServiceGraphSpec,
    SourceType,
)
from servicegraph.crds import render_crds
from servicegraph.graph import (
    MAX_DEPTH,
    Direction,
    Graph,
    Observation,
    UnknownServiceError,
)
from servicegraph.manifest_yaml import ManifestError
from servicegraph.manifests import (
    ManifestSet,
    Problem,
    available_cores,
    cluster_objects,
    load,
    parse_object,
)

EXIT_CYCLES = 1
EXIT_NOT_ACHIEVABLE = 1
EXIT_INVALID = 2


class CliError(Exception):
    """A problem the user can fix; printed as one line."""


def main(argv: Sequence[str] | None = None, *, plugin: bool = False) -> int:
    parser = _parser(plugin=plugin)
    args = parser.parse_args(argv)
    if args.command is not _run:
        # A command that reads, reports and exits keeps what it reads to the end: the cyclic
        # collector would scan it again and again and free nothing (a quarter of a 10,000-
        # object check). The operator, which runs for a year, keeps it.
        gc.disable()
        # libyaml reads up to 1,000 levels of nesting, and building a level takes two Python
        # frames: room for that, so that admission, not the stack, says what is too deep.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 2500))
    try:
        return int(args.command(args))
    except (CliError, ManifestError, snapshot.SnapshotError, pictures.ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except UnknownServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:  # `servicegraph export | head`
        return 0
    except KeyboardInterrupt:
        return 130


def plugin(argv: Sequence[str] | None = None) -> int:
    """`kubectl servicegraph`: kubectl runs `kubectl-servicegraph` from the PATH."""
    return main(argv, plugin=True)


def _parser(*, plugin: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl servicegraph" if plugin else "servicegraph",
        description="Service dependency graphs for SLO engines: check, analyse, query, export.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="validate manifests as admission would, and fail on unacknowledged cycles",
        description="Exit 0 when all is well, 1 on unacknowledged cycles, 2 on invalid manifests.",
    )
    check.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files or folders of manifests; - reads standard input",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="warnings fail the check too (exit 2): a service declared twice, a dependency on "
        "a service no manifest declares",
    )
    check.add_argument(
        "--allow-empty",
        action="store_true",
        help="pass when the paths hold no ServiceDependency (by default an error: a gate that "
        "checks nothing is off)",
    )
    _graph_choice(check)
    check.set_defaults(command=_check)

    analyze = commands.add_parser(
        "analyze",
        help="the summary the operator would write",
        description="Analyse the manifests; with --prometheus, merge the edges OpenTelemetry "
        "observed and report drift (undeclared and unobserved edges), no cluster needed.",
    )
    analyze.add_argument("paths", nargs="+", metavar="PATH")
    _graph_choice(analyze)
    analyze.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    _observed_options(analyze)
    analyze.add_argument(
        "--infer-from",
        nargs="+",
        metavar="MANIFESTS",
        help="workloads, Services and ConfigMaps (files or folders): report drift between "
        "the declared objects and the edges these manifests imply",
    )
    analyze.set_defaults(command=_analyze)

    infer = commands.add_parser(
        "infer",
        help="the dependencies workloads' manifests imply (the kubernetes source, offline)",
        description="Read Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Services and "
        "ConfigMaps, and print the edges their env values, arguments and commands imply. "
        "-o yaml drafts ServiceDependency manifests to review and commit.",
    )
    infer.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files or folders of manifests; - reads standard input",
    )
    infer.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="for objects without one, as with kubectl apply (default: default)",
    )
    infer.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    infer.set_defaults(command=_infer)

    query = commands.add_parser("query", help="what a service calls, or who calls it")
    query.add_argument("service", metavar="SERVICE")
    _graph_source(query)
    query.add_argument("--direction", choices=[d.value for d in Direction], default="downstream")
    query.add_argument("--depth", type=int, default=1, help=f"1..{MAX_DEPTH} (default 1)")
    query.add_argument("--include-stale", action="store_true", help="follow stale edges too")
    query.add_argument("-o", "--output", choices=("table", "json"), default="table")
    query.set_defaults(command=_query)

    slo = commands.add_parser(
        "slo",
        help="a service's availability, dependency ceiling, impact and sync depth",
        description="What the graph lets a service promise. Exit 0 when the --availability "
        "target is within the dependency ceiling (or no target is given), 1 when it is not or "
        "cannot be told (a hard sync dependency was not observed), 2 on bad input.",
    )
    slo.add_argument("service", metavar="SERVICE")
    slo.add_argument(
        "--availability",
        type=_percentage,
        metavar="PERCENT",
        help="the target to check, in percent: 99.95",
    )
    _graph_source(slo)
    _observed_options(slo)
    slo.add_argument("-o", "--output", choices=("table", "json"), default="table")
    slo.set_defaults(command=_slo)

    exporter = commands.add_parser(
        "export",
        help="the graph as DOT, Mermaid, JSON, SVG, GraphML, GEXF or node-link JSON",
    )
    _graph_source(exporter)
    exporter.add_argument(
        "-o",
        "--output",
        choices=("dot", "mermaid", "json", "svg", "graphml", "gexf", "node-link", "backstage"),
        default="dot",
        help="backstage: catalog-info.yaml Components of the declared services",
    )
    exporter.set_defaults(command=_export)

    importer = commands.add_parser(
        "import", help="draft ServiceDependency manifests from another catalog"
    )
    catalogs = importer.add_subparsers(required=True, metavar="CATALOG")
    backstage_import = catalogs.add_parser(
        "backstage",
        help="from Backstage Components (catalog-info.yaml): spec.dependsOn, spec.owner",
        description="Print a ServiceDependency per Backstage Component: its dependsOn as "
        "dependencies, its owner as team. Review, then commit them; `servicegraph check` "
        "passes them.",
    )
    backstage_import.add_argument(
        "paths", nargs="+", metavar="PATH", help="catalog files or folders; - reads standard input"
    )
    backstage_import.add_argument(
        "-n",
        "--namespace",
        default=backstage.DEFAULT_NAMESPACE,
        help="for Components without one (default: default, as in Backstage)",
    )
    backstage_import.set_defaults(command=_import_backstage)

    if plugin:  # running the operator and printing its CRDs are no kubectl verbs
        return parser
    _run_parser(commands.add_parser("run", help="run the operator"))

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions")
    crds.add_argument("--write", metavar="DIR", help="write one file per CRD into DIR instead")
    crds.set_defaults(command=_crds)

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of the snapshot document (what an SLO engine reads)"
    )
    schema.set_defaults(command=_schema)
    return parser


def _run_parser(run: argparse.ArgumentParser) -> None:
    env = settings.from_environment()
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default; SERVICEGRAPH_NAMESPACES unset)",
    )
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch only this namespace; repeatable (SERVICEGRAPH_NAMESPACES=a,b)",
    )
    run.add_argument(
        "--platform-namespace",
        dest="platform_namespaces",
        action="append",
        metavar="NS",
        help="graphs in this namespace may select any namespace without a grant; repeatable "
        "(SERVICEGRAPH_PLATFORM_NAMESPACES=a,b; default: the operator's own namespace)",
    )
    run.add_argument(
        "--standalone",
        action=argparse.BooleanOptionalAction,
        default=env.standalone,
        help="run without peering: no leader election between replicas (SERVICEGRAPH_STANDALONE)",
    )
    run.add_argument(
        "--peering",
        metavar="NAME",
        default=env.peering,
        help="the ClusterKopfPeering (or KopfPeering with --namespace) replicas elect the active "
        "operator through; naming one makes peering mandatory (SERVICEGRAPH_PEERING, default: "
        "Kopf's 'default' when it exists, else standalone)",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=env.priority,
        help="peering priority; the highest runs, the others stand by (SERVICEGRAPH_PRIORITY, "
        "default random so that replicas differ)",
    )
    run.add_argument(
        "--liveness",
        metavar="URL",
        default=env.liveness,
        help="serve Kopf's liveness probe at URL, e.g. http://0.0.0.0:8080/healthz "
        "(SERVICEGRAPH_LIVENESS)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=env.metrics_port,
        metavar="N",
        help="serve Prometheus metrics on port N, 0 turns them off (SERVICEGRAPH_METRICS_PORT, "
        "default 8000)",
    )
    run.add_argument(
        "--log-format",
        choices=("json", "plain"),
        default=env.log_format,
        help="json: one JSON object per line, with the object it is about (default); "
        "plain: lines for people (SERVICEGRAPH_LOG_FORMAT)",
    )
    run.add_argument(
        "--watch-manifests",
        action=argparse.BooleanOptionalAction,
        default=env.watch_manifests,
        help="watch Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, Services and "
        "ConfigMaps for graphs with a kubernetes source (SERVICEGRAPH_WATCH_MANIFESTS)",
    )
    run.add_argument(
        "--debug",
        action=argparse.BooleanOptionalAction,
        default=env.debug,
        help="debug logging, Kopf's included (SERVICEGRAPH_DEBUG)",
    )
    run.set_defaults(command=_run, environment=env)


def _run(args: argparse.Namespace) -> int:
    from servicegraph.operator import run  # kopf is imported only to run the operator

    env: settings.OperatorSettings = args.environment
    namespaces = () if args.all_namespaces else tuple(args.namespaces or env.namespaces)
    run(
        replace(
            env,
            namespaces=namespaces,
            platform_namespaces=tuple(args.platform_namespaces or env.platform_namespaces),
            standalone=args.standalone,
            peering=args.peering,
            priority=args.priority,
            liveness=args.liveness,
            metrics_port=args.metrics_port,
            log_format=args.log_format,
            debug=args.debug,
            watch_manifests=args.watch_manifests,
        )
    )
    return 0


def _observed_options(parser: argparse.ArgumentParser) -> None:
    observed = parser.add_argument_group(
        "observed edges",
        "Poll a Prometheus-compatible API (Prometheus, Thanos, Mimir) once for the "
        "OpenTelemetry service-graph metrics, or a service mesh's (--source). The "
        "ServiceGraph's spec.observed gives the "
        "defaults; its Secrets are not read: pass the token and CA as files.",
    )
    observed.add_argument("--prometheus", metavar="URL", help="base URL of the query API")
    observed.add_argument(
        "--source",
        choices=[t.value for t in SourceType if t != SourceType.KUBERNETES],
        help="which metrics: otel (OpenTelemetry service graph, the default), istio or linkerd",
    )
    observed.add_argument("--window", metavar="DURATION", help="how far back (default 1h)")
    observed.add_argument("--metric-prefix", metavar="PREFIX", help="default traces_service_graph")
    observed.add_argument(
        "--min-request-rate",
        type=float,
        metavar="R",
        help="requests/s below which an edge is noise",
    )
    observed.add_argument(
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra request header, e.g. X-Scope-OrgID=team-a; repeatable",
    )
    observed.add_argument("--bearer-token-file", metavar="FILE", help="file holding a token")
    observed.add_argument("--ca-file", metavar="FILE", help="PEM CA bundle to verify TLS with")
    observed.add_argument("--timeout", metavar="DURATION", help="per query (default 30s)")


def _graph_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--graph",
        metavar="[NAMESPACE/]NAME",
        help="which ServiceGraph's settings apply when the manifests hold several",
    )


def _graph_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="paths", nargs="+", metavar="PATH", help="manifests")
    source.add_argument("--snapshot", metavar="FILE", help="a snapshot document or ConfigMap(s)")
    parser.add_argument(
        "--graph",
        metavar="[NAMESPACE/]NAME",
        help="alone: the live snapshot of this ServiceGraph, read through the kubeconfig "
        "(namespace: -n, else the context's); with --from: which ServiceGraph's settings "
        "apply when the manifests hold several",
    )
    cluster = parser.add_argument_group("cluster", "Where --graph is read from, as for kubectl.")
    cluster.add_argument(
        "-n", "--namespace", metavar="NS", help="the ServiceGraph's namespace when --graph has none"
    )
    cluster.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
    cluster.add_argument("--kubeconfig", metavar="FILE", help="the kubeconfig file to use")


def _load_valid(paths: Sequence[str]) -> ManifestSet:
    manifests = load(paths, workers=available_cores())
    if manifests.problems:
        raise CliError(
            f"{len(manifests.problems)} invalid manifest field(s), first: {manifests.problems[0]}"
            " (run `servicegraph check` for all)"
        )
    return manifests


def _chosen_graph(manifests: ManifestSet, ref: str | None) -> ServiceGraph | None:
    """The ServiceGraph `--graph [NAMESPACE/]NAME` names, or the only one."""
    graphs = manifests.graphs
    if ref is not None:
        namespace, _, name = ref.rpartition("/")
        graphs = [
            g for g in graphs if g.metadata.name == name and namespace in ("", g.metadata.namespace)
        ]
        if not graphs:
            raise CliError(f"no ServiceGraph {ref!r} in the manifests")
    if len(graphs) > 1:
        names = ", ".join(
            sorted(_object_ref(g.metadata.namespace, g.metadata.name) for g in graphs)
        )
        raise CliError(
            f"the manifests hold several ServiceGraphs ({names}): pick one with "
            "--graph [NAMESPACE/]NAME"
        )
    return graphs[0] if graphs else None


def _object_ref(namespace: str | None, name: str | None) -> str:
    return "/".join(part for part in (namespace, name) if part)


def _analyse(
    manifests: ManifestSet,
    graph_name: str | None,
    *,
    observations: Sequence[Observation] = (),
    observed: ObservedSource | None = None,
    inferring: bool = False,
    now: datetime | None = None,
    figures: bool = True,
) -> tuple[Graph, ServiceGraph | None]:
    chosen = _chosen_graph(manifests, graph_name)
    declarations = [dep.declaration() for dep in manifests.dependencies if _selects(chosen, dep)]
    spec = chosen.spec if chosen else ServiceGraphSpec()
    if observed is not None:  # polled: declared edges that were not seen are drift
        spec = spec.model_copy(update={"observed": observed})
    if inferring:  # likewise for edges the manifests do not imply
        spec = spec.model_copy(update={"sources": [*spec.sources, INFERRED_SOURCE]})
    graph = spec.analyse(declarations, observations, now=now or datetime.now(UTC), figures=figures)
    return graph, chosen


def _selects(graph: ServiceGraph | None, dep: ServiceDependency) -> bool:
    """Offline selection: objects without a namespace land where `kubectl apply` puts them."""
    if graph is None:
        return True
    namespace = dep.metadata.namespace or graph.metadata.namespace
    home = graph.metadata.namespace or namespace
    return graph.spec.selector.selects(namespace, dep.metadata.labels, home)


def _document(args: argparse.Namespace) -> dict[str, Any]:
    if args.snapshot:
        if args.graph is not None:
            raise CliError(
                "--graph reads a live ServiceGraph or picks one in --from; a --snapshot "
                "file holds one graph already"
            )
        _refuse_cluster_flags(args)
        return snapshot_files.load_snapshot_file(Path(args.snapshot))
    if not args.paths:
        if args.graph is None:
            raise CliError(
                "say where the graph is: --graph [NAMESPACE/]NAME (live), --from PATH "
                "or --snapshot FILE"
            )
        return _live_document(args)
    _refuse_cluster_flags(args)
    graph, chosen = _analyse(_load_valid(args.paths), args.graph)
    ref = (chosen.metadata.namespace or "", chosen.metadata.name) if chosen else None
    return snapshot.to_document(graph, graph_ref=ref)


def _refuse_cluster_flags(args: argparse.Namespace) -> None:
    """The kubectl flags choose where a live graph is read; given elsewhere, they would be
    silently ignored."""
    for flag, value in (
        ("-n", args.namespace),
        ("--context", args.context),
        ("--kubeconfig", args.kubeconfig),
    ):
        if value is not None:
            raise CliError(f"{flag} reads a live graph: give --graph [NAMESPACE/]NAME alone")


def _live_document(args: argparse.Namespace) -> snapshot.Document:
    """The snapshot of ServiceGraph `--graph` ([NAMESPACE/]NAME) as the cluster holds it now:
    its index ConfigMap (status.snapshot.configMap) and the shards carrying the snapshot
    label."""
    from kubernetes import config

    from servicegraph.api import GROUP, SERVICE_GRAPH, VERSION
    from servicegraph.kube import Kube, KubeError, api_path, load_client

    ref: str = args.graph
    namespace, _, name = ref.rpartition("/")
    if not name or "/" in namespace:
        raise CliError(f"--graph expects [NAMESPACE/]NAME, not {ref!r}")
    if namespace and args.namespace and namespace != args.namespace:
        raise CliError(f"--graph {ref} is in namespace {namespace}, not -n {args.namespace}")
    try:
        kube = Kube(load_client(args.kubeconfig, args.context))
    except (config.ConfigException, OSError, ValueError) as error:
        raise CliError(f"no usable kubeconfig: {error}") from None
    namespace = namespace or args.namespace or _current_namespace(args.kubeconfig, args.context)

    def get(what: str, path: str, query: dict[str, str] | None = None) -> Any:
        try:
            return kube.request(what, "GET", path, query=query)
        except KubeError as error:
            raise CliError(str(error)) from None

    graph = get(
        f"get ServiceGraph {namespace}/{name}",
        api_path("apis", GROUP, VERSION, "namespaces", namespace, SERVICE_GRAPH.plural, name),
    )
    if graph is None:
        raise CliError(f"ServiceGraph {namespace}/{name} not found")
    spec_name = ((graph.get("spec") or {}).get("snapshot") or {}).get("configMapName")
    status_name = ((graph.get("status") or {}).get("snapshot") or {}).get("configMap")
    config_map = str(status_name or spec_name or f"{name}-graph")
    for attempt in range(3):  # a snapshot being rewritten is read again
        items = get(
            f"list configmaps in {namespace}",
            api_path("api", "v1", "namespaces", namespace, "configmaps"),
            {"labelSelector": snapshot_configmaps.snapshot_selector(config_map)},
        )
        try:
            doc = snapshot_configmaps.decode_listed((items or {}).get("items") or [], config_map)
        except snapshot.SnapshotError:
            if attempt == 2:
                raise
            continue
        if doc is None:
            raise CliError(
                f"ServiceGraph {namespace}/{name} has no snapshot yet (no ConfigMap "
                f"{config_map}): is the operator running? See its Ready condition"
            )
        return doc
    raise AssertionError("unreachable")


def _current_namespace(kubeconfig: str | None, context_name: str | None) -> str:
    """The namespace of the kubeconfig's context (`context_name`, else the current one), or
    the pod's own, as kubectl does."""
    from kubernetes import config

    try:
        contexts, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        if context_name is not None:
            current = next((c for c in contexts if c.get("name") == context_name), None)
        return str((current or {}).get("context", {}).get("namespace") or "default")
    except (config.ConfigException, OSError, ValueError):
        return settings.own_namespace() or "default"


# Problems printed per file; the rest are counted, so that 10,000 bad objects make a report
# a person reads, not 20,000 lines.
MAX_PROBLEMS_PER_FILE = 10


def _check(args: argparse.Namespace) -> int:
    manifests = load(args.paths, workers=available_cores())
    if manifests.problems:
        _print_problems(manifests.problems)
        return EXIT_INVALID
    if not manifests.dependencies and not args.allow_empty:
        print(
            f"error: no ServiceDependency in {' '.join(args.paths)} (--allow-empty passes anyway)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    graph, _ = _analyse(manifests, args.graph, figures=False)
    warnings = [
        f"{source} depends on {target}, which no manifest declares"
        for (source, target), edge in graph.edges.items()
        if edge.declared and not graph.nodes[target].declared
    ]
    for conflict in graph.conflicts:
        declared_by = [
            f"{_object_ref(*ref)} ({manifests.origin('ServiceDependency', *ref)})"
            for ref in (conflict.winner, *conflict.losers)
        ]
        warnings.append(
            f"service {conflict.service} is declared by {len(declared_by)} objects: "
            f"{', '.join(declared_by)}; the first one counts"
        )
    level = "error" if args.strict else "warning"
    for warning in warnings:
        print(f"{level}: {warning}", file=sys.stderr)
    if warnings and args.strict:
        print(f"{len(warnings)} warning(s), and --strict fails on warnings", file=sys.stderr)
        return EXIT_INVALID
    for cycle in graph.cycles:
        print(f"cycle: {cycle.describe()}", file=sys.stderr)
    if graph.cycles:
        print(f"{len(graph.cycles)} unacknowledged cycle(s)", file=sys.stderr)
        return EXIT_CYCLES
    summary = graph.summary()
    print(f"ok: {summary.services} services, {summary.edges} edges, no unacknowledged cycle")
    return 0


def _print_problems(problems: Sequence[Problem]) -> None:
    by_file: dict[Path, list[Problem]] = {}
    for problem in problems:
        by_file.setdefault(problem.path, []).append(problem)
    for path, found in by_file.items():
        for problem in found[:MAX_PROBLEMS_PER_FILE]:
            print(problem, file=sys.stderr)
        if len(found) > MAX_PROBLEMS_PER_FILE:
            print(f"{path}: and {len(found) - MAX_PROBLEMS_PER_FILE} more", file=sys.stderr)
    if len(problems) > MAX_PROBLEMS_PER_FILE or len(by_file) > 1:
        print(f"error: {len(problems)} invalid field(s) in {len(by_file)} file(s)", file=sys.stderr)


def _analysed(
    args: argparse.Namespace,
) -> tuple[Graph, ServiceGraph | None, dict[str, Any] | None]:
    """The graph of the manifests in `args.paths`, merged with one poll with --prometheus;
    the chosen ServiceGraph, and what the poll found."""
    manifests = _load_valid(args.paths)
    now = datetime.now(UTC)
    polled: dict[str, Any] | None = None
    observations: list[Observation] = []
    source: ObservedSource | None = None
    if args.prometheus:
        source = _observed_source(args, _chosen_graph(manifests, args.graph))
        observations, polled = _poll(args, source, now)
    else:
        _refuse_observed_flags_without_prometheus(args)
    infer_from = getattr(args, "infer_from", None)
    if infer_from:
        chosen = _chosen_graph(manifests, args.graph)
        namespace = (chosen.metadata.namespace if chosen else None) or "default"
        observations += inference.observations_of(
            _inference(infer_from, namespace), now=now, source_name=INFERRED_SOURCE.name
        )
    graph, chosen = _analyse(
        manifests,
        args.graph,
        observations=observations,
        observed=source,
        inferring=bool(infer_from),
        now=now,
    )
    return graph, chosen, polled


# What `analyze --infer-from` calls the manifests' edges.
INFERRED_SOURCE = DiscoverySource(name="manifests", type=SourceType.KUBERNETES)


def _inference(paths: Sequence[str], namespace: str) -> inference.Inference:
    return inference.infer(inference.entries_of(cluster_objects(paths, namespace)))


def _infer(args: argparse.Namespace) -> int:
    found = _inference(args.paths, args.namespace)
    if args.output == "json":
        _print_json(inference_report.inference_document(found))
    elif args.output == "yaml":
        drafts = inference_report.draft_manifests(found, args.namespace)
        print(yaml.safe_dump_all(drafts, sort_keys=False), end="")
    else:
        _print_table(["SOURCE", "TARGET", "EVIDENCE"], inference_report.inference_rows(found))
        print(
            f"{len(found.services)} services, {len(found.edges)} edges, "
            f"{len(found.unresolved)} unresolved references"
        )
    return 0


def _analyze(args: argparse.Namespace) -> int:
    graph, chosen, polled = _analysed(args)
    ref = (chosen.metadata.namespace or "", chosen.metadata.name) if chosen else None
    report = analysis_report.analysis_document(graph, snapshot.to_document(graph, graph_ref=ref))
    if polled is not None:
        report["observed"] = polled
    if args.output == "json":
        _print_json(report)
    elif args.output == "yaml":
        print(yaml.safe_dump(report, sort_keys=False), end="")
    else:
        _print_analysis(report)
    return 0


def _print_json(document: Any) -> None:
    """`document` as indented JSON; orjson writes an analysis of 10,000 services in a tenth of
    the time the standard library takes."""
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_analysis(report: dict[str, Any]) -> None:
    _print_table(analysis_report.SERVICE_HEADERS, analysis_report.service_rows(report))
    print()
    _print_table(
        ["COUNT", "VALUE"], [[key, str(value)] for key, value in report["summary"].items()]
    )
    if "observed" in report:
        polled = report["observed"]
        print(
            f"observed: {polled['edges']} edges in {polled['series']} series from "
            f"{polled['prometheus']} over {polled['window']}"
        )
    for line in analysis_report.cycle_lines(report):
        print(line)
    for kind, edges in report["drift"].items():
        for edge in edges:
            print(f"{kind}: {edge['source']} -> {edge['target']}")


_OBSERVED_FLAGS = {
    "prometheus.url": "--prometheus",
    "prometheus.headers": "--header",
    "prometheus.timeout": "--timeout",
    "metricPrefix": "--metric-prefix",
    "window": "--window",
    "minRequestRate": "--min-request-rate",
}


def _refuse_observed_flags_without_prometheus(args: argparse.Namespace) -> None:
    given = [
        flag
        for flag, value in (
            ("--window", args.window),
            ("--metric-prefix", args.metric_prefix),
            ("--min-request-rate", args.min_request_rate),
            ("--header", args.headers),
            ("--bearer-token-file", args.bearer_token_file),
            ("--ca-file", args.ca_file),
            ("--timeout", args.timeout),
            ("--source", args.source),
        )
        if value not in (None, [])
    ]
    if given:
        raise CliError(f"{given[0]} needs --prometheus URL")


def _observed_source(args: argparse.Namespace, chosen: ServiceGraph | None) -> ObservedSource:
    """spec.observed of the chosen ServiceGraph (if any) with the flags on top."""
    base = chosen.spec.observed if chosen is not None else None
    headers = dict(base.prometheus.headers) if base else {}
    for item in args.headers:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CliError("--header expects NAME=VALUE")  # no echo: it may hold a secret
        headers[name.strip()] = value
    endpoint: dict[str, Any] = {"url": args.prometheus, "headers": headers}
    raw: dict[str, Any] = {"prometheus": endpoint}
    if base is not None:  # what the graph's spec says, flags aside
        endpoint["timeout"] = base.prometheus.timeout
        raw.update(
            metricPrefix=base.metric_prefix,
            window=base.window,
            minRequestRate=base.min_request_rate,
        )
    if args.timeout is not None:
        endpoint["timeout"] = args.timeout
    for key, value in (
        ("metricPrefix", args.metric_prefix),
        ("window", args.window),
        ("minRequestRate", args.min_request_rate),
    ):
        if value is not None:
            raw[key] = value
    try:
        return ObservedSource.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        flag = next((f for key, f in _OBSERVED_FLAGS.items() if where.startswith(key)), where)
        raise CliError(_flag_problem(flag, error)) from None


def _flag_problem(flag: str, error: ErrorDetails) -> str:
    """A flag's invalid value in words: what was given and what is expected."""
    given = error.get("input")
    pattern = (error.get("ctx") or {}).get("pattern")
    if pattern in PATTERN_MEANINGS:
        return f"{flag} {given!r}: expects {PATTERN_MEANINGS[pattern]}"
    return f"{flag} {given!r}: {error['msg'].replace('Input should', 'should')}"


def _poll(
    args: argparse.Namespace, source: ObservedSource, now: datetime
) -> tuple[list[Observation], dict[str, Any]]:
    """One poll of the observed edges; a failure is one line, as any other CLI error."""
    import asyncio

    from servicegraph import observed  # httpx is imported only when asked to poll

    token = _read_text(args.bearer_token_file, "--bearer-token-file")
    ca = _read_text(args.ca_file, "--ca-file")
    kind = SourceType(args.source or SourceType.OTEL)
    if kind != SourceType.OTEL and args.metric_prefix is not None:
        raise CliError(f"--metric-prefix is only for --source otel; {kind} names are fixed")
    discovery = DiscoverySource.from_observed(source).model_copy(
        update={
            "type": kind,
            "metric_prefix": None if kind != SourceType.OTEL else source.metric_prefix,
        }
    )
    try:
        query = observed.PrometheusQuery.from_source(discovery, bearer_token=token, ca_pem=ca)
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        flag = {
            "bearerToken": "--bearer-token-file",
            "ca": "--ca-file",
            "prometheus.headers": "--header",
        }.get(field, field)
        raise CliError(f"{flag}: {problem}") from None
    try:
        result = asyncio.run(observed.poll(query, now=now))
    except observed.ObservedSourceError as exc:
        raise CliError(f"{exc.reason.value}: {exc.message}") from None
    return result.observations, {
        "prometheus": query.display_url,
        "source": str(kind),
        "metricPrefix": query.metric_prefix if kind == SourceType.OTEL else None,
        "window": query.window,
        "minRequestRate": query.min_request_rate,
        "series": result.series,
        "edges": len(result.observations),
    }


def _read_text(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CliError(f"{flag}: cannot read {path}: {reason}") from None


def _query(args: argparse.Namespace) -> int:
    if not 1 <= args.depth <= MAX_DEPTH:
        raise CliError(f"--depth must be between 1 and {MAX_DEPTH}, not {args.depth}")
    graph = snapshot.graph_from_document(_document(args))
    subgraph = graph.query(args.service, args.direction, args.depth, args.include_stale)
    reached = graph.reach(args.service, args.direction, args.depth, args.include_stale)
    doc = snapshot.to_document(subgraph)
    # Nearest first, then as the snapshot orders them; each with how the query reached it.
    edges = sorted(
        (
            {
                **edge,
                "hops": {
                    str(way): hop for way, hop in reached[edge["source"], edge["target"]].items()
                },
            }
            for edge in doc["edges"]
        ),
        key=lambda edge: min(edge["hops"].values()),
    )
    if args.output == "json":
        result = {
            "service": args.service,
            "direction": args.direction,
            "depth": args.depth,
            "includeStale": args.include_stale,
            "nodes": [node["name"] for node in doc["nodes"]],
            "edges": edges,
        }
        _print_json(result)
        return 0
    rows = [
        [
            e["source"],
            e["target"],
            ",".join(e["hops"]),
            ",".join(str(hop) for hop in e["hops"].values()),
            e["attributes"].get("communicationMode", ""),
            e["attributes"].get("criticality", ""),
            ",".join(s["kind"] for s in e["sources"]),
            "yes" if e["stale"] else "",
        ]
        for e in edges
    ]
    _print_table(
        ["SOURCE", "TARGET", "DIRECTION", "HOP", "MODE", "CRITICALITY", "SOURCES", "STALE"], rows
    )
    return 0


def _percentage(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not 0 < value <= 100:  # NaN fails this too
        raise argparse.ArgumentTypeError(
            f"expects a percentage above 0 and at most 100, such as 99.95, not {text!r}"
        )
    return value


def _slo(args: argparse.Namespace) -> int:
    if args.paths:
        _refuse_cluster_flags(args)
        graph = _analysed(args)[0]
    elif args.prometheus:
        raise CliError(
            "--prometheus polls with --from PATH; a snapshot already holds what was observed"
        )
    else:
        _refuse_observed_flags_without_prometheus(args)
        graph = snapshot.graph_from_document(_document(args))
    # Rounded past the figures' own digits: 99.9 / 100 is 0.9990000000000001 in binary.
    target = None if args.availability is None else round(args.availability / 100, 10)
    report = slo_report.service_report(graph, args.service, target)
    if args.output == "json":
        _print_json(report)
    else:
        _print_table(["FIGURE", "VALUE"], slo_report.report_rows(report))
    return 0 if report.get("achievable", True) is True else EXIT_NOT_ACHIEVABLE


def _export(args: argparse.Namespace) -> int:
    doc = _document(args)
    if args.snapshot:  # a file may hold anything: draw only the graph it is
        graph_ref = snapshot.graph_ref_of(doc)
        doc = snapshot.to_document(snapshot.graph_from_document(doc), graph_ref=graph_ref)
    renderers = {
        "dot": pictures.to_dot,
        "mermaid": pictures.to_mermaid,
        "json": export.to_json,
        "svg": pictures.to_svg,
        "graphml": export.to_graphml,
        "gexf": export.to_gexf,
        "node-link": export.to_node_link,
        "backstage": backstage.to_catalog,
    }
    text = renderers[args.output](doc)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _import_backstage(args: argparse.Namespace) -> int:
    try:
        drafts = backstage.drafts_from_catalog(cluster_objects(args.paths, args.namespace))
    except backstage.CatalogError as error:
        raise CliError(str(error)) from None
    refused = [
        f"{draft['metadata']['namespace']}/{draft['metadata']['name']}: {error}"
        for draft in drafts
        for error in parse_object(draft)[1]
    ]
    if refused:
        for line in refused:
            print(f"error: Component {line}", file=sys.stderr)
        return EXIT_INVALID
    if not drafts:
        raise CliError(f"no Backstage Component in {' '.join(args.paths)}")
    print(yaml.safe_dump_all(drafts, sort_keys=False), end="")
    return 0


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(snapshot_schema.render_schema())
    return 0


def _crds(args: argparse.Namespace) -> int:
    files = render_crds()
    if args.write:
        folder = Path(args.write)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
    else:
        print("---\n".join(files.values()), end="")
    return 0


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in [headers, *rows]:
        print(
            "   ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


if __name__ == "__main__":
    sys.exit(main())

"""Kopf handlers: thin translators from cluster events to the graph loops.

- ServiceDependency objects live in an in-memory index (no API writes to build a graph);
- a change to an index wakes the graph loops that select the changed object, each through
  its own ChangeSignal, and the loops fold bursts of changes into one recomputation;
- each ServiceGraph runs a daemon: its GraphLoop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from servicegraph.api import GROUP, SERVICE_DEPENDENCY, SERVICE_GRAPH, VERSION
from servicegraph.graph_loop import GraphLoop
from servicegraph.indexing import IndexedDependency, IndexedGraph
from servicegraph.inference import ManifestEntry, entry_of
from servicegraph.kube import Kube, KubeError, load_client
from servicegraph.settings import OperatorSettings, own_namespace
from servicegraph.signals import SignalHub
from servicegraph.snapshot_configmaps import SNAPSHOT_LABEL
from servicegraph.telemetry import configure_tracing, count_watch_restarts, serve_metrics
from servicegraph.tenancy import Tenancy, granted_to, platform_namespaces

WATCH_INACTIVITY_TIMEOUT = 300.0  # seconds of silence before a watch stream is reopened
WORKER_IDLE_TIMEOUT = 0.1  # seconds


@kopf.on.startup()
async def configure(
    *, settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    ours: OperatorSettings = memo["settings"]
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.watching.inactivity_timeout = WATCH_INACTIVITY_TIMEOUT
    # Kopf runs a task per object with pending events and keeps it for a while after; a
    # GitOps sync of thousands of objects would keep thousands alive at once.
    settings.queueing.idle_timeout = WORKER_IDLE_TIMEOUT
    # Kopf would post an event for every handler run; ours are the ones that mean something.
    settings.posting.level = logging.WARNING
    memo["kube"] = Kube(load_client())
    memo["signals"] = SignalHub()
    memo["platform"] = platform = platform_namespaces(ours.platform_namespaces, own_namespace())
    logger.info(
        "graphs in these namespaces may select any namespace: "
        + (", ".join(sorted(platform)) or "none")
    )
    memo["last_seen"] = {}
    serve_metrics(ours.metrics_port)
    if ours.peering and not ours.standalone:
        await _check_peering(memo["kube"], ours, logger)


async def _check_peering(kube: Kube, ours: OperatorSettings, logger: kopf.Logger) -> None:
    """Kopf waits silently for ever for a peering object that does not exist: say so."""
    for namespace in ours.namespaces or [None]:
        where = "cluster-wide" if namespace is None else f"in namespace {namespace}"
        try:
            found = await kube.read_peering(ours.peering or "", namespace)
        except KubeError as error:
            logger.warning(f"cannot check the peering object {ours.peering} {where}: {error}")
            continue
        if found is None:
            kind = "ClusterKopfPeering" if namespace is None else "KopfPeering"
            logger.error(
                f"no {kind} {ours.peering!r} {where}: this replica waits until one exists; "
                "create it (the Helm chart does) or run with --standalone"
            )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # The kubernetes package reads $KUBECONFIG once at import; read it when logging in.
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.index(GROUP, VERSION, SERVICE_DEPENDENCY.plural)
async def dependency_index(
    *,
    namespace: str | None,
    name: str,
    labels: Mapping[str, str],
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    **_: Any,
) -> dict[tuple[str, str], IndexedDependency]:
    entry = IndexedDependency.from_object(
        namespace or "", name, dict(labels), dict(spec), meta.get("generation"), dict(status)
    )
    return {(entry.namespace, entry.name): entry}


@kopf.index(GROUP, VERSION, SERVICE_GRAPH.plural)
async def graph_index(
    *, namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], IndexedGraph]:
    entry = IndexedGraph.from_object(namespace or "", name, dict(spec))
    return {(entry.namespace, entry.name): entry}


# Event handlers run after Kopf has updated the indexes with the same event: a loop woken
# from here finds the new entry (an index function runs before its result is stored).
@kopf.on.event(GROUP, VERSION, SERVICE_DEPENDENCY.plural)
async def wake_on_dependency(*, namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    entry = _entry(kwargs["dependency_index"], (namespace or "", name))
    inputs = None if entry is None else entry.inputs()
    changed, before = _remember(memo, SERVICE_DEPENDENCY.plural, (namespace or "", name), inputs)
    if changed:
        await memo["signals"].notify_selecting(before, inputs)


@kopf.on.event(GROUP, VERSION, SERVICE_GRAPH.plural)
async def wake_on_graph(*, namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    key = (namespace or "", name)
    changed, _ = _remember(memo, SERVICE_GRAPH.plural, key, _entry(kwargs["graph_index"], key))
    if changed:
        await memo["signals"].notify_all()


async def namespace_index(
    *, name: str, labels: Mapping[str, str], **_: Any
) -> dict[str, frozenset[str]]:
    """Which namespaces' graphs may read this one (see tenancy.py)."""
    return {name: granted_to(labels)}


async def wake_on_namespace(*, name: str, memo: Any, **kwargs: Any) -> None:
    changed, _ = _remember(memo, "namespaces", (name,), _entry(kwargs["namespace_index"], name))
    if changed:
        await memo["signals"].notify_all()


# What a kubernetes source reads, watched only with --watch-manifests: (group, version, plural).
MANIFEST_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("apps", "v1", "daemonsets"),
    ("batch", "v1", "jobs"),
    ("batch", "v1", "cronjobs"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
)


def _manifest_index_name(plural: str) -> str:
    return f"{plural}_index"


async def manifest_index(
    *, body: kopf.Body, namespace: str | None, name: str, labels: Mapping[str, str], **_: Any
) -> dict[tuple[str, str], ManifestEntry] | None:
    """What inference needs of a workload, Service or ConfigMap; our snapshots are skipped
    (megabytes of graph, and no workload reads them)."""
    if SNAPSHOT_LABEL in labels:
        return None
    entry = entry_of(body)
    return None if entry is None else {(namespace or "", name): entry}


async def wake_on_manifest(
    *, resource: kopf.Resource, namespace: str | None, name: str, memo: Any, **kwargs: Any
) -> None:
    key = (namespace or "", name)
    entry = _entry(kwargs[_manifest_index_name(resource.plural)], key)
    changed, before = _remember(memo, resource.plural, key, entry)
    if changed:
        await memo["signals"].notify_selecting(before, entry)


def _manifests(kwargs: Mapping[str, Any]) -> Iterable[ManifestEntry]:
    for _, _, plural in MANIFEST_RESOURCES:
        yield from _values(kwargs[_manifest_index_name(plural)])


def _entry(index: kopf.Index[Any, Any], key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


def _remember(memo: Any, plural: str, key: tuple[str, ...], entry: Any) -> tuple[bool, Any]:
    """Keep `entry` (None: deleted) as the last seen of the object; (whether it differs from
    the one before, the one before)."""
    before = memo["last_seen"].pop((plural, *key), None)
    if entry is not None:
        memo["last_seen"][(plural, *key)] = entry
    return entry != before, before


# On a stop the loop has `cancellation_backoff` seconds to finish (a deleted graph releases its
# objects), then `cancellation_timeout` more once cancelled.
@kopf.daemon(
    GROUP, VERSION, SERVICE_GRAPH.plural, cancellation_backoff=10.0, cancellation_timeout=5.0
)
async def graph_daemon(
    *, body: kopf.Body, memo: Any, logger: kopf.Logger, stopped: kopf.DaemonStopped, **kwargs: Any
) -> None:
    # Kopf passes each index under its indexing function's name.
    dependencies: kopf.Index[tuple[str, str], IndexedDependency] = kwargs["dependency_index"]
    graphs: kopf.Index[tuple[str, str], IndexedGraph] = kwargs["graph_index"]

    def post_event(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    grants: kopf.Index[str, frozenset[str]] | None = kwargs.get("namespace_index")
    tenancy = Tenancy(
        platform=memo["platform"],
        grants=None
        if grants is None
        else lambda namespace: _entry(grants, namespace) or frozenset(),
    )
    loop = GraphLoop(
        body=body,
        kube=memo["kube"],
        settings=memo["settings"],
        signals=memo["signals"],
        tenancy=tenancy,
        dependencies=lambda: _values(dependencies),
        graphs=lambda: _values(graphs),
        post_event=post_event,
        logger=logger,
        manifests=(lambda: _manifests(kwargs)) if memo["settings"].watch_manifests else None,
    )
    # Run until Kopf asks the daemon to stop (graph deleted, operator exiting), then stop the
    # loop ourselves: an exit Kopf has to force looks like a failure in the logs.
    running = asyncio.ensure_future(loop.run())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running  # a crash of the loop propagates: Kopf restarts the daemon
    if stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
        try:
            await loop.release()
        except KubeError as error:  # the next graph to recompute releases them instead
            logger.warning(f"could not release the objects of a deleted graph: {error}")


def _values(index: kopf.Index[Any, Any]) -> Iterable[Any]:
    for store in index.values():
        yield from store


def _quiet_wake_ups(record: logging.LogRecord) -> bool:
    """Kopf logs every handler run; the wake-ups run on every watch event and say nothing."""
    return not str(record.msg).startswith("Handler 'wake_on_")


def run(settings: OperatorSettings) -> None:
    """Run the operator until SIGINT/SIGTERM."""
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=settings.debug, log_format=log_format)
    # httpx logs every request at INFO: one line per Prometheus query is noise, not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    count_watch_restarts(keep_debug=settings.debug)
    logging.getLogger("kopf.objects").addFilter(_quiet_wake_ups)
    if settings.clusterwide:
        # Grants are labels on Namespaces, which only a cluster-wide operator may watch; one
        # limited to some namespaces lets only platform namespaces select across them.
        kopf.index("", "v1", "namespaces")(namespace_index)
        kopf.on.event("", "v1", "namespaces")(wake_on_namespace)
    if settings.watch_manifests:
        for group, version, plural in MANIFEST_RESOURCES:
            index_name = _manifest_index_name(plural)
            kopf.index(group, version, plural, id=index_name)(manifest_index)
            kopf.on.event(group, version, plural, id=f"wake_on_{plural}")(wake_on_manifest)
    if configure_tracing():
        logging.getLogger(__name__).info("exporting traces over OTLP")
    asyncio.run(
        kopf.operator(
            clusterwide=settings.clusterwide,
            namespaces=settings.namespaces,
            standalone=settings.standalone,
            peering_name=None if settings.standalone else settings.peering,
            priority=settings.priority,
            liveness_endpoint=settings.liveness,
            memo=kopf.Memo(settings=settings),
        )
    )

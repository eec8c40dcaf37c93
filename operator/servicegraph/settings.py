"""The operator's configuration: command-line flags, each with an environment variable."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "SERVICEGRAPH_"


@dataclass(frozen=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    standalone: bool = False
    # Peering object; naming one makes peering mandatory. None: Kopf's "default" if it exists.
    peering: str | None = None
    # Peering: replicas with equal priorities freeze each other, so each start draws its own.
    priority: int = 0
    liveness: str | None = None
    metrics_port: int = 8000
    log_format: str = "json"  # json: one JSON object per line; plain: for people
    debug: bool = False
    # A burst of changes is folded into one recomputation: wait until `debounce` seconds pass
    # without a change, but never longer than `debounce_max` after the first one.
    debounce: float = 0.5
    debounce_max: float = 5.0
    coalesce: bool = True  # off: recompute on every event (for measuring what coalescing buys)
    # Recompute this often even without changes: staleness moves with the clock.
    resync: float = 300.0
    # Parallel API writes of ServiceDependency statuses.
    write_concurrency: int = 8
    # Graphs in these namespaces may select any namespace; empty: the operator's own.
    platform_namespaces: tuple[str, ...] = ()
    # Watch workloads, Services and ConfigMaps for graphs with a kubernetes source (needs the
    # read permissions the chart grants with sources.kubernetes.enabled).
    watch_manifests: bool = False

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def env_flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(ENV_PREFIX + name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def env_value(environ: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    raw = environ.get(ENV_PREFIX + name)
    return default if raw is None or raw == "" else raw


def default_priority() -> int:
    return random.randint(1, 1_000_000)


def from_environment(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Settings from SERVICEGRAPH_* variables alone (flags override them in the CLI)."""
    env = os.environ if environ is None else environ
    defaults = OperatorSettings()
    return OperatorSettings(
        namespaces=_names(env_value(env, "NAMESPACES")),
        standalone=env_flag(env, "STANDALONE", defaults.standalone),
        peering=env_value(env, "PEERING"),
        priority=int(env_value(env, "PRIORITY") or default_priority()),
        liveness=env_value(env, "LIVENESS"),
        metrics_port=int(env_value(env, "METRICS_PORT") or defaults.metrics_port),
        log_format=env_value(env, "LOG_FORMAT") or defaults.log_format,
        debug=env_flag(env, "DEBUG", defaults.debug),
        debounce=float(env_value(env, "DEBOUNCE") or defaults.debounce),
        debounce_max=float(env_value(env, "DEBOUNCE_MAX") or defaults.debounce_max),
        coalesce=env_flag(env, "COALESCE", defaults.coalesce),
        resync=float(env_value(env, "RESYNC") or defaults.resync),
        write_concurrency=int(env_value(env, "WRITE_CONCURRENCY") or defaults.write_concurrency),
        platform_namespaces=_names(env_value(env, "PLATFORM_NAMESPACES")),
        watch_manifests=env_flag(env, "WATCH_MANIFESTS", defaults.watch_manifests),
    )


def _names(listed: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (listed or "").split(",") if n.strip())


def own_namespace(environ: Mapping[str, str] | None = None) -> str | None:
    """The namespace this process runs in: POD_NAMESPACE (the chart sets it), else the
    service account's; None outside a cluster."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    mounted = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return mounted.read_text(encoding="utf-8").strip() or None if mounted.is_file() else None

"""Linkerd's proxy metrics as edges: what each proxy reports of its outbound traffic.

    response_total{direction="outbound"}               counter    responses, `classification`
                                                                  success or failure
    response_latency_ms_bucket{direction="outbound"}   histogram  their latency
    tcp_open_total{direction="outbound"}               counter    TCP connections opened

The caller is the workload label the proxy carries (`deployment`, `statefulset`,
`daemonset`, `job`, ...) and the callee its `dst_` counterpart; both are workload names. The
labels come from Linkerd's scrape configuration (linkerd-viz's Prometheus relabels pod labels
into them): a Prometheus of your own must copy that configuration. Only outbound series count,
so a request reported by both proxies is counted once.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Final

from servicegraph.mesh_series import INDEPENDENT, EdgeKey, mesh_observations
from servicegraph.series import QUANTILE, ip_like, usable_name

__all__ = ["INDEPENDENT", "observations", "queries"]

WORKLOAD_LABELS: Final = ("deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob")
BY: Final = ", ".join(
    ("namespace", "dst_namespace", *WORKLOAD_LABELS, *(f"dst_{kind}" for kind in WORKLOAD_LABELS))
)
OUTBOUND: Final = 'direction="outbound"'


def queries(metric_prefix: str, window: str) -> dict[str, str]:
    """Rate, failed rate, p95 and TCP, by workload and destination workload
    (`metric_prefix` is not used: Linkerd's names are fixed)."""
    return {
        "rate": f"sum by ({BY}) (rate(response_total{{{OUTBOUND}}}[{window}]))",
        "failed": f'sum by ({BY}) (rate(response_total{{{OUTBOUND}, classification="failure"}}'
        f"[{window}]))",
        "latency": f"histogram_quantile({QUANTILE}, sum by ({BY}, le) "
        f"(rate(response_latency_ms_bucket{{{OUTBOUND}}}[{window}])))",
        "tcp": f"sum by ({BY}) (rate(tcp_open_total{{{OUTBOUND}}}[{window}]))",
    }


def edge_key(labels: Mapping[str, str]) -> EdgeKey | None:
    source = next((labels[k] for k in WORKLOAD_LABELS if labels.get(k)), "")
    target = next((labels[f"dst_{k}"] for k in WORKLOAD_LABELS if labels.get(f"dst_{k}")), "")
    if ip_like(target) or not (usable_name(source) and usable_name(target)):
        return None
    return EdgeKey(source, target)


# What `observed.poll` calls: the accumulation every mesh shares, with this mesh's labels.
observations: Final = partial(mesh_observations, key_of=edge_key)

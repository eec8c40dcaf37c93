"""Real manifests written by others (Google's Online Boutique, the OpenTelemetry demo), kept
beside the repository in `../shared/data/real-manifests`, never copied into it.

    boutique = real_manifest("online-boutique/kubernetes-manifests.yaml")

Where they are absent the test skips, and fails under CI=true, where a skip would hide that
inference was never tried on them. SERVICEGRAPH_REAL_MANIFESTS names another folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest

from tests.support.binaries import in_ci

ROOT = Path(__file__).resolve().parents[2]

# What np-guard's cluster-topology-analyzer finds in Online Boutique (its
# tests/onlineboutique/expected_output.json): each Deployment names its callees in *_ADDR.
ONLINE_BOUTIQUE_EDGES: Final = frozenset(
    {
        ("cartservice", "redis-cart"),
        ("checkoutservice", "cartservice"),
        ("checkoutservice", "currencyservice"),
        ("checkoutservice", "emailservice"),
        ("checkoutservice", "paymentservice"),
        ("checkoutservice", "productcatalogservice"),
        ("checkoutservice", "shippingservice"),
        ("frontend", "adservice"),
        ("frontend", "cartservice"),
        ("frontend", "checkoutservice"),
        ("frontend", "currencyservice"),
        ("frontend", "productcatalogservice"),
        ("frontend", "recommendationservice"),
        ("frontend", "shippingservice"),
        ("loadgenerator", "frontend"),
        ("recommendationservice", "productcatalogservice"),
    }
)


def real_manifests_folder() -> Path | None:
    given = os.environ.get("SERVICEGRAPH_REAL_MANIFESTS")
    if given:
        return Path(given)
    for parent in ROOT.parents:
        candidate = parent / "shared" / "data" / "real-manifests"
        if candidate.is_dir():
            return candidate
    return None


def real_manifest(relative: str) -> Path:
    """The path of one real manifest file; skip (fail under CI=true) when it is absent."""
    folder = real_manifests_folder()
    path = folder / relative if folder is not None else None
    if path is None or not path.is_file():
        reason = f"the real manifest {relative} is not beside the repository (../shared/data)"
        if in_ci():
            pytest.fail(f"{reason} [CI=true: missing test data fails, it does not skip]")
        pytest.skip(reason)
    return path

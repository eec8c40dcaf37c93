"""The pollers of one graph follow its spec: one per Prometheus source, each with the history
the snapshot gave back to it, none touching another's."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from servicegraph.api import DiscoverySource, ServiceGraphSpec
from servicegraph.graph import Observation, SourceKind
from servicegraph.polling import SourcePollers
from tests.support.prometheus import free_port

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def sources(*entries: dict[str, Any]) -> list[DiscoverySource]:
    return ServiceGraphSpec.model_validate({"sources": list(entries)}).all_sources()


def nobody() -> dict[str, Any]:
    """A Prometheus that refuses connections: every poll fails at once."""
    return {"url": f"http://127.0.0.1:{free_port()}", "timeout": "1s"}


def test_each_source_takes_up_its_own_history_and_a_failure_keeps_it() -> None:
    mesh = {"name": "mesh", "type": "istio", "prometheus": nobody()}
    traces = {"name": "traces", "type": "otel", "prometheus": nobody()}

    async def scenario() -> None:
        polled = asyncio.Event()

        async def on_poll() -> None:
            polled.set()

        pollers = SourcePollers(
            namespace="shop",
            name="shop",
            kube=None,
            on_poll=on_poll,
            logger=logging.getLogger(),  # type: ignore[arg-type]
        )
        pollers.restore(
            [
                Observation("a", "b", SourceKind.SERVICE_MESH, NOW, source_name="mesh"),
                Observation("a", "c", SourceKind.OTEL, NOW, source_name="traces"),
                Observation("a", "d", SourceKind.OTEL, NOW, source_name="gone"),
            ],
            {"mesh": {"lastSuccessTime": "2026-05-01T11:00:00Z", "series": 7}},
        )
        pollers.sync(sources(mesh, traces))
        try:
            assert {n: [o.target for o in p.observations] for n, p in pollers.pollers.items()} == {
                "mesh": ["b"],
                "traces": ["c"],
            }
            assert pollers.pollers["mesh"].state.series == 7
            while not all(p.state.healthy is False for p in pollers.pollers.values()):
                await asyncio.wait_for(polled.wait(), 10)
                polled.clear()
            # Both failed; both keep what they had, and the last success they had; what the
            # snapshot held of "gone" stays, to age out.
            assert sorted(o.target for o in pollers.observations()) == ["b", "c", "d"]
            assert pollers.pollers["mesh"].state.last_success_time == "2026-05-01T11:00:00Z"
            assert pollers.pollers["mesh"].state.reason == "Unreachable"

            # A source that changes type is another source: its history goes. A removed one
            # stops polling; what it saw stays, to age out, with what the snapshot held of
            # a source no longer named; it comes back with its source.
            pollers.sync(sources({**mesh, "type": "linkerd"}))
            assert list(pollers.pollers) == ["mesh"]
            assert pollers.pollers["mesh"].observations == []
            assert sorted(o.target for o in pollers.observations()) == ["c", "d"]
            pollers.sync(sources(mesh, traces))
            assert [o.target for o in pollers.pollers["traces"].observations] == ["c"]
            assert sorted(o.target for o in pollers.observations()) == ["c", "d"]
        finally:
            pollers.stop()

    asyncio.run(scenario())

"""Events about cycles: a Warning when an unacknowledged cycle appears, Normal when it is gone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from servicegraph.api import MAX_CYCLE_SAMPLE_NAMES
from servicegraph.graph import Graph

PostEvent = Callable[[str, str, str], None]  # (type, reason, message)


class CycleEvents:
    def __init__(
        self, post_event: PostEvent, logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        self.post_event = post_event
        self.logger = logger
        self.seen: set[frozenset[str]] | None = None  # None: nothing known yet

    def restore(self, cycles: Iterable[Iterable[str]]) -> None:
        """The cycles (members) the last snapshot held: those were announced already."""
        self.seen = {frozenset(c) for c in cycles}

    def post(self, graph: Graph) -> None:
        current = {frozenset(c): c for c in graph.cycles}
        before = self.seen if self.seen is not None else set()
        for members, cycle in current.items():
            if members not in before:
                text = cycle.describe(MAX_CYCLE_SAMPLE_NAMES)
                self.post_event("Warning", "CycleDetected", f"dependency cycle: {text}")
                self.logger.warning(f"new dependency cycle: {text}")
        acknowledged = {frozenset(c) for c in graph.acknowledged_cycles}
        for members in before - current.keys():
            if members in acknowledged:  # silenced, not gone: "resolved" would be untrue
                continue
            names = sorted(members)
            left_out = len(names) - MAX_CYCLE_SAMPLE_NAMES
            more = f" and {left_out} more" if left_out > 0 else ""
            shown = ", ".join(names[:MAX_CYCLE_SAMPLE_NAMES])
            self.post_event("Normal", "CycleResolved", f"cycle between {shown}{more} is gone")
        self.seen = set(current)

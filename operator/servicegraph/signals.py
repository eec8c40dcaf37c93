"""Waking the graph loops when their inputs change, and folding bursts of changes into one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class ChangeSignal:
    """A counter of changes that loops can wait on.

    A GitOps sync of a thousand ServiceDependency objects is a thousand watch events; a loop
    that waits for them to settle recomputes once instead of a thousand times.
    """

    def __init__(self) -> None:
        self._count = 0
        self._condition = asyncio.Condition()

    @property
    def count(self) -> int:
        return self._count

    async def notify(self) -> None:
        async with self._condition:
            self._count += 1
            self._condition.notify_all()

    async def _changed_since(self, seen: int, timeout: float) -> bool:
        async with self._condition:
            try:
                await asyncio.wait_for(
                    self._condition.wait_for(lambda: self._count != seen), timeout
                )
            except TimeoutError:
                return False
            return True

    async def settled(self, seen: int, *, timeout: float, quiet: float, cap: float) -> int:
        """Wait for a change after `seen` (at most `timeout`), then for the burst to settle.

        Settled means `quiet` seconds without a change, or `cap` seconds after the first one,
        so a steady trickle cannot postpone the recomputation for ever. Returns the count the
        caller has now seen.
        """
        if self._count == seen and not await self._changed_since(seen, timeout):
            return self._count
        deadline = time.monotonic() + cap
        while (remaining := deadline - time.monotonic()) > 0:
            current = self._count
            if not await self._changed_since(current, min(quiet, remaining)):
                break
        return self._count


class SignalHub:
    """One ChangeSignal per graph loop, with what the loop selects: a changed
    ServiceDependency wakes the graphs that select it (before or after the change), a changed
    ServiceGraph wakes them all (it may take objects from another), a finished Prometheus
    poll wakes only its own graph."""

    def __init__(self) -> None:
        self._signals: dict[ChangeSignal, Callable[[Any], bool]] = {}

    def add(self, signal: ChangeSignal, selects: Callable[[Any], bool]) -> None:
        self._signals[signal] = selects

    def discard(self, signal: ChangeSignal) -> None:
        self._signals.pop(signal, None)

    async def notify_all(self) -> None:
        for signal in list(self._signals):
            await signal.notify()

    async def notify_selecting(self, *entries: Any) -> None:
        """Wake the loops that select any of `entries` (None entries are skipped)."""
        for signal, selects in list(self._signals.items()):
            if any(entry is not None and selects(entry) for entry in entries):
                await signal.notify()

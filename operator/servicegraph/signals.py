"""Waking the graph loops when their inputs change, and folding bursts of changes into one."""

from __future__ import annotations

import asyncio
import time


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
    """One ChangeSignal per graph loop: a changed ServiceDependency wakes them all, a finished
    Prometheus poll wakes only its own graph."""

    def __init__(self) -> None:
        self._signals: set[ChangeSignal] = set()

    def add(self, signal: ChangeSignal) -> None:
        self._signals.add(signal)

    def discard(self, signal: ChangeSignal) -> None:
        self._signals.discard(signal)

    async def notify_all(self) -> None:
        for signal in list(self._signals):
            await signal.notify()

"""The worker thread that runs the heavy work (analysis, snapshot encoding) off the event loop.

One at a time, whatever the number of graphs: each job holds a whole graph or its snapshot in
memory, and two at once would double the operator's peak.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

R = TypeVar("R")

_HEAVY = ThreadPoolExecutor(max_workers=1, thread_name_prefix="servicegraph-heavy")


async def off_the_loop(function: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """`function(*args, **kwargs)` in the worker thread, awaited."""
    call = functools.partial(function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_HEAVY, call)

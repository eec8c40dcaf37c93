"""How long to wait before trying again: one rule for every retry the operator makes."""

from __future__ import annotations

import random

MAX_DELAY = 60.0  # seconds


def retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = 1.0,
    cap: float = MAX_DELAY,
    jitter: random.Random | None = None,
) -> float:
    """Seconds before try `attempt` + 1: base * 2**(attempt-1), at most `cap`, and never less
    than the server's Retry-After (itself capped). With `jitter`, a random time up to that
    ("full jitter"), so many clients failing together do not retry together."""
    ceiling = min(cap, base * 2 ** (attempt - 1)) if base > 0 else 0.0
    delay = jitter.uniform(0, ceiling) if jitter is not None and ceiling > 0 else ceiling
    return max(delay, min(retry_after or 0.0, cap))

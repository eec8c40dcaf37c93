"""What the edge translations share: an instant-vector sample, the names they accept, and the
rounding that keeps snapshots from churning on noise."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from servicegraph.graph import Observation

MAX_NAME_LENGTH: Final = 253
QUANTILE: Final = 0.95
CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# IPv4 or IPv6 literals, with or without a port: peers named by address during pod churn.
_IP_LIKE = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}(:\d+)?|\[?[0-9a-fA-F:]*:[0-9a-fA-F:.]*\]?(:\d+)?)$")


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector, and the time it was evaluated at."""

    labels: Mapping[str, str]
    value: float
    timestamp: float = 0.0


class EdgeSeries(Protocol):
    """What a source type's module offers `observed.poll`: its named instant queries (the
    first is asked first, the others at its evaluation time; when it finds nothing, only
    the INDEPENDENT ones are asked) and their answers' edges."""

    INDEPENDENT: frozenset[str]

    def queries(self, metric_prefix: str, window: str) -> dict[str, str]: ...

    def observations(
        self,
        answers: Mapping[str, Sequence[Sample]],
        *,
        now: datetime,
        min_request_rate: float,
        source_name: str,
    ) -> list[Observation]: ...


def usable_name(name: str) -> bool:
    """Whether a label value can be a node: not empty, not too long, no control characters."""
    return bool(name) and len(name) <= MAX_NAME_LENGTH and not CONTROL.search(name)


def ip_like(name: str) -> bool:
    return bool(_IP_LIKE.match(name))


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0

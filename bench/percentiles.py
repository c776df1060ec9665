"""Percentiles of a bench's samples, one definition for every bench: the nearest rank, the
smallest sample with at least a fraction q of them at or below it. With a few samples p99 is then
the worst one, as it should be, and every figure printed is a time that was measured."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 < q <= 1) by nearest rank; NaN when there are no samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

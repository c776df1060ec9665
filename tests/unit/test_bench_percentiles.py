"""bench/percentiles.py: the nearest rank, the benches' one percentile."""

from __future__ import annotations

import math

from bench.percentiles import nearest_rank


def test_nearest_rank_is_a_sample_and_p99_of_a_few_is_the_worst() -> None:
    hundred = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert nearest_rank(hundred, 0.99) == 99.0
    assert nearest_rank(hundred, 0.5) == 50.0
    assert nearest_rank([3.0, 1.0, 2.0], 0.99) == 3.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0  # not 2.5: a time that was measured
    assert nearest_rank([7.0], 0.01) == 7.0
    assert math.isnan(nearest_rank([], 0.5))

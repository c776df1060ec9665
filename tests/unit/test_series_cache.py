"""The flow's cache of metric series (flows/aggregates.py `SeriesCache`): points worked out from
it, poll after poll and after it starts afresh, are the points worked out without it."""

from __future__ import annotations

import itertools

import polars as pl
import pyarrow as pa

from flows.aggregates import SeriesCache, metric_points
from schemas.config import Price
from schemas.datasets import METRICS
from schemas.prices import PriceTable
from schemas.rollups import GENAI_COST, GENAI_TOKENS, GENAI_UNPRICED

T0 = 1_800_000_000_000_000_000
PRICES = PriceTable({"m-priced": Price(input=3.0, output=15.0)})


def token_poll(poll: int, attributes: list[list[tuple[str, str]]]) -> pa.Table:
    """One cumulative token counter point per attribute list, and a gauge, at second `poll`."""
    rows: list[tuple[str, str, str, bool | None, list[tuple[str, str]]]] = [
        ("openclaw.tokens", "sum", "cumulative", True, labels) for labels in attributes
    ]
    rows.append(("queue.depth", "gauge", "", None, [("queue", "q")]))
    n = len(rows)
    data: dict[str, list[object]] = {column: [None] * n for column in METRICS.schema.names}
    data.update(
        time=[T0 + poll * 1_000_000_000] * n,
        start_time=[T0] * n,
        metric_name=[r[0] for r in rows],
        unit=["1"] * n,
        type=[r[1] for r in rows],
        temporality=[r[2] for r in rows],
        is_monotonic=[r[3] for r in rows],
        service_name=["agent"] * n,
        attributes=[r[4] for r in rows],
        value=[100.0 * (poll + 1) + i for i in range(n)],
    )
    return pa.Table.from_pydict(data, schema=METRICS.schema)


def canonical(points: pl.DataFrame) -> pl.DataFrame:
    return points.sort(points.columns, nulls_last=True)


def test_cached_series_give_the_points_of_uncached_ones_poll_after_poll_and_after_a_fresh_start() -> None:
    priced = [("openclaw.model", "m-priced"), ("openclaw.token", "input")]
    unpriced = [("openclaw.model", "m-other"), ("openclaw.token", "output")]
    polls = [
        token_poll(0, [priced, unpriced]),
        token_poll(1, [unpriced, priced, [("openclaw.model", "m-priced"), ("openclaw.token", "output")]]),
        token_poll(2, [priced[::-1], unpriced]),  # the same series, its attributes in another order
    ]
    for limit in (200_000, 1):  # 1: the cache starts afresh on every poll with a new series
        cache = SeriesCache(PRICES, limit=limit)
        for table in itertools.chain(polls, polls):
            cached = metric_points(table, PRICES, cache)
            assert canonical(cached).equals(canonical(metric_points(table, PRICES)))


def test_two_forms_of_one_series_in_a_poll_derive_each_point_once() -> None:
    priced = [("openclaw.model", "m-priced"), ("openclaw.token", "input")]
    points = metric_points(token_poll(0, [priced, priced[::-1]]), PRICES, SeriesCache(PRICES))
    counts = dict(points.group_by("metric_name").len().iter_rows())
    assert counts[GENAI_TOKENS] == 2 and counts[GENAI_COST] == 2 and GENAI_UNPRICED not in counts
    tokens = points.filter(pl.col("metric_name") == GENAI_TOKENS)
    assert tokens["series_id"].n_unique() == 1  # one series, whatever the order of its attributes

"""Cumulative → delta on whole columns (flows/aggregates.py `CumulativeState.to_deltas`): the
order, staleness and reset rules worked out in NumPy must be the ones Polars' own comparisons
give (NaN above every number, a missing value never a reset)."""

from __future__ import annotations

import math

import polars as pl

from flows.aggregates import CumulativeState, empty_points


def counter(*points: tuple[int, float | None]) -> pl.DataFrame:
    """A monotonic cumulative sum of one series: (time, value) points in the order given."""
    rows = [
        {
            "series_id": 1,
            "delta_key": 1,
            "metric_name": "c",
            "type": "sum",
            "is_monotonic": True,
            "cumulative": True,
            "labels": "[]",
            "time": at,
            "start_time": 0,
            "value": value,
        }
        for at, value in points
    ]
    return pl.DataFrame(rows, schema=empty_points().schema)


def test_stragglers_and_repeats_are_late_a_drop_resets_and_nan_orders_above_numbers() -> None:
    state = CumulativeState()
    deltas, late = state.to_deltas(counter((20, 8.0), (10, 5.0)))
    assert deltas["value"].to_list() == [5.0, 3.0] and late.is_empty()
    # before the last known point, and a repeat of a time: late; 6 after 8: a reset, counts whole
    deltas, late = state.to_deltas(counter((15, 9.0), (30, 6.0), (30, 7.0)))
    assert deltas["value"].to_list() == [6.0]
    assert deltas["raw"].to_list() == [6.0]
    assert sorted(late["time"].to_list()) == [15, 30] and late.height == 2
    deltas, _ = state.to_deltas(counter((40, math.nan)))
    assert math.isnan(deltas["value"][0])  # NaN is not below 6: no reset, NaN - 6
    deltas, _ = state.to_deltas(counter((50, 9.0)))
    assert deltas["value"].to_list() == [9.0]  # 9 is below NaN: a reset
    deltas, _ = state.to_deltas(counter((60, None), (70, 4.0)))
    assert deltas["value"].to_list() == [None, None]  # a missing value resets nothing: no difference
    assert state.last["time"].to_list() == [70]


def test_a_new_start_time_resets_and_other_series_are_untouched() -> None:
    state = CumulativeState()
    first = counter((10, 100.0)).with_columns(start_time=pl.lit(5, pl.Int64))
    state.to_deltas(first)
    restarted = counter((20, 150.0)).with_columns(start_time=pl.lit(6, pl.Int64))
    gauge = counter((20, 3.0)).with_columns(type=pl.lit("gauge"), delta_key=pl.lit(2, pl.UInt64))
    deltas, late = state.to_deltas(pl.concat([gauge, restarted]))
    assert deltas["type"].to_list() == ["gauge", "sum"]
    assert deltas["value"].to_list() == [3.0, 150.0] and late.is_empty()


def test_a_histogram_that_changes_its_buckets_resets_and_does_not_crash() -> None:
    """An agent redeployed with other bucket bounds: the new buckets count whole (a reset), and
    the other series in the same poll go on."""
    rows = [
        {"time": 10, "buckets": [1.0, 2.0], "count": 3.0, "delta_key": 1},
        {"time": 20, "buckets": [2.0, 3.0, 4.0], "count": 9.0, "delta_key": 1},  # 3 buckets now
        {"time": 30, "buckets": [3.0, 5.0, 6.0], "count": 14.0, "delta_key": 1},
        {"time": 20, "buckets": [1.0, 1.0], "count": 2.0, "delta_key": 2},
    ]
    template = counter((0, None)).row(0, named=True)
    histogram = [
        {**template, "type": "histogram", "value": None, "series_id": r["delta_key"], **r} for r in rows
    ]
    deltas, late = CumulativeState().to_deltas(pl.DataFrame(histogram, schema=empty_points().schema))
    by_time = {(k, t): b for k, t, b in deltas.select("delta_key", "time", "buckets").iter_rows()}
    assert by_time[1, 20] == [2.0, 3.0, 4.0]  # counted whole
    assert by_time[1, 30] == [1.0, 2.0, 2.0]  # then differences again
    assert by_time[2, 20] == [1.0, 1.0] and late.is_empty()

"""Rollup arithmetic against numpy: deterministic series with known values, windows and resets."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from flows.aggregates import (
    KEY,
    CumulativeState,
    Partial,
    decoded_labels,
    finalize,
    merge,
    metric_points,
    partials,
    quantile_error,
    rebase,
    span_points,
)
from flows.rollups import ShardState, ShardWindows
from schemas.config import Price, RollupsConfig
from schemas.datasets import METRICS, SPANS
from schemas.prices import PriceTable
from schemas.rollups import GENAI_COST, GENAI_TOKENS, QUANTILES, SPAN_DURATION

MINUTE = 60_000_000_000
T0 = 1_800_000_000_000_000_000 - 1_800_000_000_000_000_000 % (86400 * 1_000_000_000)  # a UTC midnight
SCALE = 6
NO_PRICES = PriceTable({})


def metric_rows(name: str, kind: str, times_s: Any, temporality: str = "", monotonic: bool = False,
                attributes: list[tuple[str, str]] | None = None, **columns: Any) -> pa.Table:  # fmt: skip
    n = len(times_s)
    data: dict[str, Any] = {column: [None] * n for column in METRICS.schema.names}
    data.update(
        time=[T0 + int(t * 1e9) for t in times_s],
        start_time=[T0] * n,
        metric_name=[name] * n,
        unit=["1"] * n,
        type=[kind] * n,
        temporality=[temporality] * n,
        is_monotonic=[monotonic] * n,
        service_name=["agent"] * n,
        attributes=[attributes or [("host.name", "a")]] * n,
    )
    data.update({key: list(value) for key, value in columns.items()})
    return pa.Table.from_pydict(data, schema=METRICS.schema)


def rollup(tables: list[pa.Table], width: int = MINUTE, resolution: str = "1m") -> pl.DataFrame:
    """Every table is one Kafka poll; cumulative state carries across them as in the flow."""
    state = CumulativeState()
    parts = []
    for table in tables:
        deltas, _late = state.to_deltas(metric_points(table, NO_PRICES))
        parts.append(partials(deltas, width, SCALE))
    result = pl.from_arrow(finalize(merge(Partial.concat(parts)), width, resolution))
    assert isinstance(result, pl.DataFrame)
    return result.sort("metric_name", "window_start")


def window_of(times_s: np.ndarray, start_s: int, width_s: int = 60) -> np.ndarray:
    return (times_s >= start_s) & (times_s < start_s + width_s)


def test_gauge_counts_sums_extremes_last_exact_and_quantiles_within_the_sketch_error() -> None:
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0, 180, 3000))
    values = rng.lognormal(3, 1, 3000)
    rows = rollup([metric_rows("cpu", "gauge", times[:1000], value=values[:1000]),
                   metric_rows("cpu", "gauge", times[1000:], value=values[1000:])])  # fmt: skip
    assert rows.height == 3
    for minute, row in enumerate(rows.iter_rows(named=True)):
        inside = values[window_of(times, minute * 60)]
        assert row["points"] == inside.size and row["count"] == inside.size
        assert row["sum"] == pytest.approx(inside.sum(), rel=1e-12)
        assert (row["min"], row["max"]) == (inside.min(), inside.max())
        assert row["last"] == inside[-1]
        assert row["increase"] is None and row["rate"] is None
        for name, level in QUANTILES.items():
            exact = np.sort(inside)[int(np.ceil(level * inside.size)) - 1]  # the rank the sketch targets
            assert row[name] == pytest.approx(exact, rel=quantile_error(SCALE))


def test_cumulative_counter_with_a_reset_split_across_polls() -> None:
    times = np.arange(0, 120, 5.0)  # 24 points, two windows
    steps = np.arange(1, 25, dtype=float)
    cumulative = np.cumsum(steps)
    cumulative[15:] = np.cumsum(steps[15:])  # the agent restarted: the counter starts over at t=75s
    polls = [metric_rows("tasks", "sum", times[part], "cumulative", True, value=cumulative[part])
             for part in (slice(0, 10), slice(10, None))]  # fmt: skip
    rows = rollup(polls)
    first, second = rows.iter_rows(named=True)
    # first point counts whole (since its start time); after that, differences; a reset counts whole again
    assert first["increase"] == cumulative[11]
    expected_second = (cumulative[14] - cumulative[11]) + cumulative[23]
    assert second["increase"] == expected_second
    assert second["rate"] == pytest.approx(expected_second / 60, rel=1e-15)
    assert second["last"] == cumulative[23]


def test_a_cumulative_point_older_than_its_series_last_in_a_later_poll_is_out_of_order() -> None:
    """It sorted before the known point with no previous row and counted whole, as a reset."""
    state = CumulativeState()
    first = metric_points(metric_rows("tasks", "sum", [10.0], "cumulative", True, value=[100.0]), NO_PRICES)
    deltas, late = state.to_deltas(first)
    assert (deltas["value"].to_list(), late.height) == ([100.0], 0)
    polls = metric_rows("tasks", "sum", [5.0, 20.0], "cumulative", True, value=[90.0, 130.0])
    deltas, late = state.to_deltas(metric_points(polls, NO_PRICES))
    assert deltas["value"].to_list() == [30.0]  # 130 after 100, the straggler left out
    assert late["time"].to_list() == [T0 + 5 * 10**9]


def test_delta_counter_increase_is_the_sum_of_its_points() -> None:
    times = np.arange(0, 60, 2.0)
    values = np.arange(30, dtype=float) % 7
    (row,) = rollup([metric_rows("tokens", "sum", times, "delta", True, value=values)]).iter_rows(named=True)
    assert row["increase"] == values.sum()
    assert row["rate"] == pytest.approx(values.sum() / 60, rel=1e-15)


def test_cumulative_explicit_histogram_becomes_window_deltas_and_interpolated_quantiles() -> None:
    bounds = [100.0, 250.0, 500.0, 1000.0]
    per_window = [[10, 20, 30, 30, 10], [0, 0, 50, 50, 0]]  # bucket counts observed in each minute
    cumulative = np.cumsum(per_window, axis=0)
    table = metric_rows(
        "llm.latency", "histogram", [59.0, 119.0], "cumulative",
        count=cumulative.sum(axis=1), sum=[1000.0, 3000.0], bucket_counts=cumulative.tolist(),
        explicit_bounds=[bounds, bounds],
    )  # fmt: skip
    first, second = rollup([table]).iter_rows(named=True)
    assert (first["count"], second["count"]) == (100, 100)
    assert (first["sum"], second["sum"]) == (1000.0, 2000.0)
    assert first["p50"] == pytest.approx(250 + (500 - 250) * (50 - 30) / 30)  # histogram_quantile
    assert second["p50"] == pytest.approx(500.0)  # exactly the bound after 50 of 100 observations
    assert second["p90"] == pytest.approx(500 + 500 * (90 - 50) / 50)


def test_exponential_histogram_quantiles_merge_across_scales() -> None:
    # values 1..1000 recorded into two points with different scales; the merge goes to the lower one
    values = np.arange(1, 1001, dtype=float)
    points = []
    for scale, chunk in ((3, values[:500]), (2, values[500:])):
        index = np.ceil(np.log2(chunk) * 2**scale).astype(int) - 1
        offset = int(index.min())
        counts = np.bincount(index - offset).astype(int).tolist()
        points.append((scale, offset, counts, chunk))
    table = metric_rows(
        "e", "exponential_histogram", [10.0, 20.0], "delta",
        count=[len(p[3]) for p in points], sum=[p[3].sum() for p in points],
        min=[p[3].min() for p in points], max=[p[3].max() for p in points],
        exp_scale=[p[0] for p in points], exp_zero_count=[0, 0],
        exp_positive_offset=[p[1] for p in points], exp_positive_counts=[p[2] for p in points],
        exp_negative_offset=[0, 0], exp_negative_counts=[[], []],
    )  # fmt: skip
    (row,) = rollup([table]).iter_rows(named=True)
    assert row["count"] == 1000 and row["sum"] == values.sum()
    for name, level in QUANTILES.items():
        assert row[name] == pytest.approx(level * 1000, rel=quantile_error(2))


def test_hourly_rollup_of_closed_minutes_equals_rolling_up_the_hour_directly() -> None:
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 3600, 5000))
    table = metric_rows("q", "gauge", times, value=rng.normal(50, 10, 5000))
    hour = 3600 * 1_000_000_000
    direct = rollup([table], hour, "1h")
    deltas, _ = CumulativeState().to_deltas(metric_points(table, NO_PRICES))
    minutes = merge(partials(deltas, MINUTE, SCALE))
    via_minutes = pl.from_arrow(finalize(merge(rebase(minutes, hour)), hour, "1h"))
    assert isinstance(via_minutes, pl.DataFrame)
    assert via_minutes.drop("last").equals(direct.drop("last"))  # `last` ties broken the same way: see below
    assert via_minutes["last"][0] == direct["last"][0]


def test_points_folded_into_open_windows_equal_their_partials_merged_with_them() -> None:
    """`partials(..., into=open)` merges in the query that folds: the same rows and buckets as a
    merge of its own, for gauges (sketch buckets), explicit and exponential histograms."""
    rng = np.random.default_rng(11)
    bounds = [1.0, 10.0, 100.0]
    polls = [
        pa.concat_tables([
            metric_rows("g", "gauge", times, value=rng.normal(50, 10, 4)),
            metric_rows("h", "histogram", times, "delta", count=[3] * 4, sum=[30.0] * 4,
                        bucket_counts=[[1, 1, 1, 0]] * 4, explicit_bounds=[bounds] * 4),
            metric_rows("e", "exponential_histogram", times, "delta", count=[2] * 4, sum=[9.0] * 4,
                        exp_scale=[poll + 1] * 4, exp_zero_count=[1] * 4, exp_positive_offset=[poll] * 4,
                        exp_positive_counts=[[1]] * 4, exp_negative_offset=[0] * 4,
                        exp_negative_counts=[[]] * 4),
        ])
        for poll, times in enumerate((np.array([1.0, 30, 61, 90]), np.array([20.0, 59, 70, 130])))
    ]  # fmt: skip
    first, second = (partials(metric_points(poll, NO_PRICES), MINUTE, SCALE) for poll in polls)
    fused = partials(metric_points(polls[1], NO_PRICES), MINUTE, SCALE, into=first)
    separate = merge(Partial.concat([first, second]))
    assert fused.rows.sort(KEY).equals(separate.rows.sort(KEY))
    assert fused.buckets.sort(pl.all()).equals(separate.buckets.sort(pl.all()))
    assert fused.rows["points"].sum() == 24
    assert fused.buckets.filter(pl.col("scheme") == "e")["scale"].min() == 1


def test_each_point_gets_its_own_series_labels_whatever_the_attribute_order() -> None:
    """Labels are worked out once per distinct series of a poll and gathered back to the points."""
    orders = [[("host.name", f"h{i % 3}"), ("loop", f"l{i % 2}")] for i in range(12)]
    orders = [pairs if i % 4 else pairs[::-1] for i, pairs in enumerate(orders)]  # same sets, keys reordered
    tables = [metric_rows("g", "gauge", [i], value=[i], attributes=pairs) for i, pairs in enumerate(orders)]
    points = metric_points(pa.concat_tables(tables), NO_PRICES)
    labelled = points.with_columns(decoded_labels(pl.col("labels")))
    for row, pairs in zip(labelled.iter_rows(named=True), orders, strict=True):
        expected = sorted([*pairs, ("service.name", "agent")])
        assert [(label["key"], label["value"]) for label in row["labels"]] == expected
    series = points.group_by("series_id").agg(pl.col("labels").unique().len(), pl.len().alias("points"))
    assert series.height == 6 and series["labels"].to_list() == [1] * 6  # 3 hosts x 2 loops, one id each
    assert sorted(series["points"].to_list()) == [2] * 6


def span_table(rows: list[dict[str, Any]]) -> pa.Table:
    data: dict[str, Any] = {column: [r.get(column) for r in rows] for column in SPANS.schema.names}
    return pa.Table.from_pydict(data, schema=SPANS.schema)


def test_red_metrics_and_genai_tokens_and_cost_from_spans() -> None:
    base = {
        "service_name": "gateway",
        "name": "chat",
        "gen_ai_request_model": "m1",
        "gen_ai_provider_name": "p",
    }
    spans = [
        {**base, "end_time": T0 + i * 1_000_000_000, "duration_ns": (i + 1) * 1_000_000,
         "status_code": status, "gen_ai_usage_input_tokens": 100, "gen_ai_usage_output_tokens": 10}
        for i, status in enumerate(["OK"] * 8 + ["ERROR"] * 2)
    ]  # fmt: skip
    points = span_points(span_table(spans), PriceTable({"m1": Price(input=3.0, output=15.0)}))  # USD per 1M
    deltas, _ = CumulativeState().to_deltas(points)
    rows = pl.from_arrow(finalize(merge(partials(deltas, MINUTE, SCALE)), MINUTE, "1m"))
    assert isinstance(rows, pl.DataFrame)
    red = rows.filter(pl.col("metric_name") == SPAN_DURATION).sort("count")
    assert red["count"].to_list() == [2, 8]  # errors, then OK calls
    assert red["max"].to_list() == [10.0, 8.0]
    tokens = rows.filter(pl.col("metric_name") == GENAI_TOKENS)
    assert sorted(tokens["sum"].to_list()) == [100.0, 1000.0]
    cost = rows.filter(pl.col("metric_name") == GENAI_COST)
    assert cost["sum"].sum() == pytest.approx(1000 * 3e-6 + 100 * 15e-6)


def test_late_points_are_counted_not_folded() -> None:
    config = RollupsConfig(resolutions=("1m", "1h"), allowed_lateness=5)
    windows = ShardWindows(config, ShardState())
    on_time = metric_points(metric_rows("g", "gauge", [10.0, 70.0, 130.0], value=[1.0, 2.0, 3.0]), NO_PRICES)
    out, _ = windows.on_item(on_time)
    closed = dict(output for _seq, output in out)
    assert closed["rollups_1m"]["points"].to_pylist() == [1, 1]  # minutes 0 and 1 closed
    late = metric_points(metric_rows("g", "gauge", [20.0], value=[9.0]), NO_PRICES)
    out, _ = windows.on_item(late)
    outputs = dict(output for _seq, output in out)
    assert outputs["late_points"]["points"].to_pylist() == [1]
    assert "rollups_1m" not in outputs


def test_idle_shard_closes_its_windows_on_the_clock() -> None:
    config = RollupsConfig(resolutions=("1m",), allowed_lateness=0.2)
    windows = ShardWindows(config, ShardState())
    windows.on_item(metric_points(metric_rows("g", "gauge", [59.9], value=[1.0]), NO_PRICES))
    assert windows.on_notify()[0] == []  # the window ends 0.1s of event time later, plus lateness
    time.sleep(0.4)
    (sequence, (dataset, table)), *_ = windows.on_notify()[0]
    assert (sequence, dataset, table.num_rows) == (0, "rollups_1m", 1)


def test_polls_fold_into_open_windows_and_close_once() -> None:
    config = RollupsConfig(resolutions=("1m", "1h"), allowed_lateness=1)
    windows = ShardWindows(config, ShardState())
    outputs: list[tuple[str, pa.Table]] = []
    for start in (0.0, 20.0, 40.0, 61.0, 125.0):  # five polls; the last closes minutes 0 and 1
        points = metric_points(
            metric_rows("g", "gauge", [start, start + 1], value=[start, start + 1]), NO_PRICES
        )
        outputs.extend(output for _seq, output in windows.on_item(points)[0])
    minutes = pa.concat_tables([table for dataset, table in outputs if dataset == "rollups_1m"])
    assert minutes["points"].to_pylist() == [6, 2] and minutes["sum"].to_pylist() == [123.0, 123.0]
    assert windows.state.open["1h"].rows["points"].to_list() == [8]  # both minutes folded into the hour


def test_labels_of_any_text_come_back_as_sent() -> None:
    """Points carry their labels as JSON text (cheap to split and sort): quotes, escapes, control
    characters and the series hash's own separators must round-trip into the rollup row."""
    odd = [("a", 'say "hi"\\n'), ("b", "\x1d\x1e\x1f\n\t"), ("c", "é ✓ 𝄞"), ("d", ""), ("e\x1f", "[1,{}]")]
    rows = rollup([metric_rows("g", "gauge", [1.0, 2.0], value=[1.0, 2.0], attributes=odd)])
    (attributes,) = rows["attributes"].to_list()
    assert sorted(attributes.items()) == sorted([*odd, ("service.name", "agent")])


def test_a_poll_of_late_and_fresh_points_counts_the_late_and_folds_the_fresh() -> None:
    config = RollupsConfig(resolutions=("1m",), allowed_lateness=5)
    windows = ShardWindows(config, ShardState())
    windows.on_item(metric_points(metric_rows("g", "gauge", [10.0, 70.0], value=[1.0, 2.0]), NO_PRICES))
    mixed = metric_points(metric_rows("g", "gauge", [20.0, 75.0, 80.0], value=[9.0, 3.0, 4.0]), NO_PRICES)
    outputs = dict(output for _seq, output in windows.on_item(mixed)[0])
    assert outputs["late_points"]["points"].to_pylist() == [1]  # minute 0 closed with the first poll
    assert windows.state.open["1m"].rows["points"].to_list() == [3]  # minute 1: 70, 75 and 80
    assert windows.state.open["1m"].rows["sum"].to_list() == [9.0]


def test_a_snapshot_with_list_labels_resumes_and_closes_the_same_rows() -> None:
    """State pickled by the previous version (labels as lists of structs) is upgraded on restore."""
    config = RollupsConfig(resolutions=("1m",), allowed_lateness=1)
    counter: dict[str, Any] = {"temporality": "cumulative", "monotonic": True}
    first = metric_points(metric_rows("c", "sum", [1.0, 2.0], value=[5.0, 7.0], **counter), NO_PRICES)
    second = metric_points(metric_rows("c", "sum", [3.0, 70.0], value=[8.0, 9.0], **counter), NO_PRICES)
    fresh = ShardWindows(config, ShardState())
    fresh.on_item(first)
    old = ShardWindows(config, ShardState())
    old.on_item(first)
    as_lists = decoded_labels(pl.col("labels"))
    old.state.cumulative.last = old.state.cumulative.last.with_columns(as_lists)
    old.state.open["1m"].rows = old.state.open["1m"].rows.with_columns(as_lists)
    resumed = ShardWindows(config, old.state)
    closed = [dict(out for _seq, out in logic.on_item(second)[0]) for logic in (fresh, resumed)]
    assert closed[0]["rollups_1m"].equals(closed[1]["rollups_1m"])
    assert closed[1]["rollups_1m"]["increase"].to_pylist() == [8.0]  # 5 + 2 + 1, the first point whole

"""Long `query_range`s answered from the 1-minute rollups instead of raw points, where equal.

A range query evaluated at minute-aligned times (start and step whole minutes) reads, for each
plain instant selector, the newest sample in (t - 5m, t]. The rollup of the minute [w, w + 60 s)
keeps its newest point's value as `last` (flows/aggregates.py): for gauges the value, for
cumulative sums the running total, not the delta. So one synthetic sample per rollup row, `last`
at `window_end - 1 ms`, gives the engine the same newest sample at every step, and staleness
ends at the same step, for a quarter of the rows when agents report every 15 s.

Eligible, all of them required (anything else reads raw points, as before):
- the query: start and step whole minutes, a range of at least `MIN_RANGE_MS`; no range
  selector (`rate`, `*_over_time` need every point), no `timestamp()` (the synthetic times are
  not the points'), no `@`, offsets whole minutes;
- each selector: names one metric by `__name__="..."` (not `target_info`, built from resource
  attributes the rollups do not keep);
- each metric it matches: a gauge or a cumulative sum (monotonic or not) from one kind of scope;
  histograms and summaries have no per-bucket rollup.
- the rollups complete: per metric, their rows folded as many points as the raw dataset holds in
  their minutes (not so after late points, a backfill, minutes the rollups flow was down), and
  no raw point exactly on a minute boundary (a step at that time sees it, the rollup files it in
  the next minute); counted over the name and time columns only.
Before and after the rollups (minutes not closed yet, a rollups flow started later) raw points
answer. The answer then differs from raw points only for agents that set `service.namespace`
(the rollups keep only service.name and service.instance.id of the resource).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl
import pyarrow as pa

from console.metric_store import MetricStore, window
from console.scan import scan
from promql import PromQLError, Series, parse
from promql.ast import (
    Aggregate,
    Binary,
    Call,
    Expr,
    Matcher,
    NumberLiteral,
    Paren,
    StringLiteral,
    Unary,
    VectorSelector,
)
from schemas.config import TalonflowConfig
from schemas.datasets import METRICS, METRICS_SCHEMA
from schemas.prometheus import SCOPE_NAME
from schemas.prometheus_names import INPUT_COLUMNS, TARGET_INFO, SeriesStorage, prometheus_series
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME

ROLLUP_MS: Final = 60_000  # the finest rollup resolution, rollups_1m
ROLLUPS: Final = "rollups_1m"
MIN_RANGE_MS: Final = 6 * 3_600_000  # shorter ranges read few points either way
NO_RECORDED_VALUE: Final = 1  # OTLP's data point flag: the series ended (a staleness marker)
_RESOURCE: Final = [SERVICE_NAME, SERVICE_INSTANCE_ID]
_NUMBER_KINDS: Final = ("gauge", "sum")
_MAP: Final = pl.Map(pl.String, pl.String)
_ROLLUP_COLUMNS: Final = (
    "window_start",
    "window_end",
    "metric_name",
    "unit",
    "type",
    "is_monotonic",
    "attributes",
    "last",
    "points",
)


def _plain(selector: VectorSelector) -> bool:
    names = [m.value for m in selector.matchers if m.name == "__name__" and m.op == "="]
    return (
        bool(names)
        and TARGET_INFO not in names
        and selector.at_ms is None
        and selector.at_start_end is None
        and selector.offset_ms % ROLLUP_MS == 0
    )


def _reads_last_samples_only(node: Expr) -> bool:
    """An allow-list: range selectors, subqueries and any node added later read raw points."""
    if isinstance(node, VectorSelector):
        return _plain(node)
    if isinstance(node, NumberLiteral | StringLiteral):
        return True
    if isinstance(node, Call):
        return node.func != "timestamp" and all(_reads_last_samples_only(a) for a in node.args)
    if isinstance(node, Aggregate):
        return _reads_last_samples_only(node.expr) and (
            node.param is None or _reads_last_samples_only(node.param)
        )
    if isinstance(node, Binary):
        return _reads_last_samples_only(node.lhs) and _reads_last_samples_only(node.rhs)
    if isinstance(node, Unary | Paren):
        return _reads_last_samples_only(node.expr)
    return False


def eligible(node: Expr, start_ms: int, end_ms: int, step_ms: int) -> bool:
    """Whether the query can read rollups at all (each selector's metrics are checked on reading)."""
    if start_ms % ROLLUP_MS or step_ms % ROLLUP_MS or end_ms - start_ms < MIN_RANGE_MS:
        return False
    return _reads_last_samples_only(node)


class RollupMetricStore(MetricStore):
    """A MetricStore that reads eligible metrics from rollups_1m, and raw points outside them."""

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        names = self.metric_names(matchers, start_ms, end_ms)
        kinds = self.catalogue(start_ms, end_ms).filter(pl.col("metric_name").is_in(names))
        numbers = (
            kinds["type"].is_in(_NUMBER_KINDS).all()
            and (kinds.filter(pl.col("type") == "sum")["temporality"] == "cumulative").all()
        )
        if not names or not numbers or kinds["scope_name"].eq(SCOPE_NAME).n_unique() > 1:
            return super().select(matchers, start_ms, end_ms)
        rows = (
            scan(self.config, ROLLUPS, window(start_ms - ROLLUP_MS, end_ms))
            .filter(pl.col("metric_name").is_in(names))
            .select(_ROLLUP_COLUMNS)
            .collect()
        )
        if rows.is_empty():
            return super().select(matchers, start_ms, end_ms)
        first_ms = _ms(rows["window_start"].min())
        last_ms = _ms(rows["window_end"].max())
        if not self._complete(rows, names, first_ms, last_ms):
            return super().select(matchers, start_ms, end_ms)
        verbatim = bool(kinds["scope_name"].eq(SCOPE_NAME).any())
        synthetic = _as_points(rows, kinds, SCOPE_NAME if verbatim else "")
        raw = [self.points(names, start_ms, first_ms - 1)] if first_ms > start_ms else []
        raw += [self.points(names, last_ms, end_ms)] if last_ms <= end_ms else []
        table = pa.concat_tables([synthetic, *(part.cast(synthetic.schema) for part in raw)])
        return SeriesStorage(prometheus_series(table)).select(matchers, start_ms, end_ms)

    def _complete(self, rows: pl.DataFrame, names: list[str], first_ms: int, last_ms: int) -> bool:
        """Whether the rollups folded every raw point of their minutes (each metric's raw count
        equals its rows' `points`; not so after late points, a backfill, minutes the flow was
        down) and no point lies exactly on a minute boundary (a step at that time sees it, the
        rollup files it in the next minute). Reads only the name and time columns, a fraction of
        what converting the points costs."""
        raw = (
            scan(self.config, METRICS.name, window(first_ms, last_ms - 1))
            .filter(pl.col("metric_name").is_in(names))
            .group_by("metric_name")
            .agg(
                pl.len().cast(pl.Int64).alias("raw"),
                (pl.col("time").dt.epoch("ms") % ROLLUP_MS == 0).sum().alias("on_boundary"),
            )
            .collect()
        )
        folded = rows.group_by("metric_name").agg(pl.col("points").sum())
        both = folded.join(raw, on="metric_name", how="full", coalesce=True)
        counted = not both["points"].has_nulls() and not both["raw"].has_nulls()
        return counted and bool((both["points"] == both["raw"]).all()) and both["on_boundary"].sum() == 0


def _ms(value: object) -> int:
    return int(pl.Series([value]).dt.epoch("ms")[0])


def _as_points(rows: pl.DataFrame, kinds: pl.DataFrame, scope: str) -> pa.Table:
    """One METRICS row per rollup row: its `last` at the minute's end, less 1 ms, so it is in it."""
    entries = pl.col("attributes").map.entries()
    is_resource = pl.element().struct.field("key").is_in(_RESOURCE)
    temporality = kinds.select("metric_name", "temporality").unique(subset="metric_name")
    frame = rows.join(temporality, on="metric_name", how="left").select(
        (pl.col("window_end") - pl.duration(milliseconds=1)).alias("time"),
        "metric_name",
        "unit",
        "type",
        "temporality",
        "is_monotonic",
        pl.col("last").alias("value"),
        pl.when(pl.col("last").is_null()).then(NO_RECORDED_VALUE).otherwise(0).alias("flags"),
        pl.lit(scope).alias("scope_name"),
        entries.list.eval(pl.element().filter(is_resource)).cast(_MAP).alias("resource_attributes"),
        entries.list.eval(pl.element().filter(~is_resource)).cast(_MAP).alias("attributes"),
    )
    table = frame.to_arrow()
    columns = {name: table[name] for name in table.column_names}
    schema = pa.schema([METRICS_SCHEMA.field(name) for name in INPUT_COLUMNS])
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(len(table), f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def store_for(config: TalonflowConfig, query: str, start_ms: int, end_ms: int, step_ms: int) -> MetricStore:
    """The store a range query reads: rollups where eligible (see above), raw points otherwise."""
    try:
        node = parse(query)
    except PromQLError:
        return MetricStore(config)  # the engine raises it again, and the API shapes the error
    return RollupMetricStore(config) if eligible(node, start_ms, end_ms, step_ms) else MetricStore(config)

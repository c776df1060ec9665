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
answer. The rollups keep service.name, service.namespace and service.instance.id of the resource
(flows/aggregates.py), so `job` and `instance` are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from operator import or_
from typing import Final

import polars as pl

from console.metric_store import MINUTE_MS, ON_MINUTE, POINTS, MetricStore, window
from console.scan import scan_files
from console.series_catalogue import FILE, FIRST_MS, LAST_MS, SOURCE, Kind, catalogue, matching
from console.timerange import TimeRange
from promql import STALE_NAN, PromQLError, Series, format_labels, parse
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
from schemas.prometheus import SCOPE_NAME
from schemas.prometheus_names import (
    LABELS,
    NAME,
    SERIES,
    SERIES_SCHEMA,
    SERVICE_NAMESPACE,
    TARGET_INFO,
    TIMESTAMP_MS,
    VALUE,
    SeriesStorage,
    names_of,
)
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME

ROLLUP_MS: Final = MINUTE_MS  # the finest rollup resolution, rollups_1m
ROLLUPS: Final = "rollups_1m"
MIN_RANGE_MS: Final = 6 * 3_600_000  # shorter ranges read few points either way
NO_RECORDED_VALUE: Final = 1  # OTLP's data point flag: the series ended (a staleness marker)
_RESOURCE: Final = [SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID]  # H4: + namespace (rollups keep it)
_NUMBER_KINDS: Final = ("gauge", "sum")
_NAMED: Final = ("metric_name", "unit", "type", "temporality", "is_monotonic", "scope_name")  # names_of's
_MAP: Final = pl.Map(pl.String, pl.String)


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
        rolled = window(start_ms - ROLLUP_MS, end_ms)
        minutes = catalogue(self.config, ROLLUPS, rolled, *ROLLUP_MINUTES)
        minutes = minutes.filter(pl.col("metric_name").is_in(names)) if not minutes.is_empty() else minutes
        if minutes.is_empty():
            return super().select(matchers, start_ms, end_ms)
        first_ms, last_ms = int(minutes[FIRST_MS].min()), int(minutes[LAST_MS].max()) + ROLLUP_MS  # type: ignore[arg-type]
        if not self._complete(minutes, names, first_ms, last_ms):
            return super().select(matchers, start_ms, end_ms)
        scope = SCOPE_NAME if bool(kinds["scope_name"].eq(SCOPE_NAME).any()) else ""
        sources = catalogue(self.config, ROLLUPS, rolled, *rollup_series(scope))
        chosen = matching(sources.filter(pl.col("metric_name").is_in(names)), matchers)
        before = [self._raw(matchers, start_ms, first_ms - 1)] if first_ms > start_ms else []
        after = [self._raw(matchers, last_ms, end_ms)] if last_ms <= end_ms else []
        # In time order within each series: a stable sort by series keeps it.
        frame = pl.concat([*before, _rolled_series(self.config, chosen, rolled), *after], how="vertical")
        frame = frame.sort(SERIES, maintain_order=True)
        return SeriesStorage(frame).select(matchers, start_ms, end_ms)

    def _raw(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> pl.DataFrame:
        return self.series(matchers, start_ms, end_ms)

    def _complete(self, minutes: pl.DataFrame, names: list[str], first_ms: int, last_ms: int) -> bool:
        """Whether the rollups folded every raw point of their minutes (each metric's raw count
        equals its rows' `points`; not so after late points, a backfill, minutes the flow was
        down) and no point lies exactly on a minute boundary (a step at that time sees it, the
        rollup files it in the next minute). Counted per file and minute from the name and time
        columns only, and kept (console/series_catalogue.py), so a repeated query reads none."""
        raw = self.minutes(first_ms, last_ms - 1)
        if raw.is_empty():
            return False
        raw = (
            raw.filter(pl.col("metric_name").is_in(names))
            .group_by("metric_name")
            .agg(pl.col(POINTS).sum().alias("raw"), pl.col(ON_MINUTE).sum())
        )
        folded = minutes.group_by("metric_name").agg(pl.col("points").sum())
        both = folded.join(raw, on="metric_name", how="full", coalesce=True)
        counted = not both["points"].has_nulls() and not both["raw"].has_nulls()
        return counted and bool((both["points"] == both["raw"]).all()) and both[ON_MINUTE].sum() == 0


def _rollup_minutes(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Per rollups file: per metric and minute, the points its rows folded; the minute as
    FIRST_MS and LAST_MS."""
    minute = pl.col("window_start").dt.epoch("ms").alias(FIRST_MS)
    return (
        frame.group_by("metric_name", minute)
        .agg(pl.col("points").sum())
        .with_columns(pl.col(FIRST_MS).alias(LAST_MS))
    )


def _rollup_sources(scope: str) -> Callable[[pl.LazyFrame], pl.LazyFrame]:
    """Per rollups file: one row per series (its `series_id` is its source), with the resource
    and the other attributes apart, as raw points have them."""

    def build(frame: pl.LazyFrame) -> pl.LazyFrame:
        entries = pl.col("attributes").map.entries()
        is_resource = pl.element().struct.field("key").is_in(_RESOURCE)
        start = pl.col("window_start").dt.epoch("ms")
        return (
            frame.group_by(pl.col("series_id").alias(SOURCE))
            .agg(
                *(pl.col(c).first() for c in ("metric_name", "unit", "type", "is_monotonic")),
                pl.lit(scope).alias("scope_name"),
                entries.first()
                .list.eval(pl.element().filter(is_resource))
                .cast(_MAP)
                .alias("resource_attributes"),
                entries.first().list.eval(pl.element().filter(~is_resource)).cast(_MAP).alias("attributes"),
                start.min().alias(FIRST_MS),
                start.max().alias(LAST_MS),
            )
            .with_columns(
                pl.when(pl.col("type") == "sum")
                .then(pl.lit("cumulative"))
                .otherwise(pl.lit(""))
                .alias("temporality")
            )
        )

    return build


def rollup_series(scope: str) -> Kind:
    """The series catalogue of rollups files for metrics of this scope (labels follow from it)."""
    return Kind(_rollup_sources(scope), f"series:{scope}", labelled=True)


ROLLUP_MINUTES: Final = Kind(_rollup_minutes, "minutes", labelled=False)
# Every catalogue a RollupMetricStore reads (either scope: OTLP metrics, remote-written ones),
# for console/warmer.py to build ahead.
BUILT_AHEAD: Final = (ROLLUP_MINUTES, rollup_series(""), rollup_series(SCOPE_NAME))


def _rolled_series(config: TalonflowConfig, chosen: pl.DataFrame, rolled: TimeRange) -> pl.DataFrame:
    """The chosen series' rollup rows as samples (SERIES_SCHEMA): each row's `last` at its
    minute's end less 1 ms, so it is in it; a row without one, a staleness marker. Reads only the
    id, time and `last` columns of those series' rows; names and labels come from the catalogue,
    so no point goes through the conversion. Series of equal labels (attributes the naming
    merges) keep, per timestamp, the row of the smaller series_id: the conversion's first row."""
    if chosen.is_empty():
        return pl.DataFrame(schema=SERIES_SCHEMA)
    series = chosen.unique(SOURCE).join(names_of(chosen.select(_NAMED)), on="metric_name")
    series = series.filter(pl.col(NAME) != TARGET_INFO).select(
        pl.col(SOURCE).alias("series_id"), NAME, LABELS
    )
    texts = [
        format_labels(tuple(sorted([("__name__", n), *((p["name"], p["value"]) for p in ls)])))
        for n, ls in series.select(NAME, LABELS).iter_rows()
    ]
    series = series.with_columns(pl.Series(SERIES, texts, dtype=pl.String))
    frames = [
        scan_files(config, ROLLUPS, [str(uri[0])], rolled)
        .filter(
            reduce(or_, [pl.col("metric_name") == n for n in part["metric_name"].unique()]),
            pl.col("series_id").is_in(part[SOURCE].implode()),
        )
        .select("series_id", "window_end", "last")
        for uri, part in chosen.group_by(FILE, maintain_order=True)
    ]
    rows = pl.concat(pl.collect_all(frames), how="vertical")
    samples = rows.join(series, on="series_id").select(
        NAME,
        LABELS,
        SERIES,
        (pl.col("window_end").dt.epoch("ms") - 1).alias(TIMESTAMP_MS),
        pl.col("last").fill_null(STALE_NAN).alias(VALUE),
        "series_id",
    )
    ordered = samples.sort(SERIES, TIMESTAMP_MS, "series_id")
    return ordered.unique([SERIES, TIMESTAMP_MS], keep="first", maintain_order=True).select(
        SERIES_SCHEMA.names()
    )


def store_for(config: TalonflowConfig, query: str, start_ms: int, end_ms: int, step_ms: int) -> MetricStore:
    """The store a range query reads: rollups where eligible (see above), raw points otherwise."""
    try:
        node = parse(query)
    except PromQLError:
        return MetricStore(config)  # the engine raises it again, and the API shapes the error
    return RollupMetricStore(config) if eligible(node, start_ms, end_ms, step_ms) else MetricStore(config)

"""The `metrics` dataset as a PromQL Storage, across hot, warm and cold tiers.

A selector reads only what it can match: the hive partitions of its time range (console/scan.py),
and of the files there only the series its matchers accept, found from each file's series
catalogue (console/series_catalogue.py) before any point is read. The read filters on the
sorted `service_name` and `metric_name` columns, which Parquet's row-group statistics prune, and
on the series source's hash only in files where a rejected series shares both with a chosen one:
memory is bounded by the chosen series' points, not the metric's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import reduce
from operator import or_
from typing import Final

import polars as pl
import pyarrow as pa

from console.scan import scan_files
from console.series_catalogue import FILE, FIRST_MS, LAST_MS, SOURCE, Kind, catalogue, matching, source_hash
from console.timerange import TimeRange
from promql import Series
from promql.ast import Matcher
from schemas.config import TalonflowConfig
from schemas.datasets import METRICS
from schemas.prometheus_names import INPUT_COLUMNS, NAME, SeriesStorage, names_of, prometheus_series

# What names a metric: the catalogue's columns (its description too, for /api/v1/metadata).
CATALOGUE_COLUMNS = (
    "metric_name",
    "unit",
    "type",
    "temporality",
    "is_monotonic",
    "scope_name",
    "metric_description",
)
# What a series' names and labels follow from: its source in a file's series catalogue.
SOURCE_COLUMNS = (*CATALOGUE_COLUMNS, "service_name", "resource_attributes", "attributes")


_MS: Final = pl.col("time").dt.epoch("ms")
MINUTE_MS: Final = 60_000
POINTS, ON_MINUTE = "points", "on_minute"  # columns of `minutes`
_SPAN: Final = (_MS.min().alias(FIRST_MS), _MS.max().alias(LAST_MS))


def _sources(frame: pl.LazyFrame) -> pl.LazyFrame:
    """A file's series sources (console/series_catalogue.py) with their first and last point."""
    return frame.group_by(source_hash(SOURCE_COLUMNS)).agg(
        *(pl.col(c).first() for c in SOURCE_COLUMNS), *_SPAN
    )


def _metrics(frame: pl.LazyFrame) -> pl.LazyFrame:
    """A file's distinct metrics per minute, with their points and those exactly on the minute
    (console/rollup_store.py's completeness check): from its string and time columns only, a
    fraction of reading the attribute maps that `_sources` reads (Parquet decodes maps slowly)."""
    minute = (_MS - _MS % MINUTE_MS).alias("_minute")
    return frame.group_by(*CATALOGUE_COLUMNS, minute).agg(
        *_SPAN, pl.len().cast(pl.Int64).alias(POINTS), (_MS % MINUTE_MS == 0).sum().alias(ON_MINUTE)
    )


SERIES: Final = Kind(_sources, "series", labelled=True)
MINUTES: Final = Kind(_metrics, "minutes", labelled=False)
BUILT_AHEAD: Final = (SERIES, MINUTES)  # every catalogue a store reads: console/warmer.py builds them


def window(start_ms: int, end_ms: int) -> TimeRange:
    """Both ends included, as PromQL's windows."""
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    return TimeRange(start, datetime.fromtimestamp(end_ms / 1000, UTC) + timedelta(milliseconds=1), None)


class MetricStore:
    """One query's view of the metrics dataset: each distinct range's catalogue is read once."""

    def __init__(self, config: TalonflowConfig) -> None:
        self.config = config
        self.catalogues: dict[tuple[int, int], pl.DataFrame] = {}
        self.metrics: dict[tuple[int, int], pl.DataFrame] = {}

    def sources(self, start_ms: int, end_ms: int) -> pl.DataFrame:
        """The series sources with a point in the range, per file, with their labels."""
        key = (start_ms, end_ms)
        if key not in self.catalogues:
            self.catalogues[key] = catalogue(self.config, METRICS.name, window(start_ms, end_ms), *SERIES)
        return self.catalogues[key]

    def minutes(self, start_ms: int, end_ms: int) -> pl.DataFrame:
        """Per metric (CATALOGUE_COLUMNS) and minute with a point in the range: its POINTS and
        those ON_MINUTE, counted per file and kept (console/series_catalogue.py)."""
        key = (start_ms, end_ms)
        if key not in self.metrics:
            self.metrics[key] = catalogue(self.config, METRICS.name, window(start_ms, end_ms), *MINUTES)
        return self.metrics[key]

    def catalogue(self, start_ms: int, end_ms: int) -> pl.DataFrame:
        """The distinct metrics (CATALOGUE_COLUMNS) with a point in the range."""
        minutes = self.minutes(start_ms, end_ms)
        if minutes.is_empty():
            return pl.DataFrame(
                schema={c: pl.String for c in CATALOGUE_COLUMNS} | {"is_monotonic": pl.Boolean}
            )
        return minutes.select(CATALOGUE_COLUMNS).unique()

    def metric_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        """The OTLP metric names whose Prometheus names satisfy every `__name__` matcher."""
        names = names_of(self.catalogue(start_ms, end_ms))
        for matcher in matchers:
            if matcher.name == "__name__":
                accepted = [n for n in names[NAME].unique().to_list() if matcher.matches(n)]
                names = names.filter(pl.col(NAME).is_in(accepted))
        return names["metric_name"].unique().to_list()

    def points(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> pa.Table:
        """The raw points in the range of the series sources the matchers may select."""
        sources = self.sources(start_ms, end_ms)
        chosen = matching(sources, matchers)
        span = window(start_ms, end_ms)
        if chosen.is_empty():
            return METRICS.schema.empty_table().select(INPUT_COLUMNS)
        # one split per file for both frames, not a filter of each per file (many small files)
        mine = chosen.partition_by(FILE, as_dict=True, maintain_order=True)
        files = pl.col(FILE).is_in(chosen[FILE].unique().implode())
        present = sources.filter(files).partition_by(FILE, as_dict=True)
        frames = [_read(self.config, uri, part, present[(uri,)], span) for (uri,), part in mine.items()]
        parts = [f.to_arrow() for f in pl.collect_all(frames)]
        return pa.concat_tables(parts) if parts else METRICS.schema.empty_table().select(INPUT_COLUMNS)

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        points = self.points(matchers, start_ms, end_ms)
        if not points.num_rows:
            return []
        return SeriesStorage(prometheus_series(points)).select(matchers, start_ms, end_ms)


def _read(
    config: TalonflowConfig, uri: str, chosen: pl.DataFrame, present: pl.DataFrame, span: TimeRange
) -> pl.LazyFrame:
    """The chosen sources' points of one file in the span: by name and service, which row-group
    statistics prune (files are sorted by them), and by source hash where other sources share both."""
    names, services = chosen["metric_name"].unique(), chosen["service_name"].unique()
    # Equalities, not is_in: Polars prunes row groups by statistics for these only (2.1).
    service = [pl.col("service_name") == s for s in services.drop_nulls()]
    service += [pl.col("service_name").is_null()] if services.has_nulls() else []
    same = reduce(or_, [pl.col("metric_name") == n for n in names]) & reduce(or_, service)
    frame = scan_files(config, METRICS.name, [uri], span).filter(same)
    if len(present.filter(same)) > len(chosen):
        frame = frame.filter(source_hash(SOURCE_COLUMNS).is_in(chosen[SOURCE].implode()))
    return frame.select(INPUT_COLUMNS)

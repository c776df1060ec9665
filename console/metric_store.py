"""The `metrics` dataset as a PromQL Storage, across hot, warm and cold tiers.

A selector reads only what it can match: the hive partitions of its time range (console/scan.py),
and of the files there only the series its matchers accept, found from each file's series
catalogue (console/series_catalogue.py) before any point is read. The read filters on the
sorted `service_name` and `metric_name` columns, which Parquet's row-group statistics prune, and
on the series source's hash only in files where a rejected series shares both with a chosen one:
memory is bounded by the chosen series' points, not the metric's. The cost is per query, not per
file (a hot partition holds a file per few-second commit): matchers run once on the window's
distinct sources and the chosen files are read in one scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import reduce
from itertools import groupby
from operator import or_
from typing import Final

import polars as pl

from console.scan import scan_files
from console.series_catalogue import (
    FIRST_MS,
    LAST_MS,
    ORDER,
    SOURCE,
    Kind,
    Presence,
    catalogue,
    matching,
    presence,
    source_hash,
)
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
        self.catalogues: dict[tuple[int, int], Presence] = {}
        self.metrics: dict[tuple[int, int], pl.DataFrame] = {}

    def sources(self, start_ms: int, end_ms: int) -> Presence:
        """The series sources with a point in the range, with their labels, and the files of each."""
        key = (start_ms, end_ms)
        if key not in self.catalogues:
            self.catalogues[key] = presence(self.config, METRICS.name, window(start_ms, end_ms), *SERIES)
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

    def points(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> pl.DataFrame:
        """The raw points in the range of the series sources the matchers may select. A file gone
        since the listing (compacted, or moved to MinIO by sinks/lifecycle.py) is read where the
        listing now finds its rows: the read is retried once over a fresh listing."""
        try:
            return self._points(matchers, start_ms, end_ms)
        except FileNotFoundError:
            self.catalogues.clear()
            return self._points(matchers, start_ms, end_ms)

    def _points(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> pl.DataFrame:
        found = self.sources(start_ms, end_ms)
        chosen = matching(found.sources, matchers)
        if chosen.is_empty():
            return pl.DataFrame(METRICS.schema.empty_table().select(list(INPUT_COLUMNS)))
        return _read(self.config, found, chosen, window(start_ms, end_ms))

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        points = self.points(matchers, start_ms, end_ms)
        if points.is_empty():
            return []
        return SeriesStorage(prometheus_series(points)).select(matchers, start_ms, end_ms)


def _read(config: TalonflowConfig, found: Presence, chosen: pl.DataFrame, span: TimeRange) -> pl.DataFrame:
    """The chosen sources' points in the span, in one scan of the files holding them (not one per
    file: a day of 5 s commits is thousands of files), in listing order. Filtered by name and
    service, which row-group statistics prune (files are sorted by them), and by source hash in
    the files where a rejected source shares both (consecutive files alike share one scan)."""
    names, services = chosen["metric_name"].unique(), chosen["service_name"].unique()
    # Equalities, not is_in: Polars prunes row groups by statistics for these only (2.1).
    service = [pl.col("service_name") == s for s in services.drop_nulls()]
    service += [pl.col("service_name").is_null()] if services.has_nulls() else []
    same = reduce(or_, [pl.col("metric_name") == n for n in names]) & reduce(or_, service)
    picked = pl.col(SOURCE).is_in(chosen[SOURCE].implode())
    rejected = found.sources.filter(same.fill_null(False), ~picked)[SOURCE].implode()
    files = found.files.filter(picked | pl.col(SOURCE).is_in(rejected))
    hashed = set(files.filter(~picked)[ORDER].to_list())
    frames = []
    for mixed, run in groupby(sorted(set(files[ORDER].to_list())), key=hashed.__contains__):
        frame = scan_files(config, METRICS.name, [found.uris[i] for i in run], span).filter(same)
        if mixed:
            frame = frame.filter(source_hash(SOURCE_COLUMNS).is_in(chosen[SOURCE].implode()))
        frames.append(frame.select(INPUT_COLUMNS))
    return pl.concat(frames, how="vertical").collect()

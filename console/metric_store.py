"""The `metrics` dataset as a PromQL Storage, across hot, warm and cold tiers.

A selector reads only what it can match: the hive partitions of its time range (console/scan.py),
and of the files there only the series its matchers accept, found from each file's series
catalogue (console/series_catalogue.py) before any point is read. The read filters on the
sorted `service_name` and `metric_name` columns, which Parquet's row-group statistics prune, and
on the series source's hash: memory is bounded by the chosen series' points, not the metric's.
The cost is per query, not per file (a hot partition holds a file per few-second commit):
matchers run once on the window's distinct sources and consecutive files are read in one scan. A
file the console's warmer copied narrow (console/point_copies.py) is read from its copy, without
its attribute maps, and the points are labelled from the catalogue (console/point_series.py)
instead of converted one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

import polars as pl

from console import point_copies
from console.point_copies import CATALOGUE_COLUMNS, SOURCE_COLUMNS
from console.point_series import columns, series_frame, storage
from console.series_catalogue import (
    FIRST_MS,
    LAST_MS,
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
from schemas.prometheus_names import NAME, SERIES_SCHEMA, names_of

T = TypeVar("T")
Build = Callable[[pl.DataFrame, pl.DataFrame, Sequence[Matcher]], T]

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

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        found = self._read(storage, matchers, start_ms, end_ms)
        return [] if found is None else found.select(matchers, start_ms, end_ms)

    def series(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> pl.DataFrame:
        """The series the matchers may select, as the conversion's frame (SERIES_SCHEMA)."""
        found = self._read(series_frame, matchers, start_ms, end_ms)
        return pl.DataFrame(schema=SERIES_SCHEMA) if found is None else found

    def _read(self, build: Build[T], matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> T | None:
        """`build` of the raw points in the range of the series sources the matchers may select
        (None: there are none). A file gone since the listing (compacted, or moved to MinIO by
        sinks/lifecycle.py) is read where the listing now finds its rows: the read is retried once
        over a fresh listing."""
        try:
            return self._built(build, matchers, start_ms, end_ms)
        except FileNotFoundError:
            self.catalogues.clear()
            return self._built(build, matchers, start_ms, end_ms)

    def _built(self, build: Build[T], matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> T | None:
        found = self.sources(start_ms, end_ms)
        chosen = matching(found.sources, matchers)
        if chosen.is_empty():
            return None
        points = point_copies.read(self.config, found, chosen, window(start_ms, end_ms), columns(chosen))
        return build(points, chosen, matchers)

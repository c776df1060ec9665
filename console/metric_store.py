"""The `metrics` dataset as a PromQL Storage, across hot, warm and cold tiers.

A selector reads only what it can match: the hive partitions of its time range (console/scan.py),
and only the OTLP metrics whose Prometheus names (schemas/prometheus_names.py) its `__name__`
matchers accept, found from a catalogue of the range's distinct metrics before any point is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa

from console.scan import scan
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


def window(start_ms: int, end_ms: int) -> TimeRange:
    """Both ends included, as PromQL's windows."""
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    return TimeRange(start, datetime.fromtimestamp(end_ms / 1000, UTC) + timedelta(milliseconds=1), None)


class MetricStore:
    """One query's view of the metrics dataset: each distinct range's catalogue is read once."""

    def __init__(self, config: TalonflowConfig) -> None:
        self.config = config
        self.catalogues: dict[tuple[int, int], pl.DataFrame] = {}

    def catalogue(self, start_ms: int, end_ms: int) -> pl.DataFrame:
        """The distinct metrics (CATALOGUE_COLUMNS) with a point in the range."""
        key = (start_ms, end_ms)
        if key not in self.catalogues:
            frame = scan(self.config, METRICS.name, window(start_ms, end_ms))
            self.catalogues[key] = frame.select(CATALOGUE_COLUMNS).unique().collect()
        return self.catalogues[key]

    def metric_names(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[str]:
        """The OTLP metric names whose Prometheus names satisfy every `__name__` matcher."""
        names = names_of(self.catalogue(start_ms, end_ms))
        for matcher in matchers:
            if matcher.name == "__name__":
                accepted = [n for n in names[NAME].unique().to_list() if matcher.matches(n)]
                names = names.filter(pl.col(NAME).is_in(accepted))
        return names["metric_name"].unique().to_list()

    def points(self, metric_names: list[str], start_ms: int, end_ms: int) -> pa.Table:
        """The raw points of these OTLP metrics in the range, as the naming conversion reads them."""
        return (
            scan(self.config, METRICS.name, window(start_ms, end_ms))
            .filter(pl.col("metric_name").is_in(metric_names))
            .select(INPUT_COLUMNS)
            .collect()
            .to_arrow()
        )

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        metric_names = self.metric_names(matchers, start_ms, end_ms)
        if not metric_names:
            return []
        points = self.points(metric_names, start_ms, end_ms)
        return SeriesStorage(prometheus_series(points)).select(matchers, start_ms, end_ms)

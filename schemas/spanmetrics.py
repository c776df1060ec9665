"""Spans → the OpenTelemetry Collector spanmetrics connector's metrics, so span rules read as there.

The connector (collector-contrib connector/spanmetricsconnector, default settings) counts spans
per resource and per `service.name`, `span.name`, `span.kind` (`SPAN_KIND_SERVER`...) and
`status.code` (`STATUS_CODE_ERROR`...) into a cumulative monotonic sum `traces.span.metrics.calls`
and a cumulative histogram `traces.span.metrics.duration` in milliseconds over its default
buckets. Written here as METRICS rows, schemas/prometheus_names.py names them as Prometheus does:
`traces_span_metrics_calls_total`, `traces_span_metrics_duration_milliseconds_bucket{le}`,
`_sum`, `_count`, with `service_name`, `span_name`, `span_kind`, `status_code`, `job`, `instance`.
Counts are cumulative from when the reader started, as the connector's (a restart of the alerts
flow resumes them from its snapshot). A point is stamped with the newest span end it counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import polars as pl
import pyarrow as pa

from schemas.datasets import METRICS_SCHEMA

PREFIX: Final = "traces_span_metrics_"  # every Prometheus name made here starts so
CALLS: Final = "traces.span.metrics.calls"
DURATION: Final = "traces.span.metrics.duration"
BUCKETS_MS: Final = (
    2.0,
    4.0,
    6.0,
    8.0,
    10.0,
    50.0,
    100.0,
    200.0,
    400.0,
    800.0,
    1000.0,
    1400.0,
    2000.0,
    5000.0,
    10000.0,
    15000.0,
)
DIMENSIONS: Final = ("resource_attributes", "service_name", "name", "kind", "status_code")
Key = tuple[object, ...]


def span_deltas(spans: pa.Table) -> pl.DataFrame:
    """The calls, duration sum and bucket counts of one poll's spans, per connector series."""
    frame = pl.from_arrow(spans.select(["end_time", "duration_ns", *DIMENSIONS]))
    assert isinstance(frame, pl.DataFrame)
    ms = pl.col("duration_ns") / 1e6
    bucket = pl.lit(len(BUCKETS_MS), pl.UInt32)
    for index in reversed(range(len(BUCKETS_MS))):  # the first bound at or above the duration: le
        bucket = pl.when(ms <= BUCKETS_MS[index]).then(pl.lit(index, pl.UInt32)).otherwise(bucket)
    return (
        frame.with_columns(
            pl.col("resource_attributes").map.entries().list.sort(),
            bucket.alias("_bucket"),
            pl.col("end_time").dt.epoch("ms").alias("_end_ms"),
        )
        .group_by([*DIMENSIONS, "_bucket"])
        .agg(pl.len().alias("calls"), ms.sum().alias("sum_ms"), pl.col("_end_ms").max())
    )


@dataclass
class SpanTotals:
    """The connector's cumulative state: calls, duration sum and bucket counts per series."""

    series: dict[Key, tuple[np.ndarray, float, int]] = field(default_factory=dict)  # buckets, sum, time

    def add(self, deltas: pl.DataFrame, expire_ms: int = 0) -> pa.Table:
        """Count a poll's deltas in; the touched series' cumulative points, as METRICS rows.

        With `expire_ms`, a series with no span ending within that long of the newest one is
        forgotten (the Collector connector's `metrics_expiration`): instances come and go for
        good, so their series must not be kept forever. It stops, as a scraped series goes stale,
        and starts again from 0 if it comes back, a counter reset `rate` takes in its stride."""
        touched: set[Key] = set()
        for resource, service, name, kind, status, bucket, calls, sum_ms, end_ms in deltas.iter_rows():
            key: Key = (tuple((e["key"], e["value"]) for e in resource), service, name, kind, status)
            counts, total, newest = self.series.get(key) or (np.zeros(len(BUCKETS_MS) + 1, np.uint64), 0.0, 0)
            counts = counts.copy()
            counts[bucket] += calls
            self.series[key] = (counts, total + sum_ms, max(newest, end_ms))
            touched.add(key)
        if expire_ms and self.series:
            newest_ms = max(newest for _counts, _total, newest in self.series.values())
            self.series = {k: v for k, v in self.series.items() if v[2] >= newest_ms - expire_ms}
        rows = []
        for key in sorted(touched, key=repr):
            resource, service, name, kind, status = key
            counts, total, newest = self.series[key]
            common = {
                "time": newest * 1_000_000,  # ms -> the schema's ns
                "temporality": "cumulative",
                "resource_attributes": list(resource),  # type: ignore[call-overload]
                "attributes": [
                    ("service.name", service or ""),
                    ("span.name", name or ""),
                    ("span.kind", f"SPAN_KIND_{kind or 'UNSPECIFIED'}"),
                    ("status.code", f"STATUS_CODE_{status or 'UNSET'}"),
                ],
            }
            calls = float(counts.sum())
            rows.append({**common, "metric_name": CALLS, "type": "sum", "is_monotonic": True, "value": calls})
            rows.append(
                {
                    **common,
                    "metric_name": DURATION,
                    "unit": "ms",
                    "type": "histogram",
                    "count": int(calls),
                    "sum": total,
                    "bucket_counts": counts.tolist(),
                    "explicit_bounds": list(BUCKETS_MS),
                }
            )
        return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)

"""Raw metric points and their 1-minute rollups, written into the datasets as ingest and the
rollups flow write them, for tests/unit/test_rollup_store.py, tests/unit/test_metric_store.py,
bench/console.py and bench/promql.py.

The rollups are computed by the rollups flow's own arithmetic (flows/aggregates.py), so a query
answered from them reads what the flow would have written for the same points.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.aggregates import CumulativeState, finalize, metric_points, partials
from schemas.datasets import DATASETS, METRICS_SCHEMA
from schemas.prices import PriceTable

MINUTE_NS = 60_000_000_000
SKETCH_SCALE = 6  # rollups.sketch_scale's default


def write_table(data_dir: Path, dataset: str, table: pa.Table) -> None:
    """One file per hour partition of the dataset's time column, sorted as the dataset is."""
    spec = DATASETS[dataset]
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    keyed = frame.with_columns(
        _date=pl.col(spec.time_column).dt.strftime("%Y-%m-%d"), _hour=pl.col(spec.time_column).dt.hour()
    )
    for (day, hour), part in keyed.partition_by("_date", "_hour", as_dict=True).items():
        folder = data_dir / dataset / f"date={day}" / f"hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = part.drop("_date", "_hour").to_arrow().cast(spec.schema)
        ordered = rows.sort_by([(c, "ascending") for c in spec.sort_by])
        pq.write_table(ordered, folder / f"synthetic-{uuid.uuid4().hex[:8]}.parquet", compression="zstd")


def write_parts(data_dir: Path, parts: list[pa.Table]) -> list[Path]:
    """Each table (metric points of one UTC hour, the first's) as one file of that hour's partition,
    sorted as the dataset is, named so that the listing (by path) keeps the given order: ingest's
    commits of a hot partition before compaction."""
    spec = DATASETS["metrics"]
    hour = datetime.fromtimestamp(parts[0]["time"][0].value / 1e9, UTC)
    folder = data_dir / spec.name / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(parts):
        paths.append(folder / f"part-{i:05d}.parquet")
        pq.write_table(part.cast(spec.schema).sort_by([(c, "ascending") for c in spec.sort_by]), paths[-1])
    return paths


def commits(points: pa.Table, start: datetime, every_s: int, count: int) -> list[pa.Table]:
    """The points as `count` commits of `every_s` seconds each from `start`."""
    times = points["time"].cast(pa.int64())
    edges = [int(start.timestamp()) * 1_000_000_000 + k * every_s * 1_000_000_000 for k in range(count + 1)]
    return [
        points.filter(pc.and_(pc.greater_equal(times, lo), pc.less(times, hi)))
        for lo, hi in itertools.pairwise(edges)
    ]


def rollups_of(metrics: pa.Table) -> pa.Table:
    """rollups_1m rows of these points, as one poll of the rollups flow folds and closes them."""
    deltas, _out_of_order = CumulativeState().to_deltas(metric_points(metrics, PriceTable({})))
    return finalize(partials(deltas, MINUTE_NS, SKETCH_SCALE), MINUTE_NS, "1m")


def fleet_points(
    jobs: int,
    queues: int,
    start: datetime,
    minutes: int,
    every_s: int,
    offset_s: float,
    namespace: str | None = None,
) -> pa.Table:
    """Per job: `queue.depth` gauges (one per queue), a `tasks` counter that resets half-way and a
    `sessions.open` up-down sum, a point every `every_s` seconds `offset_s` past the minute.
    The last job stops reporting a third of the way in, so its series go stale. With `namespace`,
    the first job's resource has that `service.namespace` (Prometheus' job is then namespace/name)."""
    steps = np.arange(minutes * 60 // every_s)
    start_ns = int(start.timestamp()) * 1_000_000_000 + int(offset_s * 1e9)
    times = start_ns + steps * every_s * 1_000_000_000
    tables = []
    for job in range(jobs):
        keep = steps < len(steps) // 3 if job == jobs - 1 and jobs > 1 else np.ones(len(steps), dtype=bool)
        resource = [("service.name", f"agent-{job}"), ("service.instance.id", f"agent-{job}-1")]
        resource += [("service.namespace", namespace)] if namespace is not None and job == 0 else []
        reset = np.where(steps < len(steps) // 2, steps, steps - len(steps) // 2) * 2.5
        series = [
            ("queue.depth", "gauge", False, [("queue", f"q{q}")], (steps * 7 + q * 3 + job) % 50 * 1.0)
            for q in range(queues)
        ]
        series += [("tasks", "sum", True, [], reset), ("sessions.open", "sum", False, [], (steps % 9) - 4.0)]
        for name, kind, monotonic, attributes, values in series:
            n = int(keep.sum())
            columns = {
                "time": times[keep],
                "metric_name": [name] * n,
                "unit": [""] * n,
                "type": [kind] * n,
                "temporality": ["cumulative" if kind == "sum" else ""] * n,
                "is_monotonic": [monotonic] * n,
                "value": values[keep],
                "start_time": np.full(n, start_ns - MINUTE_NS),
                "service_name": [resource[0][1]] * n,
                "service_instance_id": [resource[1][1]] * n,
                "scope_name": ["agent.metrics"] * n,
                "resource_attributes": [resource] * n,
                "attributes": [attributes] * n,
            }
            arrays = [
                pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
                for f in METRICS_SCHEMA
            ]
            tables.append(pa.Table.from_arrays(arrays, schema=METRICS_SCHEMA))
    return pa.concat_tables(tables)

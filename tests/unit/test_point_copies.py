"""Metrics files copied narrow and sorted by series (console/point_copies.py) and labelled from the
series catalogue (console/point_series.py): every selector and query answers as converting every
point of the files does, with or without copies, after a file is rewritten, and after files are
compacted away."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from console import point_copies
from console.metric_store import MetricStore, window
from console.prometheus_api import result_json
from console.scan import files_in
from promql import Series, parse, range_query
from promql.ast import Matcher
from schemas.config import TalonflowConfig
from schemas.datasets import METRICS_SCHEMA
from schemas.prometheus_names import SeriesStorage, prometheus_series
from tests.metric_data import commits, fleet_points, write_parts

START = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
END_MS = START_MS + 2 * 3_600_000 - 1
DAY = window(START_MS, END_MS)
ROWS = 256  # rows per row group in these tests: several row groups per copy
SELECTORS = (
    'queue_depth{job="agent-1"}',
    'queue_depth{job="agent-1", queue="q0"}',
    'queue_depth{job!="agent-1"}',
    '{__name__=~"queue_depth|tasks_total", job="agent-2"}',
    '{job="agent-0"}',
    "target_info",
    'latency_seconds_bucket{le="0.5"}',
    "latency_seconds_count",
    'rpc_seconds{quantile="0.9"}',
    "dup",
    "flagged",
    'queue_depth{job="nobody"}',
)
QUERIES = (
    "sum by (job) (rate(tasks_total[5m]))",
    'max by (job) (queue_depth{job="agent-1"})',
    "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))",
    "count(target_info)",
)


@pytest.fixture(autouse=True)
def _small_row_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(point_copies, "ROW_GROUP", ROWS)


def _others(hour: int) -> pa.Table:
    """An hour of a histogram and a summary of a resource with a non-identifying attribute (so
    target_info), a gauge of two scopes whose points share series and timestamps (the first row
    wins), and a gauge with a point flagged as having no recorded value (a staleness marker)."""
    base = START + timedelta(hours=hour)
    resource = [("service.name", "api"), ("service.instance.id", "api-1"), ("host.name", "h1")]
    rows: list[dict[str, Any]] = []
    for i in range(240):
        at = base + timedelta(seconds=15 * i + 3)
        common = {"time": at, "resource_attributes": resource, "service_name": "api", "scope_name": "s"}
        rows.append(
            {
                **common,
                "metric_name": "latency",
                "unit": "s",
                "type": "histogram",
                "temporality": "cumulative",
                "count": 4 * i + 4,
                "sum": 1.5 * i,
                "bucket_counts": [i, 2 * i, i + 4],
                "explicit_bounds": [0.1, 0.5],
            }
        )
        rows.append(
            {
                **common,
                "metric_name": "rpc",
                "unit": "s",
                "type": "summary",
                "count": i,
                "sum": 2.0 * i,
                "quantiles": [0.5, 0.9],
                "quantile_values": [0.1 * i, 0.2 * i],
            }
        )
        for scope, value in (("one", 1.0), ("two", 2.0)):
            rows.append(
                {**common, "metric_name": "dup", "type": "gauge", "scope_name": scope, "value": value + i}
            )
        rows.append(
            {
                **common,
                "metric_name": "flagged",
                "type": "gauge",
                "value": float(i),
                "flags": 1 if i % 7 == 3 else 0,
            }
        )
    return pa.Table.from_pylist(rows, METRICS_SCHEMA)  # fmt: skip


def _hours() -> list[pa.Table]:
    """Two hours of the fleet's gauges, counters and up-down sums with the others; the second hour
    also replayed with other values in a later file (the first listed file's samples win)."""
    fleet = fleet_points(jobs=3, queues=3, start=START, minutes=120, every_s=15, offset_s=7.5)
    hours = []
    for hour in range(2):
        edges = [
            pa.scalar((START_MS + h * 3_600_000) * 1_000_000, pa.timestamp("ns", "UTC"))
            for h in (hour, hour + 1)
        ]
        times = fleet["time"]
        mine = fleet.filter(pc.and_(pc.greater_equal(times, edges[0]), pc.less(times, edges[1])))
        hours.append(pa.concat_tables([mine.cast(METRICS_SCHEMA), _others(hour)]))
    return hours  # fmt: skip


def _write(config: TalonflowConfig) -> list[pa.Table]:
    first, second = _hours()
    replay = second.set_column(
        second.schema.get_field_index("value"), "value", pc.add(second["value"], 1000.0)
    )
    write_parts(config.data_dir, [first])
    write_parts(config.data_dir, [second, replay])
    return [first, second, replay]  # fmt: skip


def _config(tmp_path: Path) -> TalonflowConfig:
    return TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def _as_dict(series: list[Series]) -> dict[object, tuple[list[int], list[str]]]:
    """Labels to timestamps and values (as hex, so NaN and the staleness marker compare exactly)."""
    return {s.labels: (s.timestamps.tolist(), [v.hex() for v in s.values.tolist()]) for s in series}


def _selected(config: TalonflowConfig) -> dict[str, Any]:
    selected: dict[str, Any] = {}
    for selector in SELECTORS:
        matchers: list[Matcher] = list(getattr(parse(selector), "matchers"))  # noqa: B009 - a VectorSelector
        selected[selector] = _as_dict(MetricStore(config).select(matchers, START_MS, END_MS))
    for query in QUERIES:
        selected[query] = result_json(range_query(query, START_MS, END_MS, 60_000, MetricStore(config)))
    return selected


def _converted(tables: list[pa.Table]) -> dict[str, Any]:
    storage = SeriesStorage(prometheus_series(pa.concat_tables(tables)))
    expected: dict[str, Any] = {}
    for selector in SELECTORS:
        matchers = list(getattr(parse(selector), "matchers"))  # noqa: B009 - a VectorSelector
        expected[selector] = _as_dict(storage.select(matchers, START_MS, END_MS))
    for query in QUERIES:
        expected[query] = result_json(range_query(query, START_MS, END_MS, 60_000, storage))
    return expected


def test_queries_answer_alike_with_and_without_copies(tmp_path: Path) -> None:
    config = _config(tmp_path)
    tables = _write(config)
    expected = _converted(tables)
    assert all(expected[s] for s in SELECTORS[:-1]), [s for s in SELECTORS if not expected[s]]
    assert _selected(config) == expected
    files = files_in(config, "metrics", DAY)
    assert point_copies.ensure(config, files) == 3
    assert point_copies.ensure(config, files) == 0  # kept
    assert all(point_copies.copied(config, f) is not None for f in files)
    assert _selected(config) == expected
    dup = expected["dup"][(("__name__", "dup"), ("instance", "api-1"), ("job", "api"))]
    assert [float.fromhex(v) for v in dup[1][:2]] == [1.0, 2.0]  # scope "one"'s, the first row's


def test_a_copy_is_sorted_by_series_in_row_groups(tmp_path: Path) -> None:
    """A selector of one series reads a few row groups: each holds few series of one metric."""
    config = _config(tmp_path)
    _write(config)
    files = files_in(config, "metrics", DAY)
    point_copies.ensure(config, files)
    copy = point_copies.copied(config, files[0])
    assert copy is not None
    metadata = pq.read_metadata(copy)
    assert metadata.num_row_groups >= pq.read_metadata(files[0]).num_rows // ROWS
    assert "resource_attributes" not in metadata.schema.names and "attributes" not in metadata.schema.names
    keys = pq.read_table(copy, columns=["metric_name", "service_name", "_source"]).to_pylist()
    ordered = [(r["metric_name"], r["service_name"] or "", r["_source"]) for r in keys]
    assert ordered == sorted(ordered)


def _negated(table: pa.Table) -> pa.Table:
    return table.set_column(table.schema.get_field_index("value"), "value", pc.negate(table["value"]))


def test_a_rewritten_file_is_read_whole_until_copied_again(tmp_path: Path) -> None:
    config = _config(tmp_path)
    tables = _write(config)
    files = files_in(config, "metrics", DAY)
    point_copies.ensure(config, files)
    first = files[0]
    time.sleep(0.01)  # a new mtime even on coarse clocks
    pq.write_table(_negated(pq.read_table(first)), first)
    expected = _converted([_negated(tables[0]), *tables[1:]])
    assert point_copies.copied(config, first) is None  # the stale copy is not read
    assert _selected(config) == expected
    assert point_copies.ensure(config, files) == 1
    assert _selected(config) == expected


def test_files_compacted_away_are_read_where_they_went_and_their_copies_pruned(tmp_path: Path) -> None:
    """The lifecycle mover compacts the second hour's two files into one and deletes them while a
    query that listed them runs: it reads the new listing, and the warmer's prune removes the
    gone files' copies."""
    config = _config(tmp_path)
    first, second, _replay = _write(config)
    files = files_in(config, "metrics", DAY)
    point_copies.ensure(config, files)
    store = MetricStore(config)
    store.sources(START_MS, END_MS)  # listed, as the query's selectors are
    gone = [f for f in files if "hour=01" in f]
    for path in gone:
        Path(path).unlink()
    write_parts(config.data_dir, [second])  # compacted: the first file's rows kept
    matchers = list(getattr(parse('{__name__=~"queue_depth|dup", job=~"agent-1|api"}'), "matchers"))  # noqa: B009
    expected = SeriesStorage(prometheus_series(pa.concat_tables([first, second]))).select(
        matchers, START_MS, END_MS
    )
    assert _as_dict(store.select(matchers, START_MS, END_MS)) == _as_dict(expected)
    now = files_in(config, "metrics", DAY)
    assert point_copies.prune(config, now, time.time()) == 2
    point_copies.ensure(config, now)
    copies = [point_copies.copied(config, f) for f in now]
    kept = sorted(p.name for p in (config.state_dir / point_copies.ROOT).rglob("*.parquet"))
    assert kept == sorted(p.name for p in copies if p is not None) and len(kept) == len(now)
    assert _as_dict(MetricStore(config).select(matchers, START_MS, END_MS)) == _as_dict(expected)


def test_small_files_are_read_whole_without_copies(tmp_path: Path) -> None:
    """Ingest's few-second commits (here a minute's, fewer rows than a row group) get no copy."""
    config = _config(tmp_path)
    first, _second = _hours()
    write_parts(config.data_dir, commits(first, START, 60, 60))
    files = files_in(config, "metrics", DAY)
    assert len(files) == 60 and all(pq.read_metadata(f).num_rows < ROWS for f in files)
    assert point_copies.ensure(config, files) == 0
    assert point_copies.ensure(config, files) == 0  # known small: not looked at again
    assert _selected(config) == _converted([first])

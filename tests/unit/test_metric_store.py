"""The raw metric store reads only the points of the series a selector's matchers accept
(console/metric_store.py, console/series_catalogue.py), and answers as converting every point did."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import console.metric_store
import console.point_copies
from console.metric_store import MetricStore
from console.point_series import storage
from console.scan import scan_files
from promql import Series, parse
from promql.ast import Matcher
from schemas.config import TalonflowConfig
from schemas.prometheus_names import SeriesStorage, prometheus_series
from tests.metric_data import commits, fleet_points, write_parts, write_table

START = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
END_MS = START_MS + 2 * 3_600_000 - 1
SELECTORS = (
    'queue_depth{job="agent-1"}',
    'queue_depth{job="agent-1", queue="q0"}',
    'queue_depth{job!="agent-1"}',
    'queue_depth{queue=~"q[01]", job!~"agent-[02]"}',
    '{__name__=~"queue_depth|tasks_total", job="agent-2"}',
    '{job="agent-0"}',
    'queue_depth{job="nobody"}',
)


def _points() -> pa.Table:
    return fleet_points(jobs=3, queues=3, start=START, minutes=120, every_s=15, offset_s=7.5)


def _matchers(selector: str) -> list[Matcher]:
    return list(getattr(parse(selector), "matchers"))  # noqa: B009 - a VectorSelector


def _as_dict(series: list[Series]) -> dict[object, tuple[list[int], list[float]]]:
    return {s.labels: (s.timestamps.tolist(), s.values.tolist()) for s in series}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> TalonflowConfig:
    root = tmp_path_factory.mktemp("metric-store")
    config = TalonflowConfig(data_dir=root / "data", state_dir=root / "state")
    write_table(config.data_dir, "metrics", _points())
    return config


@pytest.mark.parametrize("selector", SELECTORS)
def test_only_the_selected_series_points_are_converted(
    config: TalonflowConfig, selector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every point handed to the labelling (console/point_series.py) belongs to a selected series,
    and the answer is the one converting every point gives."""
    matchers = _matchers(selector)
    expected = SeriesStorage(prometheus_series(_points())).select(matchers, START_MS, END_MS)
    converted: list[int] = []

    def recording(points: pl.DataFrame, chosen: pl.DataFrame, matchers: list[Matcher]) -> SeriesStorage:
        converted.append(len(points))
        return storage(points, chosen, matchers)

    monkeypatch.setattr(console.metric_store, "storage", recording)
    found = MetricStore(config).select(matchers, START_MS, END_MS)
    assert _as_dict(found) == _as_dict(expected)
    assert sum(converted) == sum(len(s.timestamps) for s in expected), selector


def test_files_of_rejected_series_have_no_point_read(tmp_path: Path) -> None:
    """One agent's points sit in a file whose `value` column is not even numbers: a selector of
    another agent never reads it (reading every point of the metric failed on it)."""
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    points = _points()
    mine = pc.equal(points["service_name"], "agent-0")
    write_table(config.data_dir, "metrics", points.filter(mine))
    theirs = points.filter(pc.invert(mine))
    garbage = theirs.set_column(
        theirs.schema.get_field_index("value"), "value", pa.array(["not a number"] * theirs.num_rows)
    )
    for folder in (config.data_dir / "metrics").glob("date=*/hour=*"):
        pq.write_table(garbage, folder / "garbage.parquet")
    matchers = _matchers('queue_depth{job="agent-0", queue="q2"}')
    found = MetricStore(config).select(matchers, START_MS, END_MS)
    expected = SeriesStorage(prometheus_series(points)).select(matchers, START_MS, END_MS)
    assert len(found) == 1 and _as_dict(found) == _as_dict(expected)
    assert np.all(np.diff(found[0].timestamps) == 15_000)


HOUR_END_MS = START_MS + 3_600_000 - 1


def _minutes(table: pa.Table, first: int, last: int) -> pa.Table:
    """The table's points from minute `first` (included) to `last` (excluded) past START."""
    ns = [pa.scalar((START_MS + m * 60_000) * 1_000_000, pa.timestamp("ns", "UTC")) for m in (first, last)]
    return table.filter(pc.and_(pc.greater_equal(table["time"], ns[0]), pc.less(table["time"], ns[1])))


def _plus(table: pa.Table, offset: float) -> pa.Table:
    """The same points with `offset` added to every value: a replay that disagrees."""
    return table.set_column(table.schema.get_field_index("value"), "value", pc.add(table["value"], offset))


def _hour() -> pa.Table:
    return fleet_points(jobs=3, queues=3, start=START, minutes=60, every_s=15, offset_s=7.5)


TEN_MINUTES_MS = 600_000


def _ten_minutes() -> pa.Table:
    return fleet_points(jobs=3, queues=3, start=START, minutes=10, every_s=5, offset_s=2.5)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> TalonflowConfig:
    """Ten minutes of 5 s commits: 120 files, each with one point of every series."""
    root = tmp_path_factory.mktemp("small-files")
    config = TalonflowConfig(data_dir=root / "data", state_dir=root / "state")
    write_parts(config.data_dir, commits(_ten_minutes(), START, 5, 120))
    return config


@pytest.mark.parametrize("selector", SELECTORS)
def test_many_small_files_are_read_in_one_scan(
    small_files: TalonflowConfig, selector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer over many small files is converting every point's, and the files are scanned
    once per query, not once per file (a data dir of hot files took seconds a query)."""
    scans: list[int] = []

    def counted(*args: Any) -> pl.LazyFrame:
        scans.append(len(args[2]))
        return scan_files(*args)

    monkeypatch.setattr(console.point_copies, "scan_files", counted)
    matchers = _matchers(selector)
    end_ms = START_MS + TEN_MINUTES_MS - 1
    expected = SeriesStorage(prometheus_series(_ten_minutes())).select(matchers, START_MS, end_ms)
    assert _as_dict(MetricStore(small_files).select(matchers, START_MS, end_ms)) == _as_dict(expected)
    assert len(scans) <= 2, scans


def test_overlapping_files_keep_the_first_listed_sample(tmp_path: Path) -> None:
    """The same series in overlapping files with different values (a replay, a late commit): a
    duplicate timestamp keeps the sample of the file listed first, as reading them in listing order
    does, also when only some files need the source-hash filter (a rejected series sharing the
    chosen one's name and service: agent-0's q1 in the first and last file, not the middle one)."""
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    both = fleet_points(jobs=1, queues=2, start=START, minutes=60, every_s=15, offset_s=7.5)
    only_q0 = fleet_points(jobs=1, queues=1, start=START, minutes=60, every_s=15, offset_s=7.5)
    parts = [
        _minutes(both, 0, 20),
        _plus(_minutes(only_q0, 10, 30), 1000.0),
        _plus(_minutes(both, 20, 40), 2000.0),
    ]
    write_parts(config.data_dir, parts)
    matchers = _matchers('queue_depth{job="agent-0", queue="q0"}')
    found = MetricStore(config).select(matchers, START_MS, HOUR_END_MS)
    expected = SeriesStorage(prometheus_series(pa.concat_tables(parts))).select(
        matchers, START_MS, HOUR_END_MS
    )
    assert len(found) == 1 and _as_dict(found) == _as_dict(expected)
    values = dict(zip(found[0].timestamps.tolist(), found[0].values.tolist(), strict=True))
    at = [START_MS + 7_500 + m * 60_000 for m in (5, 15, 25, 35)]
    assert [values[t] < 1000 for t in at] == [True, True, False, False]
    assert 1000 <= values[at[2]] < 2000 and values[at[3]] >= 2000


def test_a_file_compacted_away_mid_query_is_read_where_it_went(tmp_path: Path) -> None:
    """The lifecycle mover compacts a partition's small files into one and deletes them while a
    query that listed them runs: the query reads the new listing instead of failing."""
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    points = _hour()
    parts = [_minutes(points, m, m + 10) for m in range(0, 60, 10)]
    paths = write_parts(config.data_dir, parts)
    store = MetricStore(config)
    matchers = _matchers('{__name__=~"queue_depth|tasks_total", job="agent-1"}')
    store.sources(START_MS, HOUR_END_MS)  # listed, as the query's selectors are
    for path in paths:
        path.unlink()
    write_parts(config.data_dir, [points])
    expected = SeriesStorage(prometheus_series(points)).select(matchers, START_MS, HOUR_END_MS)
    assert _as_dict(store.select(matchers, START_MS, HOUR_END_MS)) == _as_dict(expected)

"""Long range queries from the 1-minute rollups give what raw points give (console/rollup_store.py).

Seven hours of a small fleet (gauges, a counter with a reset, an up-down sum, a job that stops
reporting) are written as raw points and as the rollups the rollups flow's arithmetic makes of
them, with the last ten minutes not rolled up yet. Every query is answered both ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest

from console.metric_store import MetricStore
from console.rollup_store import RollupMetricStore, eligible, store_for
from promql import Matrix, parse, range_query
from promql.ast import Matcher
from schemas.config import TalonflowConfig
from tests.metric_data import fleet_points, rollups_of, write_table

START = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
HOURS = 7
START_MS = int(START.timestamp() * 1000)
END_MS = START_MS + HOURS * 3_600_000
QUERIES = (
    "queue_depth",
    'queue_depth{queue="q1"}',
    "sum by (job) (queue_depth)",
    "tasks_total",
    "sessions_open",
    "max(queue_depth) - min(queue_depth)",
    "queue_depth > bool 20",
    "abs(sessions_open) * 2",
    "count(tasks_total) + time() * 0",
    "sessions_open offset 5m",
)


def _config(root: Path) -> TalonflowConfig:
    return TalonflowConfig(data_dir=root / "data", state_dir=root / "state")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> TalonflowConfig:
    config = _config(tmp_path_factory.mktemp("rollup-store"))
    points = fleet_points(jobs=3, queues=2, start=START, minutes=HOURS * 60, every_s=15, offset_s=7.5)
    write_table(config.data_dir, "metrics", points)
    rollups = rollups_of(points)
    not_closed = START + timedelta(hours=HOURS, minutes=-10)  # the flow has not closed these minutes yet
    write_table(
        config.data_dir, "rollups_1m", rollups.filter(pc.less_equal(rollups["window_end"], not_closed))
    )
    return config


def _answer(query: str, step_s: int, store: MetricStore) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
    result = range_query(query, START_MS, END_MS, step_s * 1000, store)
    assert isinstance(result, Matrix)
    return {s.labels: np.column_stack([s.timestamps, s.values]) for s in result.series}


@pytest.mark.parametrize("step_s", [60, 300])
@pytest.mark.parametrize("query", QUERIES)
def test_rollups_answer_as_raw_points_do(config: TalonflowConfig, query: str, step_s: int) -> None:
    assert eligible(parse(query), START_MS, END_MS, step_s * 1000)
    assert isinstance(store_for(config, query, START_MS, END_MS, step_s * 1000), RollupMetricStore)
    raw = _answer(query, step_s, MetricStore(config))
    rolled = _answer(query, step_s, RollupMetricStore(config))
    assert raw and rolled.keys() == raw.keys()
    for labels, points in raw.items():
        assert points.shape == rolled[labels].shape, labels
        np.testing.assert_allclose(rolled[labels], points, rtol=1e-12, equal_nan=True, err_msg=str(labels))


def _raw_reads(store: MetricStore) -> list[tuple[int, int]]:
    """The (start, end) of each raw point read the store makes from now on."""
    read: list[tuple[int, int]] = []
    series = store.series

    def recorded(matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> pl.DataFrame:
        read.append((start_ms, end_ms))
        return series(matchers, start_ms, end_ms)

    store.series = recorded  # type: ignore[method-assign]
    return read


@pytest.mark.parametrize("query", ["sum by (job) (queue_depth)", "tasks_total", "sessions_open"])
def test_the_rollups_are_what_is_read(config: TalonflowConfig, query: str) -> None:
    """Raw points are read only where there are no rollups: the minutes the flow has not rolled up
    yet (the last ten) and the lookback before the data begins."""
    store = RollupMetricStore(config)
    read = _raw_reads(store)
    rolled = _answer(query, 60, store)
    assert read and all(end < START_MS or start >= END_MS - 10 * 60_000 for start, end in read), read
    expected = _answer(query, 60, MetricStore(config))
    assert rolled.keys() == expected.keys()
    for labels, values in expected.items():
        np.testing.assert_allclose(rolled[labels], values, rtol=1e-12)


@pytest.mark.parametrize(
    ("query", "start_ms", "step_ms"),
    [
        ("rate(tasks_total[5m])", START_MS, 60_000),  # needs every point
        ("sum_over_time(queue_depth[10m])", START_MS, 60_000),
        ("timestamp(queue_depth)", START_MS, 60_000),  # the synthetic times are not the points'
        ("queue_depth offset 30s", START_MS, 60_000),
        ("queue_depth @ 1796256000", START_MS, 60_000),
        ('{__name__=~"queue.*"}', START_MS, 60_000),
        ("target_info", START_MS, 60_000),
        ("queue_depth", START_MS + 30_000, 60_000),  # steps between minutes
        ("queue_depth", START_MS, 90_000),
        ("queue_depth", END_MS - 3_600_000, 60_000),  # a short range: raw points are few anyway
    ],
)
def test_what_reads_raw_points(query: str, start_ms: int, step_ms: int) -> None:
    assert not eligible(parse(query), start_ms, END_MS, step_ms)


def test_points_the_rollups_missed_are_read_raw(tmp_path: Path) -> None:
    """A series whose points the flow took as late (or never saw) has no rollup rows: that metric
    is read raw, and the answer is still the raw points'."""
    config = _config(tmp_path)
    points = fleet_points(jobs=2, queues=2, start=START, minutes=HOURS * 60, every_s=15, offset_s=7.5)
    write_table(config.data_dir, "metrics", points)
    rollups = pl.from_arrow(rollups_of(points))
    assert isinstance(rollups, pl.DataFrame)
    late = (pl.col("attributes").map.get("queue") == "q0") & pl.col("window_start").dt.hour().is_between(2, 3)
    write_table(config.data_dir, "rollups_1m", rollups.filter(~late.fill_null(False)).to_arrow())
    for query in ("sum by (job) (queue_depth)", "tasks_total"):
        raw = _answer(query, 60, MetricStore(config))
        rolled = _answer(query, 60, RollupMetricStore(config))
        assert rolled.keys() == raw.keys()
        for labels, values in raw.items():
            np.testing.assert_allclose(rolled[labels], values, rtol=1e-12, err_msg=query)


def test_points_on_minute_boundaries_are_read_raw(tmp_path: Path) -> None:
    """A point at hh:mm:00.000 belongs to the step at that time but to the next minute's rollup."""
    config = _config(tmp_path)
    points = fleet_points(jobs=2, queues=1, start=START, minutes=HOURS * 60, every_s=15, offset_s=0)
    write_table(config.data_dir, "metrics", points)
    write_table(config.data_dir, "rollups_1m", rollups_of(points))
    raw = _answer("queue_depth", 60, MetricStore(config))
    rolled = _answer("queue_depth", 60, RollupMetricStore(config))
    assert rolled.keys() == raw.keys()
    for labels, values in raw.items():
        np.testing.assert_allclose(rolled[labels], values, rtol=1e-12)


def test_points_before_and_after_the_rollups_are_read_raw(tmp_path: Path) -> None:
    """A rollups flow started two hours late: raw points before its first minute, rollups, then
    raw points again after its last, each series in time order."""
    config = _config(tmp_path)
    points = fleet_points(jobs=2, queues=2, start=START, minutes=HOURS * 60, every_s=15, offset_s=7.5)
    write_table(config.data_dir, "metrics", points)
    rollups = rollups_of(points)
    started, stopped = START + timedelta(hours=2), START + timedelta(hours=HOURS, minutes=-10)
    kept = pc.and_(
        pc.greater_equal(rollups["window_start"], started), pc.less_equal(rollups["window_end"], stopped)
    )
    write_table(config.data_dir, "rollups_1m", rollups.filter(kept))
    started_ms, stopped_ms = (int(t.timestamp() * 1000) for t in (started, stopped))
    for query in ('max by (job) (queue_depth{queue="q1"})', "tasks_total", "sessions_open"):
        raw = _answer(query, 60, MetricStore(config))
        store = RollupMetricStore(config)
        read = _raw_reads(store)
        rolled = _answer(query, 60, store)
        assert sorted(read) == [(START_MS - 300_000, started_ms - 1), (stopped_ms, END_MS)], query
        assert rolled.keys() == raw.keys()
        for labels, values in raw.items():
            np.testing.assert_allclose(rolled[labels], values, rtol=1e-12, err_msg=query)

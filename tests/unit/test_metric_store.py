"""The raw metric store reads only the points of the series a selector's matchers accept
(console/metric_store.py, console/series_catalogue.py), and answers as converting every point did."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import console.metric_store
from console.metric_store import MetricStore
from promql import Series, parse
from promql.ast import Matcher
from schemas.config import TalonflowConfig
from schemas.prometheus_names import SeriesStorage, prometheus_series
from tests.metric_data import fleet_points, write_table

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
    """Every point handed to the conversion belongs to a selected series, and the answer is the
    one converting every point gives."""
    matchers = _matchers(selector)
    expected = SeriesStorage(prometheus_series(_points())).select(matchers, START_MS, END_MS)
    converted: list[int] = []

    def recording(table: pa.Table) -> object:
        converted.append(table.num_rows)
        return prometheus_series(table)

    monkeypatch.setattr(console.metric_store, "prometheus_series", recording)
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

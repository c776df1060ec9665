"""Agents that set service.namespace: their rollups keep it, so a long query_range read from the
1-minute rollups names their series as raw points do (`job` = namespace/name, as in Prometheus)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from console.metric_store import MetricStore
from console.rollup_store import RollupMetricStore
from flows.aggregates import decoded_labels, metric_points
from promql import Matrix, range_query
from schemas.config import TalonflowConfig
from schemas.prices import PriceTable
from tests.metric_data import fleet_points, rollups_of, write_table

START = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
HOURS = 7
START_MS = int(START.timestamp() * 1000)
END_MS = START_MS + HOURS * 3_600_000


def _points(namespace: str | None) -> pl.DataFrame:
    table = fleet_points(
        jobs=2, queues=1, start=START, minutes=2, every_s=30, offset_s=7.5, namespace=namespace
    )
    return metric_points(table, PriceTable({}))


def test_namespace_is_a_label_of_the_series_and_changes_only_its_agents_ids() -> None:
    plain, namespaced = _points(None), _points("fleet")
    first = namespaced.filter(pl.col("service_name") == "agent-0")
    labels = first.select(decoded_labels(pl.col("labels")))["labels"].to_list()
    assert all({"key": "service.namespace", "value": "fleet"} in row for row in labels)
    for agent, same in (("agent-0", False), ("agent-1", True)):
        before = plain.filter(pl.col("service_name") == agent)["series_id"]
        after = namespaced.filter(pl.col("service_name") == agent)["series_id"]
        assert before.equals(after) is same


def _answer(query: str, store: MetricStore) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
    result = range_query(query, START_MS, END_MS, 60_000, store)
    assert isinstance(result, Matrix)
    return {s.labels: np.column_stack([s.timestamps, s.values]) for s in result.series}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> TalonflowConfig:
    root: Path = tmp_path_factory.mktemp("rollup-namespace")
    config = TalonflowConfig(data_dir=root / "data", state_dir=root / "state")
    points = fleet_points(
        jobs=2, queues=2, start=START, minutes=HOURS * 60, every_s=15, offset_s=7.5, namespace="fleet"
    )
    write_table(config.data_dir, "metrics", points)
    write_table(config.data_dir, "rollups_1m", rollups_of(points))
    return config


@pytest.mark.parametrize(
    "query", ["sum by (job) (queue_depth)", "tasks_total", 'sessions_open{job="fleet/agent-0"}']
)
def test_rollup_path_names_namespaced_agents_as_raw_points_do(
    config: TalonflowConfig, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _answer(query, MetricStore(config))

    def no_fallback(*_args: object) -> None:
        raise AssertionError("the rollup store fell back to raw points")

    monkeypatch.setattr(MetricStore, "select", no_fallback)  # so the rollups answer, or the test fails
    rolled = _answer(query, RollupMetricStore(config))
    assert any(("job", "fleet/agent-0") in labels for labels in raw)
    assert rolled.keys() == raw.keys()
    for labels, points in raw.items():
        np.testing.assert_allclose(rolled[labels], points, rtol=1e-12, equal_nan=True, err_msg=str(labels))

"""A range query answered from kept hours (console/query_results.py) is the answer of evaluating it
whole: cold, warm, after a restart, across steps that do not divide an hour, offsets, subqueries
and `@`, and after a late point lands in an hour already kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import console.query_results as query_results
from console.rollup_store import store_for
from promql import Matrix, range_query
from schemas.config import TalonflowConfig
from tests.metric_data import fleet_points, write_table

START = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
FIRST_MS = START_MS + 20 * 60_000 + 13_000  # not on an hour, a minute or a step
LAST_MS = START_MS + 4 * 3_600_000 + 5 * 60_000
QUERIES = (
    "rate(tasks_total[5m])",
    "sum by (job) (queue_depth)",
    "queue_depth offset 1h",
    "queue_depth offset -10m",
    "max_over_time(queue_depth[10m:1m])",
    "sum(sessions_open) / count(queue_depth)",
    "queue_depth @ end()",
    "time()",
    "absent(nothing_here)",
)
STEPS_MS = (60_000, 90_000, 7 * 60_000, 2 * 3_600_000)


def _config(root: Path, **console: Any) -> TalonflowConfig:
    config = TalonflowConfig(data_dir=root / "data", state_dir=root / "state", console=console)
    write_table(config.data_dir, "metrics", fleet_points(3, 3, START, 300, 15, 7.5))
    return config


def _answer(config: TalonflowConfig, query: str, step: int, end: int = LAST_MS) -> Matrix:
    store = store_for(config, query, FIRST_MS, end, step)
    return query_results.answer(config, query, FIRST_MS, end, step, store, 60_000)


def _whole(config: TalonflowConfig, query: str, step: int, end: int = LAST_MS) -> Matrix:
    return range_query(query, FIRST_MS, end, step, store_for(config, query, FIRST_MS, end, step))


def _same(found: Matrix, expected: Matrix) -> bool:
    return len(found.series) == len(expected.series) and all(
        a.labels == b.labels
        and np.array_equal(a.timestamps, b.timestamps)
        and np.array_equal(a.values, b.values, equal_nan=True)
        for a, b in zip(found.series, expected.series, strict=True)
    )


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (first, last) steps of every evaluation `answer` makes."""
    made: list[tuple[int, int]] = []

    def counted(query: Any, first: int, last: int, *args: Any, **kwargs: Any) -> Matrix:
        made.append((first, last))
        return range_query(query, first, last, *args, **kwargs)

    monkeypatch.setattr(query_results, "range_query", counted)
    query_results._memory.clear()
    return made


@pytest.mark.parametrize("step", STEPS_MS)
@pytest.mark.parametrize("query", QUERIES)
def test_kept_hours_answer_as_the_whole_query(
    tmp_path: Path, query: str, step: int, evaluations: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    expected = _whole(config, query, step)
    assert _same(_answer(config, query, step), expected), "cold"
    cold = len(evaluations)
    assert cold >= 1
    assert _same(_answer(config, query, step), expected), "warm"
    query_results._memory.clear()  # a restart: the pieces on disk only
    assert _same(_answer(config, query, step), expected), "restarted"
    bypassed = "@" in query or step > query_results.HOUR_MS
    if bypassed:
        assert len(evaluations) == 3 * cold
        assert not (config.state_dir / query_results.ROOT).exists()
    else:
        assert len(evaluations) == cold, "every hour answered from what was kept"
        assert len(list((config.state_dir / query_results.ROOT).glob("*.arrow"))) == 5  # hours 0-4


def test_a_window_moved_by_a_step_reads_the_same_hours(
    tmp_path: Path, evaluations: list[tuple[int, int]]
) -> None:
    """Grafana's refresh moves start and end; the hours both windows cover are not evaluated again."""
    config = _config(tmp_path)
    _answer(config, "rate(tasks_total[5m])", 60_000)
    evaluations.clear()
    moved = FIRST_MS + 60_000
    store = store_for(config, "rate(tasks_total[5m])", moved, LAST_MS + 60_000, 60_000)
    found = query_results.answer(
        config, "rate(tasks_total[5m])", moved, LAST_MS + 60_000, 60_000, store, 60_000
    )
    expected = range_query("rate(tasks_total[5m])", moved, LAST_MS + 60_000, 60_000, store)
    assert _same(found, expected)
    assert evaluations == []


def test_a_late_point_makes_its_hours_evaluated_again(
    tmp_path: Path, evaluations: list[tuple[int, int]]
) -> None:
    """A file landing in a kept hour changes the keys of the hours that read it, and only theirs."""
    config = _config(tmp_path)
    query = "sum(queue_depth)"
    _answer(config, query, 60_000)
    late = fleet_points(1, 1, START + timedelta(hours=2, minutes=30), 10, 15, 1.0)
    write_table(config.data_dir / "late", "metrics", late)  # another name in the same partition
    for path in (config.data_dir / "late" / "metrics").rglob("*.parquet"):
        target = config.data_dir / "metrics" / path.relative_to(config.data_dir / "late" / "metrics")
        path.rename(target.with_name(f"late-{target.name}"))
    evaluations.clear()
    found = _answer(config, query, 60_000)
    assert _same(found, _whole(config, query, 60_000))
    hour = query_results.HOUR_MS
    # hour 2 holds the file; hour 3's first steps look back 5 minutes into hour 2
    assert evaluations == [(START_MS + 2 * hour + 13_000, START_MS + 4 * hour - 60_000 + 13_000)]


def test_newest_hours_and_an_off_cache_keep_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path / "off", results_cache=0)
    assert _same(_answer(config, "sum(queue_depth)", 60_000), _whole(config, "sum(queue_depth)", 60_000))
    assert not (config.state_dir / query_results.ROOT).exists()
    config = _config(tmp_path / "fresh", results_freshness=100 * 365 * 86_400)  # every hour is "now"
    assert _same(_answer(config, "sum(queue_depth)", 60_000), _whole(config, "sum(queue_depth)", 60_000))
    assert not (config.state_dir / query_results.ROOT).exists()


def test_hours_without_files_are_told_apart(tmp_path: Path, evaluations: list[tuple[int, int]]) -> None:
    """Past the data (hours 5-7 hold no file) `time()` still differs hour by hour, warm as cold."""
    config = _config(tmp_path)
    end = LAST_MS + 3 * query_results.HOUR_MS
    expected = _whole(config, "time()", 60_000, end)
    for _ in range(2):
        assert _same(_answer(config, "time()", 60_000, end), expected)
    assert len(evaluations) == 1


def test_a_damaged_or_unwritable_store_costs_evaluations_not_answers(
    tmp_path: Path, evaluations: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece that does not read back is evaluated again (and rewritten); a piece that cannot be
    written is logged, and the answer is the whole query's either way."""
    config = _config(tmp_path)
    query, expected = "sum(queue_depth)", _whole(config, "sum(queue_depth)", 60_000)
    assert _same(_answer(config, query, 60_000), expected)
    pieces = sorted((config.state_dir / query_results.ROOT).glob("*.arrow"))
    pieces[2].write_bytes(b"not an arrow file")
    query_results._memory.clear()
    evaluations.clear()
    assert _same(_answer(config, query, 60_000), expected)
    assert len(evaluations) == 1
    assert pieces[2].read_bytes()[:6] == b"ARROW1"

    def full(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_ipc", full)
    later = LAST_MS + 3_600_000  # hour 5 is new: evaluated, then not written
    assert _same(_answer(config, query, 60_000, later), _whole(config, query, 60_000, later))
    assert len(list((config.state_dir / query_results.ROOT).glob("*"))) == len(pieces)

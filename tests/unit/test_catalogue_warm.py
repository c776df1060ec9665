"""query_range's series catalogues built ahead by the warmer (console/warmer.py), forgotten with
their files, and the caches under state_dir kept within `console.disk_cache`
(console/disk_bound.py)."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest

from console import disk_bound, partials, series_catalogue, trace_index, warmer
from console.rollup_store import RollupMetricStore, store_for
from console.scan import files_in
from console.timerange import TimeRange
from promql import Matrix, range_query
from schemas.config import TalonflowConfig
from tests.metric_data import fleet_points, rollups_of, write_table

START = (datetime.now(UTC) - timedelta(hours=8)).replace(minute=0, second=0, microsecond=0)
HOURS = 7
START_MS = int(START.timestamp() * 1000)
END_MS = START_MS + HOURS * 3_600_000
STEP_MS = 60_000
QUERIES = ("queue_depth", 'rate(tasks_total{job="agent-1"}[5m])')  # rollups_1m, then raw points
EVERYTHING = TimeRange(START - timedelta(hours=1), START + timedelta(hours=HOURS + 1), None)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    series_catalogue._memory.clear()
    partials._memory.clear()
    trace_index._cache.clear()


def _config(root: Path, **console: Any) -> TalonflowConfig:
    config = TalonflowConfig(data_dir=root / "data", state_dir=root / "state", console=console)
    points = fleet_points(jobs=3, queues=2, start=START, minutes=HOURS * 60, every_s=15, offset_s=7.5)
    write_table(config.data_dir, "metrics", points)
    write_table(config.data_dir, "rollups_1m", rollups_of(points))
    return config


def _answers(config: TalonflowConfig) -> list[tuple[object, list[int], list[float]]]:
    """Each query's series, as comparable values."""
    stores = [store_for(config, q, START_MS, END_MS, STEP_MS) for q in QUERIES]
    assert isinstance(stores[0], RollupMetricStore) and not isinstance(stores[1], RollupMetricStore)
    matrices = [range_query(q, START_MS, END_MS, STEP_MS, s) for q, s in zip(QUERIES, stores, strict=True)]
    assert all(isinstance(m, Matrix) and m.series for m in matrices)
    return [(s.labels, s.timestamps.tolist(), s.values.tolist()) for m in matrices for s in m.series]


def _refuse(*_args: Any) -> NoReturn:
    raise AssertionError("a query read a file's attribute maps: the warmer should have catalogued it")


def test_a_query_after_a_pass_or_a_restart_builds_no_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    expected = _answers(config)  # built by the queries themselves
    series_catalogue._memory.clear()
    shutil.rmtree(config.state_dir / series_catalogue.ROOT)
    done = warmer.warm_once(config)
    metrics = len(files_in(config, "metrics", EVERYTHING))
    rollups = len(files_in(config, "rollups_1m", EVERYTHING))
    assert done.catalogued == 2 * metrics + 3 * rollups  # series + minutes; minutes + both scopes' series
    monkeypatch.setattr(series_catalogue, "files_frame", _refuse)
    assert _answers(config) == expected
    series_catalogue._memory.clear()  # a restart: only the stored ones are left
    assert _answers(config) == expected
    assert warmer.warm_once(config).catalogued == 0  # nothing new landed


def test_catalogues_of_gone_files_are_forgotten(tmp_path: Path) -> None:
    config = _config(tmp_path)
    warmer.warm_once(config)
    gone = files_in(config, "metrics", EVERYTHING)[0]
    stored = config.state_dir / series_catalogue._FOLDER / "metrics"
    before = len(list(stored.iterdir()))
    Path(gone).unlink()
    done = warmer.warm_once(config, before=time.time() + 1)
    assert done.forgotten >= 1
    assert len(list(stored.iterdir())) == before - 1
    assert series_catalogue._memory.held()
    assert not [key for key in series_catalogue._memory.held() if key[1].startswith(f"{gone}:")]


def test_a_pass_keeps_the_caches_within_the_bound(tmp_path: Path) -> None:
    unbounded = _config(tmp_path / "unbounded")
    warmer.warm_once(unbounded)
    roots = [unbounded.state_dir / root for root in warmer.CACHES]
    needed = disk_bound.usage(roots)
    limit = needed // 2
    bounded = _config(tmp_path / "bounded", disk_cache=limit)
    done = warmer.warm_once(bounded)
    assert done.evicted > 0
    assert 0 < disk_bound.usage([bounded.state_dir / root for root in warmer.CACHES]) <= limit


def test_the_least_recently_used_go_first(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    files = {name: root / name / "entry.bin" for name in ("read", "unread", "newest")}
    for age, path in enumerate(reversed(files.values())):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    writing = root / "newest" / ".entry.bin.tmp"  # a file being written is not the bound's
    writing.write_bytes(b"x" * 1000)
    assert disk_bound.read_renewed(files["read"], Path.read_bytes) is not None  # the oldest, used now
    assert disk_bound.read_renewed(root / "none", Path.read_bytes) is None
    assert disk_bound.bound([root], 250) == 1
    assert [name for name, path in files.items() if path.exists()] == ["read", "newest"]
    assert writing.exists()
    assert disk_bound.bound([root], 1000) == 0

"""The console's caches built ahead (console/warmer.py): bounded in memory, forgotten with their files,
and after a pass (or a restart) a page view builds nothing but what landed since."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest

from console import partials, trace_index, warmer
from console.fleet import service_red, spend_today
from console.logs import log_lines
from console.scan import files_in
from console.service import service_page
from console.timerange import TimeRange
from console.traces import search, waterfall
from schemas.config import TalonflowConfig
from tests.console_data import span, write_rows

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
DAY = TimeRange(NOW - timedelta(hours=24), NOW, "24h")
HOURS = 6


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """Caches emptied, and the hour files placed around the time each test runs: a long session
    collects this module well before it runs it, and by then the growing hour may be over."""
    global NOW, DAY
    NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    DAY = TimeRange(NOW - timedelta(hours=24), NOW, "24h")
    partials._memory.clear()
    partials._recent.clear()
    partials._merged.clear()
    trace_index._cache.clear()


def _config(tmp_path: Path, **console: Any) -> TalonflowConfig:
    return TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state", console=console)


def _trace(hour: int, i: int) -> str:
    return f"{hour:04x}{i:028x}"


def _fill(config: TalonflowConfig) -> None:
    """An hour file of spans and one of logs for each of the last HOURS hours (the newest is growing)."""
    for hour in range(HOURS):
        start = NOW - timedelta(hours=hour, minutes=20)
        spans = [
            span(f"agent-{i % 3}", "chat", _trace(hour, i), f"{i:016x}", start + timedelta(seconds=i), 50.0)
            for i in range(200)
        ]
        write_rows(config.data_dir, "spans", spans)
        lines = [{"time": start, "trace_id": _trace(hour, i), "body": f"line {i}"} for i in range(20)]
        write_rows(config.data_dir, "logs", lines)


def _refusing(keep: Callable[..., None]) -> Callable[..., None]:
    """partials._keep that fails for the partials the warmer builds (a search's summaries of the
    traces it found are the request's own work)."""
    built = {name for queries in warmer.default_partials().values() for name in queries}

    def keep_or_refuse(config: TalonflowConfig, dataset: str, key: str, name: str, result: Any) -> None:
        assert name not in built, f"a view computed {name} of {key}: the warmer should have"
        keep(config, dataset, key, name, result)

    return keep_or_refuse


def _refuse(*_args: Any) -> NoReturn:
    raise AssertionError("a page view built a cache entry the warmer should have built")


def _views(config: TalonflowConfig) -> None:
    """What the pages read on their first view of a day: Fleet, the lists, a trace."""
    service_red(config, DAY)
    spend_today(config)
    assert len(search(config, {}, DAY)) == 100
    assert log_lines(config, {}, DAY)
    assert waterfall(config, _trace(3, 7), DAY)["spans"]


def test_after_a_pass_and_after_a_restart_views_build_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    _fill(config)
    done = warmer.warm_once(config)
    assert done.files == 2 * HOURS and done.forgotten == 0
    defaults = sum(len(queries) for queries in warmer.default_partials().values())
    assert done.computed == (HOURS - 1) * defaults  # hours over (not the growing one) x default partials
    with monkeypatch.context() as patched:
        patched.setattr(trace_index, "_build", _refuse)
        patched.setattr(partials, "_keep", _refusing(partials._keep))
        _views(config)
        partials._memory.clear()  # a restarted console: only the disk is left
        trace_index._cache.clear()
        _views(config)
    assert warmer.warm_once(config).computed == 0  # a second pass finds everything built


def test_the_queries_pages_ran_are_computed_for_files_that_land_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    _fill(config)
    warmer.warm_once(config)
    service_page(config, "agent-1", DAY)  # its per-file counts are computed now, then known to the warmer
    late = NOW - timedelta(hours=2, minutes=40)  # a file landing late in an hour that is over
    write_rows(config.data_dir, "spans", [span("agent-1", "chat", "f" * 32, "1" * 16, late, 5.0)])
    defaults = len(warmer.default_partials()["spans"])
    assert warmer.warm_once(config).computed == defaults + 1  # the defaults and the Service page's query
    with monkeypatch.context() as patched:
        patched.setattr(partials, "_keep", _refuse)
        page = service_page(config, "agent-1", DAY)
    assert page["charts"]


def test_the_index_in_memory_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    _fill(_config(tmp_path))
    sizes = {
        uri: hashes.nbytes
        for uri, hashes in trace_index.indexes(
            _config(tmp_path), "spans", trace_index.TRACE, files_in(_config(tmp_path), "spans", DAY)
        ).items()
    }
    trace_index._cache.clear()
    bound = 2 * max(sizes.values())
    config = _config(tmp_path, index_cache=bound)
    oldest_first = sorted(sizes)  # hive paths sort by date and hour
    for uri in oldest_first:
        trace_index.indexes(config, "spans", trace_index.TRACE, [uri])
    assert trace_index._cache.maxsize == bound and trace_index._cache.currsize <= bound
    kept = [key.split(":")[1] for key in trace_index._cache]
    assert kept == oldest_first[-2:]  # the two used last
    # what memory dropped is still answered, from disk
    assert trace_index.files_holding(config, "spans", [_trace(HOURS - 1, 3)], DAY) == [oldest_first[0]]


def test_what_was_kept_for_gone_files_is_forgotten(tmp_path: Path) -> None:
    """A partition moved to MinIO, compacted or expired: its index and partials go, in memory and on disk."""
    config = _config(tmp_path)
    _fill(config)
    warmer.warm_once(config)
    service_red(config, DAY)  # Fleet's whole hours, merged once and kept
    state = config.state_dir
    indexed = len(list((state / "trace_index").rglob("*.npy")))
    kept = len(list((state / "partials").rglob("*.arrow")))
    gone = sorted((config.data_dir / "spans").rglob("*.parquet"))[0]  # the oldest hour: over, so kept
    assert [key for key in partials._merged if any(str(gone) in k for k in key)]
    gone.unlink()
    recent_pass = warmer.warm_once(config, before=time.time() - 3600)  # files newer than that are kept
    assert recent_pass.forgotten == 0
    done = warmer.warm_once(config)
    assert done.forgotten == 6  # trace, session indexes; partials' folder; copy by trace, sessions; slowest
    assert len(list((state / "trace_index").rglob("*.npy"))) == indexed - 2
    assert len(list((state / "partials").rglob("*.arrow"))) == kept - len(warmer.default_partials()["spans"])
    assert not [key for key in trace_index._cache if str(gone) in key]
    assert not [key for key in partials._memory.held() if str(gone) in key[0]]
    assert not [key for key in partials._merged if any(str(gone) in k for k in key)]
    assert search(config, {}, DAY)  # and the pages still answer without it


def test_the_warmer_thread_builds_at_start_up_and_stops(tmp_path: Path) -> None:
    config = _config(tmp_path, warm_interval="50ms")
    _fill(config)
    thread = warmer.Warmer(config)
    thread.start()
    try:
        while not list((config.state_dir / "partials").rglob("*.arrow")):
            time.sleep(0.05)
    finally:
        thread.stop()
    while any(t.name == "console-warmer" for t in threading.enumerate()):  # it ends after its pass
        time.sleep(0.05)

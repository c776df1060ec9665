"""Each spans file's slowest rows kept apart (console/slow_spans.py): a minimum-duration search
reads them instead of the file, and finds the same traces as from the files themselves."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from console import partials, slow_spans, trace_index
from console.scan import files_in, scan_files
from console.timerange import TimeRange
from console.traces import search
from schemas.config import TalonflowConfig
from tests.console_data import span, write_rows

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
DAY = TimeRange(NOW - timedelta(hours=24), NOW, "24h")
SPANS = 2 * slow_spans.ROWS  # per hour, durations 0-996 ms: the ROWS-th longest is about 500 ms
SEARCHES = ({"min_ms": "990"}, {"min_ms": "995", "service": "agent-1"}, {"min_ms": "500"}, {"min_ms": "40"})


def _forget() -> None:
    """What a console kept in memory: each config's own state_dir then holds what it computed."""
    trace_index._cache.clear()
    partials._memory.clear()
    partials._merged.clear()


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    _forget()


def _hour(start: datetime, seed: int) -> list[dict[str, Any]]:
    """SPANS spans in traces of 4, each duration 0-996 ms about 8 times (ties at every threshold)."""
    return [
        span(f"agent-{i % 3}", "chat", f"{seed:08x}{i // 4:024x}", f"{i:016x}",
             start + timedelta(milliseconds=i * 300), i * 7 % 997)
        for i in range(SPANS)
    ]  # fmt: skip


def _searches(config: TalonflowConfig) -> list[list[dict[str, Any]]]:
    found = [search(config, params, DAY) for params in SEARCHES]
    _forget()
    return found


def test_a_minimum_duration_search_reads_the_slowest_rows_and_finds_the_same(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for hours in (4, 3, 2):
        write_rows(data, "spans", _hour(NOW - timedelta(hours=hours, minutes=25), hours))
    whole = TalonflowConfig(data_dir=data, state_dir=tmp_path / "whole")
    read_whole = _searches(whole)
    assert all(read_whole) and len(read_whole[0]) == 100  # the list is full, past the first hour
    copied = TalonflowConfig(data_dir=data, state_dir=tmp_path / "copied")
    files = files_in(copied, "spans", DAY)
    assert slow_spans.ensure(copied, files) == 3
    assert slow_spans.ensure(copied, files) == 0  # kept
    assert _searches(copied) == read_whole
    slow = slow_spans.reader(copied, 990e6)(files, DAY).collect()
    assert 3 * slow_spans.ROWS < slow.height < 0.51 * 3 * SPANS  # each file's slowest rows and ties
    expected = scan_files(copied, "spans", files, DAY).filter(pl.col("duration_ns") >= 990e6).collect()
    assert slow.filter(pl.col("duration_ns") >= 990e6).equals(expected)
    below = slow_spans.reader(copied, 40e6)(files, DAY).collect()  # under every threshold: the files
    assert below.height == 3 * SPANS


def test_a_file_with_fewer_rows_is_copied_whole_and_a_rewritten_one_read_whole(tmp_path: Path) -> None:
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    few = [span("agent-0", "chat", f"{i:032x}", f"{i:016x}", NOW - timedelta(hours=2, minutes=i), i)
           for i in range(10)]  # fmt: skip
    write_rows(config.data_dir, "spans", few)
    files = files_in(config, "spans", DAY)
    slow_spans.ensure(config, files)
    assert slow_spans.reader(config, 0)(files, DAY).collect().height == 10
    time.sleep(0.01)  # a new mtime even on coarse clocks
    table = pq.read_table(files[0])
    later = span("agent-0", "chat", "f" * 32, "f" * 16, NOW - timedelta(hours=2, minutes=30), 50)
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([later], table.schema)]), files[0])
    assert [t["duration_ms"] for t in search(config, {"min_ms": "8"}, DAY)] == [
        8,
        9,
        50,
    ]  # not the stale copy
    Path(files[0]).unlink()
    assert slow_spans.prune(config, [], time.time()) == 1
    assert not list((config.state_dir / slow_spans.ROOT).glob("*.parquet"))

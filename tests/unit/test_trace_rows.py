"""Spans files copied sorted by trace (console/trace_rows.py): a trace or session reads a few row
groups, and a waterfall or session replay is the same as from the files themselves."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from console import partials, trace_index, trace_rows
from console.scan import files_in
from console.sessions import session_steps
from console.timerange import TimeRange
from console.traces import SEARCH_LIMIT, search, waterfall
from schemas.config import TalonflowConfig
from tests.console_data import agent_chain, span, write_rows

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
DAY = TimeRange(NOW - timedelta(hours=24), NOW, "24h")
FILLER = 2 * trace_rows.ROW_GROUP  # spans of other traces per hour: several row groups per copy


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    trace_index._cache.clear()


def _config(tmp_path: Path) -> TalonflowConfig:
    return TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def _filler(start: datetime, seed: int) -> list[dict[str, Any]]:
    return [
        span(f"agent-{i % 5}", "chat", f"{seed:08x}{i:024x}", f"{i:016x}",
             start + timedelta(milliseconds=i), 5, attributes={"session.id": f"other-{i % 97}"})
        for i in range(FILLER)
    ]  # fmt: skip


def _day(config: TalonflowConfig) -> str:
    """Three hours of filler; the agent chain (a trace, and a sub-agent's trace linking to it) in
    the middle one, one more span of its root trace an hour later. Returns the root trace id."""
    chain = agent_chain(NOW - timedelta(hours=3, minutes=10))
    root = chain[0]["trace_id"]
    late = span("main_agent", "chat late", root, "5" * 16, NOW - timedelta(hours=2, minutes=5), 30,
                parent="1" * 16, attributes={"session.id": "s-1"})  # fmt: skip
    for hour, extra in ((4, []), (3, chain), (2, [late])):
        write_rows(
            config.data_dir, "spans", [*_filler(NOW - timedelta(hours=hour, minutes=20), hour), *extra]
        )
    return str(root)


def _pages(config: TalonflowConfig, root: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return waterfall(config, root, DAY), session_steps(config, "s-1", DAY)


def test_a_waterfall_and_a_session_read_through_the_copies_are_the_same(tmp_path: Path) -> None:
    config = _config(tmp_path)
    root = _day(config)
    read_whole = _pages(config, root)
    assert len(read_whole[0]["spans"]) == 5 and len(read_whole[1]["steps"]) == 5  # the chain + the late span
    files = files_in(config, "spans", DAY)
    assert trace_rows.ensure(config, files) == 3
    assert trace_rows.ensure(config, files) == 0  # kept
    assert _pages(config, root) == read_whole
    held = trace_index.hashes_held(config, "spans", [root], DAY)
    narrowed = trace_rows.trace_rows(config, list(held), held, DAY).collect()
    assert 5 <= narrowed.height <= 2 * trace_rows.ROW_GROUP  # not the files' 3 * FILLER rows
    assert set(narrowed["trace_id"]) >= {root}
    session = trace_rows.session_rows(config, files, "s-1", DAY).collect()
    assert session.height <= 2 * trace_rows.ROW_GROUP


def test_a_search_reads_the_row_groups_of_each_files_own_traces(tmp_path: Path) -> None:
    """The list's summaries of the same traces with and without copies; each file's read asks
    only for the traces its index holds (asking every file for all 100 decoded most of each copy)."""
    config = _config(tmp_path)
    root = _day(config)
    slow = {"min_ms": "20"}  # the chain's spans, across two files
    listed, chain = search(config, {}, DAY), search(config, slow, DAY)
    assert len(listed) == SEARCH_LIMIT and {t["trace_id"] for t in chain} >= {root}
    shutil.rmtree(config.state_dir / partials.ROOT)  # the summaries kept per file: read again
    partials._memory.clear()
    files = files_in(config, "spans", DAY)
    trace_rows.ensure(config, files)
    assert search(config, {}, DAY) == listed and search(config, slow, DAY) == chain
    ids = [t["trace_id"] for t in listed]
    held = trace_index.hashes_held(config, "spans", [*ids, root], DAY)
    for uri, hashes in held.items():
        assert set(hashes.tolist()) < set(trace_index.id_hashes([*ids, root]).tolist())
        narrowed = trace_rows.trace_rows(config, [uri], held, DAY).collect()
        assert narrowed.height <= len(hashes) * trace_rows.ROW_GROUP  # a row group per trace at most


def test_a_rewritten_file_is_read_whole_until_copied_again(tmp_path: Path) -> None:
    config = _config(tmp_path)
    root = _day(config)
    files = files_in(config, "spans", DAY)
    trace_rows.ensure(config, files)
    (last,) = [f for f in files if (NOW - timedelta(hours=2)).strftime("hour=%H") in f]
    time.sleep(0.01)  # a new mtime even on coarse clocks
    table = pq.read_table(last)
    more = span("main_agent", "chat later", root, "6" * 16, NOW - timedelta(hours=2, minutes=4), 30,
                parent="1" * 16, attributes={"session.id": "s-1"})  # fmt: skip
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([more], table.schema)]), last)
    names = {s["name"] for s in waterfall(config, root, DAY)["spans"]}
    assert "chat later" in names  # the stale copy is not read
    assert "chat later" in {s["name"] for s in session_steps(config, "s-1", DAY)["steps"]}
    assert trace_rows.ensure(config, files) == 1
    assert "chat later" in {s["name"] for s in waterfall(config, root, DAY)["spans"]}


def test_the_copies_of_gone_files_are_forgotten(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _day(config)
    files = files_in(config, "spans", DAY)
    trace_rows.ensure(config, files)
    Path(files[0]).unlink()
    assert trace_rows.prune(config, files[1:], time.time()) == 2  # its copy and its session pairs
    assert len(list((config.state_dir / trace_rows.ROOT).rglob("*.parquet"))) == 2

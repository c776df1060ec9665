"""The console's in-memory frame caches are bounded in bytes (console/frame_memory.py), and a
frame pushed out of memory is read back from disk with the same result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from console import partials
from console.fleet import service_red
from console.frame_memory import FrameMemory, frame_bytes
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from tests.console_data import span, write_rows


def _frame(rows: int) -> pl.DataFrame:
    return pl.DataFrame({"x": list(range(rows))}, schema={"x": pl.Int64})


def _memory(limit: int) -> tuple[FrameMemory[str], TalonflowConfig]:
    config = TalonflowConfig()
    config = config.model_copy(update={"console": config.console.model_copy(update={"results_cache": limit})})
    return FrameMemory(lambda c: c.console.results_cache), config


def test_the_least_recently_used_frames_go_first_once_their_bytes_pass_the_bound() -> None:
    memory, config = _memory(3 * 8 * 100)  # three frames of 100 Int64
    for key in "abc":
        memory.keep(config, key, _frame(100))
    assert memory.get(config, "a") is not None  # used: "b" is now the least recently used
    assert memory.has(config, "b")  # asking is not a use
    memory.keep(config, "d", _frame(100))
    assert sorted(memory.held()) == ["a", "c", "d"]
    assert memory.nbytes == 3 * frame_bytes(_frame(100))


def test_a_frame_larger_than_the_bound_is_not_kept_and_an_empty_one_counts() -> None:
    memory, config = _memory(100)
    memory.keep(config, "big", _frame(1000))
    memory.keep(config, "empty", _frame(0))
    assert memory.held() == ["empty"]
    assert memory.nbytes == 1


def test_the_bound_follows_the_config_and_forget_drops_what_it_is_told() -> None:
    memory, config = _memory(1000)
    memory.keep(config, "a", _frame(10))
    memory.keep(config, "b", _frame(10))
    memory.forget(config, lambda key: key == "a")
    assert memory.held() == ["b"]
    _, wider = _memory(2000)
    assert memory.get(wider, "b") is None  # another bound: a new, empty memory
    memory.keep(wider, "c", _frame(10))
    assert memory.held() == ["c"]


def test_partials_stay_within_their_bound_and_evicted_ones_come_back_from_disk(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(minute=20, second=0, microsecond=0)
    window = TimeRange(now - timedelta(hours=6), now, "6h")
    for hour in range(7):
        start = now - timedelta(hours=hour, minutes=50)
        rows = [
            span(f"agent-{i % 5}", "chat", f"{hour:08x}{i:024x}", f"{i:016x}", start, 10.0 + i)
            for i in range(50)
        ]
        write_rows(tmp_path / "data", "spans", rows)
    unbounded = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    partials._memory.clear()
    expected = service_red(unbounded, window).sort("service_name")
    one_file = max(
        frame_bytes(frame)
        for key in partials._memory.held()
        if (frame := partials._memory.get(unbounded, key)) is not None
    )
    assert len(partials._memory.held()) == 5  # the window's whole hours
    small = unbounded.model_copy(
        update={"console": unbounded.console.model_copy(update={"partial_cache": 2 * one_file})}
    )
    for _ in range(2):  # the second time, three of the five hours are read back from disk
        partials._merged.clear()  # else the five hours come merged, none read
        assert service_red(small, window).sort("service_name").equals(expected)
        assert 0 < partials._memory.nbytes <= 2 * one_file
        assert len(partials._memory.held()) <= 2

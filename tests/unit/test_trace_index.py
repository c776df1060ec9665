"""The trace index (console/trace_index.py) and what reads through it: which files hold a trace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from console import trace_index
from console.timerange import TimeRange
from console.traces import SEARCH_LIMIT, search
from schemas.config import TalonflowConfig
from talonflow.compare import _quantiles, _resampled_quantiles
from tests.console_data import span, write_rows

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
DAY = TimeRange(NOW - timedelta(hours=24), NOW, "24h")


def _config(tmp_path: Path) -> TalonflowConfig:
    return TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")


def _names(uris: list[str]) -> list[str]:
    return sorted(Path(u).parent.name for u in uris)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    trace_index._cache.clear()


def test_finds_the_files_of_a_trace_and_of_the_spans_linking_to_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    caller, callee, other = "a" * 32, "b" * 32, "c" * 32
    link = {"trace_id": caller, "span_id": "1" * 16, "attributes": []}
    write_rows(config.data_dir, "spans", [span("gw", "call", caller, "1" * 16, NOW - timedelta(hours=5), 10)])
    write_rows(
        config.data_dir,
        "spans",
        [
            span("sub", "work", callee, "2" * 16, NOW - timedelta(hours=2), 10, links=[link]),
            span("gw", "other", other, "3" * 16, NOW - timedelta(hours=2), 10),
        ],
    )
    hour = (NOW - timedelta(hours=5)).strftime("hour=%H"), (NOW - timedelta(hours=2)).strftime("hour=%H")
    assert _names(trace_index.files_holding(config, "spans", [caller], DAY)) == sorted(hour)
    assert _names(trace_index.files_holding(config, "spans", [callee], DAY)) == [hour[1]]
    assert trace_index.files_holding(config, "spans", ["d" * 32], DAY) == []
    last_hour = TimeRange(NOW - timedelta(hours=1), NOW, "1h")
    assert trace_index.files_holding(config, "spans", [callee], last_hour) == []  # outside the window
    trace_index._cache.clear()  # a restarted console reads the stored index instead of the files
    stored = list((config.state_dir / "trace_index").rglob("*.npy"))
    assert len(stored) == 2
    assert _names(trace_index.files_holding(config, "spans", [callee], DAY)) == [hour[1]]


def test_a_rewritten_file_is_indexed_again(tmp_path: Path) -> None:
    """A replay or a compaction replaces files; the index follows the files, never the other way."""
    config = _config(tmp_path)
    first, second = "e" * 32, "f" * 32
    write_rows(config.data_dir, "logs", [{"time": NOW - timedelta(hours=1), "trace_id": first, "body": "x"}])
    assert len(trace_index.files_holding(config, "logs", [first], DAY)) == 1
    for old in (config.data_dir / "logs").rglob("*.parquet"):
        old.unlink()
    write_rows(config.data_dir, "logs", [{"time": NOW - timedelta(hours=1), "trace_id": second, "body": "y"}])
    assert trace_index.files_holding(config, "logs", [first], DAY) == []
    assert len(trace_index.files_holding(config, "logs", [second], DAY)) == 1


def test_search_lists_the_newest_traces_from_the_newest_hours(tmp_path: Path) -> None:
    config = _config(tmp_path)
    spans = []
    for i in range(SEARCH_LIMIT + 20):  # one trace every 10 minutes: the list reaches back ~20 h
        start = NOW - timedelta(minutes=10 * i + 5)
        spans += [
            span("gw", "root", f"{i:032x}", "1" * 16, start, 100),
            span("db", "query", f"{i:032x}", "2" * 16, start + timedelta(milliseconds=10), 50, "1" * 16),
        ]
    write_rows(config.data_dir, "spans", spans)
    found = search(config, {}, DAY)
    assert [t["trace_id"] for t in found] == [f"{i:032x}" for i in range(SEARCH_LIMIT)]
    assert {(t["spans"], tuple(t["services"]), t["root"]) for t in found} == {(2, ("db", "gw"), "root")}
    assert [t["trace_id"] for t in search(config, {"service": "db", "min_ms": "40"}, DAY)][:3] == [
        f"{i:032x}" for i in range(3)
    ]
    old = f"{SEARCH_LIMIT + 10:032x}"  # beyond the newest hundred: found through the trace index
    assert [t["trace_id"] for t in search(config, {"trace": old.upper()}, DAY)] == [old]


def test_bootstrap_order_statistics_match_multinomial_resampling() -> None:
    """compare's percentile draws (Beta order statistics) have the distribution of a resample's."""
    rng = np.random.default_rng(3)
    values = np.exp2(np.arange(200) / 16)
    counts = rng.integers(0, 50, 200)
    levels = [0.5, 0.95, 0.99]
    drawn = _resampled_quantiles(values, counts, levels, 4000, np.random.default_rng(4))
    n = int(counts.sum())
    resampled = _quantiles(values, rng.multinomial(n, counts / n, size=4000), levels)
    for j in range(len(levels)):
        for q in (5, 50, 95):  # the interval bounds and the centre agree within a bucket
            a, b = np.percentile(drawn[:, j], q), np.percentile(resampled[:, j], q)
            assert abs(np.log2(a / b)) <= 1 / 16 + 1e-9, (levels[j], q, a, b)


def test_sessions_are_indexed_by_their_attribute(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for hours, session in ((3, "s-early"), (1, "s-late")):
        start = NOW - timedelta(hours=hours)
        write_rows(
            config.data_dir,
            "spans",
            [span("gw", "x", "a" * 32, "1" * 16, start, 5, attributes={"session.id": session})],
        )
    late = (NOW - timedelta(hours=1)).strftime("hour=%H")
    assert _names(trace_index.files_holding(config, "spans", ["s-late"], DAY, trace_index.SESSION)) == [late]
    assert trace_index.files_holding(config, "spans", ["s-none"], DAY, trace_index.SESSION) == []
    assert len(trace_index.files_holding(config, "spans", ["a" * 32], DAY)) == 2  # the trace index apart

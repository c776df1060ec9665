"""Per-file partial aggregates (console/partials.py): merged, they equal the aggregate over the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from console import partials, service
from console.cohorts import compare_window
from console.fleet import service_red
from console.logs import LIMIT, log_lines
from console.scan import file_hour, scan
from console.service import red_charts
from console.timerange import TimeRange
from console.warmer import warm_once
from schemas.config import TalonflowConfig
from schemas.prices import PriceTable
from talonflow.compare import Cohort, Method, Scope, compare_spans
from tests.console_data import span, write_rows

NOW = datetime.now(UTC).replace(minute=20, second=0, microsecond=0)
WINDOW = TimeRange(NOW - timedelta(hours=6), NOW, "6h")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    partials._memory.clear()


def _spans(config: TalonflowConfig, seed: int, hours: int = 7) -> None:
    """Spans in every hour of the window and the hour before it, so both edges are partial hours."""
    rng = np.random.default_rng(seed)
    for hour in range(hours):
        start = NOW - timedelta(hours=hour, minutes=50)
        rows = [
            span(
                f"agent-{i % 3}",
                "chat",
                f"{seed:04x}{hour:04x}{i:024x}",
                f"{i:016x}",
                start + timedelta(seconds=int(rng.integers(0, 3590))),
                float(rng.lognormal(4, 1)),
                status_code="ERROR" if i % 7 == 0 else "UNSET",
                service_version=("1.0", "1.1")[i % 2],
            )
            for i in range(300)
        ]
        write_rows(config.data_dir, "spans", rows)


def test_fleet_figures_equal_the_exact_ones_within_the_bucket_error(tmp_path: Path) -> None:
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    _spans(config, 1)
    exact = (
        scan(config, "spans", WINDOW)
        .group_by("service_name")
        .agg(
            pl.len().alias("calls"),
            (pl.col("status_code") == "ERROR").sum().alias("errors"),
            (pl.col("duration_ns").sort().gather((pl.len() * 0.95).ceil().cast(pl.Int64) - 1) / 1e6).alias(
                "p95"
            ),
            pl.col("end_time").max().alias("last_span"),
        )
        .explode("p95")
        .sort("service_name")
        .collect()
    )
    for _ in range(2):  # computed, then merged from the kept partials
        merged = service_red(config, WINDOW).sort("service_name")
        assert merged.select("service_name", "calls", "errors", "last_span").equals(
            exact.select("service_name", "calls", "errors", "last_span")
        )
        ratio = (merged["p95_ms"] / exact["p95"]).to_numpy()
        assert np.all(np.abs(np.log2(ratio)) <= 1 / 128), ratio
    kept_hours = {file_hour(uri) for (key, _name) in partials._memory.held() for uri in [key.split(":")[0]]}
    whole = {(WINDOW.start + timedelta(hours=h)).replace(minute=0) for h in range(1, 6)}
    assert kept_hours == whole  # the 5 whole hours inside the window; the 2 edge hours are read live


def test_a_rewritten_file_counts_with_its_new_rows(tmp_path: Path) -> None:
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    _spans(config, 1)
    before = service_red(config, WINDOW)["calls"].sum()
    moment = (NOW - timedelta(hours=3)).replace(minute=0)  # a whole hour inside the window
    hour_dir = config.data_dir / "spans" / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"
    old_names = sorted(hour_dir.glob("*.parquet"))
    removed = pl.read_parquet(old_names).height
    for path in hour_dir.glob("*.parquet"):
        path.unlink()  # a replay rewrites this hour with fewer spans
    write_rows(config.data_dir, "spans", [span("agent-0", "chat", "9" * 32, "1" * 16, moment, 5.0)])
    (rewritten,) = hour_dir.glob("*.parquet")
    rewritten.rename(old_names[0])  # as the sink does: the same name, new content
    after = service_red(config, WINDOW)["calls"].sum()
    assert after == before - removed + 1


def test_the_service_charts_are_the_same_computed_kept_and_merged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Service page's whole hours come summed once per set of files (`aggregate`'s merges):
    its charts equal those of the per-file counts merged at the view, and of a restarted console."""
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    _spans(config, 4)
    with monkeypatch.context() as unmerged:  # every file's counts concatenated, merged by the page
        unmerged.setattr(service, "aggregate", lambda *args, merges, **kw: partials.aggregate(*args, **kw))
        reference = red_charts(config, "agent-1", WINDOW)
    partials._memory.clear()
    computed = red_charts(config, "agent-1", WINDOW)
    assert computed[0]["series"] and partials._merged  # drawn, and the whole hours' merge kept
    assert computed == reference
    assert red_charts(config, "agent-1", WINDOW) == computed
    partials._memory.clear()
    partials._merged.clear()
    assert red_charts(config, "agent-1", WINDOW) == computed


def test_the_compare_page_equals_the_cli_comparison(tmp_path: Path) -> None:
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    _spans(config, 2)
    baseline, candidate = Cohort("service.version", "1.0"), Cohort("service.version", "1.1")
    scope = Scope(WINDOW.start, WINDOW.end)
    prices = PriceTable.with_defaults(config.rollups.prices)
    cli = compare_spans(scan(config, "spans", WINDOW), prices, baseline, candidate, scope, Method())
    for _ in range(2):
        page = compare_window(config, baseline, candidate, scope, WINDOW)
        assert page == cli


@pytest.mark.parametrize(
    "candidate", [Cohort("service.version", "1.1"), Cohort("service.name", "agent-1")], ids=["values", "pair"]
)
def test_counts_the_warmer_keeps_for_later_files_equal_the_cli_comparison(
    tmp_path: Path, candidate: Cohort
) -> None:
    """A comparison's per-file counts, kept by console/warmer.py for files landing after the
    range it was first asked over, count those files' spans (not only the first range's)."""
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    _spans(config, 3)
    baseline = Cohort("service.version", "1.0")
    earlier = TimeRange(WINDOW.start, WINDOW.start + timedelta(hours=2), None)
    compare_window(config, baseline, candidate, Scope(earlier.start, earlier.end), earlier)
    warm_once(config)  # the later hours' counts, of the query just asked (or of every version)
    prices = PriceTable.with_defaults(config.rollups.prices)
    scope = Scope(WINDOW.start, WINDOW.end)
    cli = compare_spans(scan(config, "spans", WINDOW), prices, baseline, candidate, scope, Method())
    partials._memory.clear()
    partials._merged.clear()
    assert compare_window(config, baseline, candidate, scope, WINDOW) == cli


def test_a_warm_pass_over_kept_files_reads_none_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the warmer finds kept on disk it leaves there: not read, not renewed, not in memory."""
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    _spans(config, 4)
    red_charts(config, "agent-1", WINDOW)  # a page's query, which the warmer then keeps for every file
    assert warm_once(config).computed > 0
    partials._memory.clear()

    def refuse(*_args: object, **_kwargs: object) -> pl.DataFrame:
        raise AssertionError("a kept result was read")

    monkeypatch.setattr(partials.pl, "read_ipc", refuse)
    assert warm_once(config).computed == 0
    assert len(partials._memory.held()) == 0


def test_log_lines_are_the_newest_matching_ones_read_newest_hours_first(tmp_path: Path) -> None:
    config = TalonflowConfig(data_dir=tmp_path / "data", state_dir=tmp_path / "state")
    lines = [
        {
            "time": NOW - timedelta(minutes=3 * i + 1),
            "severity_number": (9, 17)[i % 2],
            "body": f"line {i}",
            "trace_id": "",
            "service_name": "gw",
        }
        for i in range(1200)  # 60 h: the window (24 h) holds 480, the 500 newest errors need all
    ]
    write_rows(config.data_dir, "logs", lines)
    day = TimeRange(NOW - timedelta(hours=24), NOW, "24h")
    for params, expected in (
        ({}, [f"line {i}" for i in range(LIMIT)][:480]),
        ({"severity": "error"}, [f"line {i}" for i in range(1, 480, 2)]),
        ({"q": "line 7"}, [f"line {i}" for i in range(480) if f"line {i}".startswith("line 7")]),
    ):
        for _ in range(2):  # read, then from the kept per-file lines
            assert [r["body"] for r in log_lines(config, params, day)] == expected, params

"""The chaos harness's short configuration: 3 kill -9 rounds on its own private stack.

bench.chaos runs its own stack on ports 27000-27499 (not the session stack), so this test takes
no stack lock. Seed 132 kills the receiver, the rollups flow and Kafka: the path every item takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.chaos import ID, Ledger, replayed, verdict


def table_rows(output: str, header: str) -> dict[str, list[str]]:
    """The rows of the table under `header` in the harness's report, by their first cell."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [header])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.integration
def test_three_rounds_of_kills_lose_and_duplicate_nothing() -> None:
    """Nothing acknowledged is lost and nothing is in Parquet twice: not a record written twice,
    nor a request the SDK sent again because a kill took its first answer (two Kafka records with
    the same bytes: the flows drop the second, flows/resends.py)."""
    command = [sys.executable, "-m", "bench.chaos", "--rounds", "3", "--every", "3", "--seed", "132"]
    command += ["--rate", "10", "--quiet", "8"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0 and "signal" in run.stdout, run.stdout + run.stderr[-3000:]
    parts = table_rows(run.stdout, "part")
    assert sum(int(kills) for kills, *_ in parts.values()) == 3
    assert all(kills == recovered for kills, recovered, *_ in parts.values())
    assert {"receiver", "kafka", "rollups"} == parts.keys()
    signals = table_rows(run.stdout, "signal")
    for name in ("spans", "metrics", "logs"):
        acked, _failed, lost, duplicated, resent = signals[name]
        assert int(acked) > 0 and lost == "0" and duplicated == resent == "0", run.stdout
    assert signals["rollups"][-2] == "0"  # rollup rows beyond one per (series, window, resolution)
    assert signals["rollup_pts"][-2] == "0"  # the load's counter points folded more than once


def test_the_count_finds_a_lost_and_a_doubled_item_and_a_doubled_rollup_window(tmp_path: Path) -> None:
    """The verdict itself, on hand-written partitions: it can fail."""

    def write(dataset: str, stem: str, table: pa.Table) -> None:
        folder = tmp_path / dataset / "date=2026-01-01" / "hour=00"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"{stem}.parquet")

    def spans(*ids: str) -> pa.Table:
        attributes = pa.array([[(ID, i)] for i in ids], pa.map_(pa.string(), pa.string()))
        return pa.table({"attributes": attributes})

    write("spans", "otlp_spans-0-00000000000000000000-00000000000000000001", spans("s0", "s1"))
    write("spans", "otlp_spans-0-00000000000000000001-00000000000000000001", spans("s1"))  # replayed
    window = pa.array([0, 0, 60, 0], pa.timestamp("ns", "UTC"))
    rollups = pa.table(
        {
            "series_id": ["a", "a", "a", "b"],
            "window_start": window,
            "resolution": ["1m"] * 4,
            "attributes": spans("m0", "m0", "m0", "m1")["attributes"],
            "points": [1, 1, 1, 1],
        }
    )
    write("rollups_1m", "talon_rollups-0-00000000000000000000-00000000000000000003", rollups)
    letters = pa.table({"reason": ["resent: same key and bytes as offset 3", "undecodable"], "items": [4, 0]})
    write("dead_letters", "otlp_spans-0-00000000000000000004-00000000000000000005", letters)
    ledger = Ledger()
    ledger.book("spans", ["s0", "s1", "s2"], ok=True)
    ledger.book("logs", ["l0"], ok=False)
    result = verdict(tmp_path, ledger)
    assert result.acked == {"spans": 3, "metrics": 0, "logs": 0} and result.failed == {"logs": 1}
    assert result.lost == {"spans": 1, "metrics": 0, "logs": 0}
    assert result.duplicated == {"spans": 1, "metrics": 0, "logs": 0}
    assert result.resent == {"spans": 0, "metrics": 0, "logs": 0}
    assert result.rollup_duplicates == 1 and result.rollup_points_doubled == 1 and not result.clean
    assert result.resends_dropped == (1, 4)


def test_two_kafka_records_are_a_resend_and_one_record_twice_a_replay() -> None:
    first, second = (
        "otlp_metrics-3-00000000000000000339-00000000000000000340",
        "otlp_metrics-3-00000000000000000341-00000000000000000344",
    )
    assert not replayed([first, second])
    assert replayed([first, "otlp_metrics-3-00000000000000000340-00000000000000000342"])
    assert not replayed([first, first.replace("-3-", "-2-")])

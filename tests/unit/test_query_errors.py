"""`talonflow query` errors for people, via the CLI: a line or two, exit 2, the plan only with --verbose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from schemas.datasets import SPANS


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose data directory holds one real spans file (queries read it; no stack needed)."""
    root = tmp_path_factory.mktemp("query")
    partition = root / "data" / "spans" / "date=2026-12-01" / "hour=10"
    partition.mkdir(parents=True)
    row = {c: [None] for c in SPANS.schema.names} | {"name": ["chat"], "duration_ns": [5]}
    pq.write_table(pa.Table.from_pydict(row, schema=SPANS.schema), partition / "spans-0-0-0.parquet")
    path = root / "talonflow.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(root / "data"), "state_dir": str(root / "state")}))
    return path


def query(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "talonflow.cli", "--config", str(config_file), "query", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_valid_query_still_answers(config_file: Path) -> None:
    done = query(config_file, "SELECT name, duration_ns FROM spans", "--format", "csv")
    assert (done.returncode, done.stdout.splitlines()) == (0, ["name,duration_ns", "chat,5"])


def test_a_misspelled_column_names_the_column_the_table_columns_and_a_close_match(config_file: Path) -> None:
    done = query(config_file, "SELECT nme FROM spans WHERE duration_ns > 1")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == 'talonflow: query: no column "nme" in spans; did you mean "name"?'
    assert lines[1].startswith("talonflow: query: columns of spans: start_time, end_time, duration_ns")
    assert len(lines) == 2 and "FAILED HERE" not in done.stderr


def test_an_unknown_table_lists_the_tables(config_file: Path) -> None:
    done = query(config_file, "SELECT count(*) FROM spanz")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        'talonflow: query: no table "spanz"; did you mean "spans"?',
        "talonflow: query: tables: spans, metrics, logs, dead_letters, rollups_1m, rollups_5m, rollups_15m, "
        "rollups_1h, rollups_6h, rollups_1d, late_points, alerts, heartbeats",
    ]


def test_a_type_mismatch_says_which_column_has_which_type(config_file: Path) -> None:
    done = query(config_file, "SELECT name FROM spans WHERE duration_ns > 'abc'")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("talonflow: query: cannot compare string with numeric type")
    assert lines[1] == "talonflow: query: duration_ns is int64 in spans"
    assert len(lines) == 2


def test_the_plan_only_with_verbose(config_file: Path) -> None:
    sql = "SELECT s.nme FROM spans s JOIN logs l ON s.trace_id = l.trace_id"
    quiet, verbose = query(config_file, sql), query(config_file, sql, "--verbose")
    assert quiet.returncode == verbose.returncode == 2
    assert 'no column "nme" in spans or logs; did you mean "name"?' in quiet.stderr
    assert "Resolved plan" not in quiet.stderr and "Resolved plan" in verbose.stderr

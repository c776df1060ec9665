"""sinks/lifecycle.compact: one sorted file with its checksums, and its memory given back."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.datasets import DATASETS
from sinks.lifecycle import compact

ROOT = Path(__file__).resolve().parents[2]
LATE = DATASETS["late_points"]


def _late(times: list[int], series: list[str]) -> pa.Table:
    return pa.table(
        {
            "time": pa.array(times).cast(pa.timestamp("ns", "UTC")),
            "metric_name": ["m"] * len(times),
            "series_id": series,
            "reason": ["late"] * len(times),
            "points": [1] * len(times),
        }
    ).cast(LATE.schema)


def test_one_file_sorted_with_the_checksums_of_its_bytes(tmp_path: Path) -> None:
    tables = [_late([30, 10], ["b", "a"]), _late([20], ["c"])]
    done = compact(iter(tables), LATE, tmp_path, 3)
    written = pq.read_table(done.path)
    assert done.rows == written.num_rows == 3
    assert written.equals(pa.concat_tables(tables).sort_by([(c, "ascending") for c in LATE.sort_by]))
    body = done.path.read_bytes()
    assert (done.size, done.sha256, done.md5) == (
        len(body),
        hashlib.sha256(body).hexdigest(),
        hashlib.md5(body, usedforsecurity=False).hexdigest(),
    )


# In a process of its own, so that its RSS is the compaction's: four tables of a million rows,
# about 300 MB at the peak, which pyarrow's pool (mimalloc) kept after the compaction until told.
_MEASURE = """
import sys, tempfile
from pathlib import Path
import numpy as np, pyarrow as pa
from schemas.datasets import DATASETS
from sinks.lifecycle import compact
def rss():
    lines = open("/proc/self/status").read().splitlines()
    return next(int(line.split()[1]) // 1024 for line in lines if line.startswith("VmRSS"))
late, n = DATASETS["late_points"], 1_000_000
def table(seed):
    g = np.random.default_rng(seed)
    columns = {
        "time": pa.array(g.integers(0, 1 << 50, n)).cast(pa.timestamp("ns", "UTC")),
        "metric_name": pa.array(np.char.add("m", g.integers(0, 1000, n).astype(str))),
        "series_id": pa.array(np.char.add("s", g.integers(0, 10**9, n).astype(str))),
        "reason": pa.array(["late"] * n),
        "points": pa.array(g.integers(0, 9, n)),
    }
    return pa.table(columns).cast(late.schema)
before = rss()
with tempfile.TemporaryDirectory() as folder:
    compact((table(seed) for seed in range(4)), late, Path(folder), 3)
print(rss() - before)
"""


def test_a_compaction_gives_its_buffers_back() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    grown_mb = int(run.stdout.strip())
    assert grown_mb < 200, f"{grown_mb} MB more after the compaction (about 300 MB when the pool keeps it)"

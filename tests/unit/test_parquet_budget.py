"""sinks/parquet.py: the writers of one worker never hold more than `buffer_bytes` together after a
write; the largest buffer is written first; every row lands in exactly one file, named by its
offsets, and a snapshot's state is the offset after the last row written."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from schemas.datasets import LOGS
from sinks.parquet import HOUR_NS, ParquetSink, files_of

START_NS = 1_790_000_000_000_000_000 // HOUR_NS * HOUR_NS


def logs(first: int, rows: int) -> pa.Table:
    """`rows` log records numbered from `first` (the number is the body), all in one hour."""
    columns = {
        "time": [START_NS + i for i in range(first, first + rows)],
        "observed_time": [START_NS + i for i in range(first, first + rows)],
        "service_name": ["svc"] * rows,
        "body": [str(i) for i in range(first, first + rows)],
    }
    return pa.Table.from_pydict(
        {name: columns.get(name) or [None] * rows for name in LOGS.schema.names}, schema=LOGS.schema
    )


def test_writers_of_a_worker_stay_under_the_budget_and_lose_nothing(tmp_path: Path) -> None:
    sources = [f"otlp_logs:{p}" for p in range(3)]
    chunk_bytes = logs(0, 100).nbytes
    sink = ParquetSink(tmp_path, sources, lambda _s: 0, 1 << 40, 1024, buffer_bytes=5 * chunk_bytes)
    writers = [sink.build_part("out", source, None) for source in sources]
    offsets, number, total = [0, 0, 0], 0, 0
    for step in range(30):
        part = (0, 0, 1, 2, 0)[step % 5]  # partition 0 gets most: it is the largest when over budget
        table = logs(number, 100)
        writers[part].write_batch([("logs", table, offsets[part], offsets[part] + 9)])
        offsets[part] += 10
        number, total = number + 100, total + 100
        assert sum(w.buffered_bytes for w in writers) <= 5 * chunk_bytes
    assert files_of(tmp_path, sources[0]), "partition 0 wrote before any snapshot"
    assert [w.snapshot() for w in writers] == offsets
    bodies = ds.dataset(tmp_path / "logs", format="parquet", partitioning="hive").to_table()["body"]
    assert sorted(int(b) for b in bodies.to_pylist()) == list(range(total))


def test_a_budget_larger_than_the_data_writes_only_at_the_snapshot(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, ["otlp_logs:0"], lambda _s: 0, 1 << 40, 1024, buffer_bytes=1 << 40)
    writer = sink.build_part("out", "otlp_logs:0", None)
    writer.write_batch([("logs", logs(0, 50), 0, 4), ("logs", logs(50, 50), 5, 9)])
    assert not files_of(tmp_path, "otlp_logs:0")
    assert writer.snapshot() == 10
    [(first, last, path)] = files_of(tmp_path, "otlp_logs:0")
    assert (first, last) == (0, 9) and path.name.startswith("otlp_logs-0-")

"""bench/stages.py: a py-spy sample counts for the stage of its innermost frame that names one."""

from __future__ import annotations

from pathlib import Path

from bench.stages import OTHER, stage_of, stage_samples

RUN = "<module> (bytewax/run.py:355)"
FLUSH = "snapshot (sinks/parquet.py:172);flush (sinks/parquet.py:183)"


def test_the_innermost_stage_wins() -> None:
    # a write inside a commit's flush is a write; the sort before it is concat/sort
    assert stage_of(f"{RUN};{FLUSH};write_atomically (sinks/parquet.py:79)") == "Parquet write"
    assert stage_of(f"{RUN};{FLUSH};split_by_hour (sinks/parquet.py:108)") == "concat/sort"
    assert stage_of(f"{RUN};{FLUSH}") == "commit"
    assert stage_of(f"{RUN};to_chunks (flows/ingest.py:42);flatten (schemas/flatten.py:141)") == "decode"
    assert stage_of(f"{RUN};next_batch (flows/kafka_batches.py:95)") == "poll"
    assert stage_of(RUN) == OTHER


def test_raw_file_counts_per_stage(tmp_path: Path) -> None:
    raw = tmp_path / "flow.txt"
    raw.write_text(
        f"{RUN};flatten (schemas/flatten.py:141) 7\n"
        f"{RUN};flatten (schemas/flatten.py:150) 3\n"
        f"{RUN} 5\n"
        "not a sample line\n"
    )
    counts = stage_samples(raw)
    assert counts == {"decode": 10, OTHER: 5}

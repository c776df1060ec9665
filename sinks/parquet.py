"""Exactly-once Parquet partitions.

Layout: `<root>/<dataset>/date=YYYY-MM-DD/hour=HH/<topic>-<partition>-<first>-<last>.parquet`.

There is one writer per Kafka source partition. It buffers the Arrow tables made from that
partition's records and writes them when the buffer passes `roll_bytes`, when the writers of one
bytewax worker hold more than `buffer_bytes` together (the largest writes first: this bounds
memory however many partitions a worker has and however long the commit interval), and at every
bytewax snapshot (epoch close); a file is named by the range of Kafka offsets its rows came from
and appears atomically (temp file, fsync, rename). The snapshot state is the next offset to write.
A full disk blocks the write until space is freed (sinks/disk_full.py): the epoch cannot close,
so nothing unwritten is committed, and a partial temp file is removed, never renamed.

On resume every file that starts at or after that offset is deleted first: its records are
replayed by the source, which resumes at the same offset. With no state (first start, or no
recovery at all) the source reads from the partition's earliest offset, so the files starting
there or later are deleted instead. Either way a replay rewrites rows, it never duplicates them.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from schemas.datasets import DATASETS, RANDOM_ID_COLUMNS, Dataset
from sinks.disk_full import when_space

log = logging.getLogger(__name__)
Chunk = tuple[str, pa.Table, int, int]  # (dataset name, rows, first and last Kafka offset they came from)
_FILE = re.compile(r"^(?P<source>.+-\d+)-(?P<first>\d{20})-(?P<last>\d{20})\.parquet$")


def partition_dir(root: Path, dataset: str, hour_start: int) -> Path:
    """The hive directory of the UTC hour starting at `hour_start` (ns since the epoch)."""
    stamp = pa.scalar(hour_start, pa.timestamp("ns", tz="UTC")).as_py()
    return root / dataset / f"date={stamp:%Y-%m-%d}" / f"hour={stamp:%H}"


@functools.cache
def _leaf_paths(schema: pa.Schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(random-id leaves, other leaves): Parquet leaf paths as Parquet spells them, nested included;
    a random id is a leaf named as one of RANDOM_ID_COLUMNS, also inside links."""
    buffer = io.BytesIO()
    pq.write_table(schema.empty_table(), buffer)
    leaves = pq.ParquetFile(buffer).schema
    paths = [leaves.column(i).path for i in range(len(leaves))]
    ids = tuple(path for path in paths if path.rsplit(".", 1)[-1] in RANDOM_ID_COLUMNS)
    return ids, tuple(path for path in paths if path not in ids)


def dictionary_columns(schema: pa.Schema) -> tuple[str, ...]:
    """Parquet leaf paths that get a dictionary: all but the random ids, where the writer built one
    per page only to fall back to plain (measured on bench.ingest's spans: 38.7 -> 38.2 B/span,
    logs 29.3 -> 28.0 B/record, and writes faster)."""
    return _leaf_paths(schema)[1]


@functools.cache
def statistics_columns(schema: pa.Schema) -> tuple[str, ...]:
    """Columns that get min/max statistics: the flat ones, which readers prune row groups by.
    Nothing prunes on a map's or a list's entries, and their statistics were about a tenth of the
    write's CPU on bench.ingest's spans (same bytes on disk); nor on the random ids, whose minimum
    and maximum span almost the whole id space in any row group of more than a few rows."""
    return tuple(f.name for f in schema if not pa.types.is_nested(f.type) and f.name not in RANDOM_ID_COLUMNS)


@functools.cache
def id_encodings(schema: pa.Schema) -> dict[str, str]:
    """The random ids as DELTA_LENGTH_BYTE_ARRAY: their lengths (all 32 or 16, or 0) shrink to almost
    nothing and zstd sees the hex digits alone; PLAIN puts a 4-byte length before each. bench.ingest's
    spans: 35.2 -> 32.2 B/span for the three ids (their entropy is 32 B), written in 0.31 -> 0.21 µs;
    a link's two ids 30.0 -> 24.2 B (entropy 24 B)."""
    return dict.fromkeys(_leaf_paths(schema)[0], "DELTA_LENGTH_BYTE_ARRAY")


def write_options(schema: pa.Schema, row_group_rows: int, compression_level: int | None) -> dict[str, Any]:
    """`pq.write_table`'s options for a dataset file, the sink's and compaction's alike."""
    return {
        "compression": "zstd",
        "compression_level": compression_level,
        "row_group_size": row_group_rows,
        "use_dictionary": list(dictionary_columns(schema)),
        "write_statistics": list(statistics_columns(schema)),
        "column_encoding": id_encodings(schema),
    }


def write_atomically(
    table: pa.Table, path: Path, row_group_rows: int, compression_level: int | None = None
) -> None:
    """Write then rename, so readers never see a partial file; fsync so a crash keeps what was renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as handle:
            pq.write_table(table, handle, **write_options(table.schema, row_group_rows, compression_level))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:  # a full disk, say: give back the space the partial file took
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


HOUR_NS = 3_600_000_000_000


def split_by_hour(table: pa.Table, dataset: Dataset) -> list[tuple[int, pa.Table]]:
    """(hour start in ns, rows of that hour sorted by the dataset's sort keys), per UTC hour present.

    One sort and zero-copy slices: a filter per hour copied every row once more. The hours are
    integer floors of the time column (UTC has no offsets: `floor_temporal` gave the same hours at
    about ten times the CPU), and a flush within one hour, the usual case, sorts without the hour key.
    """
    if not table.num_rows:
        return []
    # the time column has no nulls: flatten's time bounds make a dead letter of any such row
    hours = table[dataset.time_column].to_numpy().view(np.int64) // HOUR_NS * HOUR_NS
    sort_keys = [(column, "ascending") for column in dataset.sort_by]
    if hours.min() == hours.max():
        order = pc.sort_indices(table.select(list(dataset.sort_by)), sort_keys=sort_keys)
        # taken from the chunked table, column by column: combining the chunks first held a third
        # copy of the flush at its peak (bench/ingest.py), for about the same CPU
        return [(int(hours[0]), table.take(order))]
    keys = table.select(list(dataset.sort_by)).add_column(0, "hour", pa.array(hours))
    order = pc.sort_indices(keys, sort_keys=[("hour", "ascending"), *sort_keys])
    rows = table.take(order)
    in_order = hours[order.to_numpy()]
    starts = [0, *(np.flatnonzero(np.diff(in_order)) + 1).tolist(), len(in_order)]
    return [
        (int(in_order[start]), rows.slice(start, end - start)) for start, end in itertools.pairwise(starts)
    ]


def file_stem(source: str) -> str:
    """ "otlp_spans:3" -> "otlp_spans-3", the prefix of that source partition's files."""
    topic, partition = source.rsplit(":", 1)
    return f"{topic}-{partition}"


class _Budget:
    """The buffered bytes of the writers one bytewax worker runs, held under `limit` by writing out
    the largest buffer first (fewest, biggest files). One per worker thread: a writer is only ever
    touched by its worker, so no lock is needed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.writers: list[_Writer] = []

    def enforce(self) -> None:
        while sum(w.buffered_bytes for w in self.writers) > self.limit:
            max(self.writers, key=lambda w: w.buffered_bytes).flush()


class _Writer(StatefulSinkPartition[Chunk, int]):
    def __init__(
        self,
        root: Path,
        source: str,
        next_offset: int,
        roll_bytes: int,
        row_group_rows: int,
        budget: Callable[[], _Budget],
    ) -> None:
        self._root, self._stem = root, file_stem(source)
        self._next = next_offset
        self._roll_bytes, self._row_group_rows = roll_bytes, row_group_rows
        self._budget_of_thread = budget
        self._budget: _Budget | None = None  # joined at the first write, on the worker's own thread
        self._buffers: dict[str, list[pa.Table]] = defaultdict(list)
        self.buffered_bytes = 0
        self._first: int | None = None
        self._last = -1

    def write_batch(self, values: list[Chunk]) -> None:
        for dataset, table, first, last in values:
            self._buffers[dataset].append(table)
            self.buffered_bytes += table.nbytes
            self._first = first if self._first is None else self._first
            self._last = max(self._last, last)
        if self.buffered_bytes >= self._roll_bytes:
            self.flush()
        if self._budget is None:
            self._budget = self._budget_of_thread()
            self._budget.writers.append(self)
        self._budget.enforce()

    def snapshot(self) -> int:
        self.flush()
        return self._next

    def flush(self) -> None:
        if self._first is None:
            return
        name = f"{self._stem}-{self._first:020d}-{self._last:020d}.parquet"
        while self._buffers:  # each dataset's buffered tables are released once sorted: less peak RSS
            dataset, tables = self._buffers.popitem()
            for hour, rows in split_by_hour(pa.concat_tables(tables), DATASETS[dataset]):
                path = partition_dir(self._root, dataset, hour) / name
                when_space(functools.partial(write_atomically, rows, path, self._row_group_rows), path)
        self._next = self._last + 1
        self.buffered_bytes = 0
        self._first = None


def files_of(root: Path, source: str) -> list[tuple[int, int, Path]]:
    """(first offset, last offset, path) of every file written from one source partition."""
    stem = file_stem(source)
    found = []
    for path in root.glob(f"*/date=*/hour=*/{stem}-*.parquet"):
        match = _FILE.match(path.name)
        if match and match["source"] == stem:
            found.append((int(match["first"]), int(match["last"]), path))
    return found


class ParquetSink(FixedPartitionedSink[Chunk, int]):
    """Items are `("topic:partition", chunk)`; each source partition has its own writer."""

    def __init__(
        self,
        root: Path,
        sources: list[str],
        earliest_offset: Callable[[str], int],
        roll_bytes: int,
        row_group_rows: int,
        buffer_bytes: int,
    ) -> None:
        self._root = root
        self._sources = sorted(sources)  # bytewax indexes part_fn into the sorted global parts
        self._earliest_offset = earliest_offset
        self._roll_bytes, self._row_group_rows = roll_bytes, row_group_rows
        self._budgets = threading.local()  # one _Budget per bytewax worker thread
        self._buffer_bytes = buffer_bytes

    def _budget(self) -> _Budget:
        if not hasattr(self._budgets, "budget"):
            self._budgets.budget = _Budget(self._buffer_bytes)
        budget: _Budget = self._budgets.budget
        return budget

    def list_parts(self) -> list[str]:
        return self._sources

    def part_fn(self, item_key: str) -> int:
        return self._sources.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Writer:
        stem = file_stem(for_part)
        for temporary in self._root.glob(f"*/date=*/hour=*/.{stem}-*.parquet.tmp"):
            temporary.unlink(missing_ok=True)  # a write the last run did not finish
        replay_from = self._earliest_offset(for_part) if resume_state is None else resume_state
        stale, kept_overlap = [], 0
        for first, last, path in files_of(self._root, for_part):
            if first >= replay_from:
                stale.append(path)
            elif last >= replay_from:
                kept_overlap += 1
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.warning(
                "%s: removed %d files from offset %d on; they are replayed", for_part, len(stale), replay_from
            )
        if kept_overlap:  # only when retention cut through a file's range while no state was kept
            log.warning(
                "%s: %d files straddle offset %d and are kept; some rows may repeat",
                for_part,
                kept_overlap,
                replay_from,
            )
        return _Writer(
            self._root, for_part, replay_from, self._roll_bytes, self._row_group_rows, self._budget
        )

"""Each spans file's slowest rows again, so a minimum-duration search reads a few thousand rows a file.

A trace search with `min_ms` often matches a handful of spans an hour (2 s in the bench's day:
about 15 of 420,000), and spans files are sorted by service, name and time, so no row-group
statistics skip the rest: the search's first view decoded the duration of every span of every
hour it read (0.9 s at a calm load, 11 s at load 30). console/warmer.py writes, per spans file,
every row whose duration is at least its ROWS-th longest (ties included, all columns with the
hive ones); the threshold is kept in the copy's Parquet metadata. A search whose minimum is at or
above a file's threshold reads the copy instead of the file (`reader`): the same rows match, so
the same traces are found. Keyed by the file's path, size and mtime like console/trace_rows.py:
a rewritten file has no copy until the warmer's next pass and is read whole meanwhile.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Final

import polars as pl

from console.disk_bound import forget_gone, read_renewed, write_whole
from console.partials import Reader
from console.scan import file_key, scan_files, within
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.query import files_frame

ROOT: Final = "slow_spans"  # under state_dir
ROWS: Final = 4096  # the slowest rows kept per file: 1 % of an hour of the bench's day
_THRESHOLD: Final = "talonflow.min_duration_ns"  # Parquet metadata: every row at or above it is here
_EVERY_ROW: Final = -1  # the threshold of a file with fewer than ROWS timed rows: copied whole
_DURATION: Final = "duration_ns"


def _stored(config: TalonflowConfig, uri: str) -> Path:
    return config.state_dir / ROOT / f"{hashlib.sha1(file_key(uri).encode()).hexdigest()}.parquet"


def ensure(config: TalonflowConfig, uris: list[str]) -> int:
    """Writes the copy of each local spans file that has none yet; returns how many it wrote.
    Objects in MinIO are read as they are."""
    written = 0
    for uri in [u for u in uris if not u.startswith("s3://")]:
        copy = _stored(config, uri)
        if copy.exists():
            continue
        spans = files_frame(config, "spans", [uri], [])
        slowest = pl.col(_DURATION).drop_nulls().top_k(ROWS)
        least, timed = spans.select(slowest.min(), slowest.len().alias("n")).collect().row(0)
        threshold = int(least) if timed == ROWS else _EVERY_ROW
        slow = spans.filter(pl.col(_DURATION) >= threshold) if threshold != _EVERY_ROW else spans
        write_whole(copy, partial(slow.collect().write_parquet, metadata={_THRESHOLD: str(threshold)}))
        written += 1
    return written


def _threshold(copy: Path) -> int:
    return int(pl.read_parquet_metadata(copy)[_THRESHOLD])


def reader(config: TalonflowConfig, minimum_ns: float) -> Reader:
    """Reads for a query that only keeps spans of at least `minimum_ns`: each file's copy where
    it holds every such span, else the file (console/partials.py's `read`)."""

    def read(uris: list[str], window: TimeRange) -> pl.LazyFrame:
        parts = []
        for uri in uris:
            copy = None if uri.startswith("s3://") else _stored(config, uri)
            threshold = None if copy is None else read_renewed(copy, _threshold)
            if copy is not None and threshold is not None and threshold <= minimum_ns:
                parts.append(within(pl.scan_parquet(copy), "spans", window))
            else:
                parts.append(scan_files(config, "spans", [uri], window))
        return pl.concat(parts, how="vertical") if parts else scan_files(config, "spans", [], window)

    return read


def prune(config: TalonflowConfig, uris: list[str], before: float) -> int:
    """Removes the copies of files not among `uris` (all spans files, every tier) but those
    written after `before` (epoch s); returns how many went."""
    live = {_stored(config, u).name for u in uris}
    return forget_gone(config.state_dir / ROOT, "*.parquet", live, before)

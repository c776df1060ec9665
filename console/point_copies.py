"""Each metrics file's points again, narrow and sorted by series: a selector reads its series'
row groups and no attribute map.

A raw `query_range` over a day decoded every selected point's two attribute maps (resource and
point attributes: about half its time) so that the series could be told apart and labelled. The
series catalogue (console/series_catalogue.py) already knows each file's series sources (a hash
of the name, unit, type, scope and maps) with their labels; console/warmer.py writes, per metrics
file, a copy of its points with that hash in place of the maps (the point's row in the file, its
time, value, flags and histogram/summary columns), sorted by metric, service, source and time in
row groups of ROW_GROUP rows, so that Polars' row-group statistics skip the other series. Keyed
by the file's path, size and mtime like the catalogue: a rewritten file has no copy until the
warmer's next pass and is read whole meanwhile; a gone file's copy is pruned. Files of fewer than
ROW_GROUP rows (ingest's few-second commits before compaction) get none: a scan of its own would
cost more than their maps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import partial, reduce
from itertools import groupby
from operator import or_
from pathlib import Path
from typing import Final

import polars as pl
import pyarrow.parquet as pq

from console.disk_bound import forget_gone, read_renewed, write_whole
from console.scan import file_key, scan_files
from console.series_catalogue import ORDER, SOURCE, Presence, source_hash
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.datasets import METRICS
from schemas.prometheus_names import INPUT_COLUMNS, TIMESTAMP_MS
from talonflow.query import files_frame

# What names a metric: the catalogue's columns (its description too, for /api/v1/metadata).
CATALOGUE_COLUMNS = (
    "metric_name",
    "unit",
    "type",
    "temporality",
    "is_monotonic",
    "scope_name",
    "metric_description",
)
# What a series' names and labels follow from: its source in a file's series catalogue.
SOURCE_COLUMNS = (*CATALOGUE_COLUMNS, "service_name", "resource_attributes", "attributes")
# What the conversion reads of a point beyond its source and time: value, flags, histogram and summary.
POINT_COLUMNS: Final = tuple(c for c in INPUT_COLUMNS if c not in (*SOURCE_COLUMNS, "time"))

ROOT: Final = "point_copies"  # under state_dir
_FOLDER: Final = f"{ROOT}/polars-{pl.__version__}"  # the source hashes are Polars' (series_catalogue)
ROW_GROUP: Final = 16_384  # rows per row group: about 16 series-hours of a point every 3.5 s
_ROW: Final = "_row"  # a point's row in its file: which of two equal timestamps came first
_SORTED: Final = ("metric_name", "service_name", SOURCE, "time", _ROW)
# A file's rows and times rise by a stride within a series: delta-coded, `_row` takes 1 % of the
# bytes it takes plain (a copy then takes less than its file: 3.2 MB for a 4.3 MB hour of the bench's day).
_ENCODINGS: Final = {
    "use_dictionary": ["metric_name", "service_name", SOURCE],
    "column_encoding": {_ROW: "DELTA_BINARY_PACKED", "time": "DELTA_BINARY_PACKED"},
}
RUN, POSITION = "_run", "_position"  # `read`'s order: part of the read and file, then row within it
_FILES_BITS: Final = 32  # RUN is a part's number above these bits, its file's below
_PATH: Final = "_path"


_small: set[str] = set()  # keys (`file_key`) of files too small to copy: each one's metadata read once


def _name(key: str) -> str:
    """A copy's file name, from its file's `file_key`."""
    return f"{hashlib.sha1(key.encode()).hexdigest()}.parquet"


def _stored(config: TalonflowConfig, uri: str) -> Path:
    return config.state_dir / _FOLDER / _name(file_key(uri))


def copied(config: TalonflowConfig, uri: str) -> Path | None:
    """The file's copy, its mtime renewed (console/disk_bound.py); None when it has none."""
    if uri.startswith("s3://"):
        return None
    return read_renewed(_stored(config, uri), lambda path: path)


def ensure(config: TalonflowConfig, uris: list[str]) -> int:
    """Writes the copy of each local metrics file of ROW_GROUP rows or more that has none yet, one
    file at a time (a copy holds a whole file in memory); returns how many it wrote. Objects in
    MinIO are read as they are."""
    written = 0
    for uri in [u for u in uris if not u.startswith("s3://")]:
        copy, key = _stored(config, uri), file_key(uri)
        if key in _small or copy.exists():
            continue
        if pq.read_metadata(uri).num_rows < ROW_GROUP:
            _small.add(key)
            continue
        points = (
            files_frame(config, METRICS.name, [uri], [])
            .with_row_index(_ROW)
            .select(_ROW, source_hash(SOURCE_COLUMNS), "metric_name", "service_name", "time", *POINT_COLUMNS)
            .sort(_SORTED)
            .collect()
        )
        table = points.to_arrow()
        write_whole(
            copy, partial(pq.write_table, table, row_group_size=ROW_GROUP, compression="zstd", **_ENCODINGS)
        )
        written += 1
    return written


def prune(config: TalonflowConfig, uris: list[str], before: float) -> int:
    """Removes the copies of files not among `uris` (all metrics files, every tier) but those
    written after `before` (epoch s); returns how many went."""
    keys = {file_key(u) for u in uris if not u.startswith("s3://")}
    _small.intersection_update(keys)
    live = {_name(key) for key in keys}
    return forget_gone(config.state_dir / _FOLDER, "*.parquet", live, before)


def read(
    config: TalonflowConfig, found: Presence, chosen: pl.DataFrame, span: TimeRange, columns: Sequence[str]
) -> pl.DataFrame:
    """The points in the span of the chosen sources (rows of `found.sources`), as SOURCE,
    TIMESTAMP_MS and `columns` (of POINT_COLUMNS), with RUN and POSITION, which order them as
    the files' listing and rows do (a duplicate timestamp keeps the first). A copied file is read
    from its copy; consecutive files without one in one scan, filtered by name and service (which
    row-group statistics prune: the files are sorted by them), then by their sources' hash."""
    names, services = chosen["metric_name"].unique(), chosen["service_name"].unique()
    # Equalities, not is_in: Polars prunes row groups by statistics for these only (2.1).
    service = [pl.col("service_name") == s for s in services.drop_nulls()]
    service += [pl.col("service_name").is_null()] if services.has_nulls() else []
    same = reduce(or_, [pl.col("metric_name") == n for n in names]) & reduce(or_, service)
    # A Series: `is_in` of a literal list of 100 hashes took 10 times as long (Polars 2.1).
    wanted = pl.col(SOURCE).is_in(chosen[SOURCE].unique().implode())
    held = sorted(set(found.files.filter(pl.col(SOURCE).is_in(chosen[SOURCE].implode()))[ORDER].to_list()))
    copies = {i: path for i in held if (path := copied(config, found.uris[i])) is not None}
    start, end = span.start, span.end
    selected: list[str | pl.Expr] = [SOURCE, pl.col("time").dt.epoch("ms").alias(TIMESTAMP_MS), *columns]
    layout = (SOURCE, TIMESTAMP_MS, *columns)  # each part's columns in one order, for the concatenation
    parts = []
    for part, (is_copy, run) in enumerate(groupby(held, key=copies.__contains__)):
        first_run = pl.lit(part << _FILES_BITS, pl.UInt64)
        if is_copy:
            # One scan of consecutive copies (a third faster than a scan each: Polars reads them in
            # parallel); their rows come file by file, so the path's runs number the files.
            frame = pl.scan_parquet([copies[i] for i in run], include_file_paths=_PATH).filter(
                same, wanted, pl.col("time") >= start, pl.col("time") < end
            )
            parts.append(
                frame.select(
                    *selected,
                    pl.col(_ROW).cast(pl.Int64).alias(POSITION),
                    (first_run + pl.col(_PATH).rle_id()).alias(RUN),
                )
            )
        else:
            frame = scan_files(config, METRICS.name, [found.uris[i] for i in run], span).filter(same)
            frame = frame.with_columns(source_hash(SOURCE_COLUMNS)).filter(wanted).select(*selected)
            parts.append(
                frame.with_row_index(POSITION).select(
                    *layout, pl.col(POSITION).cast(pl.Int64), first_run.alias(RUN)
                )
            )
    return pl.concat(parts, how="vertical").collect()

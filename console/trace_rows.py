"""Each spans file's rows again, sorted by trace: one trace's spans sit in one small row group.

Spans files are sorted by service, name and time (schemas/datasets.py), so a trace's five spans
lie across the whole file, and the trace index (console/trace_index.py) can only name the file:
reading one trace or session still decoded every row of its hour, 0.5-2 s of a waterfall or a
session replay. console/warmer.py writes, per spans file, a copy of its rows (with the hive
columns) keyed by the 32-bit hash of their trace id, and again under each trace id they link to,
sorted by that key in row groups of ROW_GROUP rows, so Polars' row-group statistics skip all but
the row group holding the trace; beside it, the file's (session hash, trace hash) pairs, so a
session reads the row groups of its traces. Keyed by the file's path, size and mtime like the
index: a rewritten file has no copy until the warmer's next pass, and is read whole meanwhile.
Hashes collide, so callers still filter by the ids themselves; a copy only narrows the read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from console.disk_bound import forget_gone, read_renewed, write_whole
from console.scan import file_key, scan_files, within
from console.timerange import TimeRange
from console.trace_index import SESSION_KEY, id_hash, id_hashes, save_array
from schemas.config import TalonflowConfig
from talonflow.compare import attribute
from talonflow.query import files_frame

ROOT: Final = "trace_rows"  # under state_dir
_FOLDER: Final = f"{ROOT}/polars-{pl.__version__}"  # the hashes are Polars' (console/trace_index.py)
ROW_GROUP: Final = 4096  # rows per row group: a trace's read decodes about this many
_KEY, _ROW = "_trace_key", "_row"  # the hash a row is filed under; its position in the file
_COPY, _SESSIONS = ".parquet", ".sessions.npy"


def _stored(config: TalonflowConfig, uri: str, suffix: str) -> Path:
    return config.state_dir / _FOLDER / f"{hashlib.sha1(file_key(uri).encode()).hexdigest()}{suffix}"


def _keyed(spans: pl.DataFrame) -> pl.DataFrame:
    """Every row under its trace's hash, and again under the hash of each trace it links to."""
    own = spans.with_columns(id_hash(pl.col("trace_id").fill_null("")).alias(_KEY))
    linked = (
        spans.with_columns(pl.col("links").list.eval(pl.element().struct.field("trace_id")).alias(_KEY))
        .explode(_KEY)
        .filter(pl.col(_KEY).is_not_null(), pl.col(_KEY) != "")
        .with_columns(id_hash(pl.col(_KEY)))
        .unique([_ROW, _KEY])
        .join(own.select(_ROW, _KEY), on=[_ROW, _KEY], how="anti")  # links within its own trace
    )
    return pl.concat([own, linked], how="vertical").sort(_KEY, _ROW)


def _session_pairs(spans: pl.DataFrame) -> np.ndarray:
    """The file's distinct (session hash, trace hash) pairs, sorted: a session's traces."""
    pairs = (
        spans.select(attribute(SESSION_KEY).alias("session"), pl.col("trace_id").fill_null("").alias("trace"))
        .filter(pl.col("session").is_not_null())
        .select(id_hash(pl.col("session")), id_hash(pl.col("trace")))
        .unique()
        .sort("session", "trace")
    )
    return pairs.to_numpy().astype(np.uint32).reshape(-1, 2)


def ensure(config: TalonflowConfig, uris: list[str]) -> int:
    """Writes the copy and the session pairs of each local spans file that has none yet (one file
    at a time: a copy holds a whole file in memory); returns how many it wrote. Objects in MinIO
    are read as they are."""
    written = 0
    for uri in [u for u in uris if not u.startswith("s3://")]:
        copy, sessions = _stored(config, uri, _COPY), _stored(config, uri, _SESSIONS)
        if copy.exists() and sessions.exists():
            continue
        spans = files_frame(config, "spans", [uri], []).with_row_index(_ROW).collect()
        write_whole(copy, partial(_keyed(spans).write_parquet, compression="zstd", row_group_size=ROW_GROUP))
        write_whole(sessions, partial(save_array, array=_session_pairs(spans)))
        written += 1
    return written


def prune(config: TalonflowConfig, uris: list[str], before: float) -> int:
    """Removes the copies of files not among `uris` (all spans files, every tier) but those
    written after `before` (epoch s); returns how many files went."""
    live = {_stored(config, u, suffix).name for u in uris for suffix in (_COPY, _SESSIONS)}
    return forget_gone(config.state_dir / _FOLDER, "*", live, before)


def _rows(
    config: TalonflowConfig, uris: list[str], window: TimeRange, keys_of: Callable[[str], np.ndarray | None]
) -> pl.LazyFrame:
    """The rows of the files filed under each file's keys (`keys_of(uri)`; None: no copy or
    pairs, so the whole file), in the files' order and each file's row order: a superset of
    the rows holding those ids."""
    parts = []
    for uri in uris:
        keys = keys_of(uri)
        copy = _stored(config, uri, _COPY)
        if keys is None or read_renewed(copy, Path.exists) is None:
            parts.append(scan_files(config, "spans", [uri], window))
            continue
        # A list, not a Series: only a literal list lets Polars skip row groups by their statistics.
        filed = pl.scan_parquet(copy).filter(pl.col(_KEY).is_in([int(k) for k in keys]))
        rows = filed.unique(_ROW, keep="first").sort(_ROW).drop(_ROW, _KEY)
        parts.append(within(rows, "spans", window))
    return pl.concat(parts, how="vertical") if parts else scan_files(config, "spans", [], window)


def trace_rows(
    config: TalonflowConfig, uris: list[str], held: Mapping[str, np.ndarray], window: TimeRange
) -> pl.LazyFrame:
    """The rows of the files that may belong to the traces or link to them (filter by id), each
    file's read narrowed to the trace hashes it holds (trace_index.hashes_held)."""
    return _rows(config, uris, window, lambda uri: held[uri])


def session_rows(config: TalonflowConfig, uris: list[str], session: str, window: TimeRange) -> pl.LazyFrame:
    """The rows of the files' traces that may hold the session's spans (filter by session.id)."""
    wanted = int(id_hashes([session])[0])

    def traces_of(uri: str) -> np.ndarray | None:
        pairs = read_renewed(_stored(config, uri, _SESSIONS), np.load)
        if pairs is None:
            return None
        first, last = np.searchsorted(pairs[:, 0], [wanted, wanted + 1])
        return np.asarray(pairs[first:last, 1])

    return _rows(config, uris, window, traces_of)

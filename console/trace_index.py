"""Which Parquet files hold a trace (or a session): per file, the sorted hashes of the ids in it.

Files are sorted by service, name and time (schemas/datasets.py), so a trace id's min/max
statistics prune nothing and opening one trace meant reading every file's `trace_id` column
(0.5 s per million spans). Each file's ids are read once, hashed to 32 bits and kept sorted in
memory and beside the state (`<state_dir>/trace_index/`), keyed by the file's path, size and
mtime: a file rewritten by a replay or by compaction has a new key, and a deleted one is no
longer listed, so the index is derived from the files alone and needs no exactly-once care of
its own. For spans the ids a span links to count too, so linked sub-agent traces are found the
same way. A hash that collides only makes one more file read (about one id in 4 billion).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from console.scan import file_key, files_in
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.compare import attribute
from talonflow.query import files_frame

_SEED: Final = 0x7A10  # any fixed seed: the hashes are stored, so they must not change between runs
_FOLDER: Final = f"trace_index/polars-{pl.__version__}"  # Polars' hash may change between versions
_cache: dict[str, np.ndarray] = {}
TRACE, SESSION = "trace", "session"  # what an index holds: trace ids, or `session.id` attributes
SESSION_KEY: Final = "session.id"


def _hashes(ids: pl.Expr) -> pl.Expr:
    return (ids.hash(_SEED) // (1 << 32)).cast(pl.UInt32)


def id_hashes(trace_ids: Iterable[str]) -> np.ndarray:
    return pl.select(_hashes(pl.lit(pl.Series(list(trace_ids), dtype=pl.String)))).to_series().to_numpy()


def _ids(frame: pl.LazyFrame, dataset: str, kind: str) -> pl.LazyFrame:
    """Every id of the kind a file's rows name: sessions by attribute; traces their own, and for
    spans those they link to."""
    if kind == SESSION:
        return frame.select(attribute(SESSION_KEY).alias("id"))
    own = frame.select(pl.col("trace_id").alias("id"))
    if dataset != "spans":
        return own
    linked = frame.select(pl.col("links").list.eval(pl.element().struct.field("trace_id")).alias("id"))
    return pl.concat([own, linked.explode("id")], how="vertical")


def _build(config: TalonflowConfig, dataset: str, kind: str, uris: list[str]) -> dict[str, np.ndarray]:
    """Reads the ids of files not indexed yet: one lazy scan per file, collected together."""
    per_file = [
        _ids(
            files_frame(config, dataset, *(([], [uri]) if uri.startswith("s3://") else ([uri], []))),
            dataset,
            kind,
        )
        .filter(pl.col("id").is_not_null(), pl.col("id") != "")
        .select(_hashes(pl.col("id")).alias("h"))
        .unique()
        for uri in uris
    ]
    return {uri: np.sort(f["h"].to_numpy()) for uri, f in zip(uris, pl.collect_all(per_file), strict=True)}


def _stored(folder: Path, key: str) -> Path:
    return folder / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"


def _store(folder: Path, key: str, hashes: np.ndarray) -> None:
    """Write then rename, so a crash never leaves a truncated index file behind."""
    path = _stored(folder, key)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        np.save(handle, hashes)
    os.replace(temporary, path)


def files_holding(
    config: TalonflowConfig, dataset: str, ids: Iterable[str], window: TimeRange, kind: str = TRACE
) -> list[str]:
    """The dataset's files in the window that may hold a row of one of the trace ids (or link to
    one), or with kind SESSION of the session ids."""
    wanted = np.unique(id_hashes(ids))
    keys = {u: f"{kind}:{file_key(u)}" for u in files_in(config, dataset, window)}
    folder = config.state_dir / _FOLDER / dataset / kind
    missing = []
    for uri, key in keys.items():
        if key in _cache:
            continue
        stored = _stored(folder, key)
        if stored.exists():
            _cache[key] = np.load(stored)
        else:
            missing.append(uri)
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        for uri, hashes in _build(config, dataset, kind, missing).items():
            _cache[keys[uri]] = hashes
            _store(folder, keys[uri], hashes)
    return [uri for uri, key in keys.items() if _holds(_cache[key], wanted)]


def _holds(hashes: np.ndarray, wanted: np.ndarray) -> bool:
    if not len(hashes):
        return False
    at = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
    return bool(np.any(hashes[at] == wanted))

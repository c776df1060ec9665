"""Which Parquet files hold a trace (or a session): per file, the sorted hashes of the ids in it.

Files are sorted by service, name and time (schemas/datasets.py), so a trace id's min/max
statistics prune nothing and opening one trace meant reading every file's `trace_id` column
(0.5 s per million spans). Each file's ids are read once, hashed to 32 bits and kept sorted in
memory and beside the state (`<state_dir>/trace_index/`), keyed by the file's path, size and
mtime: a file rewritten by a replay or by compaction has a new key, and a deleted one is no
longer listed, so the index is derived from the files alone and needs no exactly-once care of
its own. For spans the ids a span links to count too, so linked sub-agent traces are found the
same way. A hash that collides only makes one more file read (about one id in 4 billion).

Memory holds at most `console.index_cache` bytes of it, least recently used dropped first (the
disk keeps all); console/warmer.py builds it as files land and `prune` removes the entries of
files that are gone (moved to MinIO, compacted, expired).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl
from cachetools import LRUCache

from console.disk_bound import forget_gone, read_renewed, write_whole
from console.scan import file_key, files_in, of_dataset
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.compare import attribute
from talonflow.query import files_frame

_SEED: Final = 0x7A10  # any fixed seed: the hashes are stored, so they must not change between runs
ROOT: Final = "trace_index"  # under state_dir
_FOLDER: Final = f"{ROOT}/polars-{pl.__version__}"  # Polars' hash may change between versions
_cache: LRUCache[str, np.ndarray] = LRUCache(1)  # sized from the config on first use (_memory)
_lock = threading.Lock()  # cachetools' caches are not thread-safe: pages and console/warmer.py share it
TRACE, SESSION = "trace", "session"  # what an index holds: trace ids, or `session.id` attributes
SESSION_KEY: Final = "session.id"


def id_hash(ids: pl.Expr) -> pl.Expr:
    return (ids.hash(_SEED) // (1 << 32)).cast(pl.UInt32)


def id_hashes(trace_ids: Iterable[str]) -> np.ndarray:
    return pl.select(id_hash(pl.lit(pl.Series(list(trace_ids), dtype=pl.String)))).to_series().to_numpy()


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
        .select(id_hash(pl.col("id")).alias("h"))
        .unique()
        for uri in uris
    ]
    return {uri: np.sort(f["h"].to_numpy()) for uri, f in zip(uris, pl.collect_all(per_file), strict=True)}


def _memory(config: TalonflowConfig) -> LRUCache[str, np.ndarray]:
    """The in-memory index, bounded by the hashes' bytes (an empty file's entry counts one)."""
    global _cache
    with _lock:
        if _cache.maxsize != config.console.index_cache:
            _cache = LRUCache(config.console.index_cache, getsizeof=lambda hashes: max(hashes.nbytes, 1))
        return _cache


def _recall(cache: LRUCache[str, np.ndarray], key: str) -> np.ndarray | None:
    with _lock:
        return cache.get(key)


def _remember(cache: LRUCache[str, np.ndarray], key: str, hashes: np.ndarray) -> None:
    if hashes.nbytes <= cache.maxsize:  # a file's index larger than the whole cache stays on disk only
        with _lock:
            cache[key] = hashes


def _folder(config: TalonflowConfig, dataset: str, kind: str) -> Path:
    return config.state_dir / _FOLDER / dataset / kind


def _stored(folder: Path, key: str) -> Path:
    return folder / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save to exactly `path` (given a name, np.save would add `.npy` to a temporary one)."""
    with path.open("wb") as handle:
        np.save(handle, array)


def _store(folder: Path, key: str, hashes: np.ndarray) -> None:
    """Write then rename, so a crash never leaves a truncated index file behind."""
    write_whole(_stored(folder, key), partial(save_array, array=hashes))


def indexes(config: TalonflowConfig, dataset: str, kind: str, uris: list[str]) -> dict[str, np.ndarray]:
    """Each file's sorted hashes: from memory, else from disk, else read from the file and stored."""
    cache, folder = _memory(config), _folder(config, dataset, kind)
    keys = {u: f"{kind}:{file_key(u)}" for u in uris}
    found: dict[str, np.ndarray] = {}
    missing = []
    for uri, key in keys.items():
        if (hashes := _recall(cache, key)) is None:
            hashes = read_renewed(_stored(folder, key), np.load)
            if hashes is not None:
                _remember(cache, key, hashes)
        if hashes is None:
            missing.append(uri)
        else:
            found[uri] = hashes
    return found | _build_and_store(config, dataset, kind, {u: keys[u] for u in missing})


def ensure(config: TalonflowConfig, dataset: str, kind: str, uris: list[str]) -> int:
    """Builds the index of the files that have none stored yet, and loads nothing else: the
    warmer's part (loading a week of it every pass would churn the bounded memory). Returns how
    many files it indexed."""
    folder = _folder(config, dataset, kind)
    keys = {u: f"{kind}:{file_key(u)}" for u in uris}
    missing = {u: key for u, key in keys.items() if not _stored(folder, key).exists()}
    return len(_build_and_store(config, dataset, kind, missing))


def _build_and_store(
    config: TalonflowConfig, dataset: str, kind: str, keys: dict[str, str]
) -> dict[str, np.ndarray]:
    """Reads the files' ids (uri -> key), stores each file's hashes and keeps them in memory too:
    new files are the likeliest to be asked for."""
    if not keys:
        return {}
    folder = _folder(config, dataset, kind)
    folder.mkdir(parents=True, exist_ok=True)
    built = _build(config, dataset, kind, list(keys))
    cache = _memory(config)
    for uri, hashes in built.items():
        _store(folder, keys[uri], hashes)
        _remember(cache, keys[uri], hashes)
    return built


def files_holding(
    config: TalonflowConfig, dataset: str, ids: Iterable[str], window: TimeRange, kind: str = TRACE
) -> list[str]:
    """The dataset's files in the window that may hold a row of one of the trace ids (or link to
    one), or with kind SESSION of the session ids."""
    return list(hashes_held(config, dataset, ids, window, kind))


def hashes_held(
    config: TalonflowConfig, dataset: str, ids: Iterable[str], window: TimeRange, kind: str = TRACE
) -> dict[str, np.ndarray]:
    """`files_holding`'s files, each with the hashes of the ids it may hold (sorted): a search's
    100 traces lie about 4 to an hour file, and reading a file's copy (console/trace_rows.py) for
    all 100 decoded most of its row groups."""
    wanted = np.unique(id_hashes(ids))
    found = indexes(config, dataset, kind, files_in(config, dataset, window))
    held = {uri: _held(hashes, wanted) for uri, hashes in found.items()}
    return {uri: hashes for uri, hashes in held.items() if len(hashes)}


def prune(config: TalonflowConfig, dataset: str, kind: str, uris: list[str], before: float) -> int:
    """Forgets the index of every file not among `uris` (all the dataset's files, every tier), in
    memory and on disk; stored files newer than `before` (epoch s) are kept, as a request may just
    have indexed a file that landed after `uris` was listed. Returns how many stored files went."""
    live = {f"{kind}:{file_key(u)}" for u in uris}
    cache = _memory(config)
    with _lock:
        for key in [k for k in list(cache) if k.startswith(f"{kind}:") and of_dataset(k, dataset)]:
            if key not in live:
                cache.pop(key, None)
    kept = {_stored(Path(), key).name for key in live}
    return forget_gone(_folder(config, dataset, kind), "*.npy", kept, before)


def _held(hashes: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Those of the `wanted` hashes that the file's sorted `hashes` hold."""
    if not len(hashes):
        return wanted[:0]
    at = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
    return wanted[hashes[at] == wanted]

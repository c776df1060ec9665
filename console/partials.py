"""Aggregates over a day of spans in a few milliseconds: per-file partial results, kept in memory.

A page's aggregate that merges by sum, min or max (counts, sums, duration histograms) is
computed per Parquet file and merged. A file wholly inside the window (its hive hour is, and
ingest puts every row in the hour of its time column: sinks/parquet.py) is computed once and
kept, keyed by its path, size and mtime (objects by key, which carries their sha256), so a
file rewritten by a replay or a compaction is simply a new key; the window's partial first and
last hours are computed from their rows at each request. Repeated views of a day then read two
hours, not twenty-four. Each kept result is also written under `<state_dir>/partials/`, so a
restarted console reads it back instead of the file; console/warmer.py computes the pages'
default queries for files as they land, and `prune` removes the results of files that are gone.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from console.disk_bound import forget_gone, read_renewed, write_whole
from console.frame_memory import FrameMemory
from console.scan import file_hour, file_key, files_in, of_dataset, scan_files
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.compare import bucket_ms

Partial = Callable[[pl.LazyFrame], pl.LazyFrame]
Merge = Callable[[pl.DataFrame], pl.DataFrame]
# The rows of some of a dataset's files within a window: by default the files (scan_files); a
# narrower copy that holds every row the query can match (console/trace_rows.py) costs less.
Reader = Callable[[list[str], TimeRange], pl.LazyFrame]
# Partial results (file key, query name) kept in memory: `console.partial_cache` bytes
_memory: FrameMemory[tuple[str, str]] = FrameMemory(lambda config: config.console.partial_cache)
_RECENT: Final = 32  # queries the warmer also computes for new files: the last used over all files
_recent: OrderedDict[tuple[str, str], tuple[Partial, datetime]] = OrderedDict()  # -> query, since
_MERGED: Final = 64  # whole files' results merged per query and set of files (`aggregate`'s merges)
_merged: OrderedDict[tuple[str, ...], pl.DataFrame] = OrderedDict()
_lock = threading.Lock()  # pages (worker threads) and console/warmer.py share _recent and _merged
ROOT: Final = "partials"  # under state_dir
_FOLDER: Final = f"{ROOT}/polars-{pl.__version__}"  # Arrow IPC files as this Polars writes them


def _whole_hour_inside(uri: str, window: TimeRange) -> bool:
    hour = file_hour(uri)
    return hour is not None and window.start <= hour and hour + timedelta(hours=1) <= window.end


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _folder(config: TalonflowConfig, dataset: str) -> Path:
    return config.state_dir / _FOLDER / dataset


def _stored(config: TalonflowConfig, dataset: str, key: str, name: str) -> Path:
    """One folder per file (so a gone file's results go together), one IPC file per query."""
    return _folder(config, dataset) / _sha1(key) / f"{_sha1(name)}.arrow"


def _keep(config: TalonflowConfig, dataset: str, key: str, name: str, result: pl.DataFrame) -> None:
    """In memory, and on disk written then renamed (a crash never leaves half a file)."""
    _memory.keep(config, (key, name), result)
    write_whole(_stored(config, dataset, key, name), result.write_ipc)


def _recall(
    config: TalonflowConfig, dataset: str, keys: Mapping[str, str], names: list[str]
) -> dict[tuple[str, str], pl.DataFrame]:
    """The kept results of these files (uri -> file_key) for these queries, from memory or disk."""
    found = {}
    for uri, key in keys.items():
        for name in names:
            in_memory = _memory.get(config, (key, name))  # in use: the last to be dropped
            if in_memory is not None:
                found[(uri, name)] = in_memory
            elif (stored := read_renewed(_stored(config, dataset, key, name), pl.read_ipc)) is not None:
                found[(uri, name)] = stored
                _memory.keep(config, (key, name), stored)
    return found


def _known(
    config: TalonflowConfig, dataset: str, keys: Mapping[str, str], names: list[str]
) -> set[tuple[str, str]]:
    """The (uri, query) pairs with a kept result, in memory or on disk, none of them read: the
    warmer asks about every file at every pass, and reading each (as a page's `_recall` does) spent
    CPU, pushed the pages' results out of the memory cache and renewed every stored file's last use,
    so `console.disk_cache`'s bound could not tell the used ones."""
    found = {(uri, name) for uri, key in keys.items() for name in names if _memory.has(config, (key, name))}
    pairs = ((uri, key, name) for uri, key in keys.items() for name in names if (uri, name) not in found)
    return found | {(uri, name) for uri, key, name in pairs if _stored(config, dataset, key, name).exists()}


def _used(dataset: str, queries: Mapping[str, Partial], since: datetime) -> None:
    with _lock:
        for name, query in queries.items():
            _recent[(dataset, name)] = (query, since)
            _recent.move_to_end((dataset, name))
        while len(_recent) > _RECENT:
            _recent.popitem(last=False)


def recent(dataset: str) -> dict[str, tuple[Partial, datetime]]:
    """The dataset's queries pages ran last over all their files (not over chosen ones: a trace's
    summaries are about its own files), with the start of the range they last read: for
    console/warmer.py to compute for the files landing in that range from then on."""
    with _lock:
        return {name: kept for (used, name), kept in _recent.items() if used == dataset}


def aggregate(
    config: TalonflowConfig,
    dataset: str,
    window: TimeRange,
    queries: Mapping[str, Partial],
    files: list[str] | None = None,
    merges: Mapping[str, Merge] | None = None,
    read: Reader | None = None,
) -> dict[str, pl.DataFrame]:
    """Each query's partial results over the window's files (or those of `files` in it),
    concatenated: the caller merges them. With a `merges` entry for a query, its whole files'
    results come already merged by it, and that merge is kept for the same set of files: the
    whole hours of a range change once an hour, and merging a day of per-file results (420,000
    rows for Fleet) cost more than the rest of the page. A merge must be one the caller's own
    merge can merge again (sums, minimums, maximums per group).

    A query's name must say everything it depends on besides the rows (filters, cohorts, step);
    `read` must give each query the same result as the files would.
    """
    read = read or (lambda some, within: scan_files(config, dataset, some, within))
    uris = files_in(config, dataset, window)
    if files is not None:
        uris = [u for u in uris if u in set(files)]
    else:
        _used(dataset, queries, window.start)
    whole = [u for u in uris if _whole_hour_inside(u, window)]
    edges = sorted(set(uris) - set(whole))
    keys = {u: file_key(u) for u in whole}
    merges = merges or {}
    merged_as = {name: (name, *(keys[u] for u in whole)) for name in merges}
    with _lock:
        premerged = {name: _merged[key] for name, key in merged_as.items() if key in _merged}
    unmerged = [name for name in queries if name not in premerged]
    kept = _recall(config, dataset, keys, unmerged)
    missing = [(u, name) for u in whole for name in unmerged if (u, name) not in kept]
    work = [queries[name](read([u], window)) for u, name in missing]
    live = {name: query(read(edges, window)) for name, query in queries.items()}
    results = pl.collect_all([*work, *live.values()])
    for (uri, name), result in zip(missing, results, strict=False):
        kept[(uri, name)] = result
        _keep(config, dataset, keys[uri], name, result)
    for name in [n for n in merges if n not in premerged] if whole else []:
        premerged[name] = merges[name](pl.concat([kept[(u, name)] for u in whole], how="vertical_relaxed"))
        with _lock:
            _merged[merged_as[name]] = premerged[name]
            while len(_merged) > _MERGED:
                _merged.popitem(last=False)
    return {
        name: pl.concat(
            [*([premerged[name]] if name in premerged else (kept[(u, name)] for u in whole)), result],
            how="vertical_relaxed",
        )
        for name, result in zip(live, results[len(missing) :], strict=True)
    }


def fill(config: TalonflowConfig, dataset: str, uris: list[str], queries: Mapping[str, Partial]) -> int:
    """Computes and keeps the results of `queries` for the files among `uris` whose hour is over
    and that have none yet (what a page would otherwise compute on its first view); returns how
    many it computed. A file of the current hour is still an edge of every range ending now."""
    now = datetime.now(UTC)
    hours = {u: h for u in uris if (h := file_hour(u)) is not None and h + timedelta(hours=1) <= now}
    keys = {u: file_key(u) for u in hours}
    kept = _known(config, dataset, keys, list(queries))
    missing = [(u, name) for u in hours for name in queries if (u, name) not in kept]
    windows = {u: TimeRange(h, h + timedelta(hours=1), None) for u, h in hours.items()}
    work = [queries[name](scan_files(config, dataset, [u], windows[u])) for u, name in missing]
    for (uri, name), result in zip(missing, pl.collect_all(work), strict=True):
        _keep(config, dataset, keys[uri], name, result)
    return len(missing)


def prune(config: TalonflowConfig, dataset: str, uris: list[str], before: float) -> int:
    """Forgets the results of every file not among `uris` (all the dataset's files, every tier), in
    memory and on disk; folders changed after `before` (epoch s) are kept, as a request may just
    have computed a file that landed after `uris` was listed. Returns for how many files."""
    live = {file_key(u) for u in uris}
    _memory.forget(config, lambda key: of_dataset(key[0], dataset) and key[0] not in live)
    with _lock:
        for merged in [k for k in _merged if any(of_dataset(f, dataset) and f not in live for f in k[1:])]:
            del _merged[merged]
    return forget_gone(_folder(config, dataset), "*", {_sha1(key) for key in live}, before)


def bucket_quantile(q: float, counts: str = "calls") -> pl.Expr:
    """In a group of duration buckets (talonflow.compare.duration_bucket) sorted by `bucket`: the
    middle of the bucket holding the nearest-rank q-quantile, within 0.27 % of the exact value."""
    timed = pl.col("bucket").is_not_null()
    rank = (q * pl.col(counts).filter(timed).sum()).ceil().clip(lower_bound=1)
    return bucket_ms().filter(timed).filter(pl.col(counts).filter(timed).cum_sum() >= rank).first()


def newest_first(
    config: TalonflowConfig,
    dataset: str,
    window: TimeRange,
    name: str,
    query: Partial,
    enough: int,
    read: Reader | None = None,
) -> pl.DataFrame:
    """`query` over the window's current hour, then the hour before, then the 2, 4, 8... hours
    before those, until its rows number `enough` or the window is read; the rows of every slice,
    newest slice first. Slices end on whole hours, so each file's result is kept (`aggregate`):
    `query` must give the newest rows of what it is given, and `name` say what it depends on.

    The lists that show the newest few hundred rows (traces, logs) read an hour or two instead
    of the day, and a filter that matches little reads the day once, then only the new hours.
    """
    found: list[pl.DataFrame] = []
    end, hours = window.end, 1
    start = end.replace(minute=0, second=0, microsecond=0)
    start = start if start < end else start - timedelta(hours=1)
    while True:
        start = max(start, window.start)
        slice_ = TimeRange(start, end, None)
        found.append(aggregate(config, dataset, slice_, {name: query}, read=read)[name])
        if sum(len(f) for f in found) >= enough or start <= window.start:
            return pl.concat(found, how="vertical_relaxed")
        end, start, hours = start, start - timedelta(hours=hours), hours * 2

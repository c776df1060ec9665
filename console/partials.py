"""Aggregates over a day of spans in a few milliseconds: per-file partial results, kept in memory.

A page's aggregate that merges by sum, min or max (counts, sums, duration histograms) is
computed per Parquet file and merged. A file wholly inside the window (its hive hour is, and
ingest puts every row in the hour of its time column: sinks/parquet.py) is computed once and
kept, keyed by its path, size and mtime (objects by key, which carries their sha256), so a
file rewritten by a replay or a compaction is simply a new key; the window's partial first and
last hours are computed from their rows at each request. Repeated views of a day then read two
hours, not twenty-four.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Final

import polars as pl

from console.scan import file_hour, file_key, files_in, scan_files
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.compare import bucket_ms

Partial = Callable[[pl.LazyFrame], pl.LazyFrame]
_KEPT: Final = 50_000  # partial results kept (file x query), the oldest dropped first
_cache: OrderedDict[tuple[str, str], pl.DataFrame] = OrderedDict()


def _whole_hour_inside(uri: str, window: TimeRange) -> bool:
    hour = file_hour(uri)
    return hour is not None and window.start <= hour and hour + timedelta(hours=1) <= window.end


def aggregate(
    config: TalonflowConfig,
    dataset: str,
    window: TimeRange,
    queries: Mapping[str, Partial],
    files: list[str] | None = None,
) -> dict[str, pl.DataFrame]:
    """Each query's partial results over the window's files (or those of `files` in it),
    concatenated: the caller merges them.

    A query's name must say everything it depends on besides the rows (filters, cohorts, step).
    """
    uris = files_in(config, dataset, window)
    if files is not None:
        uris = [u for u in uris if u in set(files)]
    whole = [u for u in uris if _whole_hour_inside(u, window)]
    edges = sorted(set(uris) - set(whole))
    keys = {u: file_key(u) for u in whole}
    missing = [(u, name) for u in whole for name in queries if (keys[u], name) not in _cache]
    work = [queries[name](scan_files(config, dataset, [u], window)) for u, name in missing]
    live = {name: query(scan_files(config, dataset, edges, window)) for name, query in queries.items()}
    results = pl.collect_all([*work, *live.values()])
    fresh = dict(zip(missing, results, strict=False))
    merged = {}
    for name, result in zip(live, results[len(missing) :], strict=True):
        parts = [fresh[(u, name)] if (u, name) in fresh else _cache[(keys[u], name)] for u in whole]
        merged[name] = pl.concat([*parts, result], how="vertical_relaxed")
    for (uri, name), result in fresh.items():
        _cache[(keys[uri], name)] = result
        _cache.move_to_end((keys[uri], name))
    for key in [(keys[u], name) for u in whole for name in queries]:
        _cache.move_to_end(key)  # in use: the last to be dropped
    while len(_cache) > _KEPT:
        _cache.popitem(last=False)
    return merged


def bucket_quantile(q: float, counts: str = "calls") -> pl.Expr:
    """In a group of duration buckets (talonflow.compare.duration_bucket) sorted by `bucket`: the
    middle of the bucket holding the nearest-rank q-quantile, within 0.27 % of the exact value."""
    timed = pl.col("bucket").is_not_null()
    rank = (q * pl.col(counts).filter(timed).sum()).ceil().clip(lower_bound=1)
    return bucket_ms().filter(timed).filter(pl.col(counts).filter(timed).cum_sum() >= rank).first()


def newest_first(
    config: TalonflowConfig, dataset: str, window: TimeRange, name: str, query: Partial, enough: int
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
        found.append(aggregate(config, dataset, TimeRange(start, end, None), {name: query})[name])
        if sum(len(f) for f in found) >= enough or start <= window.start:
            return pl.concat(found, how="vertical_relaxed")
        end, start, hours = start, start - timedelta(hours=hours), hours * 2

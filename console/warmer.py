"""Builds the console's per-file caches in the background as files land, so that views find them built.

A page's first view used to build the trace index (console/trace_index.py) and the partial
aggregates (console/partials.py) of every file in its range: seconds on a day of data. The
console process runs one `Warmer` thread instead: at start-up and every `console.warm_interval`
it indexes the spans (trace and session ids) and logs (trace ids) of the last
`console.warm_lookback` and writes each spans file's rows sorted by trace
(console/trace_rows.py) and its slowest rows (console/slow_spans.py), computes the partials of
the queries the pages open on (Fleet's RED and tokens, the unfiltered trace and log lists, the
counts of each service.version a comparison reads) and of the last ones pages ran (a Service
page, a comparison, a filtered list: `partials.recent`) for every file whose hour is over, builds the
series catalogues query_range reads first (console/series_catalogue.py: of metrics and rollups_1m
files, the attribute maps of a day took a cold query_range 10-116 s) and each metrics file's
narrow copy of its points (console/point_copies.py), and forgets what it kept for
files that are gone (moved to MinIO, compacted, expired) and the query_range hours no one has
read for a day (console/query_results.py). The caches are on disk under
`state_dir`, so a restarted console starts warm; a request builds only what landed since the last
pass. They take at most `console.disk_cache` bytes there: a pass stops building at the bound and
then removes the least recently used files over it. Polars releases the GIL, so pages keep
answering while a pass runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from console import (
    cohorts,
    disk_bound,
    fleet,
    logs,
    metric_store,
    partials,
    point_copies,
    query_results,
    rollup_store,
    series_catalogue,
    slow_spans,
    trace_index,
    trace_rows,
    traces,
)
from console.partials import Partial
from console.scan import file_hour, files_in
from console.series_catalogue import Kind
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.datasets import METRICS
from talonflow.query import dataset_files

BATCH: Final = 16  # files per Polars call, newest first: memory stays bounded on a week of small files
_UNDATED: Final = datetime.min.replace(tzinfo=UTC)  # a file outside the hive layout: last
INDEXES = {"spans": (trace_index.TRACE, trace_index.SESSION), "logs": (trace_index.TRACE,)}
CATALOGUES: Final[dict[str, tuple[Kind, ...]]] = {  # what query_range reads of each file first
    METRICS.name: metric_store.BUILT_AHEAD,
    rollup_store.ROLLUPS: rollup_store.BUILT_AHEAD,
}
CACHES: Final = (
    partials.ROOT,
    point_copies.ROOT,
    query_results.ROOT,
    series_catalogue.ROOT,
    trace_index.ROOT,
    trace_rows.ROOT,
    slow_spans.ROOT,
)  # under state_dir, bounded
_log = logging.getLogger("console.warmer")


def default_partials() -> dict[str, dict[str, Partial]]:
    """Per dataset, the partials every console computes first: the pages people open on."""
    search, first_matches = traces.search_query({})
    compared = [cohorts.value_queries(key, None, None) for key in cohorts.WARM_ATTRIBUTES]
    spans = {fleet.RED: fleet.red_partial, fleet.TOKENS: fleet.tokens_partial, search: first_matches}
    return {
        "spans": {**spans, **{name: query for queries in compared for name, query in queries.items()}},
        "logs": {logs.lines_name({}): logs.newest_lines([])},
    }


@dataclass(frozen=True)
class Pass:
    """What one pass did: files looked at, indexes built, partial results computed, series
    catalogues and point copies built, files forgotten, cache files removed for the disk bound,
    seconds."""

    files: int
    indexed: int
    computed: int
    catalogued: int
    forgotten: int
    evicted: int
    seconds: float


def warm_once(
    config: TalonflowConfig, before: float | None = None, datasets: Collection[str] | None = None
) -> Pass:
    """One pass over every dataset the pages and query_range read ahead: build what is missing,
    newest files first, while the caches take less than `console.disk_cache`; forget what is gone
    (but what was stored after `before`, epoch s, by default the pass's start: a request may have
    just built it for a file that landed after the pass listed the files); then remove the least
    recently used cache files over the bound (console/disk_bound.py). `datasets` limits the pass
    to those (bench/console.py times query_range's part alone)."""
    started, clock = time.time() if before is None else before, time.perf_counter()
    now = datetime.now(UTC)
    window = TimeRange(now - timedelta(seconds=config.console.warm_lookback), now, None)
    roots = [config.state_dir / cache for cache in CACHES]
    limit = config.console.disk_cache
    defaults_of = default_partials()
    files = indexed = computed = catalogued = forgotten = 0
    full = disk_bound.usage(roots) >= limit
    for dataset in [d for d in [*defaults_of, *CATALOGUES] if datasets is None or d in datasets]:
        recent = sorted(
            files_in(config, dataset, window), key=lambda u: file_hour(u) or _UNDATED, reverse=True
        )
        defaults = defaults_of.get(dataset, {})
        used = {name: kept for name, kept in partials.recent(dataset).items() if name not in defaults}
        for first in range(0, 0 if full else len(recent), BATCH):
            batch = recent[first : first + BATCH]
            built = indexed + computed + catalogued
            for kind in INDEXES.get(dataset, ()):
                indexed += trace_index.ensure(config, dataset, kind, batch)
            if dataset == "spans":
                indexed += trace_rows.ensure(config, batch) + slow_spans.ensure(config, batch)
            if dataset == METRICS.name:
                catalogued += point_copies.ensure(config, batch)
            computed += partials.fill(config, dataset, batch, defaults)
            for name, (query, since) in used.items():
                newer = [u for u in batch if (hour := file_hour(u)) is not None and hour >= since]
                computed += partials.fill(config, dataset, newer, {name: query})
            catalogued += series_catalogue.ensure(config, dataset, batch, CATALOGUES.get(dataset, ()))
            if indexed + computed + catalogued > built and disk_bound.usage(roots) >= limit:
                full = True  # the newest are built: older ones would only push them out
                break
        local, remote = dataset_files(config, dataset)
        everything = [*local, *remote]
        for kind in INDEXES.get(dataset, ()):
            forgotten += trace_index.prune(config, dataset, kind, everything, started)
        forgotten += partials.prune(config, dataset, everything, started)
        if dataset == "spans":
            forgotten += trace_rows.prune(config, everything, started)
            forgotten += slow_spans.prune(config, everything, started)
        if dataset == METRICS.name:
            forgotten += point_copies.prune(config, everything, started)
        forgotten += series_catalogue.prune(config, dataset, everything, started)
        files += len(recent)
    forgotten += query_results.forget(config) if datasets is None else 0
    evicted = disk_bound.bound(roots, limit)
    return Pass(files, indexed, computed, catalogued, forgotten, evicted, time.perf_counter() - clock)


class Warmer:
    """`warm_once` in a daemon thread every `console.warm_interval` until `stop`."""

    def __init__(self, config: TalonflowConfig) -> None:
        self._config = config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-warmer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Returns at once when a pass is running: the thread dies with the process."""
        self._stop.set()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = warm_once(self._config)
            except Exception:  # a file moved or deleted mid-read: the next pass sees the new listing
                _log.exception("building the console's caches failed; trying again in the next pass")
            else:
                if done.indexed or done.computed or done.catalogued or done.forgotten or done.evicted:
                    _log.info("caches built: %s", done)
            self._stop.wait(self._config.console.warm_interval)

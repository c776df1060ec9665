"""Builds the console's per-file caches in the background as files land, so that views find them built.

A page's first view used to build the trace index (console/trace_index.py) and the partial
aggregates (console/partials.py) of every file in its range: seconds on a day of data. The
console process runs one `Warmer` thread instead: at start-up and every `console.warm_interval`
it indexes the spans (trace and session ids) and logs (trace ids) of the last
`console.warm_lookback`, computes the partials of the queries the pages open on (Fleet's RED and
tokens, the unfiltered trace and log lists) and of the last ones pages ran (a Service page, a
comparison, a filtered list: `partials.recent`) for every file whose hour is over, and forgets what
it kept for files that are gone (moved to MinIO, compacted, expired). Both caches are on disk
under `state_dir`, so a restarted console starts warm; a request builds only what landed since
the last pass. Polars releases the GIL, so pages keep answering while a pass runs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from console import fleet, logs, partials, trace_index, traces
from console.partials import Partial
from console.scan import file_hour, files_in
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.query import dataset_files

BATCH: Final = 16  # files per Polars call, newest first: memory stays bounded on a week of small files
_UNDATED: Final = datetime.min.replace(tzinfo=UTC)  # a file outside the hive layout: last
INDEXES = {"spans": (trace_index.TRACE, trace_index.SESSION), "logs": (trace_index.TRACE,)}
_log = logging.getLogger("console.warmer")


def default_partials() -> dict[str, dict[str, Partial]]:
    """Per dataset, the partials every console computes first: the pages people open on."""
    search, first_matches = traces.search_query({})
    return {
        "spans": {fleet.RED: fleet.red_partial, fleet.TOKENS: fleet.tokens_partial, search: first_matches},
        "logs": {logs.lines_name({}): logs.newest_lines([])},
    }


@dataclass(frozen=True)
class Pass:
    """What one pass did: files looked at, indexes built, partial results computed, files
    forgotten, seconds."""

    files: int
    indexed: int
    computed: int
    forgotten: int
    seconds: float


def warm_once(config: TalonflowConfig, before: float | None = None) -> Pass:
    """One pass over every dataset the pages index: build what is missing, forget what is gone
    (but what was stored after `before`, epoch s, by default the pass's start: a request may have
    just built it for a file that landed after the pass listed the files)."""
    started, clock = time.time() if before is None else before, time.perf_counter()
    now = datetime.now(UTC)
    window = TimeRange(now - timedelta(seconds=config.console.warm_lookback), now, None)
    files = indexed = computed = forgotten = 0
    for dataset, defaults in default_partials().items():
        recent = sorted(
            files_in(config, dataset, window), key=lambda u: file_hour(u) or _UNDATED, reverse=True
        )
        used = {name: kept for name, kept in partials.recent(dataset).items() if name not in defaults}
        for first in range(0, len(recent), BATCH):
            batch = recent[first : first + BATCH]
            for kind in INDEXES[dataset]:
                indexed += trace_index.ensure(config, dataset, kind, batch)
            computed += partials.fill(config, dataset, batch, defaults)
            for name, (query, since) in used.items():
                newer = [u for u in batch if (hour := file_hour(u)) is not None and hour >= since]
                computed += partials.fill(config, dataset, newer, {name: query})
        local, remote = dataset_files(config, dataset)
        everything = [*local, *remote]
        for kind in INDEXES[dataset]:
            forgotten += trace_index.prune(config, dataset, kind, everything, started)
        forgotten += partials.prune(config, dataset, everything, started)
        files += len(recent)
    return Pass(files, indexed, computed, forgotten, time.perf_counter() - clock)


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
                if done.indexed or done.computed or done.forgotten:
                    _log.info("caches built: %s", done)
            self._stop.wait(self._config.console.warm_interval)

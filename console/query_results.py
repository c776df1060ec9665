"""Range query answers kept per UTC hour, as the query frontends of Cortex, Thanos and Mimir keep
them for Grafana: a dashboard asks the same queries at every refresh over a window that moves a
few seconds at a time, so all but its newest hour repeat, while a raw `rate` over a day of one
agent's series is a quarter of a second of work (README "The console").

A piece is the steps of one hour (start + k * step in [hour, hour + 1 h)). A PromQL step's value
depends only on its time and the samples within its reach (promql.ast.reach; subquery steps are
aligned to multiples of their own step, not to the query's start), so pieces evaluated apart
concatenate to the answer of the whole. A query pinned by `@`, or with steps over an hour, is
evaluated whole, as before.

A piece's key names the code that answers, the query, its step and phase (start mod step), the
lookback and subquery step, the store that reads it (raw points or rollups), the hour, and every
file of the hours within its reach (path, size and mtime; an object's key, which carries its
content's hash). A late point, a replay, a compaction or a move to another tier makes another
file, so another key: nothing needs invalidating. Hours whose reach ends within
`console.results_freshness` of now change with every ingest commit: they are evaluated, never
kept. Pieces are kept in memory (`console.results_cache` bytes, least recently used first out; 0
turns this off) and on disk under
state_dir (within `console.disk_cache` with the other caches, forgotten when unread for UNUSED_S),
so a restarted console answers from them. Hand-written: the frontends above are Go services in
front of Prometheus, not a library.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from console.disk_bound import forget_gone, read_renewed, write_whole
from console.frame_memory import FrameMemory
from console.metric_store import MetricStore, window
from console.rollup_store import ROLLUPS, RollupMetricStore
from console.scan import file_hour, file_key, files_in
from promql import DEFAULT_LOOKBACK_MS, Matrix, Series, format_labels, parse, range_query
from promql.ast import reach
from schemas.config import TalonflowConfig
from schemas.datasets import METRICS
from schemas.prometheus_names import LABEL, LABELS, RESULT_SCHEMA, SERIES, TIMESTAMP_MS, VALUE

HOUR_MS: Final = 3_600_000
UNUSED_S: Final = 86_400.0  # a piece unread this long is forgotten: its dashboard has moved on
ROOT: Final = "query_results"  # under state_dir
_SERIES_INDEX, _HOUR = "_series_index", "_hour"
_EMPTY: Final = pl.DataFrame(schema=RESULT_SCHEMA)
_log = logging.getLogger(__name__)
_memory: FrameMemory[str] = FrameMemory(lambda config: config.console.results_cache)


@cache
def _code() -> str:
    """What answers: the sources of the engine, the stores, the schemas and the file listing, and
    Polars' version, so that an upgrade never serves a piece an older talonflow computed."""
    digest = hashlib.sha1(pl.__version__.encode())
    root = Path(__file__).resolve().parent.parent
    for package in ("promql", "console", "schemas", "talonflow"):
        for path in sorted((root / package).glob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def answer(
    config: TalonflowConfig,
    query: str,
    start: int,
    end: int,
    step: int,
    store: MetricStore,
    subquery_step: int,
    deadline: float | None = None,
) -> Matrix:
    """`range_query` of the query with the store, its kept hours read instead of evaluated;
    `deadline` (time.monotonic()) bounds the evaluations as `timeout_s` does one."""
    node = parse(query)

    def evaluate(first: int, last: int) -> Matrix:
        timeout = None if deadline is None else deadline - time.monotonic()
        return range_query(node, first, last, step, store, subquery_step_ms=subquery_step, timeout_s=timeout)

    reached = reach(node, DEFAULT_LOOKBACK_MS)
    if reached is None or step > HOUR_MS or not config.console.results_cache:
        return evaluate(start, end)
    last = start + (end - start) // step * step
    hours = list(range(start - start % HOUR_MS, last + 1, HOUR_MS))
    fresh = time.time() * 1000 - config.console.results_freshness * 1000
    kept = [h for h in hours if h + HOUR_MS + reached[1] <= fresh]
    try:
        keys = _keys(config, query, (step, start % step, subquery_step), store, kept, reached)
    except FileNotFoundError:  # a file compacted or moved while listed: answered whole this time
        return evaluate(start, end)
    pieces = {h: found for h in kept if (found := _read(config, keys[h])) is not None}
    for run in _runs([h for h in hours if h not in pieces]):
        first, through = _first_step(run[0], start, step), _last_step(run[-1], start, step)
        if run[0] not in keys:
            first = max(first, start)
        if run[-1] not in keys:
            through = min(through, last)
        evaluated = _hours(evaluate(first, through) if first <= through else Matrix([]), run)
        for hour in run:
            pieces[hour] = evaluated[hour]
            if hour in keys:
                _write(config, keys[hour], evaluated[hour])
    return _merged([pieces[h] for h in hours], start, last)


def forget(config: TalonflowConfig) -> int:
    """Removes the pieces unread for UNUSED_S (console/warmer.py's pass); returns how many went."""
    folder = config.state_dir / ROOT
    return forget_gone(folder, "*.arrow", set(), time.time() - UNUSED_S) if folder.exists() else 0


def _first_step(hour: int, start: int, step: int) -> int:
    """The first time at or after `hour` on the query's grid of steps."""
    return hour + (start - hour) % step


def _last_step(hour: int, start: int, step: int) -> int:
    """The last time before the hour's end on the query's grid of steps."""
    end = hour + HOUR_MS - 1
    return end - (end - start) % step


def _runs(hours: list[int]) -> Iterator[list[int]]:
    """Consecutive hours together: each run is one evaluation."""
    run: list[int] = []
    for hour in hours:
        if run and hour != run[-1] + HOUR_MS:
            yield run
            run = []
        run.append(hour)
    if run:
        yield run


def _keys(
    config: TalonflowConfig,
    query: str,
    grid: tuple[int, int, int],
    store: MetricStore,
    kept: list[int],
    reached: tuple[int, int],
) -> dict[int, str]:
    """Each kept hour's key (see the module's docstring)."""
    if not kept:
        return {}
    back, ahead = reached
    span = window(kept[0] - back, kept[-1] + HOUR_MS + ahead)
    datasets = [METRICS.name, ROLLUPS] if isinstance(store, RollupMetricStore) else [METRICS.name]
    held: dict[int | None, list[str]] = {}  # file keys by their hour (ms); None: a file of no hour
    for uri in [uri for dataset in datasets for uri in files_in(config, dataset, span)]:
        at = file_hour(uri)
        held.setdefault(None if at is None else int(at.timestamp() * 1000), []).append(file_key(uri))
    prefix = f"{_code()}\n{query}\n{grid}\n{DEFAULT_LOOKBACK_MS}\n{type(store).__name__}\n"
    keys = {}
    for hour in kept:
        first = hour - back - (hour - back) % HOUR_MS  # the hour files holding the reach's first ms
        read = range(first, hour + HOUR_MS + ahead, HOUR_MS)
        files = sorted(key for at in [None, *read] for key in held.get(at, []))
        text = prefix + f"{hour}\n" + "\n".join(files)
        keys[hour] = hashlib.sha1(text.encode()).hexdigest()
    return keys


def _path(config: TalonflowConfig, key: str) -> Path:
    return config.state_dir / ROOT / f"{key}.arrow"


def _read(config: TalonflowConfig, key: str) -> pl.DataFrame | None:
    """A kept piece: from memory, else from disk (then kept in memory too)."""
    found = _memory.get(config, key)
    if found is None:
        path = _path(config, key)
        try:
            found = read_renewed(path, pl.read_ipc)
        except (OSError, pl.exceptions.PolarsError) as err:  # damaged on disk: evaluated again
            _log.warning("query_results: %s unreadable (%s); evaluating its hour again", path, err)
            path.unlink(missing_ok=True)
            return None
        if found is not None:
            _memory.keep(config, key, found)
    return found


def _write(config: TalonflowConfig, key: str, piece: pl.DataFrame) -> None:
    """Kept in memory and on disk (written then renamed: a crash leaves no half piece; the same
    piece written by two requests at once is renamed twice, whole both times). A failed write is
    logged: the answer does not depend on it."""
    _memory.keep(config, key, piece)
    path = _path(config, key)
    try:
        write_whole(path, piece.write_ipc)
    except OSError as err:  # a full or read-only disk costs the next restart this piece, not the answer
        _log.warning("query_results: %s not written (%s)", path, err)


def _hours(matrix: Matrix, hours: list[int]) -> dict[int, pl.DataFrame]:
    """An evaluated run split into its hours' pieces (RESULT_SCHEMA); an hour without samples has
    an empty one."""
    pieces = dict.fromkeys(hours, _EMPTY)
    if not matrix.series:
        return pieces
    count = len(matrix.series)
    timestamps = np.concatenate([s.timestamps for s in matrix.series]).astype(np.int64)
    samples = pl.DataFrame(
        {
            _SERIES_INDEX: np.repeat(np.arange(count), [len(s.timestamps) for s in matrix.series]),
            _HOUR: timestamps - timestamps % HOUR_MS,
            TIMESTAMP_MS: timestamps,
            VALUE: np.concatenate([s.values for s in matrix.series]).astype(np.float64),
        }
    )
    names = pl.DataFrame(
        {
            _SERIES_INDEX: np.arange(count),
            SERIES: [format_labels(s.labels) for s in matrix.series],
            LABELS: pl.Series([[{"name": n, "value": v} for n, v in s.labels] for s in matrix.series]),
        },
        schema_overrides={LABELS: pl.List(LABEL)},
    )
    grouped = samples.group_by(_HOUR, _SERIES_INDEX, maintain_order=True).agg(TIMESTAMP_MS, VALUE)
    named = grouped.join(names, on=_SERIES_INDEX, maintain_order="left").select(_HOUR, *RESULT_SCHEMA.names())
    for (hour,), piece in named.partition_by(_HOUR, as_dict=True, include_key=False).items():
        pieces[int(hour)] = piece
    return pieces


def _merged(pieces: list[pl.DataFrame], first: int, last: int) -> Matrix:
    """The pieces (in hour order) as one Matrix of the steps from first to last, series sorted by
    labels as range_query sorts them."""
    both = pl.concat(pieces, how="vertical")
    samples = (
        both.select(SERIES, TIMESTAMP_MS, VALUE)
        .explode(TIMESTAMP_MS, VALUE)
        .filter(pl.col(TIMESTAMP_MS).is_between(first, last))
        .sort(SERIES, maintain_order=True)  # stable: each series' hours stay in order
    )
    if samples.is_empty():
        return Matrix([])
    texts = samples[SERIES]
    starts = np.flatnonzero(np.concatenate(([True], (texts[1:] != texts[:-1]).to_numpy())))
    ends = np.append(starts[1:], len(texts))
    labels_of = dict(both.unique(SERIES, keep="first").select(SERIES, LABELS).iter_rows())
    timestamps, values = samples[TIMESTAMP_MS].to_numpy(), samples[VALUE].to_numpy()
    series = [
        Series(
            tuple((label["name"], label["value"]) for label in labels_of[texts[int(i)]]),
            timestamps[i:j],
            values[i:j],
        )
        for i, j in zip(starts, ends, strict=True)
    ]
    return Matrix(sorted(series, key=lambda s: s.labels))

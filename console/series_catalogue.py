"""Which series each Parquet file holds, with their Prometheus labels, so that a selector's label
matchers choose the points to read before any point is read.

A file's catalogue is one row per series source (a hash of everything the series' names and
labels follow from) with the source's columns, its first and last time and its Prometheus labels
(schemas/prometheus_names.py converts one synthetic point per source, so the labels are exactly
the conversion's). It is computed once from the file's name and attribute columns, never its
values, and kept in memory keyed by the file's path, size and mtime (console/scan.py's
`file_key`): a file rewritten by a replay or a compaction is a new key. They are also stored
beside the state (`<state_dir>/series_catalogue/polars-<version>/<dataset>/`, a folder per file,
the version since Polars' hash may change), so a restarted console reads them instead of the
files' attribute maps. console/warmer.py builds them as files land (`ensure`) and forgets those
of files that are gone (`prune`).

Matching is conservative where the catalogue cannot know: `le` and `quantile` labels come from
each histogram or summary point, so matchers on them do not prune here; the series storage
applies every matcher exactly afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from console.disk_bound import forget_gone, read_renewed, write_whole
from console.frame_memory import FrameMemory
from console.scan import file_key, files_in
from console.timerange import TimeRange
from promql.ast import Matcher
from schemas.config import TalonflowConfig
from schemas.datasets import METRICS_SCHEMA
from schemas.prometheus_names import (
    INPUT_COLUMNS,
    LABEL,
    LABELS,
    NAME,
    TARGET_INFO,
    TIMESTAMP_MS,
    names_of,
    prometheus_series,
)
from talonflow.query import files_frame

SOURCE: Final = "_source"  # a series source's hash: equal for equal sources under one Polars version
FILE: Final = "_file"
FIRST_MS, LAST_MS = "_first_ms", "_last_ms"
INFO: Final = "_info"  # the source's target_info labels; null when it has none
_SEED: Final = 0x7A11
_MAPS: Final = ("resource_attributes", "attributes")
_PER_POINT_LABELS: Final = ("le", "quantile")  # from the point, not the source: never pruned on
_CANDIDATE: Final = "_labels"
ROOT: Final = "series_catalogue"  # under state_dir
_FOLDER: Final = f"{ROOT}/polars-{pl.__version__}"  # Polars' hash may change between versions
# (dataset:kind, file_key) -> catalogue, in memory: `console.catalogue_cache` bytes
_memory: FrameMemory[tuple[str, str]] = FrameMemory(lambda config: config.console.catalogue_cache)

Build = Callable[[pl.LazyFrame], pl.LazyFrame]


def source_hash(columns: Sequence[str]) -> pl.Expr:
    """The hash of a row's series source, from the columns that name and label its series."""
    parts = [pl.col(c).map.entries() if c in _MAPS else pl.col(c) for c in columns]
    return pl.struct(*parts).hash(_SEED).alias(SOURCE)


def metrics_table(frame: pl.DataFrame) -> pa.Table:
    """A frame of some METRICS columns as a METRICS table of the conversion's INPUT_COLUMNS,
    the missing ones null."""
    table = frame.to_arrow()
    schema = pa.schema([METRICS_SCHEMA.field(name) for name in INPUT_COLUMNS])
    n = len(table)
    present = set(table.column_names)
    arrays = [table[f.name].cast(f.type) if f.name in present else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def with_labels(sources: pl.DataFrame) -> pl.DataFrame:
    """Sources (scope_name, resource_attributes, attributes) with their series' labels (LABELS,
    without `__name__`) and target_info's (INFO): one synthetic gauge point per source, at the
    source's row number as its time, goes through the one conversion every reader uses."""
    if sources.is_empty():
        return sources.with_columns(pl.lit(None, pl.List(LABEL)).alias(c) for c in (LABELS, INFO))
    probe = sources.select(
        pl.from_epoch(pl.int_range(pl.len(), dtype=pl.Int64), "ms").alias("time"),
        pl.lit("x").alias("metric_name"),
        pl.lit("gauge").alias("type"),
        pl.lit(0.0).alias("value"),
        "scope_name",
        *_MAPS,
    )
    series = prometheus_series(metrics_table(probe))
    info = pl.col(NAME) == TARGET_INFO
    labels = series.filter(~info).select(TIMESTAMP_MS, LABELS)
    infos = series.filter(info).select(TIMESTAMP_MS, pl.col(LABELS).alias(INFO))
    row = pl.int_range(pl.len(), dtype=pl.Int64).alias(TIMESTAMP_MS)
    return (
        sources.with_columns(row)
        .join(labels, on=TIMESTAMP_MS, how="left")
        .join(infos, on=TIMESTAMP_MS, how="left")
        .drop(TIMESTAMP_MS)
    )


def _stored(config: TalonflowConfig, key: tuple[str, str]) -> Path:
    """One folder per dataset and file (so a gone file's catalogues go together), one Parquet
    file per kind."""
    kind, file = key
    dataset = kind.partition(":")[0]
    return config.state_dir / _FOLDER / dataset / _sha1(file) / f"{_sha1(kind)}.parquet"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _load(
    config: TalonflowConfig, dataset: str, uris: list[str], build: Build, kind: str, labelled: bool
) -> dict[str, pl.DataFrame]:
    """Each file's catalogue of this kind: from memory, else from disk, else built from the file
    and stored (and kept in memory: recent files are the likeliest to be asked for)."""
    keys = {u: (f"{dataset}:{kind}", file_key(u)) for u in uris}
    found = {u: frame for u, key in keys.items() if (frame := _memory.get(config, key)) is not None}
    for uri in [u for u in uris if u not in found]:
        if (stored := read_renewed(_stored(config, keys[uri]), pl.read_parquet)) is not None:
            found[uri] = stored
    missing = [u for u in uris if u not in found]
    local = [(([], [u]) if u.startswith("s3://") else ([u], [])) for u in missing]
    built = pl.collect_all([build(files_frame(config, dataset, *files)) for files in local])
    for uri, frame in zip(missing, built, strict=True):
        found[uri] = with_labels(frame) if labelled else frame
        write_whole(_stored(config, keys[uri]), found[uri].write_parquet)
    for uri, key in keys.items():
        _memory.keep(config, key, found[uri])
    return found


def catalogue(
    config: TalonflowConfig, dataset: str, window: TimeRange, build: Build, kind: str, labelled: bool = True
) -> pl.DataFrame:
    """The window's series sources, one row per file and source (FILE says which file), each with
    its columns as `build` makes them of a file's rows (SOURCE, FIRST_MS, LAST_MS and any others),
    and with `labelled` their labels (`with_labels`). Built for the files not catalogued yet; `kind`
    names what `build` makes (the cache's key)."""
    uris = files_in(config, dataset, window)
    found = _load(config, dataset, uris, build, kind, labelled)
    parts = [found[u].with_columns(pl.lit(u).alias(FILE)) for u in uris]
    if not parts:
        return pl.DataFrame()
    start_ms = int(window.start.timestamp() * 1000)
    end_ms = int(window.end.timestamp() * 1000)
    return pl.concat(parts, how="vertical").filter(pl.col(FIRST_MS) < end_ms, pl.col(LAST_MS) >= start_ms)


class Presence(NamedTuple):
    """A window's series sources once each (`sources`: a file catalogue's rows without FIRST_MS
    and LAST_MS), and which files hold a point of each (`files`: ORDER, SOURCE), the files by
    their index in `uris` (the listing's order, which decides a duplicate timestamp's sample)."""

    uris: list[str]
    sources: pl.DataFrame
    files: pl.DataFrame


ORDER: Final = "_order"  # a file's index in Presence.uris
_SPAN: Final = (SOURCE, FIRST_MS, LAST_MS)


def presence(
    config: TalonflowConfig, dataset: str, window: TimeRange, build: Build, kind: str, labelled: bool = True
) -> Presence:
    """`catalogue` split in two, for many small files: every file holds nearly every series, so
    the wide rows (maps, labels) are taken once per source rather than concatenated per file, and
    only the narrow (file, source, span) rows are concatenated."""
    uris = files_in(config, dataset, window)
    found = _load(config, dataset, uris, build, kind, labelled)
    held = [(i, found[u]) for i, u in enumerate(uris) if not found[u].is_empty()]
    if not held:
        return Presence(uris, pl.DataFrame(), pl.DataFrame(schema={ORDER: pl.UInt32, SOURCE: pl.UInt64}))
    order = np.repeat(np.array([i for i, _ in held], dtype=np.uint32), [f.height for _, f in held])
    start_ms = int(window.start.timestamp() * 1000)
    end_ms = int(window.end.timestamp() * 1000)
    # Columns taken and concatenated as Series: a frame operation per file costs ~0.5 ms.
    narrow = pl.DataFrame([pl.Series(ORDER, order), *(pl.concat([f[c] for _, f in held]) for c in _SPAN)])
    files = narrow.filter(pl.col(FIRST_MS) < end_ms, pl.col(LAST_MS) >= start_ms).select(ORDER, SOURCE)
    first = files.unique(SOURCE, keep="first").group_by(ORDER).agg(SOURCE)
    frames = dict(held)
    parts = [
        frames[i]
        .filter(pl.col(SOURCE).is_in(pl.Series(sources, dtype=pl.UInt64).implode()))
        .drop(FIRST_MS, LAST_MS)
        for i, sources in first.iter_rows()
    ]
    return Presence(uris, pl.concat(parts, how="vertical") if parts else pl.DataFrame(), files)


class Kind(NamedTuple):
    """One catalogue a store reads (`catalogue`'s build, kind and labelled): what the warmer builds ahead."""

    build: Build
    kind: str
    labelled: bool


def ensure(config: TalonflowConfig, dataset: str, uris: list[str], kinds: Sequence[Kind]) -> int:
    """Builds the catalogues of the files that have none in memory or stored, and loads nothing
    else: console/warmer.py's part (loading a week of them every pass would churn the bounded
    memory). Returns how many it built."""
    built = 0
    for build, kind, labelled in kinds:
        missing = []
        for uri in uris:
            key = (f"{dataset}:{kind}", file_key(uri))
            if not _memory.has(config, key) and not _stored(config, key).exists():
                missing.append(uri)
        built += len(_load(config, dataset, missing, build, kind, labelled)) if missing else 0
    return built


def prune(config: TalonflowConfig, dataset: str, uris: list[str], before: float) -> int:
    """Forgets the catalogues of every file not among `uris` (all the dataset's files, every tier),
    in memory and on disk; folders changed after `before` (epoch s) are kept, as a request may just
    have built one for a file that landed after `uris` was listed. Returns for how many files."""
    live = {file_key(u) for u in uris}
    _memory.forget(config, lambda key: key[0].partition(":")[0] == dataset and key[1] not in live)
    return forget_gone(config.state_dir / _FOLDER / dataset, "*", {_sha1(key) for key in live}, before)


def matching(sources: pl.DataFrame, matchers: Sequence[Matcher]) -> pl.DataFrame:
    """The sources (with catalogue columns and labels) of which a series may satisfy every matcher."""
    if sources.is_empty():
        return sources
    names = names_of(
        sources.select("metric_name", "unit", "type", "temporality", "is_monotonic", "scope_name").unique()
    )
    candidates = (
        sources.select(SOURCE, "metric_name", LABELS, INFO).unique(SOURCE).join(names, on="metric_name")
    )
    candidates = candidates.select(
        SOURCE,
        NAME,
        pl.when(pl.col(NAME) == TARGET_INFO).then(pl.col(INFO)).otherwise(pl.col(LABELS)).alias(_CANDIDATE),
    ).filter(pl.col(_CANDIDATE).is_not_null())
    for matcher in matchers:
        if matcher.name in _PER_POINT_LABELS:
            continue
        value = _label_value(matcher.name)
        distinct = candidates.select(value.unique()).to_series().to_list()
        accepted = [v for v in distinct if matcher.matches(v)]
        candidates = candidates.filter(value.is_in(pl.Series(accepted, dtype=pl.String).implode()))
    return sources.filter(pl.col(SOURCE).is_in(candidates[SOURCE].unique().implode()))


def _label_value(name: str) -> pl.Expr:
    """A candidate's value of the label, "" when it has none (as Prometheus' matchers read it)."""
    if name == "__name__":
        return pl.col(NAME)
    found = pl.col(_CANDIDATE).list.eval(
        pl.element().filter(pl.element().struct.field("name") == name).struct.field("value")
    )
    return found.list.first().fill_null("")

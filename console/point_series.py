"""Raw points as Prometheus series, named and labelled from the series catalogue.

schemas/prometheus_names.py's conversion derives every point's labels from its attribute maps:
it hashes them per point again to find its series, then sorts and deduplicates samples that carry
their label lists (seconds for a day of one agent's points). The series catalogue
(console/series_catalogue.py) already holds each source's labels, made by that same conversion,
so gauges, counters and up-down sums (a name and labels per source) and target_info (its labels
per resource) are built here from the catalogue and the points' source hash, time, value and
flags alone: one sort of numbers. Histograms and summaries, whose `le` and `quantile` labels come
from each point, still go through the conversion, with their sources' maps joined back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

import numpy as np
import polars as pl

from console.point_copies import POINT_COLUMNS, POSITION, RUN, SOURCE_COLUMNS
from console.series_catalogue import INFO, SOURCE
from promql import STALE_NAN
from promql.ast import Matcher
from promql.values import Labels, format_labels
from schemas.prometheus_names import (
    BASE,
    COUNTER,
    GAUGE,
    KIND,
    LABEL,
    LABELS,
    NAME,
    SERIES,
    SERIES_SCHEMA,
    TARGET_INFO,
    TIMESTAMP_MS,
    UPDOWN,
    VALUE,
    SeriesStorage,
    prometheus_series,
    with_base_names,
)

_SCALARS: Final = (GAUGE, COUNTER, UPDOWN)
_INDEX: Final = "_series_index"  # a series' place in the order of series texts
_LAST: Final = np.iinfo(np.int64).max  # the conversion's samples rank after a source's on a tie
_STALE: Final = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE
_INFO: Final = "_info"  # a head's series is target_info (its value 1, never stale)
_EMPTY: Final = pl.DataFrame(
    schema={_INDEX: pl.Int64, "len": pl.UInt32, NAME: pl.String, LABELS: pl.List(LABEL), SERIES: pl.String}
)


def columns(chosen: pl.DataFrame) -> tuple[str, ...]:
    """The point columns the chosen sources' series need: value and flags, unless a histogram or
    summary is among them."""
    kinds = with_base_names(chosen.unique(SOURCE).select(SOURCE_COLUMNS))[KIND]
    return ("value", "flags") if kinds.is_in(_SCALARS).all() else POINT_COLUMNS


def _key(name: str, labels: list[dict[str, str]]) -> Labels:
    return tuple(sorted([("__name__", name), *((p["name"], p["value"]) for p in labels)]))


def _accepted(key: Labels, matchers: Sequence[Matcher]) -> bool:
    found = dict(key)
    return all(m.matches(found.get(m.name, "")) for m in matchers)


def _converted(points: pl.DataFrame, sources: pl.DataFrame) -> pl.DataFrame:
    """The conversion's series of histogram and summary points (target_info aside: `heads` has it),
    their sources' columns joined back, in the points' order."""
    rows = points.sort(RUN, POSITION).join(sources, on=SOURCE, maintain_order="left")
    frame = prometheus_series(rows.with_columns(pl.from_epoch(TIMESTAMP_MS, "ms").alias("time")))
    return frame.filter(pl.col(NAME) != TARGET_INFO)


def _heads(sources: pl.DataFrame, matchers: Sequence[Matcher]) -> pl.DataFrame:
    """The series of the sources' gauges, counters and up-down sums (with_base_names' rows) and of
    their target_info that may satisfy the matchers: SOURCE, NAME, LABELS, SERIES (the series as
    text, which orders them) and whether it is target_info."""
    no_labels = pl.lit([], pl.List(LABEL))
    heads = pl.concat(
        [
            sources.filter(pl.col(KIND).is_in(_SCALARS)).select(
                SOURCE,
                pl.col(BASE).alias(NAME),
                pl.col(LABELS).fill_null(no_labels),
                pl.lit(False).alias(_INFO),
            ),
            sources.filter(pl.col(INFO).is_not_null()).select(
                SOURCE, pl.lit(TARGET_INFO).alias(NAME), pl.col(INFO).alias(LABELS), pl.lit(True).alias(_INFO)
            ),
        ]
    )
    keys = [_key(name, labels) for name, labels in heads.select(NAME, LABELS).iter_rows()]
    accepted = pl.Series([_accepted(key, matchers) for key in keys], dtype=pl.Boolean)
    texts = pl.Series(SERIES, [format_labels(key) for key in keys], dtype=pl.String)
    return heads.with_columns(texts).filter(accepted)


def _labelled(
    points: pl.DataFrame, chosen: pl.DataFrame, matchers: Sequence[Matcher]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The samples (_INDEX, TIMESTAMP_MS, VALUE) of the series of the points (console/point_copies.py's
    `read` of the chosen sources) that may satisfy the matchers, as the conversion makes them of the
    same points: sorted by series text then time, a duplicate timestamp in a series keeping its first
    sample (RUN, POSITION); and each series' _INDEX, NAME, LABELS, SERIES and `len`, in that order."""
    sources = with_base_names(chosen.unique(SOURCE))
    heads = _heads(sources, matchers)
    converted = pl.DataFrame(schema={SERIES: pl.String, NAME: pl.String, LABELS: pl.List(LABEL)})
    samples = pl.DataFrame(schema={SERIES: pl.String, TIMESTAMP_MS: pl.Int64, VALUE: pl.Float64})
    rest = sources.filter(~pl.col(KIND).is_in(_SCALARS))[SOURCE]
    if not rest.is_empty():
        theirs = (
            chosen.unique(SOURCE).filter(pl.col(SOURCE).is_in(rest.implode())).select(SOURCE, *SOURCE_COLUMNS)
        )
        frame = _converted(points.filter(pl.col(SOURCE).is_in(rest.implode())), theirs)
        samples = frame.select(SERIES, TIMESTAMP_MS, VALUE)
        converted = frame.unique(SERIES).select(SERIES, NAME, LABELS)
    texts = set(heads[SERIES].to_list()) | set(converted[SERIES].to_list())
    if not texts:
        return samples.select(pl.lit(0, pl.Int64).alias(_INDEX), TIMESTAMP_MS, VALUE), _EMPTY
    index_of = pl.col(SERIES).replace_strict(
        {text: i for i, text in enumerate(sorted(texts))}, return_dtype=pl.Int64
    )
    chosen_heads = heads.with_columns(index_of.alias(_INDEX))
    scalar = ~chosen_heads[_INFO].to_numpy()
    head_sources, indexes = chosen_heads[SOURCE].to_numpy(), chosen_heads[_INDEX].to_numpy()
    read = _Samples(
        points[SOURCE].to_numpy(),  # the source until `_of_sources` gives the series
        points[TIMESTAMP_MS].to_numpy(),
        points["value"].cast(pl.Float64).to_numpy(),
        points[RUN].to_numpy().astype(np.int64),
        points[POSITION].to_numpy(),
    )
    stale = (points["flags"].fill_null(0).to_numpy() & _STALE) != 0
    parts = [
        _of_sources(
            read._replace(values=np.where(stale, STALE_NAN, read.values)),
            head_sources[scalar],
            indexes[scalar],
        ),
    ]
    if not scalar.all():
        parts.append(
            _of_sources(read._replace(values=np.ones(len(points))), head_sources[~scalar], indexes[~scalar])
        )
    last = np.full(len(samples), _LAST, dtype=np.int64)
    their_index = samples.select(index_of)[SERIES].to_numpy()
    parts.append(
        _Samples(their_index, samples[TIMESTAMP_MS].to_numpy(), samples[VALUE].to_numpy(), last, last)
    )
    parts = [part for part in parts if len(part.series)] or parts[:1]
    series, timestamps, values = _ordered(
        parts[0] if len(parts) == 1 else _Samples(*(np.concatenate(c) for c in zip(*parts, strict=True)))
    )
    named = pl.concat(
        [
            chosen_heads.select(_INDEX, NAME, LABELS, SERIES).unique(_INDEX),
            converted.select(index_of.alias(_INDEX), NAME, LABELS, SERIES),
        ]
    ).unique(_INDEX)
    starts = np.flatnonzero(np.diff(series, prepend=-1))  # `series` is sorted
    lengths = np.diff(starts, append=len(series))
    runs = pl.DataFrame({_INDEX: series[starts], "len": lengths}).join(
        named, on=_INDEX, maintain_order="left"
    )
    return pl.DataFrame({_INDEX: series, TIMESTAMP_MS: timestamps, VALUE: values}), runs


class _Samples(NamedTuple):
    """Samples as arrays: series index, time, value, and the order of the points they came from."""

    series: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray
    run: np.ndarray
    position: np.ndarray


def _of_sources(read: _Samples, sources: np.ndarray, indexes: np.ndarray) -> _Samples:
    """The points (`read`, their source as `series`) of these sources as samples of their series
    (an index per source)."""
    order = np.argsort(sources)
    known = sources[order]
    at = np.searchsorted(known, read.series).clip(max=max(len(known) - 1, 0))
    if not len(known):
        return _Samples(*(column[:0] for column in read))
    mine = known[at] == read.series
    series = indexes[order][at]
    if mine.all():  # the common case, all of the points: no copy of each column
        return read._replace(series=series)
    return _Samples(series[mine], *(column[mine] for column in read[1:]))


def _ordered(samples: _Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Series, time and value, sorted by series then time, a duplicate timestamp in a series
    keeping its first sample. A stable sort of one packed key (timsort: each file's series come in
    sorted runs) is several times faster than sorting four columns; only when timestamps repeat in
    a series do the points' run and position decide."""
    index, timestamps = samples.series, samples.timestamps
    if not len(index):
        return index, timestamps, samples.values
    if (runs := _in_runs(index, timestamps)) is not None:
        return runs[0], timestamps[runs[1]], samples.values[runs[1]]
    offset = (timestamps - timestamps.min()).astype(np.uint64)
    key = (index.astype(np.uint64) << np.uint64(42)) | offset
    order = np.argsort(key, kind="stable")
    ordered_key = key[order]
    repeated = ordered_key[1:] == ordered_key[:-1]
    unique = int(offset.max()) < 1 << 42 and int(index.max()) < 1 << 22  # 139 years of ms, 4M series
    if not unique or repeated.any():
        order = np.lexsort((samples.position, samples.run, timestamps, index))
        repeated = (index[order][1:] == index[order][:-1]) & (timestamps[order][1:] == timestamps[order][:-1])
    kept = order[np.concatenate(([True], ~repeated))]
    return index[kept], timestamps[kept], samples.values[kept]


def _in_runs(index: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The sorted series and the order of the samples when they come in long runs of one series
    at rising times (a copy's or a compacted file's points, file after file) that chain without
    overlap: the runs are put in order, not the samples (a day's 1.2M points in 2,400 runs, about 5
    times faster than sorting them). None when the runs are short or overlap: sort then."""
    breaks = np.flatnonzero((index[1:] != index[:-1]) | (timestamps[1:] <= timestamps[:-1])) + 1
    if len(breaks) > len(index) // 64:
        return None
    starts = np.concatenate(([0], breaks))
    lengths = np.diff(starts, append=len(index))
    runs = np.argsort(index[starts], kind="stable")  # a series' runs in the order they were read
    starts, lengths, series = starts[runs], lengths[runs], index[starts[runs]]
    ends = starts + lengths - 1
    chained = (series[1:] != series[:-1]) | (timestamps[starts[1:]] > timestamps[ends[:-1]])
    if not chained.all():
        return None
    order = np.arange(len(index)) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.repeat(series, lengths), order


def storage(points: pl.DataFrame, chosen: pl.DataFrame, matchers: Sequence[Matcher]) -> SeriesStorage:
    """A SeriesStorage of the points' series (`_labelled`), built without a label list per sample."""
    return SeriesStorage(*_labelled(points, chosen, matchers))


def series_frame(points: pl.DataFrame, chosen: pl.DataFrame, matchers: Sequence[Matcher]) -> pl.DataFrame:
    """The points' series (`_labelled`) as the conversion's frame (SERIES_SCHEMA)."""
    samples, runs = _labelled(points, chosen, matchers)
    named = samples.join(runs.drop("len"), on=_INDEX, maintain_order="left")
    return named.select(SERIES_SCHEMA.names())

"""OTLP metric points → Prometheus series, named as Prometheus' own OTLP receiver names them.

The one conversion every PromQL reader of the `metrics` dataset uses (the alerts flow, the
console's Prometheus API), so a rule or a Grafana panel written for a Prometheus that ingests
OTLP reads the same series here. It follows prometheus/otlptranslator (Prometheus 3's default
translation strategy, UnderscoreEscapingWithSuffixes):

- names: split on characters outside `[a-zA-Z0-9:]`, the unit appended when not already a token
  (`s` → `seconds`, `By` → `bytes`, `By/s` → `bytes_per_second`, `{...}` units ignored), `_total`
  for monotonic sums, `_ratio` for gauges of unit `1`, `_` before a leading digit;
- labels: invalid characters → one `_`, `key_` before a leading digit, attributes that collide
  after that joined with `;` in key order; `service.namespace/service.name` → `job`,
  `service.instance.id` → `instance` (over any attribute of those names); the other resource
  attributes → `target_info{job, instance, ...} 1`, at each timestamp of the resource's points
  (Prometheus writes one per request, and requests are gone once stored);
- histograms → cumulative `_bucket{le}` (bounds as Go prints them, then `+Inf` = count), `_sum`
  (when recorded), `_count`; summaries → `{quantile}`, `_sum`, `_count`; a point flagged "no
  recorded value" → Prometheus' staleness marker in each of its series.

Exponential (base-2) histograms, which Prometheus stores as native histograms (a type the
PromQL engine does not read), become classic `_bucket{le}` series at their populated buckets'
bounds, `_sum` and `_count` (`_exponential_bounds`), so `histogram_quantile` reads them.
Not converted, as Prometheus' receiver refuses them by default: delta sums and histograms.
A scraped or remote-written Prometheus series (schemas/prometheus.py, scope
`talonflow/prometheus`) keeps its name and label names verbatim and gets no target_info, so it
reads back exactly as Prometheus stored it: normalising would merge `a__b` into `a_b` and add
`_total` to a text-format counter named without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

import numpy as np
import polars as pl
import pyarrow as pa

from promql import STALE_NAN, Labels, Series, format_float
from promql.ast import Matcher
from schemas.prometheus import SCOPE_NAME
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME

# Columns of the series frame.
NAME: Final = "name"  # the metric name (`__name__`)
LABELS: Final = "labels"  # list of {name, value} sorted by name, without `__name__`
SERIES: Final = "series"  # the series as Prometheus prints it: name{a="b", ...}
TIMESTAMP_MS: Final = "timestamp_ms"
VALUE: Final = "value"
LABEL: Final = pl.Struct({"name": pl.String, "value": pl.String})
SERIES_SCHEMA: Final = pl.Schema(
    [
        (NAME, pl.String()),
        (LABELS, pl.List(LABEL)),
        (SERIES, pl.String()),
        (TIMESTAMP_MS, pl.Int64()),
        (VALUE, pl.Float64()),
    ]
)
# An hour of a range query's answer as console/query_results.py keeps it: a row per series, with
# all its labels (`__name__` too) and its samples in that hour.
RESULT_SCHEMA: Final = pl.Schema(
    [
        (SERIES, pl.String()),
        (LABELS, pl.List(LABEL)),
        (TIMESTAMP_MS, pl.List(pl.Int64())),
        (VALUE, pl.List(pl.Float64())),
    ]
)

JOB, INSTANCE, TARGET_INFO = "job", "instance", "target_info"
SERVICE_NAMESPACE: Final = "service.namespace"
_IDENTIFYING: Final = (SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID)

_UNITS: Final = {
    **{"d": "days", "h": "hours", "min": "minutes", "s": "seconds"},
    **{"ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"},
    **{"By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tibibytes"},
    **{"KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes"},
    **{"m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams"},
    **{"Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent"},
}
_PER_UNITS: Final = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}
_NOT_METRIC_CHARS: Final = re.compile(r"[^a-zA-Z0-9:]+")
_NOT_LABEL_CHARS: Final = re.compile(r"[^a-zA-Z0-9]+")
_NO_RECORDED_VALUE: Final = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE

# OTLP `type` column → the kind the namer distinguishes.
GAUGE, COUNTER, UPDOWN, HISTOGRAM, SUMMARY = "gauge", "counter", "updown", "histogram", "summary"
EXPLICIT, EXPONENTIAL = "histogram", "exponential_histogram"  # the two OTLP `type`s of HISTOGRAM
MIN_SCALE, MAX_SCALE = -10, 20  # the scales OTLP's data model allows; a point outside is dropped


def _unit_suffixes(unit: str) -> tuple[str, str]:
    main, _, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    main_suffix = _UNITS.get(main, main) if main and not any(c in main for c in "{}") else ""
    per_suffix = _PER_UNITS.get(per, per) if per and not any(c in per for c in "{}") else ""
    return _clean_unit(main_suffix), _clean_unit("per_" + per_suffix if per_suffix else "")


def unit_name(unit: str) -> str:
    """The unit as the names carry it (`By/s` → `bytes_per_second`): the metadata API's unit."""
    return "_".join(u for u in _unit_suffixes(unit or "") if u).strip("_")


def _clean_unit(unit: str) -> str:
    return re.sub("_+", "_", _NOT_METRIC_CHARS.sub("_", unit)).removeprefix("_")


@lru_cache(maxsize=4096)
def metric_name(name: str, unit: str, kind: str) -> str:
    """The Prometheus name of an OTLP metric of this kind and unit; "" when nothing valid is left."""
    tokens = [t for t in _NOT_METRIC_CHARS.split(name) if t]
    main, per = _unit_suffixes(unit)
    if main in tokens:
        main = ""
    per = "" if per == "per_" else per.removesuffix("_")
    if per in tokens:
        per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [t for t in (main, per) if t]
    if kind == COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == GAUGE:
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    result = "_".join(tokens)
    if result[:1].isdigit():
        result = "_" + result
    return result if result.strip("_") else ""


@lru_cache(maxsize=1 << 14)
def label_name(key: str) -> str:
    """The Prometheus label name of an OTLP attribute key; "" when nothing valid is left."""
    reserved = len(key) >= 4 and key.startswith("__") and key.endswith("__")
    name = _NOT_LABEL_CHARS.sub("_", key[2:-2] if reserved else key)
    if reserved:
        name = f"__{name}__"
    if name[:1].isdigit():
        name = "key_" + name
    return name if name.strip("_") else ""


INPUT_COLUMNS: Final = (  # what the conversion reads of a METRICS table
    "time",
    "metric_name",
    "unit",
    "type",
    "temporality",
    "is_monotonic",
    "value",
    "count",
    "sum",
    "bucket_counts",
    "explicit_bounds",
    "exp_scale",
    "exp_zero_count",
    "exp_positive_offset",
    "exp_positive_counts",
    "exp_negative_offset",
    "exp_negative_counts",
    "quantiles",
    "quantile_values",
    "flags",
    "scope_name",
    "resource_attributes",
    "attributes",
)
_POINT, _SOURCE, _STALE, _EXTRA, _EXTRA_VALUE = "_point", "_source", "_stale", "_extra", "_extra_value"
_SERIES_RANK: Final = "_series_rank"
KIND, BASE = "kind", "base"  # columns `with_base_names` adds
_VERBATIM: Final = "_verbatim"


def prometheus_series(table: pa.Table | pl.DataFrame) -> pl.DataFrame:
    """Every sample of a METRICS table (or frame: a scan's result needs no round trip through
    Arrow, seconds for a day's points) as (name, labels, series, timestamp_ms, value), sorted by
    series then time; a duplicate timestamp in a series keeps its first sample, as Prometheus' TSDB."""
    frame = (
        table.select(INPUT_COLUMNS)
        if isinstance(table, pl.DataFrame)
        else pl.from_arrow(table.select(list(INPUT_COLUMNS)))
    )
    assert isinstance(frame, pl.DataFrame)
    points = _named(frame.with_row_index(_POINT))
    # A point's labels follow from its attributes, resource and scope alone, which repeat on every
    # point of a series: they are built once per distinct combination (a 64-bit hash of it: equal
    # combinations share one, and a collision is ~1e-8 likely among a million combinations).
    source = pl.struct(
        pl.col("attributes").map.entries(), pl.col("resource_attributes").map.entries(), _VERBATIM
    )
    points = points.with_columns(source.hash().alias(_SOURCE))
    sources = points.unique(subset=_SOURCE).select(_SOURCE, "attributes", "resource_attributes", _VERBATIM)
    target_labels = _source_labels(sources.filter(~pl.col(_VERBATIM)), "resource_attributes", _IDENTIFYING)
    samples = pl.concat(
        [_scalars(points), *_histograms(points), *_summaries(points), _target_info(points, target_labels)],
        how="vertical",
    )
    keys = [_SOURCE, NAME, _EXTRA, _EXTRA_VALUE]
    distinct = samples.select(keys).unique()
    labelled = pl.concat(
        [
            distinct.filter(pl.col(NAME) != TARGET_INFO).join(
                _source_labels(sources, "attributes", ()), on=_SOURCE, how="left"
            ),
            distinct.filter(pl.col(NAME) == TARGET_INFO).join(target_labels, on=_SOURCE),
        ]
    )
    extra = pl.struct(pl.col(_EXTRA).alias("name"), pl.col(_EXTRA_VALUE).alias("value"))
    labels_or_empty = pl.col(LABELS).fill_null(pl.lit([], pl.List(LABEL)))
    label_list = (  # the bucket or quantile label wins over an attribute of that name
        pl.when(pl.col(_EXTRA) == "le")
        .then(pl.concat_list(_without(labels_or_empty, "le"), extra))
        .when(pl.col(_EXTRA) == "quantile")
        .then(pl.concat_list(_without(labels_or_empty, "quantile"), extra))
        .otherwise(labels_or_empty)
    )
    labelled = labelled.with_columns(
        label_list.list.eval(pl.element().sort_by(pl.element().struct.field("name")))
    )
    text = pl.concat_str(
        pl.element().struct.field("name"),
        pl.lit('="'),
        _escaped(pl.element().struct.field("value")),
        pl.lit('"'),
    )
    inside = pl.col(LABELS).list.eval(text).list.join(", ")
    series = (
        pl.when(pl.col(LABELS).list.len() == 0)
        .then(pl.col(NAME))
        .otherwise(pl.concat_str(pl.col(NAME), pl.lit("{"), inside, pl.lit("}")))
    )
    # Sorted by series (a dense rank of its text, cheaper to sort on than the text) and time, so a
    # duplicate timestamp is the row after its first.
    labelled = labelled.with_columns(series.alias(SERIES)).with_columns(
        pl.col(SERIES).rank("dense").alias(_SERIES_RANK)
    )
    ordered = samples.join(labelled, on=keys).sort(_SERIES_RANK, TIMESTAMP_MS, _POINT)
    repeated = (pl.col(_SERIES_RANK) == pl.col(_SERIES_RANK).shift()) & (
        pl.col(TIMESTAMP_MS) == pl.col(TIMESTAMP_MS).shift()
    )
    return ordered.filter(~repeated.fill_null(False)).select(
        pl.col(c).cast(t) for c, t in SERIES_SCHEMA.items()
    )


def _without(labels: pl.Expr, name: str) -> pl.Expr:
    return labels.list.eval(pl.element().filter(pl.element().struct.field("name") != name))


def _escaped(value: pl.Expr) -> pl.Expr:
    return (
        value.str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all('"', '\\"', literal=True)
        .str.replace_all("\n", "\\n", literal=True)
    )


def _named(points: pl.DataFrame) -> pl.DataFrame:
    """Points with their kind, base name and staleness; those Prometheus does not ingest are left out."""
    stale = ((pl.col("flags").fill_null(0) & _NO_RECORDED_VALUE) != 0).alias(_STALE)
    return with_base_names(points).with_columns(pl.col("time").dt.epoch("ms").alias(TIMESTAMP_MS), stale)


def with_base_names(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows (of METRICS columns metric_name, unit, type, temporality, is_monotonic, scope_name) with
    their kind and Prometheus base name in `kind` and `base`; rows Prometheus does not ingest are left out."""
    kind = (
        pl.when(pl.col("type") == "gauge")
        .then(pl.lit(GAUGE))
        .when((pl.col("type") == "sum") & (pl.col("temporality") == "cumulative"))
        .then(pl.when(pl.col("is_monotonic")).then(pl.lit(COUNTER)).otherwise(pl.lit(UPDOWN)))
        .when(pl.col("type").is_in([EXPLICIT, EXPONENTIAL]) & (pl.col("temporality") == "cumulative"))
        .then(pl.lit(HISTOGRAM))
        .when(pl.col("type") == "summary")
        .then(pl.lit(SUMMARY))
    )
    frame = frame.with_columns(
        kind.alias(KIND),
        pl.col("unit").fill_null(""),
        (pl.col("scope_name") == SCOPE_NAME).fill_null(False).alias(_VERBATIM),
    ).filter(pl.col(KIND).is_not_null())
    keys = frame.select("metric_name", "unit", KIND).unique()
    names = keys.with_columns(
        pl.Series(BASE, [metric_name(n, u, k) for n, u, k in keys.iter_rows()], dtype=pl.String)
    )
    joined = frame.join(names, on=["metric_name", "unit", KIND])
    base = pl.when(pl.col(_VERBATIM)).then(pl.col("metric_name")).otherwise(pl.col(BASE))
    return joined.with_columns(base.alias(BASE)).filter(pl.col(BASE) != "")


_SUFFIXES: Final = {
    GAUGE: [""],
    COUNTER: [""],
    UPDOWN: [""],
    HISTOGRAM: ["_bucket", "_sum", "_count"],
    SUMMARY: ["", "_sum", "_count"],
}


def names_of(catalogue: pl.DataFrame) -> pl.DataFrame:
    """(metric_name, name): every Prometheus metric name each OTLP metric of a catalogue (distinct
    rows of the `with_base_names` columns) is read under, target_info included, so a selector's
    name matchers can be turned into a `metric_name` filter before any point is read."""
    named = with_base_names(catalogue)
    suffixes = pl.col(KIND).replace_strict(_SUFFIXES, return_dtype=pl.List(pl.String))
    series = named.select("metric_name", suffixes.alias("_suffix"), BASE).explode("_suffix")
    info = named.filter(~pl.col(_VERBATIM)).select("metric_name", pl.lit(TARGET_INFO).alias(NAME))
    return pl.concat(
        [series.select("metric_name", (pl.col(BASE) + pl.col("_suffix")).alias(NAME)), info]
    ).unique()


def _sample(
    name: pl.Expr, value: pl.Expr, extra: str = "", extra_value: pl.Expr | None = None
) -> list[pl.Expr]:
    return [
        pl.col(_POINT),
        pl.col(_SOURCE),
        name.alias(NAME),
        pl.lit(extra or "", pl.String).alias(_EXTRA),  # "": none (a join key, so never null)
        (extra_value if extra_value is not None else pl.lit("", pl.String)).alias(_EXTRA_VALUE),
        pl.col(TIMESTAMP_MS),
        pl.when(pl.col(_STALE)).then(pl.lit(STALE_NAN)).otherwise(value.cast(pl.Float64)).alias(VALUE),
    ]


def _scalars(points: pl.DataFrame) -> pl.DataFrame:
    return points.filter(pl.col(KIND).is_in([GAUGE, COUNTER, UPDOWN])).select(
        _sample(pl.col(BASE), pl.col("value"))
    )


def _sum_count(points: pl.DataFrame) -> list[pl.DataFrame]:
    return [
        points.filter(pl.col("sum").is_not_null()).select(_sample(pl.col(BASE) + "_sum", pl.col("sum"))),
        points.select(_sample(pl.col(BASE) + "_count", pl.col("count"))),
    ]


def _go_floats(column: pl.Series) -> pl.Expr:
    """Bounds and quantiles as label values, printed as Go does (1 not 1.0): over distinct values only."""
    distinct = column.drop_nulls().unique().to_list()
    if not distinct:  # replace_strict with an empty mapping keeps the input's type (Polars 2.1)
        return pl.lit(None, pl.String)
    printed = [format_float(v) for v in distinct]
    return pl.col(column.name).replace_strict(distinct, printed, return_dtype=pl.String)


def _histograms(points: pl.DataFrame) -> list[pl.DataFrame]:
    hist = points.filter(pl.col(KIND) == HISTOGRAM, pl.col("type") == EXPLICIT)
    bounds_len = pl.col("explicit_bounds").list.len().fill_null(0)
    valid = hist.filter(
        (pl.col("bucket_counts").list.len().fill_null(0) == bounds_len + 1)
        | (pl.col("bucket_counts").list.len() == 0)
    )
    buckets = (
        valid.filter(bounds_len > 0)
        .with_columns(
            pl.col("bucket_counts")
            .list.eval(pl.element().cum_sum())
            .list.head(bounds_len)
            .alias("_cumulative")
        )
        .explode("explicit_bounds", "_cumulative")
    )
    bucket_name = pl.col(BASE) + "_bucket"
    exponential = points.filter(
        pl.col(KIND) == HISTOGRAM,
        pl.col("type") == EXPONENTIAL,
        pl.col("exp_scale").is_between(MIN_SCALE, MAX_SCALE),
    )
    bounds = _exponential_bounds(exponential)
    return [
        buckets.select(
            _sample(bucket_name, pl.col("_cumulative"), "le", _go_floats(buckets["explicit_bounds"]))
        ),
        bounds.select(_sample(bucket_name, pl.col(_CUMULATIVE), "le", _go_floats(bounds[_LE]))),
        *(
            frame.select(_sample(bucket_name, pl.col("count"), "le", pl.lit("+Inf")))
            for frame in (valid, exponential)
        ),
        *_sum_count(valid),
        *_sum_count(exponential),
    ]


_LE, _CUMULATIVE, _COUNT, _LOWER = "_le", "_cumulative", "_count", "_lower"


def _exponential_bounds(points: pl.DataFrame) -> pl.DataFrame:
    """Exponential histogram points as classic cumulative buckets: one row per (point, le).

    Bucket i of scale s holds |x| in (b^i, b^(i+1)], b = 2^(2^-s); the zero bucket holds |x| <= its
    threshold, which the METRICS table does not keep, so it is taken as 0 (the SDKs' default). A
    negative bucket becomes [-b^(i+1), -b^i), so negative `le` bounds sort below the zero bucket's
    `le="0"`, as a classic histogram of signed values has them (Prometheus' histogram_quantile
    answers a rank in a first bucket with a bound at or below 0 with that bound). With negative
    buckets, a rank in the zero bucket reads as interpolated from the last negative bound to 0:
    a classic histogram cannot hold a bucket of width 0 after another. Each populated bucket
    gives its upper bound and also its lower bound (with the count below it): histogram_quantile
    interpolates from the previous `le`, so without the lower bound a bucket after an empty one
    would be read as spanning the empty one too. Empty buckets are left out otherwise: at scale 20
    a point may span thousands of buckets. A change of scale changes the bounds, so `le` series
    come and go as a histogram rescales, as with Prometheus' own conversion to classic buckets.
    """
    keep = [_POINT, _SOURCE, BASE, TIMESTAMP_MS, _STALE]
    step = pl.lit(2.0).pow(-pl.col("exp_scale").cast(pl.Float64))  # log2 of the base

    def side(counts: str, offset: str, sign: float) -> pl.DataFrame:
        exploded = (
            points.select(*keep, "exp_scale", pl.col(counts).alias(_COUNT), pl.col(offset).fill_null(0))
            .filter(pl.col(_COUNT).list.len().fill_null(0) > 0)
            .with_columns(pl.int_ranges(0, pl.col(_COUNT).list.len()).alias("_index"))
            .explode(_COUNT, "_index")
            .filter(pl.col(_COUNT) > 0)
        )
        index = (pl.col("_index") + pl.col(offset)).cast(pl.Float64)
        near, far = pl.lit(2.0).pow(index * step) * sign, pl.lit(2.0).pow((index + 1) * step) * sign
        lower, upper = (far, near) if sign < 0 else (near, far)
        return exploded.select(*keep, lower.alias(_LOWER), upper.alias(_LE), pl.col(_COUNT).cast(pl.Float64))

    zero = points.filter(pl.col("exp_zero_count").fill_null(0) > 0).select(
        *keep,
        pl.lit(0.0).alias(_LOWER),
        pl.lit(0.0).alias(_LE),
        pl.col("exp_zero_count").cast(pl.Float64).alias(_COUNT),
    )
    buckets = pl.concat(
        [
            side("exp_negative_counts", "exp_negative_offset", -1.0),
            zero,
            side("exp_positive_counts", "exp_positive_offset", 1.0),
        ]
    ).sort(_POINT, _LE)
    buckets = buckets.with_columns(pl.col(_COUNT).cum_sum().over(_POINT).alias(_CUMULATIVE))
    below = buckets.select(
        *keep, pl.col(_LOWER).alias(_LE), (pl.col(_CUMULATIVE) - pl.col(_COUNT)).alias(_CUMULATIVE)
    )
    bounds = pl.concat([buckets.select(*keep, _LE, _CUMULATIVE), below])
    return bounds.group_by(_POINT, _LE).agg(pl.all().exclude(_CUMULATIVE).first(), pl.col(_CUMULATIVE).max())


def _summaries(points: pl.DataFrame) -> list[pl.DataFrame]:
    summary = points.filter(pl.col(KIND) == SUMMARY)
    quantiles = summary.filter(
        pl.col("quantiles").list.len().fill_null(0) > 0,
        pl.col("quantiles").list.len() == pl.col("quantile_values").list.len(),
    ).explode("quantiles", "quantile_values")
    quantile = _sample(
        pl.col(BASE), pl.col("quantile_values"), "quantile", _go_floats(quantiles["quantiles"])
    )
    return [quantiles.select(quantile), *_sum_count(summary)]


def _target_info(points: pl.DataFrame, target_labels: pl.DataFrame) -> pl.DataFrame:
    """One sample per resource with target labels and time: none at all when no resource has any."""
    with_targets = points.filter(pl.col(_SOURCE).is_in(target_labels[_SOURCE].implode()))
    one = with_targets.unique(subset=[_SOURCE, TIMESTAMP_MS], keep="first").with_columns(
        pl.lit(False).alias(_STALE)
    )
    return one.select(_sample(pl.lit(TARGET_INFO), pl.lit(1.0)))


def _source_labels(sources: pl.DataFrame, column: str, skip: Sequence[str]) -> pl.DataFrame:
    """The labels of each label source: one attribute map plus job and instance from the resource.

    From `resource_attributes` with the identifying keys skipped, this is target_info's label set,
    and only sources whose resource has another attribute get one."""
    entries = (
        sources.select(_SOURCE, _VERBATIM, pl.col(column).map.entries().alias("_entry"))
        .explode("_entry")
        .unnest("_entry")
        .filter(pl.col("key").is_not_null(), ~pl.col("key").is_in(list(skip)))
    )
    keys = entries["key"].unique().to_list()
    normalised = pl.col("key").replace_strict(keys, [label_name(k) for k in keys], return_dtype=pl.String)
    named = entries.with_columns(
        pl.when(pl.col(_VERBATIM)).then(pl.col("key")).otherwise(normalised).alias("name")
    )
    attributes = (
        named.filter(pl.col("name") != "")
        .sort(_SOURCE, "key")
        .group_by(_SOURCE, "name", maintain_order=True)
        .agg(pl.col("value").str.join(";"))
    )
    resource = pl.col("resource_attributes")
    namespace = resource.map.get(SERVICE_NAMESPACE)
    service = resource.map.get(SERVICE_NAME)
    job = pl.when(namespace.fill_null("") != "").then(namespace + "/" + service).otherwise(service)
    identity = sources.select(
        _SOURCE, job.alias(JOB), resource.map.get(SERVICE_INSTANCE_ID).alias(INSTANCE)
    ).unpivot(index=_SOURCE, variable_name="name", value_name="value")
    identity = identity.filter(pl.col("value").is_not_null())
    if skip:  # target_info: only resources with a non-identifying attribute
        identity = identity.filter(pl.col(_SOURCE).is_in(attributes[_SOURCE].implode()))
    labels = pl.concat(
        [attributes.join(identity.select(_SOURCE, "name"), on=[_SOURCE, "name"], how="anti"), identity]
    ).filter(pl.col("value") != "")
    return labels.group_by(_SOURCE).agg(pl.struct("name", "value").alias(LABELS))


class SeriesStorage:
    """A promql Storage over a `prometheus_series` frame: each series' samples as numpy slices of
    two columns, found by metric name, so a query costs only the series it selects."""

    def __init__(self, frame: pl.DataFrame, heads: pl.DataFrame | None = None) -> None:
        """`frame` is a `prometheus_series` frame, or only its TIMESTAMP_MS and VALUE with `heads`:
        each series' NAME, LABELS and `len`, the length of its run of rows (console/point_series.py
        labels points so, without a label list on every row)."""
        if heads is None:
            heads = frame.group_by(SERIES, maintain_order=True).agg(
                pl.col(NAME).first(), pl.col(LABELS).first(), pl.len()
            )
        timestamps = frame[TIMESTAMP_MS].to_numpy()
        values = frame[VALUE].to_numpy()
        ends = np.cumsum(heads["len"].to_numpy())
        self.by_name: dict[str, list[Series]] = {}
        start = 0
        for name, labels, end in zip(heads[NAME], heads[LABELS], ends, strict=True):
            key: Labels = tuple(sorted([("__name__", name), *((p["name"], p["value"]) for p in labels)]))
            self.by_name.setdefault(name, []).append(Series(key, timestamps[start:end], values[start:end]))
            start = int(end)

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        name = next((m.value for m in matchers if m.name == "__name__" and m.op == "="), None)
        candidates = (
            self.by_name.get(name, [])
            if name is not None
            else [s for ss in self.by_name.values() for s in ss]
        )
        out = []
        for series in candidates:
            lookup = dict(series.labels)
            if not all(m.matches(lookup.get(m.name, "")) for m in matchers):
                continue
            lo = int(np.searchsorted(series.timestamps, start_ms, side="left"))
            hi = int(np.searchsorted(series.timestamps, end_ms, side="right"))
            if hi > lo:
                out.append(Series(series.labels, series.timestamps[lo:hi], series.values[lo:hi]))
        return out

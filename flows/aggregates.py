"""The arithmetic of rollups: OTLP rows → points → mergeable window partials → rollup rows.

Everything here works on whole Polars frames (a Kafka poll at a time), never per data point,
and every partial merges with any other of the same series and window, in any order: that is
what lets flows/rollups.py fold batches, replays and finer windows into coarser ones.
What is a function of the series alone (its labels, `series_id`, the GenAI labels and price of
derived series) is worked out once per distinct series of the poll and gathered back to its
points: label lists cost per row, and a poll holds many points of few series. For metric series
the flow keeps it from poll to poll in a `SeriesCache` (a cache, not state). A series is a
metric name and its point attributes plus service.name, service.namespace and
service.instance.id of the resource (the resource attributes Prometheus makes `job` and
`instance` of).

A partial is two frames:
- `rows`: one row per (series_id, window_start): points, count, sum, min, max, the latest
  point (time and value) and the increase of monotonic sums;
- `buckets`: the distribution of that series in that window, as counts per bucket. Explicit
  histograms keep their own bounds (scheme "x", bucket i covers (bounds[i-1], bounds[i]]).
  Gauges, span durations and exponential histograms use the OTLP base-2 exponential buckets
  (scheme "e": bucket i at scale s covers (2**(i/2**s), 2**((i+1)/2**s)]): the same mergeable
  sketch the OTel SDKs use, computed here with vectorised log2 instead of a per-value sketch
  library (ddsketch's Python API inserts one value at a time). Relative error of a quantile:
  at most 2**(2**-s / 2) - 1, 0.54 % at the default scale 6.

Cumulative monotonic sums and cumulative histograms become deltas first (like the Collector's
cumulativetodelta processor): the previous point of each series is kept in `CumulativeState`.
A value below the previous one, or a new start time, is a reset: the new value counts whole.
The first point of a series counts whole as well (OTLP cumulative points count since their
start_time). Summaries are not mergeable: a summary row reports its latest point's quantiles.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import polars as pl
import pyarrow as pa

from schemas.prices import PriceTable
from schemas.prometheus_names import SERVICE_NAMESPACE
from schemas.rollups import (
    GENAI_COST,
    GENAI_TOKENS,
    GENAI_UNPRICED,
    MODEL_LABEL,
    PROVIDER_LABEL,
    QUANTILES,
    ROLLUPS_SCHEMA,
    SOURCE_LABEL,
    SPAN_DURATION,
    SPAN_NAME_LABEL,
    STATUS_LABEL,
    TOKEN_TYPE_LABEL,
)
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME

KEY: Final = ["series_id", "window_start"]
META: Final = ["metric_name", "unit", "type", "is_monotonic", "service_name", "labels"]
_LABEL = pl.Struct({"key": pl.String, "value": pl.String})
LABEL_LIST: Final = pl.List(_LABEL)
_EMPTY_LABELS = pl.lit([], dtype=LABEL_LIST)
# Resource attributes that are labels of every metric series: Prometheus' OTLP receiver makes
# `job` of service.namespace/service.name and `instance` of service.instance.id.
_SERVICE_KEYS = (
    (SERVICE_NAME, "service_name"),
    (SERVICE_NAMESPACE, "service_namespace"),
    (SERVICE_INSTANCE_ID, "service_instance_id"),
)
_METRIC_SERIES: Final = ["metric_name", *(column for _, column in _SERVICE_KEYS), "attributes"]
_SERIES: Final = "_series"  # a point's series among the distinct series of its poll
_SERIES_HASH: Final = pl.struct(_METRIC_SERIES).hash().alias("_raw")  # a metric series as flattened
# what `metric_points` reads of a metrics table
_METRIC_COLUMNS: Final = [
    "time", "start_time", "metric_name", "unit", "type", "temporality", "is_monotonic", "value", "count",
    "sum", "min", "max", "bucket_counts", "explicit_bounds", "exp_scale", "exp_zero_count",
    "exp_positive_offset", "exp_positive_counts", "exp_negative_offset", "exp_negative_counts", "quantiles",
    "quantile_values", "service_name", "service_instance_id", "resource_attributes", "attributes",
]  # fmt: skip

# Token and cost metrics of the GenAI conventions (a histogram) and of OpenClaw (counters).
_TOKEN_METRICS: Final = ("gen_ai.client.token.usage", "openclaw.tokens")
_COST_METRICS: Final = ("openclaw.cost.usd",)
_AMOUNT: Final = pl.coalesce("sum", "value")  # a histogram's sum, or a counter's value
_ECONOMY_LABELS: Final = {  # derived label -> attribute keys, in order of preference
    MODEL_LABEL: ("gen_ai.request.model", "gen_ai.response.model", "openclaw.model"),
    PROVIDER_LABEL: ("gen_ai.provider.name", "gen_ai.system", "openclaw.provider"),
    TOKEN_TYPE_LABEL: ("gen_ai.token.type", "openclaw.token"),
}
_SPAN_TOKENS: Final = {"input": "gen_ai.usage.input_tokens", "output": "gen_ai.usage.output_tokens"}

_POINT_SCHEMA: Final = pl.Schema(
    {
        "series_id": pl.UInt64(),
        "delta_key": pl.UInt64(),  # whose previous point makes this one a delta: the source series
        "metric_name": pl.String(),
        "unit": pl.String(),
        "type": pl.String(),
        "is_monotonic": pl.Boolean(),
        "cumulative": pl.Boolean(),
        "service_name": pl.String(),
        "labels": pl.String(),  # the series' sorted label list as JSON (see `encoded_labels`)
        "time": pl.Int64(),
        "start_time": pl.Int64(),
        "value": pl.Float64(),  # gauge and sum points; a span's duration in ms
        "raw": pl.Float64(),  # a cumulative sum's own value, once `value` became its delta
        "count": pl.Float64(),
        "sum": pl.Float64(),
        "min": pl.Float64(),
        "max": pl.Float64(),
        "bounds": pl.List(pl.Float64()),
        "buckets": pl.List(pl.Float64()),
        "exp_scale": pl.Int32(),
        "exp_zero": pl.Float64(),
        "pos_offset": pl.Int32(),
        "pos": pl.List(pl.Float64()),
        "neg_offset": pl.Int32(),
        "neg": pl.List(pl.Float64()),
        "q_levels": pl.List(pl.Float64()),
        "q_values": pl.List(pl.Float64()),
    }
)
_BUCKET_SCHEMA: Final = pl.Schema(
    {
        "series_id": pl.UInt64(),
        "window_start": pl.Int64(),
        "scheme": pl.String(),  # x: explicit bounds, e: base-2 exponential
        "scale": pl.Int32(),
        "index": pl.Int64(),  # explicit: bucket number; exponential: bucket index, 0 for the zero bucket
        "sign": pl.Int8(),  # exponential: -1, 0 (zero bucket) or 1; explicit: 1
        "count": pl.Float64(),
    }
)


def _labels_of(attributes: pl.Expr) -> pl.Expr:
    """Map attributes → sorted list of {key, value}: one canonical form per label set."""
    entries = attributes.map.entries().fill_null(_EMPTY_LABELS)
    return entries.list.eval(pl.element().sort_by(pl.element().struct.field("key")))


def _with_service(labels: pl.Expr) -> pl.Expr:
    """The point's labels plus service.name and service.instance.id of its resource."""
    extra = [pl.struct(key=pl.lit(key), value=pl.col(column)) for key, column in _SERVICE_KEYS]
    merged = pl.concat_list(
        [
            labels,
            pl.concat_list(extra).list.eval(
                pl.element().filter(pl.element().struct.field("value").is_not_null())
            ),
        ]
    )
    return merged.list.eval(pl.element().sort_by(pl.element().struct.field("key")))


def _series_hash(name: pl.Expr, labels: pl.Expr) -> pl.Expr:
    text = labels.list.eval(
        pl.concat_str(pl.element().struct.field("key"), pl.lit("\x1f"), pl.element().struct.field("value"))
    ).list.join("\x1e")
    return pl.concat_str(name, pl.lit("\x1d"), text).hash(seed=0x7A10)


def encoded_labels(labels: pl.Expr) -> pl.Expr:
    """A label list as one JSON string, for the point frames and the state of open windows.

    A list of structs costs per row on every gather, filter, sort and split (the shard split
    alone took a third of a large poll), a string barely: labels are worked out per series as
    lists, carried per point as text, and decoded again per rollup row in `finalize`."""
    items = labels.list.eval(pl.element().struct.json_encode()).list.join(",")
    return pl.concat_str(pl.lit("["), items, pl.lit("]"))


def with_text_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with its labels as text: state restored from a snapshot taken before they were."""
    if frame.schema["labels"] == pl.String:
        return frame
    return frame.with_columns(labels=encoded_labels(pl.col("labels")))


def decoded_labels(text: pl.Expr) -> pl.Expr:
    """The label list of `encoded_labels` text."""
    return text.str.json_decode(LABEL_LIST)


def _label(labels: pl.Expr, key: str) -> pl.Expr:
    found = labels.list.eval(pl.element().filter(pl.element().struct.field("key") == key))
    return found.list.first().struct.field("value")


def _first_label(labels: pl.Expr, keys: tuple[str, ...]) -> pl.Expr:
    return pl.coalesce([_label(labels, key) for key in keys]).fill_null("")


def _reduced(pairs: dict[str, pl.Expr]) -> pl.Expr:
    """A sorted label list from (key, value expression) pairs; keys must be given sorted."""
    return pl.concat_list([pl.struct(key=pl.lit(k), value=v) for k, v in sorted(pairs.items())])


# -- OTLP rows → points --------------------------------------------------------------------------
def _per_series(
    frame: pl.DataFrame, keys: list[str], carried: tuple[str, ...] = ()
) -> tuple[pl.DataFrame, pl.Series]:
    """The distinct rows of `keys` (numbered in `_SERIES`) with the first value of each of the
    `carried` columns, and each row's number among them.

    Labels, hashes and prices are list operations that cost per row: a poll holds many points
    of few series, so they are worked out once per series and gathered back to the points."""
    groups = (
        frame.select(*keys, *carried)
        .with_row_index("_row")
        .group_by(keys, maintain_order=True)
        .agg("_row", *(pl.col(column).first() for column in carried))
        .with_row_index(_SERIES)
    )
    of_row = groups.select(_SERIES, "_row").explode("_row").sort("_row")[_SERIES]
    return groups.drop("_row"), of_row


def _gather(series: pl.DataFrame, of_row: pl.Series, columns: list[str]) -> pl.DataFrame:
    """`columns` of each point's series, in the points' order."""
    return series.select(pl.col(columns).gather(of_row))


def metric_points(metrics: pa.Table, prices: PriceTable, cache: SeriesCache | None = None) -> pl.DataFrame:
    """The points of a `metrics` table, plus the GenAI token and cost series derived from them
    (`cache`: the flow's, with the same prices; without one, every series is worked out)."""
    cache = SeriesCache(prices) if cache is None else cache
    frame = pl.from_arrow(metrics.select(_METRIC_COLUMNS))  # the others cost half the conversion
    assert isinstance(frame, pl.DataFrame)
    if frame.is_empty():
        return empty_points()
    # grouped by the series' hash, which the cache knows a series by anyway: a group-by on the
    # attribute maps took ~10 ms of a 50,000-point poll, the hash and a group-by on it ~6
    frame = (
        frame.lazy()
        .with_columns(pl.col("resource_attributes").map.get(SERVICE_NAMESPACE).alias("service_namespace"))
        .with_columns(_SERIES_HASH)
        .collect(engine="in-memory")
    )
    series, of_row = _per_series(frame, ["_raw"], carried=tuple(_METRIC_SERIES))
    series = cache.identify(series)
    points = frame.select(
        pl.col("metric_name"),
        pl.col("unit"),
        pl.col("type"),
        pl.col("is_monotonic").fill_null(False),
        (pl.col("temporality") == "cumulative").alias("cumulative"),
        pl.col("service_name"),
        pl.col("time").dt.epoch("ns").alias("time"),
        pl.col("start_time").dt.epoch("ns").fill_null(0).alias("start_time"),
        pl.col("value"),
        pl.col("count").cast(pl.Float64),
        pl.col("sum"),
        pl.col("min"),
        pl.col("max"),
        pl.col("explicit_bounds").alias("bounds"),
        pl.col("bucket_counts").cast(pl.List(pl.Float64)).alias("buckets"),
        pl.col("exp_scale"),
        pl.col("exp_zero_count").cast(pl.Float64).alias("exp_zero"),
        pl.col("exp_positive_offset").alias("pos_offset"),
        pl.col("exp_positive_counts").cast(pl.List(pl.Float64)).alias("pos"),
        pl.col("exp_negative_offset").alias("neg_offset"),
        pl.col("exp_negative_counts").cast(pl.List(pl.Float64)).alias("neg"),
        pl.col("quantiles").alias("q_levels"),
        pl.col("quantile_values").alias("q_values"),
        of_row,
    ).hstack(_gather(series, of_row, ["labels", "series_id", "delta_key"]))
    economy = _economy_from_metrics(points, series, cache)
    return pl.concat([_cast(points), *economy], how="diagonal_relaxed")


def _economy_labels(series: pl.DataFrame, source: str) -> tuple[pl.DataFrame, dict[str, pl.Expr]]:
    """`series` with the derived labels as columns of their own, and those columns by label key.

    Worked out once: the token, cost and unpriced series all read them, and each `_first_label`
    is a list evaluation that costs more than the rest of a small poll's arithmetic."""
    pairs = {key: _first_label(pl.col("labels"), keys) for key, keys in _ECONOMY_LABELS.items()}
    pairs[SOURCE_LABEL] = pl.lit(source)
    pairs["service.name"] = pl.col("service_name").fill_null("")
    columns = {key: f"_label_{index}" for index, key in enumerate(pairs)}
    return series.with_columns(**{columns[key]: value for key, value in pairs.items()}), {
        key: pl.col(column) for key, column in columns.items()
    }


def _economy_series(
    series: pl.DataFrame, labels: dict[str, pl.Expr], prices: PriceTable
) -> list[pl.DataFrame]:
    """The token series of `series`, and their cost series where the model is priced, their
    unpriced token series apart where it is not: never $0 for them."""
    rated = series.with_columns(_usd=prices.rate(labels[MODEL_LABEL], labels[TOKEN_TYPE_LABEL]))
    priced = rated.filter(pl.col("_usd").is_not_null())
    unpriced = rated.filter(pl.col("_usd").is_null()).drop("_usd")
    out = [_derived_series(series, GENAI_TOKENS, labels)]
    return out + [
        _derived_series(frame, name, labels)
        for frame, name in ((priced, GENAI_COST), (unpriced, GENAI_UNPRICED))
        if not frame.is_empty()
    ]


def _derived_series(series: pl.DataFrame, name: str, labels: dict[str, pl.Expr]) -> pl.DataFrame:
    """The monotonic sum series `name` derived from each of `series` (by `_SERIES`), with its
    labels read from the series' columns, its delta key (derived from the source's: it is
    delta-converted against the source) and `_usd`, what a token costs (null: the amount itself)."""
    derived = series.select(
        _SERIES,
        pl.lit(name).alias("metric_name"),
        pl.lit("USD" if name == GENAI_COST else "{token}").alias("unit"),
        _reduced(labels).alias("labels"),
        # crc32, not hash(): str hashes change per process, and this key outlives one in the snapshots
        (pl.col("delta_key") ^ pl.lit(zlib.crc32(name.encode()), dtype=pl.UInt64)).alias("delta_key"),
        pl.col("_usd") if "_usd" in series.columns else pl.lit(None, dtype=pl.Float64).alias("_usd"),
    )
    return derived.with_columns(
        series_id=_series_hash(pl.lit(name), pl.col("labels")), labels=encoded_labels(pl.col("labels"))
    )


def _derived_points(points: pl.DataFrame, derived: pl.DataFrame, amount: pl.Expr) -> pl.DataFrame:
    """The points of the `derived` series (by `_SERIES`) of `points`: `amount`, times `_usd` for costs."""
    rows = points.select(_SERIES, "cumulative", "service_name", "time", "start_time", amount.alias("_amount"))
    out = rows.join(derived, on=_SERIES, how="inner", maintain_order="left").select(
        "metric_name",
        "unit",
        pl.lit("sum").alias("type"),
        pl.lit(True).alias("is_monotonic"),
        "cumulative",
        "service_name",
        "labels",
        "time",
        "start_time",
        pl.when(pl.col("_usd").is_null())
        .then(pl.col("_amount"))
        .otherwise(pl.col("_amount") * pl.col("_usd"))
        .alias("value"),
        "delta_key",
        "series_id",
    )
    return _cast(out)


class SeriesCache:
    """What one flow works out per metric series: its labels, id and derived GenAI series.

    They are functions of the series as flattened (name, resource service attributes, point
    attributes) and of the prices, and a poll's series repeat from poll to poll: working them out
    again per poll (sorted label lists, hashes, JSON, label and price lookups) was most of the
    Polars queries of a small poll. A cache, not state: a restarted flow works them out again on
    their first poll, and one that has seen `limit` series starts afresh."""

    def __init__(self, prices: PriceTable, limit: int = 200_000) -> None:
        self.prices, self._limit = prices, limit
        self._series = _NO_SERIES  # by `_raw`, a hash of the series' columns as flattened
        self._derived = _NO_DERIVED  # one row per derived series, by `_source`: its source's series_id

    def identify(self, keyed: pl.DataFrame) -> pl.DataFrame:
        """The distinct series of a poll (by `_raw`, `_SERIES_HASH`) with their `labels` (as text),
        `series_id` and `delta_key`."""
        known = self._series  # read once: workers of one process share the flow's cache
        found = keyed.join(known, on="_raw", how="left", maintain_order="left")
        if found["series_id"].null_count():
            if known.height > self._limit:
                known, missing = _NO_SERIES, keyed
            else:
                missing = keyed.filter(found["series_id"].is_null())
            # one row per `_raw` (two series of one hash: the first), or the join adds rows
            fresh = _identified(missing).unique("_raw", keep="first", maintain_order=True)
            self._series = known = pl.concat([known, fresh], rechunk=True)
            found = keyed.join(known, on="_raw", how="left", maintain_order="left")
        return found.drop("_raw").with_columns(delta_key=pl.col("series_id"))

    def derived(self, series: pl.DataFrame) -> pl.DataFrame:
        """The derived series of the poll's token and cost `series` (numbered in `_SERIES`)."""
        sources = series.select(_SERIES, pl.col("series_id").alias("_source"))
        known = self._derived
        missing = series.filter(~pl.col("series_id").is_in(known["_source"].implode()))
        if not missing.is_empty():
            if known.height > self._limit:
                known, missing = _NO_DERIVED, series
            fresh = pl.concat(self._derive(missing), how="diagonal_relaxed").join(sources, on=_SERIES)
            # two forms of one series (attributes in another order) in a poll: derived once
            fresh = fresh.select(_NO_DERIVED.columns).unique(["_source", "metric_name"], maintain_order=True)
            self._derived = known = pl.concat([known, fresh], rechunk=True)
        return sources.join(known, on="_source", how="inner", maintain_order="left")

    def _derive(self, series: pl.DataFrame) -> list[pl.DataFrame]:
        series = series.with_columns(labels=decoded_labels(pl.col("labels")))
        out = []
        for metrics, name in ((_TOKEN_METRICS, None), (_COST_METRICS, GENAI_COST)):
            mine = series.filter(pl.col("metric_name").is_in(metrics))
            if mine.is_empty():
                continue
            mine, labels = _economy_labels(mine, "metric")
            out += (
                _economy_series(mine, labels, self.prices)
                if name is None
                else [_derived_series(mine, name, labels)]
            )
        return out


def _identified(series: pl.DataFrame) -> pl.DataFrame:
    """`_raw`, labels (as text) and series_id of `series`: a metric series' labels are its point
    attributes plus the service attributes of its resource, sorted by key."""
    labels = series.select("_raw", "metric_name", labels=_with_service(_labels_of(pl.col("attributes"))))
    return labels.select(
        "_raw",
        encoded_labels(pl.col("labels")).alias("labels"),
        _series_hash(pl.col("metric_name"), pl.col("labels")).alias("series_id"),
    )


_NO_SERIES: Final = pl.DataFrame(
    schema={"_raw": pl.UInt64(), "labels": pl.String(), "series_id": pl.UInt64()}
)
_NO_DERIVED: Final = pl.DataFrame(
    schema={
        "_source": pl.UInt64(),
        **{c: _POINT_SCHEMA[c] for c in ("metric_name", "unit", "labels", "series_id", "delta_key")},
        "_usd": pl.Float64(),
    }
)
_ECONOMY_METRICS: Final = pl.col("metric_name").is_in([*_TOKEN_METRICS, *_COST_METRICS])


def _economy_from_metrics(
    points: pl.DataFrame, series: pl.DataFrame, cache: SeriesCache
) -> list[pl.DataFrame]:
    mine = series.filter(_ECONOMY_METRICS)
    return [] if mine.is_empty() else [_derived_points(points, cache.derived(mine), _AMOUNT)]


def span_points(spans: pa.Table, prices: PriceTable) -> pl.DataFrame:
    """RED samples (`span.duration` per service, span name, status) and GenAI usage from span attributes."""
    frame = pl.from_arrow(spans)
    assert isinstance(frame, pl.DataFrame)
    if frame.is_empty():
        return empty_points()
    series, of_row = _per_series(frame, ["service_name", "name", "status_code"])
    red_labels = _reduced(
        {
            "service.name": pl.col("service_name").fill_null(""),
            SPAN_NAME_LABEL: pl.col("name"),
            STATUS_LABEL: pl.col("status_code"),
        }
    )
    series = series.with_columns(red_labels.alias("labels")).with_columns(
        series_id=_series_hash(pl.lit(SPAN_DURATION), pl.col("labels")),
        labels=encoded_labels(pl.col("labels")),
    )
    red = frame.select(
        pl.lit(SPAN_DURATION).alias("metric_name"),
        pl.lit("ms").alias("unit"),
        pl.lit("histogram").alias("type"),
        pl.lit(False).alias("is_monotonic"),
        pl.lit(False).alias("cumulative"),
        pl.col("service_name"),
        pl.col("end_time").dt.epoch("ns").alias("time"),
        pl.lit(0, dtype=pl.Int64).alias("start_time"),
        (pl.col("duration_ns") / 1e6).alias("value"),
    ).hstack(_gather(series, of_row, ["labels", "series_id"]))
    out = [_cast(red.with_columns(delta_key=pl.col("series_id")))]
    usage = frame.filter(
        pl.any_horizontal(pl.col(f"gen_ai_usage_{t}_tokens").is_not_null() for t in _SPAN_TOKENS)
    )
    if not usage.is_empty():
        base = usage.select(
            pl.lit(False).alias("cumulative"),
            pl.col("service_name"),
            pl.col("end_time").dt.epoch("ns").alias("time"),
            pl.lit(0, dtype=pl.Int64).alias("start_time"),
            pl.col("gen_ai_request_model")
            .fill_null(pl.col("gen_ai_response_model"))
            .fill_null("")
            .alias("m"),
            pl.col("gen_ai_provider_name").fill_null("").alias("p"),
            *(pl.col(f"gen_ai_usage_{t}_tokens").cast(pl.Float64).alias(t) for t in _SPAN_TOKENS),
        )
        models, model_of_row = _per_series(base, ["service_name", "m", "p"])
        models = models.with_columns(pl.lit(0, dtype=pl.UInt64).alias("delta_key"))
        base = base.with_columns(model_of_row, value=None, sum=None)
        for token_type in _SPAN_TOKENS:
            labels = {
                MODEL_LABEL: pl.col("m"),
                PROVIDER_LABEL: pl.col("p"),
                TOKEN_TYPE_LABEL: pl.lit(token_type),
                SOURCE_LABEL: pl.lit("span"),
                "service.name": pl.col("service_name").fill_null(""),
            }
            rows = base.filter(pl.col(token_type).is_not_null()).with_columns(value=pl.col(token_type))
            if rows.is_empty():
                continue
            derived = pl.concat(_economy_series(models, labels, prices), how="diagonal_relaxed")
            out.append(_derived_points(rows, derived, pl.col("value")))
    return pl.concat(out, how="diagonal_relaxed")


def _cast(points: pl.DataFrame) -> pl.DataFrame:
    """Every point frame has the same columns and types, whatever produced it."""
    missing = [
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in _POINT_SCHEMA.items()
        if name not in points.columns
    ]
    return points.with_columns(missing).select([pl.col(n).cast(t) for n, t in _POINT_SCHEMA.items()])


_NO_POINTS: Final = pl.DataFrame(schema=_POINT_SCHEMA)


def empty_points() -> pl.DataFrame:
    """A frame of no points: a slice of one made once (making one column by column costs ~1.7 ms)."""
    return _NO_POINTS.clear()


# -- cumulative → delta --------------------------------------------------------------------------
_CUMULATIVE_KINDS: Final = ("sum", "histogram", "exponential_histogram")


@dataclass
class CumulativeState:
    """The latest cumulative point of every series seen: what the next point is a delta against."""

    last: pl.DataFrame = field(default_factory=empty_points)

    def to_deltas(self, points: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(points with cumulative values replaced by deltas, points out of order and dropped).

        Each Polars operation costs ~0.1 ms however small the poll, and this runs per shard and
        poll: the order of the rows, which are out of order and which reset their series are
        worked out on whole NumPy columns (a few µs each), and the arithmetic on the values is one
        Polars plan. Same rows in the same order, and the same values, as one Polars query each."""
        is_cumulative = points.select(_IS_CUMULATIVE.fill_null(False)).to_series().to_numpy()
        if not is_cumulative.any():
            return points, empty_points()
        # known points and the poll's cumulative ones are rows of `both`, gathered once in series
        # order; one chunk, as a gather from two took several times longer
        both = pl.concat([self.last, points], rechunk=True)
        mine = np.flatnonzero(is_cumulative)
        last_keys, point_keys = self.last["delta_key"].to_numpy(), points["delta_key"].to_numpy()
        is_known = np.isin(last_keys, point_keys[mine])
        known = np.flatnonzero(is_known)
        picked = np.concatenate([known, mine + self.last.height])
        # a point always has a time: flatten makes a dead letter of a row without one in bounds
        key = np.concatenate([last_keys[known], point_keys[mine]])
        at = np.concatenate([self.last["time"].to_numpy()[known], points["time"].to_numpy()[mine]])
        old = np.arange(len(picked)) < len(known)
        order = np.lexsort((~old, at, key))  # by series, then time, a known point before a new one
        stale = _stale(key[order], at[order], old[order])
        if stale.any():
            late = both[picked[order[stale]]]
            order = order[~stale]
        else:
            late = empty_points()
        rows = both[picked[order]]
        first = _first_of_key(key[order])
        fresh = ~old[order]
        deltas = (
            rows.hstack(
                [
                    pl.Series("_same", ~first),
                    pl.Series("_reset", _resets(rows, first)),
                    pl.Series("_new", fresh),
                ]
            )
            .lazy()
            .with_columns(pl.col("value").alias("raw"), *_DIFFERENCES[_has_exponential(rows)])
            .filter("_new")
            .select(_POINT_SCHEMA.keys())
            .collect(engine="in-memory")
        )
        # times rise strictly within a key once stale points are out: its last row is its latest
        latest = picked[order[np.flatnonzero(np.roll(first, -1))]]
        self.last = both[np.concatenate([np.flatnonzero(~is_known), latest])]
        rest = points[np.flatnonzero(~is_cumulative)]
        return pl.concat([rest, deltas]), late


_IS_CUMULATIVE: Final = (
    pl.col("cumulative")
    & ((pl.col("type") != "sum") | pl.col("is_monotonic"))
    & pl.col("type").is_in(_CUMULATIVE_KINDS)
)


def _first_of_key(key: np.ndarray) -> np.ndarray:
    """Whether each row of rows sorted by key is the first of its key."""
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return first


def _stale(key: np.ndarray, at: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Of rows sorted by (key, time, known first): the new points at or before the point before
    them, or at or before their series' last known point (a later poll's straggler sorts before
    that point, with no previous row, and would count whole as if the counter had reset)."""
    first = _first_of_key(key)
    series = np.cumsum(first) - 1
    known_at = np.full(series[-1] + 1, np.iinfo(np.int64).min, dtype=np.int64)
    has_known = np.zeros(len(known_at), dtype=bool)
    np.maximum.at(known_at, series[old], at[old])
    has_known[series[old]] = True
    previous = np.roll(at, 1)
    return ~old & ((~first & (at <= previous)) | (has_known[series] & (at <= known_at[series])))


def _resets(rows: pl.DataFrame, first: np.ndarray) -> np.ndarray:
    """Whether each row (sorted by series and time) counts whole: the first of its series, or a
    counter or histogram that went down, restarted, or changed its buckets. A comparison with a
    missing value is no reset (as in SQL's three-valued logic). The columns compared come out of
    one query: every Polars call on a Series is a query of its own."""
    columns = rows.select(_RESET_INPUTS)
    amount, present = columns["amount"].to_numpy(), columns["amount_ok"].to_numpy()
    reset = first.copy()
    reset[1:] |= present[1:] & present[:-1] & _less(amount[1:], amount[:-1])
    start = columns["start_time"].to_numpy()
    reset[1:] |= _differs(start, columns["start_time_ok"].to_numpy())[1:] & (start[1:] > 0)
    for name in ("buckets", "exp_scale"):
        reset[1:] |= _differs(columns[name].to_numpy(), columns[f"{name}_ok"].to_numpy())[1:]
    return reset


_RESET_INPUTS: Final = [
    pl.coalesce("value", "count").fill_null(0.0).alias("amount"),
    pl.coalesce("value", "count").is_not_null().alias("amount_ok"),
    *(
        expression
        for name, column in (
            ("start_time", pl.col("start_time")),
            ("buckets", pl.col("buckets").list.len()),
            ("exp_scale", pl.col("exp_scale")),
        )
        for expression in (column.fill_null(0).alias(name), column.is_not_null().alias(f"{name}_ok"))
    ),
]


def _less(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """`left < right` as Polars compares floats: NaN above every number and equal to itself."""
    return np.where(np.isnan(right), ~np.isnan(left), left < right)


def _differs(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Whether each value differs from the one before it, both present (position 0: False)."""
    out = np.zeros(len(values), dtype=bool)
    out[1:] = present[1:] & present[:-1] & (values[1:] != values[:-1])
    return out


def _has_exponential(rows: pl.DataFrame) -> bool:
    """Whether any row has exponential buckets to align (without them, aligning changes nothing)."""
    return any(
        rows[side].null_count() < rows.height and bool(rows[side].list.len().max()) for side in ("pos", "neg")
    )


def _difference_exprs(exponential: bool) -> list[pl.Expr]:
    """Each point minus the one before it in its series, or itself where `_reset` says it counts
    whole. The row before is masked where the series changes (`_same`): no list is subtracted
    from another series' list. Built once per `exponential` (whether exponential buckets need
    aligning): plans are built in Python, and building this one cost a third of its run on a
    small poll."""

    def prev(column: str) -> pl.Expr:
        return pl.when("_same").then(pl.col(column).shift(1))

    def minus(column: str) -> pl.Expr:
        return pl.when("_reset").then(pl.col(column)).otherwise(pl.col(column) - prev(column)).alias(column)

    def minus_list(column: str) -> pl.Expr:
        """`minus` for explicit buckets, the row before masked where its length differs: a change
        of buckets is a reset (`_resets`), but Polars evaluates the subtraction on every row and
        refuses lists of two lengths, which crashed the flow on such a histogram."""
        same_length = pl.col(column).list.len() == pl.col(column).shift(1).list.len()
        previous = pl.when(pl.col("_same") & same_length).then(pl.col(column).shift(1))
        return pl.when("_reset").then(pl.col(column)).otherwise(pl.col(column) - previous).alias(column)

    def minus_offset_list(column: str, offset: str) -> pl.Expr:
        """Exponential buckets of two points with different offsets: align, then subtract."""
        shift = pl.col(offset) - prev(offset)
        aligned = pl.concat_list([pl.lit(0.0).repeat_by(shift.clip(0, None)), prev(column)])
        return (
            pl.when(pl.col("_reset") | (shift < 0))
            .then(pl.col(column))
            .otherwise(_pad_minus(pl.col(column), aligned))
            .alias(column)
        )

    return [
        minus("value"), minus("count"), minus("sum"), minus("exp_zero"),
        minus_list("buckets"),
        *(minus_offset_list(side, f"{side}_offset") for side in ("pos", "neg") if exponential),
        pl.when("_reset").then(pl.col("min")).alias("min"),  # cumulative min/max span the whole life
        pl.when("_reset").then(pl.col("max")).alias("max"),
    ]  # fmt: skip


def _pad_minus(current: pl.Expr, previous: pl.Expr) -> pl.Expr:
    """current - previous elementwise, previous cut or zero-padded to current's length."""
    length = current.list.len()
    padded = pl.concat_list([previous, pl.lit(0.0).repeat_by(length)]).list.head(length)
    return current - padded


_DIFFERENCES: Final = {exponential: _difference_exprs(exponential) for exponential in (False, True)}


# -- points → partials ---------------------------------------------------------------------------
@dataclass
class Partial:
    """Mergeable aggregates of some series over some windows (see the module docstring)."""

    rows: pl.DataFrame
    buckets: pl.DataFrame

    @staticmethod
    def concat(parts: list[Partial]) -> Partial:
        return Partial(pl.concat([p.rows for p in parts]), pl.concat([p.buckets for p in parts]))

    def split(self, windows: pl.Series) -> tuple[Partial, Partial]:
        """(the part in `windows`, the rest), in one query."""
        inside = pl.col("window_start").is_in(windows.implode())
        rows, buckets = self.rows.lazy(), self.buckets.lazy()
        parts = pl.collect_all(
            [rows.filter(inside), buckets.filter(inside), rows.filter(~inside), buckets.filter(~inside)],
            engine="in-memory",
        )
        return Partial(parts[0], parts[1]), Partial(parts[2], parts[3])


_IS_NUMBER: Final = pl.col("type").is_in(["gauge", "sum"]) | (pl.col("metric_name") == SPAN_DURATION)
_IS_HIST: Final = (
    pl.col("type").is_in(["histogram", "exponential_histogram", "summary"]) & pl.col("count").is_not_null()
)
_COUNTER: Final = pl.col("is_monotonic") & (pl.col("type") == "sum")
_FOLDED: Final = [  # per point: what it adds to its window's partial
    pl.when(_IS_HIST).then(pl.col("count")).otherwise(1.0).alias("n"),
    pl.when(_IS_HIST).then(pl.col("sum")).otherwise(pl.col("value")).alias("s"),
    pl.when(_IS_NUMBER).then(pl.col("value")).otherwise(pl.col("min")).alias("lo"),
    pl.when(_IS_NUMBER).then(pl.col("value")).otherwise(pl.col("max")).alias("hi"),
    pl.when(_IS_HIST)
    .then(pl.col("sum") / pl.col("count"))
    .otherwise(pl.coalesce("raw", "value"))
    .alias("latest"),
    pl.when(_COUNTER).then(pl.col("value")).alias("inc"),
]
_ROWS_OF_POINTS: Final = [
    *(pl.col(c).first() for c in META),
    pl.len().cast(pl.Int64).alias("points"),
    pl.col("n").sum().alias("count"),
    pl.col("s").sum().alias("sum"),
    pl.col("lo").min().alias("min"),
    pl.col("hi").max().alias("max"),
    pl.col("time").max().alias("last_time"),
    pl.col("latest").sort_by("time").last().alias("last"),
    pl.col("inc").sum().alias("increase"),
    pl.col("inc").is_not_null().any().alias("has_increase"),
    pl.col("bounds").drop_nulls().last().alias("bounds"),
    pl.col("q_levels").sort_by("time").last().alias("q_levels"),
    pl.col("q_values").sort_by("time").last().alias("q_values"),
]
_SAMPLED: Final = (  # points whose values go into the window's exponential buckets
    _IS_NUMBER
    & ~_COUNTER
    & (pl.col("type") != "sum")
    & pl.col("value").is_not_null()
    & pl.col("value").is_finite()
)


def partials(points: pl.DataFrame, width_ns: int, sketch_scale: int, into: Partial | None = None) -> Partial:
    """Aggregate delta points into one partial per (series, window of `width_ns`), merged with
    `into` (a shard's open windows) when given: `merge(Partial.concat([into, partials(...)]))`.

    Rows and buckets are two plans over the same points, collected together, and the merge is
    part of them: each Polars query costs ~0.1 ms however small the poll, and this runs per shard
    and poll (a merge of its own was one query more, and a copy of the partial in between)."""
    folded = points.lazy().with_columns(window_start=pl.col("time") - pl.col("time") % width_ns)
    rows = folded.with_columns(_FOLDED).group_by(KEY).agg(_ROWS_OF_POINTS)
    buckets = _buckets(points, folded, sketch_scale)
    if into is not None:
        rows, buckets = _merged(
            pl.concat([into.rows.lazy(), rows]), pl.concat([into.buckets.lazy(), buckets])
        )
    rows_frame, buckets_frame = pl.collect_all([rows, buckets], engine="in-memory")
    return Partial(rows_frame, buckets_frame)


def _buckets(points: pl.DataFrame, folded: pl.LazyFrame, scale: int) -> pl.LazyFrame:
    """The bucket counts of `points` (`folded`: the same, with their window) as a plan. Column
    null counts are free: a kind no point has adds nothing to the plan."""
    value = pl.col("value")
    index = (value.abs().log(2) * (2.0**scale)).ceil().cast(pl.Int64) - 1
    frames = [
        folded.filter(_SAMPLED).select(
            *KEY, scheme=pl.lit("e"), scale=pl.lit(scale, pl.Int32),
            index=pl.when(value == 0).then(0).otherwise(index),
            sign=value.sign().cast(pl.Int8), count=pl.lit(1.0),
        )
    ]  # fmt: skip
    if _some(points, "buckets"):
        frames.append(
            folded.filter(pl.col("buckets").list.len() > 0)
            .select(*KEY, "buckets", index=pl.int_ranges(pl.col("buckets").list.len()))
            .explode("buckets", "index")
            .select(*KEY, scheme=pl.lit("x"), scale=pl.lit(0, pl.Int32), index="index",
                    sign=pl.lit(1, pl.Int8), count="buckets")
        )  # fmt: skip
    has_exponential = _some(points, "exp_scale")
    if has_exponential:
        exponential = folded.filter(pl.col("exp_scale").is_not_null())
        for side, sign in (("pos", 1), ("neg", -1)):
            frames.append(
                exponential.filter(pl.col(side).list.len() > 0)
                .with_columns(i=pl.int_ranges(pl.col(side).list.len()))
                .explode(side, "i")
                .select(*KEY, scheme=pl.lit("e"), scale="exp_scale", sign=pl.lit(sign, pl.Int8),
                        index=pl.col("i") + pl.col(f"{side}_offset"), count=side)
            )  # fmt: skip
        frames.append(
            exponential.filter(pl.col("exp_zero") > 0).select(
                *KEY, scheme=pl.lit("e"), scale="exp_scale", index=pl.lit(0, pl.Int64),
                sign=pl.lit(0, pl.Int8), count="exp_zero",
            )
        )  # fmt: skip
    buckets = pl.concat([f.select(_BUCKET_CASTS) for f in frames]).filter(pl.col("count") > 0)
    # without exponential histogram points, every exponential bucket is at the sketch's scale
    return _merge_buckets(buckets, rescale=has_exponential)


_BUCKET_CASTS: Final = [pl.col(name).cast(dtype) for name, dtype in _BUCKET_SCHEMA.items()]


def _some(frame: pl.DataFrame, column: str) -> bool:
    """Whether any row has `column` set (from the column's null count: no query)."""
    return frame[column].null_count() < frame.height


# -- merging --------------------------------------------------------------------------------------
_ROWS_OF_PARTIALS: Final = [
    *(pl.col(c).first() for c in META),
    pl.col("points").sum(),
    pl.col("count").sum(),
    pl.col("sum").sum(),
    pl.col("min").min(),
    pl.col("max").max(),
    pl.col("last_time").max(),
    pl.col("last").sort_by("last_time").last(),
    pl.col("increase").sum(),
    pl.col("has_increase").any(),
    pl.col("bounds").drop_nulls().last(),
    pl.col("q_levels").sort_by("last_time").last(),
    pl.col("q_values").sort_by("last_time").last(),
]


def merge(partial: Partial) -> Partial:
    """One partial per (series, window), whatever was concatenated (one query for both frames)."""
    rows, buckets = pl.collect_all(_merged(partial.rows.lazy(), partial.buckets.lazy()), engine="in-memory")
    return Partial(rows, buckets)  # columns in the order of `partials`


def _merged(rows: pl.LazyFrame, buckets: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The plans of `merge`, for `partials` to fold a poll's points into open windows with."""
    return rows.group_by(KEY).agg(_ROWS_OF_PARTIALS), _merge_buckets(buckets)


_LOW_SCALE: Final = pl.col("scale").min().over([*KEY, "scheme"])
_TO_LOW_SCALE: Final = [
    pl.when(pl.col("sign") == 0)
    .then(0)
    # floor division keeps a bucket's lower edge: index i at scale s is in i >> (s - low)
    .otherwise(pl.col("index") // (2 ** (pl.col("scale") - _LOW_SCALE)).cast(pl.Int64))
    .alias("index"),
    _LOW_SCALE.alias("scale"),
]


def _merge_buckets(buckets: pl.LazyFrame, rescale: bool = True) -> pl.LazyFrame:
    """Sum counts per bucket; exponential buckets first come down to their group's lowest scale
    (`rescale`: whether they may have several; the window expression costs ~0.2 ms a query)."""
    rescaled = buckets.with_columns(_TO_LOW_SCALE) if rescale else buckets
    return rescaled.group_by(list(_BUCKET_SCHEMA)[:-1]).agg(pl.col("count").sum())


def rebase(partial: Partial, width_ns: int) -> Partial:
    """The same aggregates assigned to the coarser windows of `width_ns` that contain them."""
    start = pl.col("window_start") - pl.col("window_start") % width_ns
    return Partial(
        partial.rows.with_columns(window_start=start), partial.buckets.with_columns(window_start=start)
    )


# -- partials → rollup rows ----------------------------------------------------------------------
def finalize(partial: Partial, width_ns: int, resolution: str) -> pa.Table:
    """Rollup rows (ROLLUPS_SCHEMA) of merged partials: rates and quantiles computed."""
    seconds = width_ns / 1e9
    quantiles = _quantiles(partial.buckets, partial.rows)
    rows = partial.rows.lazy().join(quantiles, on=KEY, how="left")
    rows = rows.with_columns(
        **{name: pl.coalesce(pl.col(name), _summary_quantile(level)) for name, level in QUANTILES.items()}
    )
    table = rows.select(
        pl.from_epoch("window_start", "ns").dt.replace_time_zone("UTC").dt.cast_time_unit("ns"),
        pl.from_epoch(pl.col("window_start") + width_ns, "ns")
        .dt.replace_time_zone("UTC")
        .alias("window_end"),
        pl.lit(resolution).alias("resolution"),
        pl.col("series_id").map_elements(lambda h: f"{h:016x}", return_dtype=pl.String),
        *(pl.col(c) for c in META if c != "labels"),
        decoded_labels(pl.col("labels")).cast(pl.Map(pl.String, pl.String)).alias("attributes"),
        "points", "count", "sum", "min", "max", "last",
        pl.when("has_increase").then(pl.col("increase")).alias("increase"),
        pl.when("has_increase").then(pl.col("increase") / seconds).alias("rate"),
        *QUANTILES,
    ).sort("metric_name", "series_id")  # fmt: skip
    return table.collect(engine="in-memory").to_arrow().cast(ROLLUPS_SCHEMA)  # one query for it all


def _summary_quantile(level: float) -> pl.Expr:
    """A summary's own quantile value at `level`, when its latest point reported that level."""
    position = pl.col("q_levels").list.eval(pl.element() == level).list.arg_max()
    found = pl.col("q_levels").list.contains(level)
    return pl.when(found).then(pl.col("q_values").list.get(position, null_on_oob=True))


def _quantiles(buckets: pl.DataFrame, rows: pl.DataFrame) -> pl.LazyFrame:
    """p50..p99 per (series, window) from bucket counts, clamped into the window's [min, max] (a plan)."""
    if buckets.is_empty():
        return pl.LazyFrame(
            schema={**{k: _BUCKET_SCHEMA[k] for k in KEY}, **dict.fromkeys(QUANTILES, pl.Float64)}
        )
    edges = rows.lazy().select(*KEY, "min", "max", "bounds")
    ordered = (
        buckets.lazy().join(edges, on=KEY, how="left").with_columns(_BUCKET_ORDER).sort(*KEY, "sign", "order")
    )
    for step in _QUANTILE_STEPS:
        ordered = ordered.with_columns(step)
    ordered = ordered.filter(pl.any_horizontal(f"_hit_{name}" for name in QUANTILES))
    return (
        ordered.with_columns(_QUANTILE_VALUES)
        .group_by(KEY)
        .agg(pl.col(name).drop_nulls().first() for name in QUANTILES)
    )


def _quantile_steps() -> tuple[list[list[pl.Expr]], list[pl.Expr]]:
    """The columns `_quantiles` adds in turn, and the quantile values of the rows it keeps. What
    several quantiles share is a column of its own: the plan of one expression per quantile, each
    repeating the bucket edges, took longer to optimise than a window's few hundred rows to compute."""
    base = 2.0 ** (2.0 ** -pl.col("scale").cast(pl.Float64))
    exp_lower = base.pow(pl.col("index").cast(pl.Float64))
    exp_value = (
        pl.when(pl.col("sign") == 0)
        .then(0.0)
        .otherwise(pl.col("sign").cast(pl.Float64) * exp_lower * base.sqrt())
    )
    x_lower = (
        pl.when(pl.col("index") == 0)
        .then(pl.coalesce(pl.col("min"), pl.min_horizontal(pl.lit(0.0), pl.col("bounds").list.first())))
        .otherwise(pl.col("bounds").list.get(pl.col("index") - 1, null_on_oob=True))
    )
    x_upper = pl.coalesce(
        pl.col("bounds").list.get(pl.col("index"), null_on_oob=True), pl.col("max"), pl.col("_lower")
    )
    # Counts are positive, so `cum` rises within a window: a quantile's bucket is the one row where
    # `cum` reaches its rank and the row before (if any, in the same window) did not. One pass for all.
    same_window = pl.all_horizontal(pl.col(k) == pl.col(k).shift(1) for k in KEY)
    previous_cum = pl.col("_previous_cum")
    hits = {
        f"_hit_{name}": (pl.col("cum") >= level * pl.col("total"))
        & (previous_cum.is_null() | (previous_cum < level * pl.col("total")))
        for name, level in QUANTILES.items()
    }
    steps = [
        [pl.col("count").cum_sum().over(KEY).alias("cum"), pl.col("count").sum().over(KEY).alias("total")],
        [
            (pl.col("cum") - pl.col("count")).alias("before"),
            exp_value.alias("_exp"),
            x_lower.alias("_lower"),
            pl.when(same_window).then(pl.col("cum").shift(1)).alias("_previous_cum"),
        ],
        [x_upper.alias("_upper")],
        [hit.alias(name) for name, hit in hits.items()],
    ]
    values = []
    for name, level in QUANTILES.items():
        rank = pl.lit(level) * pl.col("total")
        fraction = ((rank - pl.col("before")) / pl.col("count")).clip(0.0, 1.0)
        # Prometheus histogram_quantile interpolation
        x_value = pl.col("_lower") + (pl.col("_upper") - pl.col("_lower")) * fraction
        value = pl.when(pl.col("scheme") == "x").then(x_value).otherwise(pl.col("_exp"))
        values.append(pl.when(f"_hit_{name}").then(value.clip(pl.col("min"), pl.col("max"))).alias(name))
    return steps, values


_BUCKET_ORDER: Final = (
    pl.when(pl.col("sign") < 0).then(-pl.col("index")).otherwise(pl.col("index")).alias("order")
)
_QUANTILE_STEPS, _QUANTILE_VALUES = _quantile_steps()


def quantile_error(scale: int) -> float:
    """The largest relative error of an exponential-bucket quantile at `scale`."""
    return float(2.0 ** (2.0**-scale / 2) - 1)


def shard_of(series_ids: pl.Series, shards: int) -> np.ndarray:
    """Which keyed-state shard owns each series: the routing key of flows/rollups.py."""
    return (series_ids % shards).to_numpy()

"""`talonflow compare`: two cohorts of spans side by side, each measure with intervals and a verdict.

A cohort is every span whose attribute ATTR equals V: a span attribute (`variant=B`,
`gen_ai.request.model=gpt-4o`), a resource attribute (`service.version=1.2`) or a promoted
column of either; optionally narrowed to one service and span name, over a time range. The
spans are read across all tiers (talonflow/query.py) and reduced in Polars to a few hundred
rows before any statistics: memory is bounded by the number of latency buckets and models, not
by the number of spans.

Lower is better for every measure. The statistics, and why each:
- latency p50/p95/p99: percentile bootstrap. Durations are counted in log-spaced buckets
  (2**(1/128) apart: at most 0.27 % relative error) in the scan; resampling n spans with
  replacement is then a multinomial draw of n over the buckets, so the bootstrap never needs
  the spans themselves (scipy.stats.bootstrap does, hence this is hand-written). Only each
  percentile's own distribution over resamples is needed, and it is drawn exactly without the
  multinomial (which cost a second per comparison): the k-th smallest of n draws is the bucket
  where the cumulative count first reaches n * U, U ~ Beta(k, n + 1 - k), the k-th order statistic
  of n uniforms. The difference candidate - baseline is bootstrapped from the same draws; its
  two-sided p-value is twice the smaller share of resampled differences on either side of 0.
- error rate (status ERROR): Wilson score interval per cohort, Fisher's exact test for the
  difference (both scipy), exact for small counts and still fast for millions.
- tokens and cost per LLM call (spans that report token usage): t intervals and Welch's t-test
  from per-cohort sums and sums of squares (scipy.stats.ttest_ind_from_stats). Cost uses the
  price table (schemas/prices.py); calls of unpriced models are counted apart, never as $0.
- verdicts: Holm's correction over the measures compared, so that two identical cohorts get a
  false "better" or "worse" anywhere in the table in at most `1 - confidence` of comparisons.
  The overall verdict is worse if any measure is worse, better if some are better and none worse.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import polars as pl
import polars.selectors as cs
from pydantic import TypeAdapter, ValidationError
from scipy import stats

from schemas.config import TalonflowConfig
from schemas.datasets import ATTRIBUTE_COLUMNS, RESOURCE_COLUMNS
from schemas.prices import PriceTable
from schemas.types import Seconds
from talonflow.query import dataset_frame

BETTER, WORSE, SAME, NO_DATA = "better", "worse", "no detectable difference", "not enough data"
COHORTS: Final = ("baseline", "candidate")
VALUE: Final = "value"  # value_counts' column: the attribute's value a row counts
PERCENTILES: Final = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_BUCKETS_PER_OCTAVE: Final = 128
# Attributes with a typed column of their own (the first-choice key of each): read without the maps.
_PROMOTED: Final = {key: column for column, key in RESOURCE_COLUMNS} | {
    keys[0]: column for column, _type, keys in ATTRIBUTE_COLUMNS
}
Weights = Callable[[str], tuple[float, float] | None]  # a model's (input, output) weight; None: skip it


class CompareError(ValueError):
    """A comparison that cannot be made as asked: bad cohort, bad range, a cohort without spans."""


@dataclass(frozen=True)
class Cohort:
    attribute: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Cohort:
        attribute, sep, value = text.partition("=")
        if not sep or not attribute.strip():
            raise CompareError(f"expected ATTR=VALUE (e.g. service.version=1.2), got {text!r}")
        return cls(attribute.strip(), value.strip())

    def __str__(self) -> str:
        return f"{self.attribute}={self.value}"


@dataclass(frozen=True)
class Scope:
    """Which spans are compared: a time range [since, until), optionally one service and span name."""

    since: datetime
    until: datetime
    service: str | None = None
    span_name: str | None = None

    @staticmethod
    def parse(since: str, until: str | None, service: str | None, span_name: str | None) -> Scope:
        """The CLI's range: durations count back from now; `until` defaults to now."""
        now = datetime.now(UTC)
        return Scope(parse_time(since, now), parse_time(until, now) if until else now, service, span_name)


@dataclass(frozen=True)
class Method:
    """How sure a verdict must be, and how many bootstrap resamples measure the percentiles."""

    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0  # the bootstrap's: the same data always gives the same table

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise CompareError(f"confidence must be between 0 and 1, got {self.confidence}")
        if self.resamples < 100:
            raise CompareError(f"resamples must be at least 100, got {self.resamples}")


@dataclass(frozen=True)
class Estimate:
    """A value with its confidence interval and the observations (spans or LLM calls) behind it."""

    value: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class Measure:
    name: str  # latency_p50, latency_p95, latency_p99, error_rate, tokens_per_call, cost_per_call
    unit: str  # ms, ratio, tokens, USD
    method: str  # how the intervals and the test were computed
    baseline: Estimate
    candidate: Estimate
    change: Estimate  # candidate - baseline, with the interval of the difference
    p_value: float | None  # Holm-adjusted over the measures compared
    verdict: str  # better, worse, no detectable difference, not enough data


@dataclass(frozen=True)
class Comparison:
    baseline: Cohort
    candidate: Cohort
    scope: Scope
    confidence: float
    spans: dict[str, int]  # per cohort
    unpriced_calls: dict[str, int]  # per cohort: LLM calls of models without a price
    measures: tuple[Measure, ...]
    verdict: str

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["baseline"], data["candidate"] = str(self.baseline), str(self.candidate)
        data["scope"]["since"] = self.scope.since.isoformat()
        data["scope"]["until"] = self.scope.until.isoformat()
        return data


def parse_time(text: str, now: datetime) -> datetime:
    """`24h`, `90m`, `7d` (that long before now) or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return now - timedelta(seconds=TypeAdapter(Seconds).validate_python(text))
    except ValidationError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CompareError(f"invalid time {text!r}: expected a duration (24h, 30m, 7d) or ISO 8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def attribute(key: str) -> pl.Expr:
    """The value of attribute `key` as text: its promoted column, else the span's, else the resource's."""
    if key in _PROMOTED:  # the same value as in the maps, without reading them
        return pl.col(_PROMOTED[key]).cast(pl.String)
    return pl.coalesce(pl.col("attributes").map.get(key), pl.col("resource_attributes").map.get(key))


def compare(
    config: TalonflowConfig, baseline: Cohort, candidate: Cohort, scope: Scope, method: Method = Method()
) -> Comparison:
    """Compare two cohorts of the `spans` dataset across all tiers; see the module docstring."""
    prices = PriceTable.with_defaults(config.rollups.prices)
    return compare_spans(dataset_frame(config, "spans"), prices, baseline, candidate, scope, method)


def compare_spans(
    spans: pl.LazyFrame, prices: PriceTable, baseline: Cohort, candidate: Cohort, scope: Scope, method: Method
) -> Comparison:
    histogram, sums = pl.collect_all(cohort_counts(spans, baseline, candidate, scope), engine="streaming")
    return judge(spans, histogram, sums, prices, baseline, candidate, scope, method)


def cohort_counts(
    spans: pl.LazyFrame, baseline: Cohort, candidate: Cohort, scope: Scope
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The two small tables every measure comes from: span counts per duration bucket and
    cohort, and per-model sums. Both add up, so parts of the spans can be counted apart
    (the console keeps each file's counts: console/partials.py) and summed by `bucket` / `model`."""
    if scope.since >= scope.until:
        raise CompareError(f"empty range: since {scope.since.isoformat()} is not before until")
    flags = (attribute(c.attribute) == c.value for c in (baseline, candidate))
    flagged = _flagged(_in_scope(spans, scope), *(f.fill_null(False) for f in flags))
    return _histogram(flagged), _sums(flagged)


def value_counts(
    spans: pl.LazyFrame, key: str, service: str | None, span_name: str | None
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """`cohort_counts` of every value of attribute `key` at once, per `value` (both cohort columns
    count the value's spans): the counts of any two of its values are slices of these
    (`value_cohorts`), so the console keeps one table per attribute, not one per comparison.
    No time range: the caller gives the spans of its range."""
    value = attribute(key)
    selected = _of_service(spans, service, span_name)
    flagged = _flagged(selected, value.is_not_null(), value.is_not_null(), value.alias(VALUE))
    return _histogram(flagged, VALUE), _sums(flagged, VALUE)


def value_cohorts(
    histogram: pl.DataFrame, sums: pl.DataFrame, baseline: str, candidate: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`cohort_counts`' two tables for two values of one attribute, from `value_counts`' (summed)."""
    tables = []
    for table, key in ((histogram, "bucket"), (sums, "model")):
        baseline_part, candidate_part = (
            table.filter(pl.col(VALUE) == value).select(key, cs.starts_with(name))
            for value, name in zip((baseline, candidate), COHORTS, strict=True)
        )
        joined = baseline_part.join(candidate_part, on=key, how="full", coalesce=True)
        tables.append(joined.fill_null(0).sort(key))
    return tables[0], tables[1]


def _flagged(selected: pl.LazyFrame, baseline: pl.Expr, candidate: pl.Expr, *kept: pl.Expr) -> pl.LazyFrame:
    """The columns every measure needs (and `kept`), of the spans in either cohort, flagged by cohort."""
    return selected.select(
        baseline.alias("baseline"),
        candidate.alias("candidate"),
        *kept,
        pl.col("duration_ns"),
        (pl.col("status_code") == "ERROR").alias("error"),
        pl.coalesce("gen_ai_request_model", "gen_ai_response_model").fill_null("").alias("model"),
        pl.col("gen_ai_usage_input_tokens").alias("inp"),
        pl.col("gen_ai_usage_output_tokens").alias("out"),
    ).filter(pl.col("baseline") | pl.col("candidate"))


def judge(
    spans: pl.LazyFrame,
    histogram: pl.DataFrame,
    sums: pl.DataFrame,
    prices: PriceTable,
    baseline: Cohort,
    candidate: Cohort,
    scope: Scope,
    method: Method,
) -> Comparison:
    """The measures and verdicts from `cohort_counts`' tables; `spans` only to name what a cohort
    that matched nothing could have matched."""
    for cohort, name in zip((baseline, candidate), COHORTS, strict=True):
        if sums[f"{name}_spans"].sum() == 0:
            raise CompareError(f"{name} {cohort} matched no spans{_hint(_in_scope(spans, scope), cohort)}")
    alpha = 1 - method.confidence
    rng = np.random.default_rng(method.seed)
    measures = [*_latency(histogram, alpha, method.resamples, rng), _error_rate(sums, alpha)]
    measures += _per_call(sums, prices, alpha)
    unpriced = {name: _unpriced_calls(sums, prices, name) for name in COHORTS}
    spans_in = {name: int(sums[f"{name}_spans"].sum()) for name in COHORTS}
    judged = _judge(measures, alpha)
    return Comparison(
        baseline, candidate, scope, method.confidence, spans_in, unpriced, judged, _overall(judged)
    )


def _in_scope(spans: pl.LazyFrame, scope: Scope) -> pl.LazyFrame:
    """The range, by hive partition first (files outside it are never opened), then by start time."""
    days = pl.col("date").is_between(scope.since.date(), scope.until.date())
    times = (pl.col("start_time") >= scope.since) & (pl.col("start_time") < scope.until)
    return _of_service(spans.filter(days & times), scope.service, scope.span_name)


def _of_service(spans: pl.LazyFrame, service: str | None, span_name: str | None) -> pl.LazyFrame:
    selected = spans if service is None else spans.filter(pl.col("service_name") == service)
    return selected if span_name is None else selected.filter(pl.col("name") == span_name)


def _hint(selected: pl.LazyFrame, cohort: Cohort) -> str:
    """What the attribute does hold in the range, so that a typo shows at once."""
    seen = selected.select(attribute(cohort.attribute).alias("v")).drop_nulls().unique().sort("v").head(10)
    values = seen.collect()["v"].to_list()
    if not values:
        return f" (no span in range has {cohort.attribute})"
    return f" ({cohort.attribute} in range: {', '.join(values)})"


def duration_bucket() -> pl.Expr:
    """A span's log-spaced duration bucket, `bucket`: 2**(1/128) wide, so <= 0.27 % relative error."""
    return (pl.col("duration_ns").clip(lower_bound=1).log(2) * _BUCKETS_PER_OCTAVE).floor().cast(pl.Int64)


def bucket_ms() -> pl.Expr:
    """The middle of each `bucket` (duration_bucket) in milliseconds."""
    return pl.lit(2.0).pow((pl.col("bucket") + 0.5) / _BUCKETS_PER_OCTAVE) / 1e6


def _histogram(flagged: pl.LazyFrame, *by: str) -> pl.LazyFrame:
    """Span counts per log-spaced duration bucket and cohort (and `by`)."""
    return (
        flagged.filter(pl.col("duration_ns").is_not_null())
        .group_by(*by, duration_bucket().alias("bucket"))
        .agg(pl.col(name).sum().alias(name) for name in COHORTS)
        .sort(*by, "bucket")
    )


def _sums(flagged: pl.LazyFrame, *by: str) -> pl.LazyFrame:
    """Per model and cohort: spans, errors, LLM calls and the token sums that give means and variances."""
    inp, out = pl.col("inp").fill_null(0).cast(pl.Float64), pl.col("out").fill_null(0).cast(pl.Float64)
    llm = pl.col("inp").is_not_null() | pl.col("out").is_not_null()
    columns = []
    for name in COHORTS:
        member = pl.col(name)
        call = member & llm
        columns += [
            member.sum().alias(f"{name}_spans"),
            (member & pl.col("error")).sum().alias(f"{name}_errors"),
            call.sum().alias(f"{name}_calls"),
            *(
                pl.when(call).then(value).otherwise(0.0).sum().alias(f"{name}_{label}")
                for label, value in (
                    ("inp", inp),
                    ("out", out),
                    ("inp2", inp * inp),
                    ("out2", out * out),
                    ("inp_out", inp * out),
                )
            ),
        ]
    return flagged.group_by(*by, "model").agg(columns)


# -- latency -------------------------------------------------------------------------------------
def _latency(
    histogram: pl.DataFrame, alpha: float, resamples: int, rng: np.random.Generator
) -> list[Measure]:
    """Bootstrapped percentiles of both cohorts and of their difference, from the bucket counts."""
    ms = histogram.select(bucket_ms()).to_series().to_numpy()
    levels = list(PERCENTILES.values())
    counts = {name: histogram[name].to_numpy().astype(np.int64) for name in COHORTS}
    n = {name: int(c.sum()) for name, c in counts.items()}
    method = f"bootstrap ({resamples} resamples of log buckets, <=0.27% bucket error)"
    if min(n.values()) < 2:
        return [_untestable(f"latency_{label}", "ms", method, list(n.values())) for label in PERCENTILES]
    point = {name: _quantiles(ms, counts[name][None, :], levels)[0] for name in COHORTS}
    draws = {name: _resampled_quantiles(ms, counts[name], levels, resamples, rng) for name in COHORTS}
    diff = draws["candidate"] - draws["baseline"]
    bounds = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    measures = []
    for j, label in enumerate(PERCENTILES):
        cohorts = [_estimate(float(point[name][j]), draws[name][:, j], bounds, n[name]) for name in COHORTS]
        change = _estimate(float(point["candidate"][j] - point["baseline"][j]), diff[:, j], bounds, 0)
        tail = min(float(np.mean(diff[:, j] <= 0)), float(np.mean(diff[:, j] >= 0)))
        measures.append(_measure(f"latency_{label}", "ms", method, cohorts, change, min(1.0, 2 * tail)))
    return measures


def _quantiles(values: np.ndarray, counts: np.ndarray, levels: list[float]) -> np.ndarray:
    """Per row of bucket counts: the smallest bucket whose cumulative count reaches ceil(q * n)."""
    cumulative = counts.cumsum(axis=1)
    total = cumulative[:, -1:]
    ranks = np.maximum(1, np.ceil(np.asarray(levels)[None, :] * total))  # (rows, levels)
    index = (cumulative[:, None, :] < ranks[:, :, None]).sum(axis=2)
    return values[index]


def _resampled_quantiles(
    values: np.ndarray, counts: np.ndarray, levels: list[float], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, levels): each level's quantile in resamples of the n spans, by its order statistic."""
    n = int(counts.sum())
    ranks = np.maximum(1, np.ceil(np.asarray(levels) * n))  # the rank `_quantiles` picks, per level
    uniforms = rng.beta(ranks, n + 1 - ranks, size=(resamples, len(levels)))
    index = np.searchsorted(counts.cumsum(), uniforms * n, side="left")
    return values[np.minimum(index, len(values) - 1)]


def _estimate(value: float, draws: np.ndarray, bounds: list[float], n: int) -> Estimate:
    low, high = np.percentile(draws, bounds)
    return Estimate(value, float(low), float(high), n)


def _measure(
    name: str, unit: str, method: str, cohorts: list[Estimate], change: Estimate, p_value: float
) -> Measure:
    """A tested measure; its verdict comes once every p-value is known (`_judge`)."""
    return Measure(name, unit, method, cohorts[0], cohorts[1], change, p_value, "")


def _untestable(name: str, unit: str, method: str, n: list[int]) -> Measure:
    """Fewer than two observations in a cohort: nothing to estimate an interval from."""
    bare = [Estimate(None, None, None, count) for count in n]
    return Measure(name, unit, method, bare[0], bare[1], Estimate(None, None, None, 0), None, NO_DATA)


# -- error rate ----------------------------------------------------------------------------------
def _error_rate(sums: pl.DataFrame, alpha: float) -> Measure:
    n = {name: int(sums[f"{name}_spans"].sum()) for name in COHORTS}
    errors = {name: int(sums[f"{name}_errors"].sum()) for name in COHORTS}
    method = "Wilson interval, Fisher exact test"
    if min(n.values()) < 2:
        return _untestable("error_rate", "ratio", method, list(n.values()))
    cohorts = []
    for name in COHORTS:
        interval = stats.binomtest(errors[name], n[name]).proportion_ci(1 - alpha, method="wilson")
        cohorts.append(Estimate(errors[name] / n[name], float(interval.low), float(interval.high), n[name]))
    table = [[errors[name], n[name] - errors[name]] for name in COHORTS]
    p_value = float(stats.fisher_exact(table).pvalue)
    rates = [errors[name] / n[name] for name in COHORTS]
    change = Estimate(rates[1] - rates[0], None, None, 0)
    return _measure("error_rate", "ratio", method, cohorts, change, p_value)


# -- tokens and cost per call --------------------------------------------------------------------
def _per_call(sums: pl.DataFrame, prices: PriceTable, alpha: float) -> list[Measure]:
    """Tokens per LLM call over all calls; cost per call over calls of priced models."""
    method = "t intervals, Welch t-test"
    tokens = {name: _moments(sums, name, lambda _model: (1.0, 1.0)) for name in COHORTS}
    usd = {name: _moments(sums, name, lambda model: _usd(prices, model)) for name in COHORTS}
    return [
        _mean_measure("tokens_per_call", "tokens", method, tokens, alpha),
        _mean_measure("cost_per_call", "USD", method, usd, alpha),
    ]


def _usd(prices: PriceTable, model: str) -> tuple[float, float] | None:
    inp, out = prices.usd_per_token(model, "input"), prices.usd_per_token(model, "output")
    return None if inp is None or out is None else (inp, out)


def _moments(sums: pl.DataFrame, name: str, weights: Weights) -> tuple[int, float, float]:
    """(n, sum, sum of squares) of a*input + b*output per call, over the models `weights` prices."""
    n, total, squares = 0, 0.0, 0.0
    for row in sums.iter_rows(named=True):
        ab = weights(row["model"])
        if ab is None or not row[f"{name}_calls"]:
            continue
        a, b = ab
        n += row[f"{name}_calls"]
        total += a * row[f"{name}_inp"] + b * row[f"{name}_out"]
        squares += (
            a * a * row[f"{name}_inp2"] + 2 * a * b * row[f"{name}_inp_out"] + b * b * row[f"{name}_out2"]
        )
    return n, total, squares


def _unpriced_calls(sums: pl.DataFrame, prices: PriceTable, name: str) -> int:
    return sum(
        row[f"{name}_calls"] for row in sums.iter_rows(named=True) if _usd(prices, row["model"]) is None
    )


def _mean_measure(
    label: str, unit: str, method: str, moments: dict[str, tuple[int, float, float]], alpha: float
) -> Measure:
    described = {}
    for name, (n, total, squares) in moments.items():
        mean = total / n if n else math.nan
        var = max(0.0, (squares - total * mean) / (n - 1)) if n > 1 else math.nan
        described[name] = (n, mean, math.sqrt(var))
    if min(n for n, _m, _s in described.values()) < 2:
        return _untestable(label, unit, method, [d[0] for d in described.values()])
    cohorts = [_t_interval(n, mean, sd, alpha) for n, mean, sd in described.values()]
    (n1, m1, s1), (n2, m2, s2) = described.values()
    se = math.sqrt(s1 * s1 / n1 + s2 * s2 / n2)
    if se == 0:  # constant values in both cohorts: the means differ or they do not
        p_value, low, high = (1.0 if m1 == m2 else 0.0), m2 - m1, m2 - m1
    else:
        p_value = float(stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)
        dof = se**4 / ((s1 * s1 / n1) ** 2 / (n1 - 1) + (s2 * s2 / n2) ** 2 / (n2 - 1))
        half = float(stats.t.ppf(1 - alpha / 2, dof)) * se
        low, high = m2 - m1 - half, m2 - m1 + half
    return _measure(label, unit, method, cohorts, Estimate(m2 - m1, low, high, 0), p_value)


def _t_interval(n: int, mean: float, sd: float, alpha: float) -> Estimate:
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


# -- verdicts ------------------------------------------------------------------------------------
def _judge(measures: list[Measure], alpha: float) -> tuple[Measure, ...]:
    """Holm's step-down correction over the measures that could be tested, then a verdict each.

    Hand-written: four lines, where statsmodels' multipletests would be a large dependency.
    """
    tested = sorted(
        (m.p_value, i) for i, m in enumerate(measures) if m.verdict != NO_DATA and m.p_value is not None
    )
    adjusted: dict[int, float] = {}
    running = 0.0
    for rank, (p_value, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p_value))
        adjusted[i] = running
    judged = []
    for i, m in enumerate(measures):
        if i not in adjusted:
            judged.append(dataclasses.replace(m, verdict=NO_DATA))
            continue
        change = m.change.value or 0.0
        verdict = SAME if adjusted[i] >= alpha or change == 0 else WORSE if change > 0 else BETTER
        judged.append(dataclasses.replace(m, p_value=adjusted[i], verdict=verdict))
    return tuple(judged)


def _overall(measures: tuple[Measure, ...]) -> str:
    verdicts = {m.verdict for m in measures}
    if WORSE in verdicts:
        return WORSE
    if BETTER in verdicts:
        return BETTER
    return SAME if SAME in verdicts else NO_DATA


# -- the terminal table --------------------------------------------------------------------------
def render(result: Comparison) -> str:
    """The comparison as a table for people: values with intervals, the change, p-value and verdict."""
    scope = result.scope
    narrowed = "".join(
        f", {label} {value}"
        for label, value in (("service", scope.service), ("span", scope.span_name))
        if value
    )
    lines = [
        f"{result.baseline} ({result.spans['baseline']:,} spans) vs "
        f"{result.candidate} ({result.spans['candidate']:,} spans)",
        f"{scope.since:%Y-%m-%d %H:%M:%S} to {scope.until:%Y-%m-%d %H:%M:%S} UTC{narrowed}; "
        f"{result.confidence:.0%} intervals, p-values Holm-adjusted",
        "",
    ]
    rows = [("MEASURE", "BASELINE", "CANDIDATE", "CHANGE", "P", "VERDICT")]
    for m in result.measures:
        label = f"{m.name.replace('_', ' ')}" + (" (ms)" if m.unit == "ms" else "")
        p_value = "-" if m.p_value is None else "<0.001" if m.p_value < 0.001 else f"{m.p_value:.3f}"
        rows.append(
            (label, _cell(m.baseline, m.unit), _cell(m.candidate, m.unit), _change(m), p_value, m.verdict)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    flagged = [m.name.replace("_", " ") for m in result.measures if m.verdict == result.verdict]
    detail = f" ({', '.join(flagged)})" if result.verdict in (BETTER, WORSE) else ""
    lines += ["", f"verdict: {result.verdict}{detail}"]
    if any(result.unpriced_calls.values()):
        counts = ", ".join(f"{name} {n:,}" for name, n in result.unpriced_calls.items())
        lines.append(f"unpriced LLM calls (models without a price, left out of cost per call): {counts}")
    return "\n".join(lines)


def _number(value: float, unit: str, signed: bool = False) -> str:
    sign = "+" if signed and value > 0 else ""
    if unit == "ratio":
        return f"{sign}{value * 100:.2f}%"
    if unit == "USD":
        return f"{sign}${value:.4g}" if value >= 0 else f"-${-value:.4g}"
    return f"{sign}{value:,.4g}"


def _cell(estimate: Estimate, unit: str) -> str:
    if estimate.value is None:
        return f"- (n={estimate.n})"
    if estimate.low is None or estimate.high is None:
        return _number(estimate.value, unit)
    return f"{_number(estimate.value, unit)} [{_number(estimate.low, unit)}, {_number(estimate.high, unit)}]"


def _change(m: Measure) -> str:
    if m.change.value is None:
        return "-"
    if m.unit == "ratio":  # a change of a rate is in percentage points
        return f"{m.change.value * 100:+.2f} pp"
    text = _number(m.change.value, m.unit, signed=True)
    if m.baseline.value:
        text += f" ({m.change.value / m.baseline.value:+.1%})"
    return text

"""talonflow/compare.py on spans drawn from known distributions: verdicts, intervals, cohorts, errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from scipy import stats

from schemas.config import Price
from schemas.datasets import SPANS
from schemas.prices import PriceTable
from talonflow.compare import (
    BETTER,
    NO_DATA,
    SAME,
    WORSE,
    Cohort,
    CompareError,
    Comparison,
    Method,
    Scope,
    compare_spans,
    parse_time,
    render,
)

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
DAY = Scope(datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))
PRICES = PriceTable({"m-priced": Price(input=3.0, output=15.0)})
V1, V2 = Cohort("service.version", "1"), Cohort("service.version", "2")


def spans(
    n: int,
    rng: np.random.Generator,
    slower: float = 1.0,
    error_rate: float = 0.05,
    output_tokens: float = 200,
    **columns: Any,
) -> pl.DataFrame:
    """`n` LLM-call spans: lognormal latency around 50 ms, Bernoulli errors, Poisson tokens."""
    data: dict[str, Any] = {column: [None] * n for column in SPANS.schema.names}
    data.update(
        start_time=[T0 + timedelta(milliseconds=i) for i in range(n)],
        duration_ns=(rng.lognormal(np.log(50e6), 0.5, n) * slower).astype(np.int64).tolist(),
        status_code=np.where(rng.random(n) < error_rate, "ERROR", "OK").tolist(),
        service_name=["gateway"] * n,
        name=["chat"] * n,
        gen_ai_request_model=["m-priced"] * n,
        gen_ai_usage_input_tokens=rng.poisson(1000, n).tolist(),
        gen_ai_usage_output_tokens=rng.poisson(output_tokens, n).tolist(),
    )
    data.update(
        {column: [value] * n if not isinstance(value, list) else value for column, value in columns.items()}
    )
    frame = pl.from_arrow(pa.Table.from_pydict(data, schema=SPANS.schema))
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(
        date=pl.col("start_time").dt.date(), hour=pl.col("start_time").dt.hour().cast(pl.Int8)
    )


def run(
    *frames: pl.DataFrame, baseline: Cohort = V1, candidate: Cohort = V2, scope: Scope = DAY, seed: int = 0
) -> Comparison:
    method = Method(resamples=1000, seed=seed)
    return compare_spans(pl.concat(frames).lazy(), PRICES, baseline, candidate, scope, method)


def by_name(result: Comparison) -> dict[str, Any]:
    return {m.name: m for m in result.measures}


def test_a_clearly_slower_candidate_is_worse_with_intervals_that_hold_the_truth() -> None:
    rng = np.random.default_rng(1)
    result = run(spans(2000, rng, service_version="1"), spans(2000, rng, slower=1.3, service_version="2"))
    measures = by_name(result)
    assert result.verdict == WORSE
    for label, level in (("latency_p50", 0.5), ("latency_p95", 0.95)):
        m = measures[label]
        assert m.verdict == WORSE and m.change.low > 0
        truth = math.exp(math.log(50) + 0.5 * stats.norm.ppf(level))  # the lognormal's quantile, in ms
        assert m.baseline.low < truth < m.baseline.high
        assert m.candidate.low < truth * 1.3 < m.candidate.high
    assert measures["error_rate"].verdict == SAME
    assert measures["tokens_per_call"].verdict == SAME


def test_identical_cohorts_show_no_detectable_difference_in_most_seeds() -> None:
    verdicts = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        result = run(spans(400, rng, service_version="1"), spans(400, rng, service_version="2"), seed=seed)
        verdicts.append(result.verdict)
    assert verdicts.count(SAME) >= 27, verdicts  # Holm keeps false verdicts near 5 % of comparisons


def test_a_faster_candidate_with_fewer_errors_is_better() -> None:
    rng = np.random.default_rng(2)
    baseline = spans(3000, rng, error_rate=0.10, service_version="1")
    candidate = spans(3000, rng, slower=0.7, error_rate=0.03, service_version="2")
    result = run(baseline, candidate)
    measures = by_name(result)
    assert result.verdict == BETTER
    assert measures["error_rate"].verdict == BETTER and measures["latency_p50"].verdict == BETTER


def test_error_rate_has_wilson_intervals() -> None:
    rng = np.random.default_rng(3)
    result = run(spans(1000, rng, error_rate=0.0, service_version="1"), spans(1000, rng, service_version="2"))
    m = by_name(result)["error_rate"]
    assert (
        m.baseline.value == 0 and m.baseline.low == 0
    )  # Wilson, unlike the normal interval, stays in [0, 1]
    z = stats.norm.ppf(0.975)
    assert m.baseline.high == pytest.approx(z * z / (1000 + z * z))  # Wilson's upper bound at 0 of n
    assert m.verdict == WORSE and result.verdict == WORSE


def test_tokens_and_cost_per_call_and_unpriced_models_are_not_zero_dollars() -> None:
    rng = np.random.default_rng(4)
    baseline = spans(500, rng, service_version="1")
    unpriced = spans(300, rng, gen_ai_request_model="m-unknown", service_version="1")
    candidate = spans(500, rng, output_tokens=400, service_version="2")
    result = run(baseline, unpriced, candidate)
    measures = by_name(result)
    assert result.unpriced_calls == {"baseline": 300, "candidate": 0}
    cost = measures["cost_per_call"]
    assert cost.baseline.n == 500 and cost.candidate.n == 500  # unpriced calls are left out, not $0
    expected = baseline.select(
        pl.col("gen_ai_usage_input_tokens") * 3e-6 + pl.col("gen_ai_usage_output_tokens") * 15e-6
    ).to_series()
    assert cost.baseline.value == pytest.approx(expected.mean())
    assert cost.baseline.high - cost.baseline.value == pytest.approx(
        stats.t.ppf(0.975, 499) * expected.std() / math.sqrt(500)
    )
    assert cost.verdict == WORSE and measures["tokens_per_call"].verdict == WORSE
    assert measures["tokens_per_call"].baseline.n == 800


def test_percentiles_match_numpy_within_the_bucket_error() -> None:
    rng = np.random.default_rng(5)
    frame = spans(5000, rng, service_version="1")
    result = run(frame, spans(5000, rng, service_version="2"))
    durations = frame["duration_ns"].to_numpy() / 1e6
    for label, level in (("latency_p50", 0.5), ("latency_p95", 0.95), ("latency_p99", 0.99)):
        exact = np.quantile(durations, level, method="inverted_cdf")
        assert by_name(result)[label].baseline.value == pytest.approx(exact, rel=0.003)


def test_cohorts_by_span_attribute_resource_attribute_service_span_name_and_time() -> None:
    rng = np.random.default_rng(6)
    frames = [
        spans(50, rng, attributes=[[("variant", "A")]] * 50, resource_attributes=[[("region", "eu")]] * 50),
        spans(70, rng, attributes=[[("variant", "B")]] * 70, resource_attributes=[[("region", "us")]] * 70),
        spans(20, rng, attributes=[[("variant", "B")]] * 20, service_name="other"),
        spans(10, rng, attributes=[[("variant", "B")]] * 10, name="tool"),
    ]
    by_variant = run(*frames, baseline=Cohort("variant", "A"), candidate=Cohort("variant", "B"))
    assert by_variant.spans == {"baseline": 50, "candidate": 100}
    by_region = run(*frames, baseline=Cohort("region", "eu"), candidate=Cohort("region", "us"))
    assert by_region.spans == {"baseline": 50, "candidate": 70}
    narrowed = Scope(DAY.since, DAY.until, service="gateway", span_name="chat")
    scoped = run(*frames, baseline=Cohort("variant", "A"), candidate=Cohort("variant", "B"), scope=narrowed)
    assert scoped.spans == {"baseline": 50, "candidate": 70}
    by_model = run(
        *frames, baseline=Cohort("gen_ai.request.model", "m-priced"), candidate=Cohort("variant", "B")
    )
    assert by_model.spans == {"baseline": 150, "candidate": 100}  # a span may be in both cohorts
    later = Scope(T0 + timedelta(hours=1), DAY.until)
    with pytest.raises(CompareError, match="matched no spans"):
        run(*frames, baseline=Cohort("variant", "A"), candidate=Cohort("variant", "B"), scope=later)


def test_a_cohort_without_spans_names_the_values_that_exist() -> None:
    rng = np.random.default_rng(7)
    frames = [spans(10, rng, service_version="1.2"), spans(10, rng, service_version="1.3")]
    with pytest.raises(CompareError, match=r"candidate service\.version=1\.4 matched no spans.*1\.2, 1\.3"):
        run(*frames, baseline=Cohort("service.version", "1.2"), candidate=Cohort("service.version", "1.4"))


def test_one_span_per_cohort_is_not_enough_data() -> None:
    rng = np.random.default_rng(8)
    result = run(spans(1, rng, service_version="1"), spans(1, rng, service_version="2"))
    assert result.verdict == NO_DATA
    assert {m.verdict for m in result.measures if m.name.startswith("latency")} == {NO_DATA}


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(CompareError, match="expected ATTR=VALUE"):
        Cohort.parse("service.version")
    with pytest.raises(CompareError, match="invalid time 'yesterday'"):
        parse_time("yesterday", T0)
    assert parse_time("2h", T0) == T0 - timedelta(hours=2)
    assert parse_time("2026-12-01T08:00:00", T0) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    rng = np.random.default_rng(9)
    with pytest.raises(CompareError, match="empty range"):
        run(spans(5, rng), scope=Scope(DAY.until, DAY.since))
    with pytest.raises(CompareError, match="confidence must be between 0 and 1"):
        Method(confidence=95)


def test_table_and_json_show_every_measure() -> None:
    rng = np.random.default_rng(10)
    result = run(spans(300, rng, service_version="1"), spans(300, rng, slower=1.5, service_version="2"))
    table = render(result)
    assert "service.version=1 (300 spans) vs service.version=2 (300 spans)" in table
    for label in ("latency p50 (ms)", "latency p99 (ms)", "error rate", "tokens per call", "cost per call"):
        assert label in table
    assert "verdict: worse (latency p50" in table
    data = result.to_json()
    assert data["verdict"] == WORSE and data["baseline"] == "service.version=1"
    assert [m["name"] for m in data["measures"]] == [m.name for m in result.measures]

"""The Compare page: two cohorts of spans by any attribute, judged by talonflow/compare.py.

The statistics are the CLI's (`talonflow compare`), so the page and a CI gate never disagree;
this module only reads the form and lays the intervals out for drawing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from console.partials import aggregate
from console.scan import scan
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.prices import PriceTable
from talonflow.compare import COHORTS, Cohort, Comparison, Method, Scope, cohort_counts, judge


def compare_page(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> dict[str, Any]:
    """The comparison asked for by the URL, or none yet when the form is still empty."""
    if not params.get("baseline") or not params.get("candidate"):
        return {"result": None, "intervals": []}
    baseline, candidate = Cohort.parse(params["baseline"]), Cohort.parse(params["candidate"])
    scope = Scope(window.start, window.end, params.get("service") or None, params.get("name") or None)
    result = compare_window(config, baseline, candidate, scope, window)
    return {"result": result, "intervals": intervals(result)}


def compare_window(
    config: TalonflowConfig, baseline: Cohort, candidate: Cohort, scope: Scope, window: TimeRange
) -> Comparison:
    """`talonflow compare` over the window, its counts summed from each file's (console/partials.py).

    A whole file's counts do not depend on the range, only on the cohorts and the scope's
    service and span name, so those name the kept counts.
    """
    name = f"compare {baseline} | {candidate} | {scope.service} | {scope.span_name}"

    def histogram(spans: pl.LazyFrame) -> pl.LazyFrame:
        return cohort_counts(spans, baseline, candidate, scope)[0]

    def sums(spans: pl.LazyFrame) -> pl.LazyFrame:
        return cohort_counts(spans, baseline, candidate, scope)[1]

    parts = aggregate(config, "spans", window, {f"{name} histogram": histogram, f"{name} sums": sums})
    counts = parts[f"{name} histogram"].group_by("bucket").agg(pl.col(COHORTS).sum()).sort("bucket")
    per_model = parts[f"{name} sums"].group_by("model").agg(pl.exclude("model").sum())
    prices = PriceTable.with_defaults(config.rollups.prices)
    return judge(
        scan(config, "spans", window), counts, per_model, prices, baseline, candidate, scope, Method()
    )


def intervals(result: Comparison) -> list[dict[str, Any]]:
    """Per measure, both cohorts' value and interval in percent of a shared axis (0 to the largest bound)."""
    laid_out = []
    for measure in result.measures:
        estimates = {"baseline": measure.baseline, "candidate": measure.candidate}
        top = max((e.high or e.value or 0.0 for e in estimates.values()), default=0.0) or 1.0
        bars = {
            name: None
            if e.value is None
            else {
                "low": 100 * (e.low if e.low is not None else e.value) / top,
                "high": 100 * (e.high if e.high is not None else e.value) / top,
                "value": 100 * e.value / top,
            }
            for name, e in estimates.items()
        }
        laid_out.append({"measure": measure, "bars": bars})
    return laid_out

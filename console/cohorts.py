"""The Compare page: two cohorts of spans by any attribute, judged by talonflow/compare.py.

The statistics are the CLI's (`talonflow compare`), so the page and a CI gate never disagree;
this module only reads the form and lays the intervals out for drawing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import polars as pl

from console.partials import Partial, aggregate
from console.scan import scan
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.prices import PriceTable
from talonflow.compare import (
    VALUE,
    Cohort,
    Comparison,
    Method,
    Scope,
    cohort_counts,
    judge,
    value_cohorts,
    value_counts,
)

# The rows come narrowed to the window by the scan; a file's kept counts serve every later range.
_FIRST, _LAST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
WARM_ATTRIBUTES = ("service.version",)  # compared by value: console/warmer.py keeps their counts


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
    service and span name, so those name the kept counts. Two values of one attribute (two
    versions, two models) are read from the counts of all its values (`value_queries`), which
    console/warmer.py keeps for WARM_ATTRIBUTES: a comparison never asked before costs a merge.
    """
    if baseline.attribute == candidate.attribute:
        queries = value_queries(baseline.attribute, scope.service, scope.span_name)
    else:
        name = f"compare {baseline} | {candidate} | {scope.service} | {scope.span_name}"
        whenever = dataclasses.replace(scope, since=_FIRST, until=_LAST)  # the scan gives the range
        queries = {
            f"{name} histogram": lambda spans: cohort_counts(spans, baseline, candidate, whenever)[0],
            f"{name} sums": lambda spans: cohort_counts(spans, baseline, candidate, whenever)[1],
        }
    same = baseline.attribute == candidate.attribute
    groups = ((VALUE, "bucket"), (VALUE, "model")) if same else (("bucket",), ("model",))
    # Summed once per set of whole files (`aggregate`'s merges), then with the edges at each view.
    merges = {name: partial(_summed, by=by) for name, by in zip(queries, groups, strict=True)}
    parts = aggregate(config, "spans", window, queries, merges=merges)
    histograms, sums = (merges[name](part) for name, part in parts.items())
    if same:
        counts, per_model = value_cohorts(histograms, sums, baseline.value, candidate.value)
    else:
        counts, per_model = histograms, sums
    prices = PriceTable.with_defaults(config.rollups.prices)
    return judge(
        scan(config, "spans", window), counts, per_model, prices, baseline, candidate, scope, Method()
    )


def value_queries(key: str, service: str | None, span_name: str | None) -> dict[str, Partial]:
    """The per-file counts of every value of attribute `key` (talonflow.compare.value_counts),
    by name: a histogram and per-model sums."""
    name = f"compare values {key} | {service} | {span_name}"
    return {
        f"{name} histogram": lambda spans: value_counts(spans, key, service, span_name)[0],
        f"{name} sums": lambda spans: value_counts(spans, key, service, span_name)[1],
    }


def _summed(parts: pl.DataFrame, by: tuple[str, ...]) -> pl.DataFrame:
    """Files' counts added up per group."""
    return parts.group_by(*by).agg(pl.exclude(*by).sum()).sort(*by)


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

"""The Compare page: two cohorts of spans by any attribute, judged by talonflow/compare.py.

The statistics are the CLI's (`talonflow compare`), so the page and a CI gate never disagree;
this module only reads the form and lays the intervals out for drawing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.compare import Cohort, Comparison, Scope, compare


def compare_page(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> dict[str, Any]:
    """The comparison asked for by the URL, or none yet when the form is still empty."""
    if not params.get("baseline") or not params.get("candidate"):
        return {"result": None, "intervals": []}
    baseline, candidate = Cohort.parse(params["baseline"]), Cohort.parse(params["candidate"])
    scope = Scope(window.start, window.end, params.get("service") or None, params.get("name") or None)
    result = compare(config, baseline, candidate, scope)
    return {"result": result, "intervals": intervals(result)}


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

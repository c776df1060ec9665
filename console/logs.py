"""The Logs page: filter by service, severity, text, trace or session; each line links to its trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from console.scan import rows, scan
from console.sessions import SESSION_KEY
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.compare import attribute

LIMIT = 500
# OTLP severity numbers: the lowest of each named range, for "this level and worse".
SEVERITIES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}


class LogFilterError(ValueError):
    """A filter that cannot be used; the message names it."""


def log_lines(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> list[dict[str, Any]]:
    logs = scan(config, "logs", window)
    if params.get("service"):
        logs = logs.filter(pl.col("service_name") == params["service"])
    if params.get("severity"):
        level = params["severity"].lower()
        if level not in SEVERITIES:
            raise LogFilterError(f"severity: {params['severity']!r} is not one of {', '.join(SEVERITIES)}")
        logs = logs.filter(pl.col("severity_number") >= SEVERITIES[level])
    if params.get("q"):
        logs = logs.filter(pl.col("body").str.contains(params["q"], literal=True))
    if params.get("trace"):
        logs = logs.filter(pl.col("trace_id") == params["trace"].strip().lower())
    if params.get("session"):
        session = params["session"]
        traces = (
            scan(config, "spans", window)
            .filter(attribute(SESSION_KEY) == session)
            .select("trace_id")
            .unique()
        )
        in_session = (attribute(SESSION_KEY) == session).fill_null(False)
        logs = logs.filter(in_session | pl.col("trace_id").is_in(traces.collect()["trace_id"].to_list()))
    columns = ["time", "service_name", "severity_number", "severity_text", "body", "trace_id", "span_id"]
    return rows(logs.sort("time", descending=True).head(LIMIT).select(columns))

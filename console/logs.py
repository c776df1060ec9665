"""The Logs page: filter by service, severity, text, trace or session; each line links to its trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from console.partials import Partial, newest_first
from console.scan import rows, scan_files
from console.timerange import TimeRange
from console.trace_index import SESSION, SESSION_KEY, files_holding
from schemas.config import TalonflowConfig
from talonflow.compare import attribute

LIMIT = 500
COLUMNS = ("time", "service_name", "severity_number", "severity_text", "body", "trace_id", "span_id")
FILTERS = ("service", "severity", "q", "session")
# OTLP severity numbers: the lowest of each named range, for "this level and worse".
SEVERITIES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}


class LogFilterError(ValueError):
    """A filter that cannot be used; the message names it."""


def newest_lines(filters: list[pl.Expr]) -> Partial:
    """Per file, its newest LIMIT lines matching every filter (what the list shows of them)."""

    def newest(logs: pl.LazyFrame) -> pl.LazyFrame:
        matching = logs.filter(*filters) if filters else logs
        return matching.sort("time", descending=True).head(LIMIT).select(COLUMNS)

    return newest


def lines_name(used: Mapping[str, str]) -> str:
    """The name of the kept per-file lines: everything they depend on (console/partials.py)."""
    return f"log lines {sorted(used.items())}"


def log_lines(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> list[dict[str, Any]]:
    """The newest LIMIT lines matching every filter: one trace's from its files (the trace index),
    others from the newest hours first."""
    filters = []
    used = {k: v for k, v in params.items() if k in FILTERS}  # what the kept per-file lines depend on
    if params.get("service"):
        filters.append(pl.col("service_name") == params["service"])
    if params.get("severity"):
        level = params["severity"].lower()
        if level not in SEVERITIES:
            raise LogFilterError(f"severity: {params['severity']!r} is not one of {', '.join(SEVERITIES)}")
        filters.append(pl.col("severity_number") >= SEVERITIES[level])
    if params.get("q"):
        filters.append(pl.col("body").str.contains(params["q"], literal=True))
    if params.get("session"):
        session = params["session"]
        traces = (
            scan_files(config, "spans", files_holding(config, "spans", [session], window, SESSION), window)
            .filter(attribute(SESSION_KEY) == session)
            .select("trace_id")
            .unique()
        )
        in_session = (attribute(SESSION_KEY) == session).fill_null(False)
        session_traces = sorted(traces.collect()["trace_id"].to_list())
        filters.append(in_session | pl.col("trace_id").is_in(session_traces))
        used["session traces"] = ",".join(session_traces)  # they may grow as the session goes on
    newest = newest_lines(filters)
    if params.get("trace"):
        trace = params["trace"].strip().lower()
        filters.append(pl.col("trace_id") == trace)
        return rows(
            newest(scan_files(config, "logs", files_holding(config, "logs", [trace], window), window))
        )
    found = newest_first(config, "logs", window, lines_name(used), newest, LIMIT)
    return found.sort("time", descending=True).head(LIMIT).to_dicts()

"""The Traces page: search, and one trace as a waterfall that follows sub-agents across services.

A sub-agent may continue its caller's trace (parent/child) or start a trace of its own that
links back (span links), as agent frameworks do for background work; the waterfall joins both,
so a three-level chain across services reads as one tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import polars as pl

from console import slow_spans
from console.partials import Partial, aggregate, newest_first
from console.scan import scan_files
from console.timeline import lay_out
from console.timerange import TimeRange
from console.trace_index import SESSION, files_holding, hashes_held
from console.trace_rows import trace_rows
from schemas.config import TalonflowConfig
from talonflow.compare import attribute

SEARCH_LIMIT = 100
FILTERS = ("service", "name", "status", "min_ms", "attr")  # the search's filters but the id ones
LINK_HOPS = 3  # linked traces followed from the one asked for: a chain of sub-agents three deep


class SearchError(ValueError):
    """A search parameter that cannot be used; the message names it."""


def span_filters(params: Mapping[str, str]) -> list[pl.Expr]:
    """Filters from the search form: service, name, status, min_ms, session, trace, attr=key=value."""
    filters = []
    if params.get("service"):
        filters.append(pl.col("service_name") == params["service"])
    if params.get("name"):
        filters.append(pl.col("name").str.contains(params["name"], literal=True))
    if params.get("status"):
        filters.append(pl.col("status_code") == params["status"].upper())
    if (minimum := min_duration_ns(params)) is not None:
        filters.append(pl.col("duration_ns") >= minimum)
    if params.get("session"):
        filters.append(attribute("session.id") == params["session"])
    if params.get("trace"):
        filters.append(pl.col("trace_id") == params["trace"].strip().lower())
    if params.get("attr"):
        key, sep, value = params["attr"].partition("=")
        if not sep or not key.strip():
            raise SearchError(
                f"attr: {params['attr']!r} should read key=value, e.g. gen_ai.request.model=gpt-4o"
            )
        filters.append(attribute(key.strip()) == value.strip())
    return filters


def min_duration_ns(params: Mapping[str, str]) -> float | None:
    """The search's minimum span duration in nanoseconds (`min_ms`), None without one."""
    if not params.get("min_ms"):
        return None
    try:
        return float(params["min_ms"]) * 1e6
    except ValueError:
        raise SearchError(f"min_ms: {params['min_ms']!r} is not a number of milliseconds") from None


def _id_files(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> list[str] | None:
    """The only files a trace or session filter can match (console/trace_index.py); None without one."""
    if params.get("trace"):
        return files_holding(config, "spans", [params["trace"].strip().lower()], window)
    if params.get("session"):
        return files_holding(config, "spans", [params["session"]], window, SESSION)
    return None


def search_query(params: Mapping[str, str]) -> tuple[str, Partial]:
    """The name and per-file query of a search's list: the SEARCH_LIMIT traces whose first span
    matching the filters is newest (console/warmer.py keeps the unfiltered one ahead)."""
    filters = span_filters(params)

    def first_matches(spans: pl.LazyFrame) -> pl.LazyFrame:
        matching = spans.filter(*filters) if filters else spans
        firsts = matching.group_by("trace_id").agg(pl.col("start_time").min())
        return firsts.sort("start_time", descending=True).head(SEARCH_LIMIT)

    return f"trace search {sorted((k, v) for k, v in params.items() if k in FILTERS)}", first_matches


def newest_traces(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> list[str]:
    """The SEARCH_LIMIT traces whose first matching span is newest: from the files an id filter
    allows, else reading the newest hours first.

    A trace is ranked by its first matching span in the newest hour file holding one, so one
    that crosses an hour ranks as if it began in the later hour (its start in the list is right).
    """
    name, first_matches = search_query(params)
    files = _id_files(config, params, window)
    if files is None:
        minimum = min_duration_ns(params)
        slow = None if minimum is None else slow_spans.reader(config, minimum)  # each file's slowest rows
        found = newest_first(config, "spans", window, name, first_matches, SEARCH_LIMIT, slow)
    else:
        found = first_matches(scan_files(config, "spans", files, window)).collect()
    newest = found.group_by("trace_id").agg(pl.col("start_time").min()).sort("start_time", descending=True)
    return newest.head(SEARCH_LIMIT)["trace_id"].to_list()


def _summaries(ids: list[str]) -> Partial:
    """Per file, what the list shows of each of the traces `ids`; `search` merges the files'."""

    def summary(spans: pl.LazyFrame) -> pl.LazyFrame:
        return (
            spans.filter(pl.col("trace_id").is_in(ids))
            .group_by("trace_id")
            .agg(
                pl.col("start_time").min().alias("start"),
                pl.col("end_time").max().alias("end"),
                pl.len().alias("spans"),
                (pl.col("status_code") == "ERROR").sum().alias("errors"),
                pl.col("service_name").unique().alias("services"),
                pl.col("name").sort_by("start_time").first().alias("root"),
            )
        )

    return summary


def search(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> list[dict[str, Any]]:
    """The newest traces with a span matching every filter, one summary row each, summed from
    the files the trace index names (each file's part kept: console/partials.py)."""
    ids = sorted(newest_traces(config, params, window))
    name = f"trace summaries {hashlib.sha1(','.join(ids).encode()).hexdigest()}"
    held = hashes_held(config, "spans", ids, window)

    def by_trace(uris: list[str], within: TimeRange) -> pl.LazyFrame:  # a few row groups a file, not its hour
        return trace_rows(config, uris, held, within)

    parts = aggregate(config, "spans", window, {name: _summaries(ids)}, list(held), read=by_trace)[name]
    summary = (
        parts.sort("start")
        .group_by("trace_id")
        .agg(
            pl.col("start").min(),
            pl.col("end").max(),
            pl.col("spans").sum(),
            pl.col("errors").sum(),
            pl.col("services").explode().unique().sort(),
            pl.col("root").first(),
        )
        .select(
            "trace_id",
            "start",
            ((pl.col("end") - pl.col("start")).dt.total_microseconds() / 1e3).alias("duration_ms"),
            "spans",
            "errors",
            "services",
            "root",
        )
        .sort("start", descending=True)
    )
    return summary.to_dicts()


def _link_targets(spans: pl.DataFrame) -> set[str]:
    targets = spans.select(pl.col("links").list.eval(pl.element().struct.field("trace_id"))).to_series()
    return {t for links in targets.to_list() for t in links or []}


def linked_spans(config: TalonflowConfig, trace_id: str, window: TimeRange) -> pl.DataFrame:
    """The trace's spans, plus the traces linked to or from it, up to LINK_HOPS away.

    One read per hop, of only the files whose trace index (console/trace_index.py) names the
    frontier, and in them of the row groups filed under it (console/trace_rows.py), finds both
    the frontier's spans and the spans elsewhere that link into it (their traces join the next
    frontier): a trace without links costs a single read of its files.
    """
    known, frontier = {trace_id}, {trace_id}
    found = [scan_files(config, "spans", [], window).collect()]  # the schema, should nothing match
    for hop in range(LINK_HOPS + 1):
        wanted = list(frontier)
        held = hashes_held(config, "spans", wanted, window)
        spans = trace_rows(config, list(held), held, window)
        linking_in = pl.col("links").list.eval(pl.element().struct.field("trace_id").is_in(wanted)).list.any()
        hit = spans.filter(pl.col("trace_id").is_in(wanted) | (linking_in & (hop < LINK_HOPS))).collect()
        mine = hit.filter(pl.col("trace_id").is_in(wanted))
        found.append(mine)
        frontier = (_link_targets(mine) | set(hit["trace_id"])) - known
        if not frontier or hop == LINK_HOPS:
            break
        known |= frontier
    return pl.concat(found)


def waterfall(config: TalonflowConfig, trace_id: str, window: TimeRange) -> dict[str, Any]:
    """Spans in tree order with depth and bar offsets; linked traces hang under their linking span."""
    trace_id = trace_id.strip().lower()
    spans = linked_spans(config, trace_id, window).sort("start_time")
    if spans.is_empty():
        return {"trace_id": trace_id, "spans": [], "traces": []}
    traces = spans["trace_id"].unique().to_list()
    logs = (
        scan_files(config, "logs", files_holding(config, "logs", traces, window), window)
        .filter(pl.col("trace_id").is_in(traces))
        .sort("time")
        .collect()
    )
    logs_by_span: dict[str, list[dict[str, Any]]] = {}
    for log in logs.to_dicts():
        logs_by_span.setdefault(log["span_id"], []).append(log)
    records = spans.to_dicts()
    ids = {r["span_id"] for r in records}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for record in records:
        parent = record["parent_span_id"] if record["parent_span_id"] in ids else None
        record["via_link"] = False
        if parent is None:  # a linked trace's root hangs under the span it links to
            parent = next((lk["span_id"] for lk in record["links"] or [] if lk["span_id"] in ids), None)
            record["via_link"] = parent is not None
        children.setdefault(parent, []).append(record)
    start, total = lay_out(records)
    ordered: list[dict[str, Any]] = []

    def visit(record: dict[str, Any], depth: int) -> None:
        if "depth" in record:  # links can form a cycle; each span is drawn once
            return
        record["depth"] = depth
        record["logs"] = logs_by_span.get(record["span_id"], [])
        ordered.append(record)
        for child in children.get(record["span_id"], []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    for record in records:  # spans whose parents only lead round a cycle of links
        visit(record, 0)
    return {
        "trace_id": trace_id,
        "spans": ordered,
        "traces": sorted(spans["trace_id"].unique().to_list()),
        "services": sorted(spans["service_name"].unique().to_list()),
        "duration_ms": total * 1e3,
        "start": start,
    }

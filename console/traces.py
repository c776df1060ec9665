"""The Traces page: search, and one trace as a waterfall that follows sub-agents across services.

A sub-agent may continue its caller's trace (parent/child) or start a trace of its own that
links back (span links), as agent frameworks do for background work; the waterfall joins both,
so a three-level chain across services reads as one tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from console.scan import rows, scan
from console.timeline import lay_out
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from talonflow.compare import attribute

SEARCH_LIMIT = 100
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
    if params.get("min_ms"):
        try:
            minimum = float(params["min_ms"])
        except ValueError:
            raise SearchError(f"min_ms: {params['min_ms']!r} is not a number of milliseconds") from None
        filters.append(pl.col("duration_ns") >= minimum * 1e6)
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


def search(config: TalonflowConfig, params: Mapping[str, str], window: TimeRange) -> list[dict[str, Any]]:
    """The newest traces with a span matching every filter, one summary row each."""
    spans = scan(config, "spans", window)
    filters = span_filters(params)
    matching = spans.filter(*filters) if filters else spans
    ids = matching.group_by("trace_id").agg(pl.col("start_time").min()).sort("start_time", descending=True)
    ids = ids.head(SEARCH_LIMIT).select("trace_id")
    summary = (
        spans.join(ids, on="trace_id", how="semi")
        .group_by("trace_id")
        .agg(
            pl.col("start_time").min().alias("start"),
            ((pl.col("end_time").max() - pl.col("start_time").min()).dt.total_microseconds() / 1e3).alias(
                "duration_ms"
            ),
            pl.len().alias("spans"),
            (pl.col("status_code") == "ERROR").sum().alias("errors"),
            pl.col("service_name").unique().sort().alias("services"),
            pl.col("name").sort_by("start_time").first().alias("root"),
        )
        .sort("start", descending=True)
    )
    return rows(summary)


def _link_targets(spans: pl.DataFrame) -> set[str]:
    targets = spans.select(pl.col("links").list.eval(pl.element().struct.field("trace_id"))).to_series()
    return {t for links in targets.to_list() for t in links or []}


def linked_spans(config: TalonflowConfig, trace_id: str, window: TimeRange) -> pl.DataFrame:
    """The trace's spans, plus the traces linked to or from it, up to LINK_HOPS away.

    One scan per hop reads both the frontier's spans and the spans elsewhere that link into it
    (their traces join the next frontier): a trace without links costs a single scan.
    """
    spans = scan(config, "spans", window)
    known, frontier = {trace_id}, {trace_id}
    found: list[pl.DataFrame] = []
    for hop in range(LINK_HOPS + 1):
        wanted = list(frontier)
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
    logs = (
        scan(config, "logs", window)
        .filter(pl.col("trace_id").is_in(spans["trace_id"].unique().to_list()))
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

"""The Sessions page: one agent session replayed as its steps (LLM calls, tool calls, sub-agents).

A session is every span carrying its `session.id`, across services and traces.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from console.scan import rows, scan
from console.timeline import lay_out
from console.timerange import TimeRange
from console.trace_index import SESSION, SESSION_KEY, files_holding
from console.trace_rows import session_rows
from schemas.config import TalonflowConfig
from schemas.prices import PriceTable
from talonflow.compare import attribute

LIST_LIMIT = 200

# GenAI semantic conventions: gen_ai.operation.name -> the kind of step a person sees.
_AGENT_OPERATIONS = ("invoke_agent", "create_agent")
_TOOL_OPERATIONS = ("execute_tool",)


def step_kind() -> pl.Expr:
    operation = pl.col("gen_ai_operation_name")
    return (
        pl.when(operation.is_in(_TOOL_OPERATIONS) | pl.col("gen_ai_tool_name").is_not_null())
        .then(pl.lit("tool"))
        .when(operation.is_in(_AGENT_OPERATIONS))
        .then(pl.lit("agent"))
        .when(pl.col("gen_ai_request_model").is_not_null())
        .then(pl.lit("llm"))
        .otherwise(pl.lit("span"))
        .alias("kind")
    )


def step_cost(config: TalonflowConfig) -> pl.Expr:
    """USD of an LLM call from the price table (defaults + rollups.prices); null when unpriced."""
    prices = PriceTable.with_defaults(config.rollups.prices)
    model = pl.coalesce("gen_ai_request_model", "gen_ai_response_model")
    return (
        pl.col("gen_ai_usage_input_tokens").fill_null(0) * prices.rate(model, pl.lit("input"))
        + pl.col("gen_ai_usage_output_tokens").fill_null(0) * prices.rate(model, pl.lit("output"))
    ).alias("usd")


def _tokens() -> pl.Expr:
    return (
        pl.col("gen_ai_usage_input_tokens").fill_null(0) + pl.col("gen_ai_usage_output_tokens").fill_null(0)
    ).alias("tokens")


def session_list(config: TalonflowConfig, window: TimeRange, service: str = "") -> list[dict[str, Any]]:
    spans = scan(config, "spans", window).with_columns(attribute(SESSION_KEY).alias("session"))
    spans = spans.filter(pl.col("session").is_not_null())
    if service:
        spans = spans.filter(pl.col("service_name") == service)
    summary = (
        spans.with_columns(step_kind(), _tokens(), step_cost(config))
        .group_by("session")
        .agg(
            pl.col("start_time").min().alias("start"),
            ((pl.col("end_time").max() - pl.col("start_time").min()).dt.total_microseconds() / 1e3).alias(
                "duration_ms"
            ),
            pl.len().alias("steps"),
            (pl.col("kind") == "llm").sum().alias("llm_calls"),
            (pl.col("kind") == "tool").sum().alias("tool_calls"),
            (pl.col("kind") == "agent").sum().alias("agents"),
            pl.col("tokens").sum(),
            pl.col("usd").sum().alias("usd"),
            pl.col("usd").is_null().all().alias("unpriced"),
            (pl.col("status_code") == "ERROR").sum().alias("errors"),
            pl.col("service_name").unique().sort().alias("services"),
        )
        .sort("start", descending=True)
        .head(LIST_LIMIT)
    )
    return rows(summary)


def session_steps(config: TalonflowConfig, session: str, window: TimeRange) -> dict[str, Any]:
    files = files_holding(config, "spans", [session], window, SESSION)
    steps = (
        session_rows(config, files, session, window)
        .filter(attribute(SESSION_KEY) == session)
        .with_columns(step_kind(), _tokens(), step_cost(config))
        .sort("start_time")
        .collect()
    )
    if steps.is_empty():
        return {"session": session, "steps": []}
    records = steps.to_dicts()
    start, total = lay_out(records)
    return {
        "session": session,
        "steps": records,
        "start": start,
        "duration_ms": total * 1e3,
        "tokens": int(steps["tokens"].sum()),
        "usd": steps["usd"].sum() if steps["usd"].is_not_null().any() else None,
        "errors": int((steps["status_code"] == "ERROR").sum()),
        "traces": sorted(steps["trace_id"].unique().to_list()),
    }

"""The Service / agent page: RED over a range, LLM latency, tokens and cost per model, heartbeats, alerts."""

from __future__ import annotations

from typing import Any

import polars as pl

from console.charts import BUCKET, bucketed, chart
from console.fleet import SERVICE_LABELS
from console.scan import rows, scan
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.rollups import GENAI_COST, MODEL_LABEL, PROVIDER_LABEL


def _quantile(q: float) -> pl.Expr:
    return (pl.col("duration_ns").quantile(q, interpolation="linear") / 1e6).alias(f"p{round(q * 100)}")


def red_charts(config: TalonflowConfig, service: str, window: TimeRange) -> list[dict[str, Any]]:
    spans = scan(config, "spans", window).filter(pl.col("service_name") == service)
    step = window.step()
    red = (
        bucketed(spans, "start_time", window)
        .group_by(BUCKET)
        .agg(
            (pl.len() / step).alias("calls/s"),
            ((pl.col("status_code") == "ERROR").sum() / step).alias("errors/s"),
            _quantile(0.5),
            _quantile(0.95),
            _quantile(0.99),
        )
        .collect()
    )
    llm = bucketed(spans.filter(pl.col("gen_ai_request_model").is_not_null()), "start_time", window)
    latency = llm.group_by(BUCKET, "gen_ai_request_model").agg(_quantile(0.95)).collect()
    tokens = (
        llm.group_by(BUCKET, "gen_ai_request_model")
        .agg(
            (pl.col("gen_ai_usage_input_tokens").sum() + pl.col("gen_ai_usage_output_tokens").sum()).alias(
                "t"
            )
        )
        .collect()
    )
    return [
        chart("Requests", "/s", red, window, ["calls/s", "errors/s"], counts=True),
        chart("Latency", "ms", red, window, ["p50", "p95", "p99"]),
        chart("LLM latency p95 per model", "ms", latency, window, by="gen_ai_request_model"),
        chart("Tokens per model", "tokens", tokens, window, by="gen_ai_request_model", counts=True),
        cost_chart(config, service, window),
    ]


def cost_chart(config: TalonflowConfig, service: str, window: TimeRange) -> dict[str, Any]:
    """USD per model and provider from the cost rollups (so only priced models appear)."""
    cost = (
        bucketed(scan(config, "rollups_1m", window), "window_start", window)
        .filter(pl.col("metric_name") == GENAI_COST, pl.col("service_name") == service)
        .with_columns(
            pl.concat_str(
                pl.col("attributes").map.get(PROVIDER_LABEL).fill_null("?"),
                pl.col("attributes").map.get(MODEL_LABEL).fill_null("?"),
                separator="/",
            ).alias("model")
        )
        .group_by(BUCKET, "model")
        .agg(pl.col("sum").sum().alias("usd"))
        .collect()
    )
    return chart("Cost per provider/model", "USD", cost, window, by="model", counts=True)


def queue_chart(config: TalonflowConfig, service: str, window: TimeRange) -> dict[str, Any]:
    """Every metric of the service whose name says queue (the specs' queue depth gauges)."""
    queues = (
        bucketed(scan(config, "metrics", window), "time", window)
        .filter(pl.col("service_name") == service, pl.col("metric_name").str.contains("queue"))
        .group_by(BUCKET, "metric_name")
        .agg(pl.col("value").mean())
        .collect()
    )
    return chart("Queue depth", "", queues, window, by="metric_name")


def service_page(config: TalonflowConfig, service: str, window: TimeRange) -> dict[str, Any]:
    beats = scan(config, "heartbeats", window).filter(pl.col("service_name") == service).sort("time")
    alerts = (
        scan(config, "alerts", window)
        .filter(pl.any_horizontal(pl.col("labels").map.get(k) == service for k in SERVICE_LABELS))
        .sort("time", descending=True)
        .head(100)
    )
    charts = [*red_charts(config, service, window), queue_chart(config, service, window)]
    return {
        "service": service,
        "charts": [c for c in charts if c["series"]],
        "heartbeats": rows(beats),
        "alerts": rows(alerts),
    }

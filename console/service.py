"""The Service / agent page: RED over a range, LLM latency, tokens and cost per model, heartbeats, alerts."""

from __future__ import annotations

from typing import Any

import polars as pl

from console.charts import BUCKET, bucketed, chart
from console.fleet import SERVICE_LABELS
from console.partials import aggregate, bucket_quantile
from console.scan import rows, scan
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.rollups import GENAI_COST, MODEL_LABEL, PROVIDER_LABEL
from talonflow.compare import duration_bucket

MODEL = "gen_ai_request_model"
AT = "at"  # the chart step a span starts in (charts.BUCKET is taken by the duration bucket here)


def red_charts(config: TalonflowConfig, service: str, window: TimeRange) -> list[dict[str, Any]]:
    """RED, LLM latency and tokens per model, merged from per-file counts (console/partials.py):
    percentiles are duration-bucket middles, within 0.27 % of the exact values."""
    step = window.step()
    name = f"service {service} step {step}"

    def red(spans: pl.LazyFrame) -> pl.LazyFrame:
        at = pl.col("start_time").dt.truncate(f"{step}s").alias(AT)  # charts.bucketed's step start
        mine = spans.filter(pl.col("service_name") == service)
        return mine.group_by(at, duration_bucket().alias("bucket"), MODEL).agg(
            pl.len().alias("calls"),
            (pl.col("status_code") == "ERROR").sum().alias("errors"),
            (pl.col("gen_ai_usage_input_tokens").sum() + pl.col("gen_ai_usage_output_tokens").sum()).alias(
                "t"
            ),
        )

    counts = aggregate(config, "spans", window, {name: red}, merges={name: _counts_merge})[name]
    per_bucket = counts.group_by(AT, "bucket").agg(pl.col("calls", "errors").sum()).sort("bucket")
    rates = per_bucket.group_by(AT).agg(
        (pl.col("calls").sum() / step).alias("calls/s"),
        (pl.col("errors").sum() / step).alias("errors/s"),
        *(bucket_quantile(q).alias(f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)),
    )
    llm = counts.filter(pl.col(MODEL).is_not_null())
    latency = (
        llm.group_by(AT, MODEL, "bucket")
        .agg(pl.col("calls").sum())
        .sort("bucket")
        .group_by(AT, MODEL)
        .agg(bucket_quantile(0.95).alias("p95"))
    )
    tokens = llm.group_by(AT, MODEL).agg(pl.col("t").sum())
    rates, latency, tokens = (f.rename({AT: BUCKET}) for f in (rates, latency, tokens))
    return [
        chart("Requests", "/s", rates, window, ["calls/s", "errors/s"], counts=True),
        chart("Latency", "ms", rates, window, ["p50", "p95", "p99"]),
        chart("LLM latency p95 per model", "ms", latency, window, by=MODEL),
        chart("Tokens per model", "tokens", tokens, window, by=MODEL, counts=True),
        cost_chart(config, service, window),
    ]


def _counts_merge(parts: pl.DataFrame) -> pl.DataFrame:
    """Files' counts added up per step, bucket and model: merging a day of them (135,000 rows of
    one agent in the bench's day) at each view cost about as much as the rest of the charts."""
    return parts.group_by(AT, "bucket", MODEL).agg(pl.col("calls", "errors", "t").sum())


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
    """Every metric of the service whose name says queue (the specs' queue depth gauges), averaged
    per step from per-file sums and counts (console/partials.py)."""
    name = f"queues {service} step {window.step()}"

    def sums(metrics: pl.LazyFrame) -> pl.LazyFrame:
        return (
            bucketed(metrics, "time", window)
            .filter(pl.col("service_name") == service, pl.col("metric_name").str.contains("queue"))
            .group_by(BUCKET, "metric_name")
            .agg(pl.col("value").sum().alias("sum"), pl.col("value").count().alias("n"))
        )

    parts = aggregate(config, "metrics", window, {name: sums})[name]
    queues = parts.group_by(BUCKET, "metric_name").agg(
        (pl.col("sum").sum() / pl.col("n").sum()).alias("value")
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

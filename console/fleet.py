"""The Fleet page: every agent and component, whether it is alive, how it is doing, what it costs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from console.partials import aggregate, bucket_quantile
from console.scan import rows, scan, today
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.rollups import GENAI_COST
from talonflow.compare import duration_bucket

SERVICE_LABELS = ("service.name", "service_name")  # how alert rules name the service they are about
RED, TOKENS = "fleet.red", "fleet.tokens"  # the names of its per-file partials (console/partials.py)


def heartbeat_states(config: TalonflowConfig) -> pl.DataFrame:
    """The latest verdict per component and instance (the dataset holds transitions only)."""
    return (
        scan(config, "heartbeats")
        .sort("time")
        .group_by("component", "service_name", "service_instance_id")
        .agg(pl.col("state").last(), pl.col("last_seen").max(), pl.col("time").last().alias("since"))
        .collect()
    )


def active_alerts(config: TalonflowConfig) -> list[dict[str, Any]]:
    """Alerts whose latest transition left them pending or firing, newest first."""
    latest = (
        scan(config, "alerts")
        .sort("time")
        .group_by("fingerprint")
        .agg(pl.all().last())
        .filter(pl.col("state").is_in(["pending", "firing"]))
        .with_columns(
            pl.coalesce(*(pl.col("labels").map.get(k) for k in SERVICE_LABELS)).alias("service"),
            pl.col("labels").map.get("component").alias("component"),
            pl.col("annotations").map.get("summary").alias("summary"),
        )
        .sort("starts_at", descending=True)
    )
    return rows(latest)


def red_partial(spans: pl.LazyFrame) -> pl.LazyFrame:
    return spans.group_by("service_name", duration_bucket().alias("bucket")).agg(
        pl.len().alias("calls"),
        (pl.col("status_code") == "ERROR").sum().alias("errors"),
        pl.col("end_time").max().alias("last_span"),
    )


def _red_merge(parts: pl.DataFrame) -> pl.DataFrame:
    return parts.group_by("service_name", "bucket").agg(
        pl.col("calls").sum(), pl.col("errors").sum(), pl.col("last_span").max()
    )


def tokens_partial(spans: pl.LazyFrame) -> pl.LazyFrame:
    input_tokens, output_tokens = pl.col("gen_ai_usage_input_tokens"), pl.col("gen_ai_usage_output_tokens")
    return spans.group_by("service_name").agg((input_tokens.sum() + output_tokens.sum()).alias("tokens"))


def service_red(config: TalonflowConfig, window: TimeRange) -> pl.DataFrame:
    """Rate, error ratio and p95 per service from its spans in the window.

    Merged from per-file duration histograms (console/partials.py): p95 is the middle of the
    log bucket holding the nearest-rank 95th percentile, within 0.27 % of the exact value.
    """
    parts = aggregate(config, "spans", window, {RED: red_partial}, merges={RED: _red_merge})[RED]
    buckets = _red_merge(parts)
    return (
        buckets.sort("bucket")
        .group_by("service_name")
        .agg(
            pl.col("calls").sum(),
            pl.col("errors").sum(),
            bucket_quantile(0.95).alias("p95_ms"),
            pl.col("last_span").max(),
        )
        .with_columns(
            (pl.col("calls") / window.seconds).alias("rate"),
            (pl.col("errors") / pl.col("calls")).alias("error_ratio"),
        )
    )


def spend_today(config: TalonflowConfig, now: datetime | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tokens per service from today's spans; USD from today's cost rollups (priced models only)."""
    day = today(now)
    parts = aggregate(config, "spans", day, {TOKENS: tokens_partial})[TOKENS]
    tokens = parts.group_by("service_name").agg(pl.col("tokens").sum())
    usd = (
        scan(config, "rollups_1m", day)
        .filter(pl.col("metric_name") == GENAI_COST)
        .group_by("service_name")
        .agg(pl.col("sum").sum().alias("usd"))
        .collect()
    )
    return tokens, usd


def _worst(states: list[str]) -> str:
    order = ("down", "late", "up")
    return next((s for s in order if s in states), "new")


def fleet(config: TalonflowConfig, window: TimeRange) -> dict[str, Any]:
    beats = heartbeat_states(config)
    red = service_red(config, window)
    tokens, usd = spend_today(config)
    alerts = active_alerts(config)
    component_service = dict(zip(beats["component"], beats["service_name"], strict=True))
    firing: dict[str, int] = {}
    for alert in alerts:
        service = alert["service"] or component_service.get(alert["component"] or "")
        if service and alert["state"] == "firing":
            firing[service] = firing.get(service, 0) + 1
    services = sorted(set(beats["service_name"]) | set(red["service_name"]) | set(tokens["service_name"]))
    by_red = {r["service_name"]: r for r in red.to_dicts()}
    by_tokens = dict(zip(tokens["service_name"], tokens["tokens"], strict=True))
    by_usd = dict(zip(usd["service_name"], usd["usd"], strict=True))
    table = []
    for service in services:
        mine = beats.filter(pl.col("service_name") == service)
        spans = by_red.get(service, {})
        seen = [t for t in (mine["last_seen"].max() if len(mine) else None, spans.get("last_span")) if t]
        table.append(
            {
                "service": service,
                "components": sorted(set(mine["component"])),
                "instances": len(mine),
                "state": _worst(list(mine["state"])),
                "last_seen": max(seen) if seen else None,
                "rate": spans.get("rate"),
                "error_ratio": spans.get("error_ratio"),
                "p95_ms": spans.get("p95_ms"),
                "tokens": by_tokens.get(service) or 0,
                "usd": by_usd.get(service),
                "firing": firing.get(service, 0),
            }
        )
    return {"services": table, "alerts": alerts}

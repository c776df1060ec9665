"""Rollups, alert events and heartbeat transitions: the derived datasets and their topic JSON.

A rollup row summarises one series over one window. A series is a metric name plus its label
set (`attributes`: the point attributes, with `service.name`, `service.namespace` (when set) and
`service.instance.id` of the resource added), identified by `series_id`. Rows for the topic
`talon_rollups` are the same columns as JSON objects: times as RFC 3339 UTC strings,
`attributes` as an object.

Derived series, besides every OTLP metric under its own name:
- `span.duration` (ms) per service.name, span.name, status_code: RED from spans. `count` is
  the number of calls, rows with status_code=ERROR are the errors, p50..p99 the latency.
- `gen_ai.tokens` per service.name, gen_ai.request.model, gen_ai.provider.name,
  gen_ai.token.type and talon.source (metric or span): `sum` is tokens.
- `gen_ai.cost.usd` with the same labels: `sum` is USD, from the price table (schemas/prices.yaml
  under `rollups.prices`), or from `openclaw.cost.usd` when the agent reports its cost itself.
- `gen_ai.tokens.unpriced` with the same labels: the tokens of models without a price (no cost
  row for them: unpriced is never $0).
- `heartbeat.active`, `heartbeat.stale` (1 or 0) and `heartbeat.age_seconds` per component.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from schemas.base import ATTRIBUTES, TIME, Dataset

# Resolutions a config may choose from (default: 1m, 1h, 1d); each has its dataset rollups_<name>.
RESOLUTIONS: Final = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}

SPAN_DURATION: Final = "span.duration"
GENAI_TOKENS: Final = "gen_ai.tokens"
GENAI_COST: Final = "gen_ai.cost.usd"
GENAI_UNPRICED: Final = "gen_ai.tokens.unpriced"
HEARTBEAT_ACTIVE: Final = "heartbeat.active"
HEARTBEAT_STALE: Final = "heartbeat.stale"
HEARTBEAT_AGE: Final = "heartbeat.age_seconds"

# Label keys of derived series.
SPAN_NAME_LABEL: Final = "span.name"
STATUS_LABEL: Final = "status_code"
TOKEN_TYPE_LABEL: Final = "gen_ai.token.type"
MODEL_LABEL: Final = "gen_ai.request.model"
PROVIDER_LABEL: Final = "gen_ai.provider.name"
SOURCE_LABEL: Final = "talon.source"
COMPONENT_LABEL: Final = "component"

QUANTILES: Final = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}

ROLLUPS_SCHEMA: Final = pa.schema(
    [
        pa.field("window_start", TIME),
        pa.field("window_end", TIME),
        pa.field("resolution", pa.string()),  # 1m, 1h, 1d
        pa.field("series_id", pa.string()),  # 16 hex digits of a hash of name and labels
        pa.field("metric_name", pa.string()),
        pa.field("unit", pa.string()),
        pa.field("type", pa.string()),  # gauge, sum, histogram, exponential_histogram, summary
        pa.field("is_monotonic", pa.bool_()),
        pa.field("service_name", pa.string()),
        pa.field("attributes", ATTRIBUTES),
        pa.field("points", pa.int64()),  # data points folded into the row
        pa.field("count", pa.float64()),  # observations: points, or histogram counts
        pa.field("sum", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("last", pa.float64()),  # the value (or histogram mean) of the latest point
        pa.field("increase", pa.float64()),  # monotonic sums: reset-aware increase in the window
        pa.field("rate", pa.float64()),  # increase per second of window
        *(pa.field(name, pa.float64()) for name in QUANTILES),
    ]
)

# Points that arrived after their window closed (beyond the allowed lateness) or out of order.
LATE_POINTS_SCHEMA: Final = pa.schema(
    [
        pa.field("time", TIME),  # the window the points belonged to
        pa.field("metric_name", pa.string()),
        pa.field("series_id", pa.string()),
        pa.field("reason", pa.string()),  # late, out_of_order
        pa.field("points", pa.int64()),
    ]
)

# One row per alert state transition; the topic carries the Alertmanager webhook alert shape.
ALERTS_SCHEMA: Final = pa.schema(
    [
        pa.field("time", TIME),  # the evaluation time of the transition
        pa.field("alertname", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("state", pa.string()),  # pending, firing, resolved, inactive
        pa.field("previous_state", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("starts_at", TIME),
        pa.field("ends_at", TIME),
        pa.field("labels", ATTRIBUTES),
        pa.field("annotations", ATTRIBUTES),
    ]
)

HEARTBEATS_SCHEMA: Final = pa.schema(
    [
        pa.field("time", TIME),  # when the transition was decided
        pa.field("component", pa.string()),
        pa.field("service_name", pa.string()),
        pa.field("service_instance_id", pa.string()),
        pa.field("state", pa.string()),  # up, late, down
        pa.field("previous_state", pa.string()),
        pa.field("last_seen", TIME),
        pa.field("age_seconds", pa.float64()),
        pa.field("expected_interval_seconds", pa.float64()),
        pa.field("grace_period_seconds", pa.float64()),
    ]
)


def rollup_dataset(resolution: str) -> Dataset:
    """`rollups_1m`, `rollups_1h`, ...: one dataset per resolution, partitioned by window start."""
    return Dataset(
        f"rollups_{resolution}", ROLLUPS_SCHEMA, "window_start", ("metric_name", "series_id", "window_start")
    )


LATE_POINTS: Final = Dataset("late_points", LATE_POINTS_SCHEMA, "time", ("metric_name", "series_id", "time"))
ALERTS: Final = Dataset("alerts", ALERTS_SCHEMA, "time", ("alertname", "fingerprint", "time"))
HEARTBEATS: Final = Dataset("heartbeats", HEARTBEATS_SCHEMA, "time", ("component", "time"))

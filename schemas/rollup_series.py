"""Heartbeat verdicts and GenAI token/cost rollups (`talon_rollups` JSON) as metric points for rules.

Only talonflow computes these (the heartbeats flow, the rollups flow's price table), so they come
from its 1-minute rollups rather than from OTLP. Each becomes a gauge point at its window's end,
with the rollup's labels, which schemas/prometheus_names.py then names like any OTLP point
(`service.name` → `job`, `service.instance.id` → `instance`, dots → underscores):

| series | value |
|---|---|
| `heartbeat_active{component}` | 1 while up or late, 0 when down (components that never reported: none) |
| `heartbeat_stale{component}` | 1 while late or down, else 0 |
| `heartbeat_age_seconds{component}` | seconds since the component's last beat |
| `gen_ai_tokens{gen_ai_request_model, gen_ai_provider_name, gen_ai_token_type, ...}` | tokens in the minute |
| `gen_ai_cost_usd{...}` | USD in the minute, from the price table or the agent's own cost |
| `gen_ai_tokens_unpriced{...}` | tokens of models without a price, in the minute |

Per-minute amounts add up over time with `sum_over_time`, e.g. the last hour's spend:
`sum by (job) (sum_over_time(gen_ai_cost_usd[1h]))`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import pyarrow as pa

from schemas.datasets import METRICS_SCHEMA
from schemas.rollups import (
    GENAI_COST,
    GENAI_TOKENS,
    GENAI_UNPRICED,
    HEARTBEAT_ACTIVE,
    HEARTBEAT_AGE,
    HEARTBEAT_STALE,
)
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME

FIELD: Final = {  # rollup metric -> the rollup field that is its value
    HEARTBEAT_ACTIVE: "last",
    HEARTBEAT_STALE: "last",
    HEARTBEAT_AGE: "last",
    GENAI_TOKENS: "sum",
    GENAI_COST: "sum",
    GENAI_UNPRICED: "sum",
}
_RESOURCE: Final = (SERVICE_NAME, SERVICE_INSTANCE_ID)


def rollup_points(values: Iterable[bytes]) -> pa.Table:
    """The heartbeat and GenAI rollups among `talon_rollups` messages, as METRICS rows (gauges).

    Other rollups, other resolutions and messages that are not rollup documents are skipped."""
    rows: list[dict[str, Any]] = []
    for value in values:
        try:
            document = json.loads(value)
            field = FIELD.get(document.get("metric_name"))
            if field is None or document.get("resolution") != "1m" or document.get(field) is None:
                continue
            labels: dict[str, str] = document["attributes"]
            rows.append(
                {
                    "time": datetime.fromisoformat(document["window_end"]),
                    "metric_name": document["metric_name"],
                    "unit": "",  # names as written: no `_ratio` for 0/1 gauges, no `_USD`
                    "type": "gauge",
                    "temporality": "",
                    "value": float(document[field]),
                    "resource_attributes": [(k, labels[k]) for k in _RESOURCE if k in labels],
                    "attributes": [(k, v) for k, v in labels.items() if k not in _RESOURCE],
                }
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # not a rollup document: nothing to read
    return pa.Table.from_pylist(rows, schema=METRICS_SCHEMA)

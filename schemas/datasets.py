"""Arrow schemas of the Parquet datasets, and how each is partitioned and sorted.

Conventions, for every dataset:
- times are `timestamp[ns, UTC]`; the hive partitions `date=YYYY-MM-DD/hour=HH` follow `time_column`;
- trace and span ids are lowercase hex strings (32 and 16 characters), empty when absent, as in
  OTLP/JSON and in every tracing UI;
- `attributes` and `resource_attributes` hold the full attribute sets as `map<string, string>`
  (values as text: 42, true, 0.5; arrays and maps as JSON), which DuckDB (`attributes['k']`) and
  Polars (`pl.col("attributes").map.get("k")`) both filter on; the common keys are promoted to
  typed columns as well.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from schemas.base import ATTRIBUTES, PARTITION_COLUMNS, TIME, Dataset
from schemas.rollups import ALERTS, HEARTBEATS, LATE_POINTS, RESOLUTIONS, rollup_dataset

__all__ = ["ATTRIBUTES", "DATASETS", "PARTITION_COLUMNS", "TIME", "Dataset"]

# Promoted resource attributes: (column, OTLP attribute key), shared by spans, metrics and logs.
RESOURCE_COLUMNS: Final = (
    ("service_name", "service.name"),
    ("service_instance_id", "service.instance.id"),
    ("service_version", "service.version"),
)
# Random ids, all but unique per row: a Parquet dictionary never pays for them (sinks/parquet.py).
RANDOM_ID_COLUMNS: Final = ("trace_id", "span_id", "parent_span_id")
# Promoted item attributes: (column, Arrow type, OTLP keys in order of preference).
ATTRIBUTE_COLUMNS: Final = (
    ("gen_ai_operation_name", pa.string(), ("gen_ai.operation.name",)),
    ("gen_ai_provider_name", pa.string(), ("gen_ai.provider.name", "gen_ai.system")),
    ("gen_ai_request_model", pa.string(), ("gen_ai.request.model",)),
    ("gen_ai_response_model", pa.string(), ("gen_ai.response.model",)),
    ("gen_ai_tool_name", pa.string(), ("gen_ai.tool.name",)),
    ("gen_ai_token_type", pa.string(), ("gen_ai.token.type",)),
    ("gen_ai_usage_input_tokens", pa.int64(), ("gen_ai.usage.input_tokens",)),
    ("gen_ai_usage_output_tokens", pa.int64(), ("gen_ai.usage.output_tokens",)),
    ("error_type", pa.string(), ("error.type",)),
    ("http_status_code", pa.int64(), ("http.response.status_code", "http.status_code")),
    ("rpc_grpc_status_code", pa.int64(), ("rpc.grpc.status_code",)),
)

_COMMON_RESOURCE = [pa.field(column, pa.string()) for column, _ in RESOURCE_COLUMNS] + [
    pa.field("resource_attributes", ATTRIBUTES),
    pa.field("scope_name", pa.string()),
    pa.field("scope_version", pa.string()),
]
_PROMOTED = [pa.field(column, arrow_type) for column, arrow_type, _ in ATTRIBUTE_COLUMNS]

SPANS_SCHEMA: Final = pa.schema(
    [
        pa.field("start_time", TIME),
        pa.field("end_time", TIME),
        pa.field("duration_ns", pa.int64()),
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
        pa.field("parent_span_id", pa.string()),
        pa.field("trace_state", pa.string()),
        pa.field("name", pa.string()),
        pa.field("kind", pa.string()),  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER, UNSPECIFIED
        pa.field("status_code", pa.string()),  # UNSET, OK, ERROR
        pa.field("status_message", pa.string()),
        *_COMMON_RESOURCE,
        *_PROMOTED,
        pa.field("attributes", ATTRIBUTES),
        pa.field(
            "events",
            pa.list_(pa.struct([("time", TIME), ("name", pa.string()), ("attributes", ATTRIBUTES)])),
        ),
        pa.field(
            "links",
            pa.list_(
                pa.struct([("trace_id", pa.string()), ("span_id", pa.string()), ("attributes", ATTRIBUTES)])
            ),
        ),
    ]
)

METRICS_SCHEMA: Final = pa.schema(
    [
        pa.field("time", TIME),
        pa.field("start_time", TIME),
        pa.field("metric_name", pa.string()),
        pa.field("metric_description", pa.string()),
        pa.field("unit", pa.string()),
        pa.field("type", pa.string()),  # gauge, sum, histogram, exponential_histogram, summary
        pa.field("temporality", pa.string()),  # cumulative, delta, or empty (gauge, summary)
        pa.field("is_monotonic", pa.bool_()),
        pa.field("value", pa.float64()),  # gauge and sum points (ints widened)
        pa.field("count", pa.uint64()),  # histogram, exponential histogram, summary
        pa.field("sum", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("bucket_counts", pa.list_(pa.uint64())),  # explicit histogram
        pa.field("explicit_bounds", pa.list_(pa.float64())),
        pa.field("exp_scale", pa.int32()),  # exponential histogram
        pa.field("exp_zero_count", pa.uint64()),
        pa.field("exp_positive_offset", pa.int32()),
        pa.field("exp_positive_counts", pa.list_(pa.uint64())),
        pa.field("exp_negative_offset", pa.int32()),
        pa.field("exp_negative_counts", pa.list_(pa.uint64())),
        pa.field("quantiles", pa.list_(pa.float64())),  # summary: quantile i has value quantile_values[i]
        pa.field("quantile_values", pa.list_(pa.float64())),
        pa.field("flags", pa.uint32()),
        *_COMMON_RESOURCE,
        *_PROMOTED,
        pa.field("attributes", ATTRIBUTES),
    ]
)

LOGS_SCHEMA: Final = pa.schema(
    [
        pa.field("time", TIME),  # the record's time, or its observed time when that is unset
        pa.field("observed_time", TIME),
        pa.field("severity_number", pa.int32()),
        pa.field("severity_text", pa.string()),
        pa.field("body", pa.string()),  # string bodies as they are; other bodies as JSON
        pa.field("event_name", pa.string()),
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
        pa.field("flags", pa.uint32()),
        *_COMMON_RESOURCE,
        *_PROMOTED,
        pa.field("attributes", ATTRIBUTES),
    ]
)

DEAD_LETTERS_SCHEMA: Final = pa.schema(
    [
        pa.field("time", TIME),  # when Kafka received the record
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("key", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("items", pa.int64()),  # spans, points or log records affected
        pa.field("payload", pa.binary()),  # the record (undecodable) or the rejected rows as JSON
    ]
)


SPANS: Final = Dataset("spans", SPANS_SCHEMA, "start_time", ("service_name", "name", "start_time"))
METRICS: Final = Dataset("metrics", METRICS_SCHEMA, "time", ("service_name", "metric_name", "time"))
LOGS: Final = Dataset("logs", LOGS_SCHEMA, "time", ("service_name", "severity_number", "time"))
DEAD_LETTERS: Final = Dataset("dead_letters", DEAD_LETTERS_SCHEMA, "time", ("topic", "partition", "offset"))

_DERIVED: Final = (*(rollup_dataset(r) for r in RESOLUTIONS), LATE_POINTS, ALERTS, HEARTBEATS)
DATASETS: Final = {d.name: d for d in (SPANS, METRICS, LOGS, DEAD_LETTERS, *_DERIVED)}

"""The three OTLP signals: their protobuf types, topics and item counts, in one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC


def _metric_points(metric: Metric) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


@dataclass(frozen=True)
class Signal:
    """What differs between traces, metrics and logs; everything else is shared code."""

    name: str  # "traces" | "metrics" | "logs", as in the OTLP/HTTP paths /v1/<name>
    topic: str
    service: str  # fully-qualified gRPC service name
    request: type[Message]
    response: type[Message]
    resources_field: str  # ExportXServiceRequest.resource_x
    scopes_field: str  # ResourceX.scope_x
    items_field: str  # ScopeX.<items>
    partial_success_field: str  # ExportXPartialSuccess.rejected_<items>
    item_weight: Callable[[Any], int] = lambda _item: 1

    def count_items(self, scopes: Any) -> int:
        """Items (spans, data points, log records) in a sequence of ScopeX messages."""
        if self.items_field == "metrics":
            return sum(self.item_weight(m) for scope in scopes for m in scope.metrics)
        return sum(len(getattr(scope, self.items_field)) for scope in scopes)

    def response_bytes(self, rejected: int = 0, message: str = "") -> bytes:
        response = self.response()
        if rejected or message:
            partial = response.partial_success
            setattr(partial, self.partial_success_field, rejected)
            partial.error_message = message
        return response.SerializeToString()


TRACES = Signal(
    name="traces",
    topic=SPANS_TOPIC,
    service="opentelemetry.proto.collector.trace.v1.TraceService",
    request=trace_pb.ExportTraceServiceRequest,
    response=trace_pb.ExportTraceServiceResponse,
    resources_field="resource_spans",
    scopes_field="scope_spans",
    items_field="spans",
    partial_success_field="rejected_spans",
)
METRICS = Signal(
    name="metrics",
    topic=METRICS_TOPIC,
    service="opentelemetry.proto.collector.metrics.v1.MetricsService",
    request=metrics_pb.ExportMetricsServiceRequest,
    response=metrics_pb.ExportMetricsServiceResponse,
    resources_field="resource_metrics",
    scopes_field="scope_metrics",
    items_field="metrics",
    partial_success_field="rejected_data_points",
    item_weight=_metric_points,
)
LOGS = Signal(
    name="logs",
    topic=LOGS_TOPIC,
    service="opentelemetry.proto.collector.logs.v1.LogsService",
    request=logs_pb.ExportLogsServiceRequest,
    response=logs_pb.ExportLogsServiceResponse,
    resources_field="resource_logs",
    scopes_field="scope_logs",
    items_field="log_records",
    partial_success_field="rejected_log_records",
)

SIGNALS: dict[str, Signal] = {s.name: s for s in (TRACES, METRICS, LOGS)}

"""Raw OTLP clients for tests and benchmarks: bytes in, status and bytes out, nothing hidden."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, SummaryDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from receiver.signals import SIGNALS


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes


def grpc_export(
    channel: grpc.Channel,
    signal: str,
    body: bytes,
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    compression: grpc.Compression | None = None,
    timeout: float = 15,
) -> bytes:
    """Call <Service>/Export with `body` as the serialized request; raises grpc.RpcError."""
    method = channel.unary_unary(f"/{SIGNALS[signal].service}/Export")
    return method(body, metadata=metadata, compression=compression, timeout=timeout)


def http_post(
    url: str,
    body: bytes,
    content_type: str = "application/x-protobuf",
    *,
    headers: dict[str, str] | None = None,
    gzip_body: bool = False,
    timeout: float = 15,
) -> HttpReply:
    all_headers = {"Content-Type": content_type, **(headers or {})}
    if gzip_body:
        body = gzip.compress(body, compresslevel=1)
        all_headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpReply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        return HttpReply(err.code, dict(err.headers), err.read())


def span_request(agents: list[tuple[str, str]], spans_per_agent: int = 3, payload: int = 0) -> bytes:
    """An ExportTraceServiceRequest with one resource per (service.name, service.instance.id)."""
    request = ExportTraceServiceRequest()
    for number, (name, instance) in enumerate(agents):
        resource_spans: ResourceSpans = request.resource_spans.add()
        for key, value in (("service.name", name), ("service.instance.id", instance)):
            resource_spans.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "talonflow.tests"
        for index in range(spans_per_agent):
            scope.spans.append(
                Span(
                    trace_id=bytes([number + 1]) * 16,
                    span_id=(index + 1).to_bytes(8, "big"),
                    name=f"tool_call_{index}",
                    kind=Span.SPAN_KIND_CLIENT,
                    start_time_unix_nano=1_700_000_000_000_000_000 + index,
                    end_time_unix_nano=1_700_000_000_500_000_000 + index,
                    attributes=[KeyValue(key="blob", value=AnyValue(string_value="x" * payload))],
                )
            )
    return request.SerializeToString()


def summary_request(name: str, instance: str, time_ns: int) -> bytes:
    """A Summary point (count 10, sum 12.5, p95 4.2): the OTLP type the Python SDK cannot make."""
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    for key, value in (("service.name", name), ("service.instance.id", instance)):
        resource_metrics.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    metric = Metric(name="agent.response.time", unit="s")
    metric.summary.data_points.append(
        SummaryDataPoint(
            time_unix_nano=time_ns,
            count=10,
            sum=12.5,
            quantile_values=[
                SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=1.1),
                SummaryDataPoint.ValueAtQuantile(quantile=0.95, value=4.2),
            ],
        )
    )
    resource_metrics.scope_metrics.add().metrics.append(metric)
    return request.SerializeToString()

"""Spans, metrics (all five types) and logs from the OpenTelemetry Python SDK land in Kafka intact.

Each exporter is the SDK's own OTLP exporter (gRPC or HTTP/protobuf); a thin subclass keeps the
request it encoded, so what Kafka holds can be compared field by field with what was sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC

pytestmark = pytest.mark.integration

EXPORTERS: dict[tuple[str, str], tuple[Any, Any]] = {
    ("traces", "grpc"): (GrpcSpans, encode_spans),
    ("traces", "http"): (HttpSpans, encode_spans),
    ("metrics", "grpc"): (GrpcMetrics, encode_metrics),
    ("metrics", "http"): (HttpMetrics, encode_metrics),
    ("logs", "grpc"): (GrpcLogs, encode_logs),
    ("logs", "http"): (HttpLogs, encode_logs),
}


def recording_exporter(signal: str, transport: str, stack: Any) -> Any:
    """The SDK's exporter for (signal, transport), remembering each request it encodes."""
    base, encode = EXPORTERS[signal, transport]

    class Recording(base):  # type: ignore[misc, valid-type]
        sent: list[Message]

        def export(self, data: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent.append(encode(data))
            return super().export(data, *args, **kwargs)

    if transport == "grpc":
        exporter = Recording(endpoint=stack.grpc_endpoint, insecure=True)
    else:
        exporter = Recording(endpoint=f"{stack.http_url}/v1/{signal}")
    exporter.sent = []
    return exporter


def resource(agent_key: tuple[str, str, bytes]) -> Resource:
    name, instance, _ = agent_key
    return Resource.create({"service.name": name, "service.instance.id": instance, "agent.role": "scheduler"})


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_spans_arrive_field_by_field(local_stack: Any, agent_key: Any, transport: str) -> None:
    exporter = recording_exporter("traces", transport, local_stack)
    provider = TracerProvider(resource=resource(agent_key))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("talonflow.tests", "1.0")
    with tracer.start_as_current_span("invoke_agent", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("gen_ai.request.model", "claude-sonnet")
        parent.set_attribute("gen_ai.usage.input_tokens", 1234)
        with tracer.start_as_current_span(
            "execute_tool", kind=SpanKind.INTERNAL, links=[Link(parent.get_span_context(), {"why": "retry"})]
        ) as child:
            child.add_event("tool.output", {"bytes": 42})
            child.set_status(Status(StatusCode.ERROR, "tool timed out"))
    provider.shutdown()

    records = local_stack.records(SPANS_TOPIC, agent_key[2], count=2)
    assert len(records) == 2 == len(exporter.sent)
    received = [ExportTraceServiceRequest.FromString(r.value()) for r in records]
    assert received == exporter.sent  # every field of every span, resource and scope
    spans = {s.name: s for r in received for s in r.resource_spans[0].scope_spans[0].spans}
    assert spans["execute_tool"].status.code == 2 and spans["execute_tool"].status.message == "tool timed out"
    assert spans["execute_tool"].events[0].name == "tool.output"
    assert spans["execute_tool"].links[0].span_id == spans["invoke_agent"].span_id
    assert spans["execute_tool"].parent_span_id == spans["invoke_agent"].span_id
    attributes = {a.key: a.value for a in spans["invoke_agent"].attributes}
    assert attributes["gen_ai.usage.input_tokens"].int_value == 1234


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_metrics_of_every_sdk_type_arrive(local_stack: Any, agent_key: Any, transport: str) -> None:
    exporter = recording_exporter("metrics", transport, local_stack)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=resource(agent_key),
        metric_readers=[reader],
        views=[View(instrument_name="llm.latency.exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("talonflow.tests")
    meter.create_counter("gen_ai.client.token.usage").add(150, {"gen_ai.token.type": "input"})
    meter.create_up_down_counter("queue.depth").add(7)
    meter.create_histogram("gen_ai.client.operation.duration", unit="s").record(1.5)
    meter.create_histogram("llm.latency.exp").record(0.25)
    meter.create_gauge("system.cpu.utilization").set(0.83)
    meter.create_observable_gauge("process.memory.usage", callbacks=[lambda _o: [Observation(512)]])
    provider.shutdown()

    records = local_stack.records(METRICS_TOPIC, agent_key[2], count=1)
    assert len(records) == 1
    received = ExportMetricsServiceRequest.FromString(records[0].value())
    assert [received] == exporter.sent
    kinds = {m.name: m.WhichOneof("data") for m in received.resource_metrics[0].scope_metrics[0].metrics}
    assert kinds == {
        "gen_ai.client.token.usage": "sum",
        "queue.depth": "sum",
        "gen_ai.client.operation.duration": "histogram",
        "llm.latency.exp": "exponential_histogram",
        "system.cpu.utilization": "gauge",
        "process.memory.usage": "gauge",
    }


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_logs_arrive_field_by_field(local_stack: Any, agent_key: Any, transport: str) -> None:
    exporter = recording_exporter("logs", transport, local_stack)
    provider = LoggerProvider(resource=resource(agent_key))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("talonflow.tests")
    logger.emit(
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body="gmail loop failed: quota exceeded",
        attributes={"loop": "email_processor", "attempt": 3},
    )
    provider.shutdown()

    records = local_stack.records(LOGS_TOPIC, agent_key[2], count=1)
    assert len(records) == 1
    received = ExportLogsServiceRequest.FromString(records[0].value())
    assert [received] == exporter.sent
    log = received.resource_logs[0].scope_logs[0].log_records[0]
    assert log.body.string_value == "gmail loop failed: quota exceeded"
    assert log.severity_number == SeverityNumber.ERROR.value

"""OTLP export requests for the native decoder's differential tests and fuzz bench.

Two sources: the real OpenTelemetry Python SDK (every span, metric and log feature it has,
encoded by its own OTLP encoders), and hypothesis strategies that reach every OTLP field type the
datasets read, including values the SDK never sends (unset AnyValues, nested kvlists with repeated
keys, non-finite doubles, empty ids, unknown enum values).
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import strategies as st
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.trace import Status as SdkStatus

from schemas.datasets import ATTRIBUTE_COLUMNS, RESOURCE_COLUMNS
from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC

NOW_NS = time.time_ns()
REQUESTS: dict[str, Any] = {
    SPANS_TOPIC: ExportTraceServiceRequest,
    METRICS_TOPIC: ExportMetricsServiceRequest,
    LOGS_TOPIC: ExportLogsServiceRequest,
}
_SDK_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.request.model": "claude-sonnet-4",
    "gen_ai.system": "anthropic",
    "gen_ai.usage.input_tokens": 1234,
    "gen_ai.usage.output_tokens": "56",
    "http.status_code": 503,
    "ratio": 0.1,
    "big": 1e300,
    "flag": True,
    "tags": ["a", 'b\n"c"', "ü"],
    "scores": [1.5, 2.0, -0.0],
    "counts": [1, 2, 3],
    "bools": [True, False],
}


def _resource(instance: str) -> Resource:
    return Resource.create({"service.name": "email_processor", "service.instance.id": instance})


def sdk_requests() -> dict[str, list[bytes]]:
    """Export requests the SDK's own encoders make, per topic, for every feature the SDK has."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=_resource("ep-1"))
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("talonflow.corpus", "2.1", attributes={"scope.attr": 1})
    for kind in SpanKind:
        with tracer.start_as_current_span("invoke_agent", kind=kind, attributes=_SDK_ATTRIBUTES) as parent:
            parent.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop"})
            parent.add_event("empty")
            with tracer.start_as_current_span(
                "execute_tool", links=[Link(parent.get_span_context(), {"why": "retry", "n": 2})]
            ) as child:
                child.set_status(SdkStatus(StatusCode.ERROR, "tool timed out"))
                child.record_exception(ValueError("boom"))
            parent.set_status(SdkStatus(StatusCode.OK))
    tracer_provider.shutdown()
    span_requests = [encode_spans([s]).SerializeToString() for s in spans.get_finished_spans()]
    span_requests.append(encode_spans(spans.get_finished_spans()).SerializeToString())

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        resource=_resource("ep-2"),
        metric_readers=[reader],
        views=[View(instrument_name="llm.latency.exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = meter_provider.get_meter("talonflow.corpus", "1.0")
    meter.create_counter("gen_ai.client.token.usage", unit="{token}").add(150, {"gen_ai.token.type": "input"})
    meter.create_counter("cost").add(0.25, {"gen_ai.request.model": "m"})
    meter.create_up_down_counter("queue.depth").add(-7)
    histogram = meter.create_histogram("gen_ai.client.operation.duration", unit="s", description="latency")
    for value in (0.001, 1.5, 30.0):
        histogram.record(value, {"gen_ai.operation.name": "chat"})
    exponential = meter.create_histogram("llm.latency.exp")
    for value in (0.25, 4.0, 0.0, 1e-9):
        exponential.record(value)
    meter.create_gauge("system.cpu.utilization").set(0.83)
    meter.create_observable_gauge("process.memory.usage", callbacks=[lambda _o: [Observation(512)]])
    meter.create_observable_counter(
        "restarts", callbacks=[lambda _o: [Observation(3, {"error.type": "oom"})]]
    )
    metrics_data = reader.get_metrics_data()
    assert metrics_data is not None
    metric_requests = [encode_metrics(metrics_data).SerializeToString()]
    meter_provider.shutdown()

    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=_resource("ep-3"))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger = logger_provider.get_logger("talonflow.corpus", "0.1")
    bodies: list[Any] = ["quota exceeded", {"k": [1, 2.5, None, True]}, ["x", 3], b"\x00\xff", 42, 2.5, None]
    for body in bodies:
        logger.emit(
            severity_number=SeverityNumber.ERROR, severity_text="ERROR", body=body, attributes={"n": 3}
        )
    logger.emit(event_name="gen_ai.client.inference", body="event")
    logger_provider.shutdown()
    log_requests = [encode_logs([r]).SerializeToString() for r in logs.get_finished_logs()]
    return {SPANS_TOPIC: span_requests, METRICS_TOPIC: metric_requests, LOGS_TOPIC: log_requests}


# -- hypothesis strategies ---------------------------------------------------------------------------
_KNOWN_KEYS = [key for _, _, keys in ATTRIBUTE_COLUMNS for key in keys] + [key for _, key in RESOURCE_COLUMNS]
_INT_LIKE = st.sampled_from(["12", "+12", "012", " 12", "-0", "1.5", "9223372036854775808", "", "0x1", "١٢"])
keys = st.one_of(st.sampled_from(_KNOWN_KEYS), st.text(max_size=6))
_texts = st.one_of(st.text(max_size=12), _INT_LIKE)
_scalars = st.one_of(
    _texts.map(lambda s: AnyValue(string_value=s)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats().map(lambda d: AnyValue(double_value=d)),
    st.binary(max_size=8).map(lambda b: AnyValue(bytes_value=b)),
    st.just(AnyValue()),
)


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in pairs]))


any_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(st.sampled_from(["a", "b", "ü", '"']), inner), max_size=4).map(_kvlist),
    ),
    max_leaves=10,
)
attributes = st.lists(st.builds(KeyValue, key=keys, value=any_values), max_size=6)
# near the Kafka time mostly; sometimes far outside the time bounds (but inside int64)
times = st.one_of(
    st.integers(NOW_NS - 3600 * 10**9, NOW_NS + 60 * 10**9),
    st.sampled_from([0, 1, NOW_NS - 30 * 86400 * 10**9, NOW_NS + 86400 * 10**9, 2**63 - 1]),
)
ids = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=9))
scopes = st.builds(
    InstrumentationScope, name=st.text(max_size=6), version=st.text(max_size=4), attributes=attributes
)
resources = st.builds(ProtoResource, attributes=attributes)

spans = st.builds(
    Span,
    trace_id=ids,
    span_id=ids,
    parent_span_id=ids,
    trace_state=st.text(max_size=6),
    name=st.text(max_size=10),
    kind=st.integers(0, 9),  # values past CONSUMER are unknown kinds
    start_time_unix_nano=times,
    end_time_unix_nano=times,
    attributes=attributes,
    events=st.lists(
        st.builds(Span.Event, time_unix_nano=times, name=st.text(max_size=5), attributes=attributes),
        max_size=3,
    ),
    links=st.lists(st.builds(Span.Link, trace_id=ids, span_id=ids, attributes=attributes), max_size=2),
    status=st.builds(Status, message=st.text(max_size=5), code=st.integers(0, 5)),
    flags=st.integers(0, 2**32 - 1),
)


def _requests(request: Any, resource_x: Any, scope_x: Any, items: Any) -> Any:
    """Export requests of a few resources of a few scopes of a few items; field 1 and 2 of each
    level are named after the signal (resource_spans, scope_spans, spans, ...)."""
    second = [m.DESCRIPTOR.fields_by_number[2].name for m in (resource_x, scope_x)]
    scope = st.builds(scope_x, scope=scopes, **{second[1]: st.lists(items, max_size=4)})
    resource = st.builds(resource_x, resource=resources, **{second[0]: st.lists(scope, max_size=3)})
    return st.builds(request, **{request.DESCRIPTOR.fields_by_number[1].name: st.lists(resource, max_size=2)})


trace_requests = _requests(ExportTraceServiceRequest, ResourceSpans, ScopeSpans, spans)
_u64 = st.integers(0, 2**64 - 1)
_exemplars = st.lists(st.builds(Exemplar, filtered_attributes=attributes, as_double=st.floats()), max_size=1)


def _number_point(value: tuple[str, Any]) -> Any:
    return st.builds(
        NumberDataPoint,
        attributes=attributes,
        start_time_unix_nano=times,
        time_unix_nano=times,
        flags=st.integers(0, 2**32 - 1),
        exemplars=_exemplars,
        **({value[0]: st.just(value[1])} if value[0] else {}),
    )


number_points = st.one_of(
    st.floats().map(lambda d: ("as_double", d)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: ("as_int", i)),
    st.just(("", None)),
).flatmap(_number_point)
_optional_float = st.one_of(st.none(), st.floats())


@st.composite
def histogram_points(draw: Any) -> HistogramDataPoint:
    point = HistogramDataPoint(
        attributes=draw(attributes),
        start_time_unix_nano=draw(times),
        time_unix_nano=draw(times),
        count=draw(_u64),
        bucket_counts=draw(st.lists(_u64, max_size=6)),
        explicit_bounds=draw(st.lists(st.floats(), max_size=5)),
        exemplars=draw(_exemplars),
        flags=draw(st.integers(0, 2**32 - 1)),
    )
    for name in ("sum", "min", "max"):
        value = draw(_optional_float)
        if value is not None:
            setattr(point, name, value)
    return point


@st.composite
def exponential_points(draw: Any) -> ExponentialHistogramDataPoint:
    point = ExponentialHistogramDataPoint(
        attributes=draw(attributes),
        start_time_unix_nano=draw(times),
        time_unix_nano=draw(times),
        count=draw(_u64),
        scale=draw(st.integers(-(2**31), 2**31 - 1)),
        zero_count=draw(_u64),
        zero_threshold=draw(st.floats()),
    )
    for side in (point.positive, point.negative):
        if draw(st.booleans()):
            side.offset = draw(st.integers(-(2**31), 2**31 - 1))
            side.bucket_counts.extend(draw(st.lists(_u64, max_size=5)))
    for name in ("sum", "min", "max"):
        value = draw(_optional_float)
        if value is not None:
            setattr(point, name, value)
    return point


summary_points = st.builds(
    SummaryDataPoint,
    attributes=attributes,
    start_time_unix_nano=times,
    time_unix_nano=times,
    count=_u64,
    sum=st.floats(),
    quantile_values=st.lists(
        st.builds(SummaryDataPoint.ValueAtQuantile, quantile=st.floats(), value=st.floats()), max_size=4
    ),
)
_temporality = st.integers(0, 2)


@st.composite
def metrics(draw: Any) -> Metric:
    metric = Metric(
        name=draw(st.text(max_size=8)), description=draw(st.text(max_size=4)), unit=draw(st.text(max_size=3))
    )
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary", None]))
    if kind == "gauge":
        metric.gauge.CopyFrom(Gauge(data_points=draw(st.lists(number_points, max_size=3))))
    elif kind == "sum":
        points = draw(st.lists(number_points, max_size=3))
        metric.sum.CopyFrom(
            Sum(
                data_points=points,
                aggregation_temporality=draw(_temporality),
                is_monotonic=draw(st.booleans()),
            )
        )
    elif kind == "histogram":
        points = draw(st.lists(histogram_points(), max_size=3))
        metric.histogram.CopyFrom(Histogram(data_points=points, aggregation_temporality=draw(_temporality)))
    elif kind == "exponential_histogram":
        points = draw(st.lists(exponential_points(), max_size=3))
        metric.exponential_histogram.CopyFrom(
            ExponentialHistogram(data_points=points, aggregation_temporality=draw(_temporality))
        )
    elif kind == "summary":
        metric.summary.CopyFrom(Summary(data_points=draw(st.lists(summary_points, max_size=3))))
    return metric


metric_requests = _requests(ExportMetricsServiceRequest, ResourceMetrics, ScopeMetrics, metrics())


@st.composite
def log_records(draw: Any) -> LogRecord:
    record = LogRecord(
        time_unix_nano=draw(times),
        observed_time_unix_nano=draw(times),
        severity_number=draw(st.integers(0, 30)),
        severity_text=draw(st.text(max_size=5)),
        attributes=draw(attributes),
        flags=draw(st.integers(0, 2**32 - 1)),
        trace_id=draw(ids),
        span_id=draw(ids),
        event_name=draw(st.text(max_size=5)),
    )
    body = draw(st.one_of(st.none(), any_values))
    if body is not None:
        record.body.CopyFrom(body)
    return record


log_requests = _requests(ExportLogsServiceRequest, ResourceLogs, ScopeLogs, log_records())
REQUEST_STRATEGIES: dict[str, Any] = {
    SPANS_TOPIC: trace_requests,
    METRICS_TOPIC: metric_requests,
    LOGS_TOPIC: log_requests,
}

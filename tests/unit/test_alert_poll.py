"""flows/alerts.py read_poll: the clock time of a poll is the newest sample of its LAST record,
taken from the poll's own tables (schemas.flatten's record_of_row), not from a second flatten."""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flows.alerts import read_poll
from schemas.flatten import KafkaRecord, TimeBounds
from schemas.topics import METRICS_TOPIC, SPANS_TOPIC

NOW_MS = 1_790_000_000_000
BOUNDS = TimeBounds(max_past_s=3600.0, max_future_s=3600.0)


def gauge_request(*times_ms: int) -> bytes:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="queue.depth")
    for time_ms in times_ms:
        metric.gauge.data_points.add(time_unix_nano=time_ms * 1_000_000, as_double=1.0)
    return request.SerializeToString()


def span_request(start_ms: int) -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="chat")
    span.trace_id, span.span_id = bytes(range(16)), bytes(range(8))
    span.start_time_unix_nano = start_ms * 1_000_000
    span.end_time_unix_nano = (start_ms + 5) * 1_000_000
    return request.SerializeToString()


def records(topic: str, values: list[bytes]) -> list[KafkaRecord]:
    return [KafkaRecord(topic, 0, offset, NOW_MS, None, value) for offset, value in enumerate(values)]


def test_the_last_record_sets_the_time_not_the_newest_sample_of_the_poll() -> None:
    poll = read_poll(
        (
            "otlp_metrics:0",
            records(METRICS_TOPIC, [gauge_request(NOW_MS + 9000), gauge_request(NOW_MS - 5, NOW_MS)]),
        ),
        BOUNDS,
    )
    assert poll.newest_ms == NOW_MS
    assert poll.series is not None and poll.series.height == 3


def test_a_last_record_without_rows_gives_no_time() -> None:
    poll = read_poll(("otlp_metrics:0", records(METRICS_TOPIC, [gauge_request(NOW_MS), b"\xff\xff"])), BOUNDS)
    assert poll.newest_ms == 0
    assert poll.series is not None and poll.series.height == 1


def test_rows_out_of_bounds_do_not_move_the_time() -> None:
    late = NOW_MS - 2 * 3600 * 1000  # a dead letter: older than max_past
    poll = read_poll(("otlp_metrics:0", records(METRICS_TOPIC, [gauge_request(late, NOW_MS - 7)])), BOUNDS)
    assert poll.newest_ms == NOW_MS - 7


def test_spans_move_the_time_too() -> None:
    poll = read_poll(
        ("otlp_spans:1", records(SPANS_TOPIC, [span_request(NOW_MS + 50), span_request(NOW_MS + 20)])), BOUNDS
    )
    assert poll.newest_ms == NOW_MS + 20
    assert poll.spans is not None

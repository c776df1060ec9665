"""Splitting export requests into keyed Kafka records, on real OTLP protobufs."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import ScopeMetrics

from receiver.signals import METRICS, TRACES
from receiver.split import Split, resource_key, split_request, top_level_entries
from tests.otlp_clients import span_request


def split(body: bytes, limit: int = 1 << 20) -> Split:
    return split_request(TRACES, body, ExportTraceServiceRequest.FromString(body), limit)


def test_single_agent_request_is_forwarded_as_the_same_object() -> None:
    body = span_request([("gateway", "g1")], spans_per_agent=4)
    result = split(body)
    [record] = result.records
    assert record.value is body  # no copy, no re-encoding
    assert record.key == b"gateway/g1" and record.items == 4


def test_agents_are_grouped_by_key_in_order() -> None:
    body = span_request([("a", "1"), ("b", "2"), ("a", "1")], spans_per_agent=2)
    records = split(body).records
    assert [(r.key, r.items) for r in records] == [(b"a/1", 4), (b"b/2", 2)]
    whole = ExportTraceServiceRequest.FromString(body)
    first = ExportTraceServiceRequest.FromString(records[0].value)
    assert list(first.resource_spans) == [whole.resource_spans[0], whole.resource_spans[2]]


def test_packing_respects_the_record_limit() -> None:
    body = span_request([("a", "1")] * 3 + [("a", "2")], spans_per_agent=1, payload=1000)
    entry = len(ExportTraceServiceRequest.FromString(span_request([("a", "1")], 1, 1000)).SerializeToString())
    records = split(body, limit=2 * entry + 10).records
    assert [(r.key, r.items) for r in records] == [(b"a/1", 2), (b"a/1", 1), (b"a/2", 1)]
    assert all(len(r.value) <= 2 * entry + 10 for r in records)


def test_resource_without_identity_has_no_key() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name="anonymous")
    assert resource_key(request.resource_spans[0].resource) is None
    [record] = split_request(TRACES, request.SerializeToString(), request, 1 << 20).records
    assert record.key is None and record.items == 1


def test_empty_request_makes_no_record() -> None:
    assert split(b"").records == []


def test_top_level_entries_walks_every_wire_type() -> None:
    # field 1 (bytes, len 2), field 2 varint 300, field 3 fixed64, field 4 fixed32
    buf = b"\x0a\x02hi" + b"\x10\xac\x02" + b"\x19" + bytes(8) + b"\x25" + bytes(4)
    assert top_level_entries(buf) == [(1, 0, 4), (2, 4, 7), (3, 7, 16), (4, 16, 21)]


def test_metric_items_are_data_points() -> None:
    scope = ScopeMetrics()
    gauge = scope.metrics.add(name="g").gauge
    gauge.data_points.add(as_double=1.0)
    gauge.data_points.add(as_double=2.0)
    scope.metrics.add(name="h").histogram.data_points.add(count=3)
    scope.metrics.add(name="empty")
    assert METRICS.count_items([scope]) == 3

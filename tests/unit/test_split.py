"""Splitting export requests into keyed Kafka records, on real OTLP protobufs."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from google.protobuf.json_format import ParseDict
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from receiver.signals import LOGS, METRICS, TRACES, Signal
from receiver.split import Split, split_request
from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME
from tests.otlp_clients import span_request

M = TypeVar("M", bound=Message)


def split(body: bytes, limit: int = 1 << 20) -> Split:
    return split_request(TRACES, body, limit)


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
    [record] = split(request.SerializeToString()).records
    assert record.key is None and record.items == 1


def test_empty_request_makes_no_record() -> None:
    assert split(b"").records == []


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (payloads here are under 128 bytes)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _message(kind: type[M], fields: dict[str, Any]) -> M:
    return ParseDict(fields, kind())


def _attribute(key: str, value: AnyValue) -> bytes:
    return Resource(attributes=[KeyValue(key=key, value=value)]).SerializeToString()


def _upb_view(signal: Signal, body: bytes) -> list[tuple[bytes | None, int]]:
    """The keys and item counts that upb's parse of `body` gives: the oracle of the native outline."""
    request = signal.request.FromString(body)
    view = []
    for resource in getattr(request, signal.resources_field):
        name = instance = ""
        for attribute in resource.resource.attributes:
            if attribute.key == SERVICE_NAME:
                name = attribute.value.string_value
            elif attribute.key == SERVICE_INSTANCE_ID:
                instance = attribute.value.string_value
        key = f"{name}/{instance}".encode() if name or instance else None
        view.append((key, signal.count_items(getattr(resource, signal.scopes_field))))
    return view


def _resource_spans(*resources: bytes) -> bytes:
    """A ResourceSpans entry whose resource field occurs once per argument (upb merges them)."""
    scope = _message(ResourceSpans, {"scope_spans": [{"spans": [{"name": "s"}] * 2}]}).SerializeToString()
    return _field(1, b"".join(_field(1, r) for r in resources) + scope)


NAME, INSTANCE = SERVICE_NAME, SERVICE_INSTANCE_ID
TRICKY: list[tuple[Signal, bytes]] = [
    (TRACES, span_request([("a", "1"), ("b", "2"), ("a", "1")], spans_per_agent=2)),
    # resource given twice: its attribute lists are concatenated
    (
        TRACES,
        _resource_spans(
            _attribute(NAME, AnyValue(string_value="a")), _attribute(INSTANCE, AnyValue(string_value="1"))
        ),
    ),
    # the last of two service.name attributes wins
    (
        TRACES,
        _resource_spans(
            _attribute(NAME, AnyValue(string_value="a")) + _attribute(NAME, AnyValue(string_value="b"))
        ),
    ),
    # a value that is not a string is "", whatever came before it in the merged AnyValue
    (
        TRACES,
        _resource_spans(
            _attribute(NAME, AnyValue(string_value="a")) + _attribute(INSTANCE, AnyValue(int_value=7))
        ),
    ),
    (
        TRACES,
        _resource_spans(
            _field(1, _field(1, NAME.encode()) + _field(2, _field(1, b"a")) + _field(2, b"\x10\x01"))
        ),
    ),
    (
        TRACES,
        _resource_spans(
            _field(1, _field(1, NAME.encode()) + _field(2, b"\x10\x01") + _field(2, _field(1, b"a")))
        ),
    ),
    # a string_value of the wrong wire type is an unknown field: the string before it stays
    (TRACES, _resource_spans(_field(1, _field(1, NAME.encode()) + _field(2, _field(1, b"a") + b"\x08\x05")))),
    # a top-level field 1 that is a varint is unknown, not a resource
    (TRACES, b"\x08\x01" + span_request([("a", "1")], spans_per_agent=1)),
    (TRACES, b""),
]


def _metrics(*metrics: Metric | bytes) -> bytes:
    """One ResourceMetrics of one scope; a bytes argument is a Metric's wire bytes, several of its
    data fields (upb merges the same oneof member, and a different one replaces it)."""
    wire = [m if isinstance(m, bytes) else m.SerializeToString() for m in metrics]
    scope = b"".join(_field(2, m) for m in wire)
    resource = ResourceMetrics(
        resource=Resource(attributes=[KeyValue(key=NAME, value=AnyValue(string_value="m"))])
    )
    return _field(1, resource.SerializeToString() + _field(2, scope))


def _gauge(points: int) -> bytes:
    return _message(Metric, {"gauge": {"data_points": [{"as_int": 1}] * points}}).SerializeToString()


def _sum(points: int) -> bytes:
    return _message(Metric, {"sum": {"data_points": [{"as_int": 1}] * points}}).SerializeToString()


TRICKY += [
    (
        METRICS,
        _metrics(
            _message(Metric, {"name": "h", "histogram": {"data_points": [{"count": 1}] * 3}}),
            Metric(name="none"),
        ),
    ),
    (METRICS, _metrics(_gauge(2) + _gauge(1))),
    (METRICS, _metrics(_gauge(2) + _sum(1))),
    (METRICS, _metrics(_gauge(2) + _sum(1) + _gauge(4))),
    (
        METRICS,
        _metrics(
            _message(Metric, {"summary": {"data_points": [{"count": 1}]}}),
            _message(Metric, {"exponential_histogram": {"data_points": [{}] * 2}}),
        ),
    ),
    (
        LOGS,
        _message(
            ExportLogsServiceRequest, {"resource_logs": [{"scope_logs": [{"log_records": [{}] * 3}]}] * 2}
        ).SerializeToString(),
    ),
]


@pytest.mark.parametrize(("signal", "body"), TRICKY)
def test_keys_and_items_are_what_upb_parses(signal: Signal, body: bytes) -> None:
    """Keys, item counts and entry bounds against upb's parse, on the corners of merged fields."""
    expected: dict[bytes | None, int] = {}
    for key, items in _upb_view(signal, body):
        expected[key] = expected.get(key, 0) + items
    records = split_request(signal, body, 1 << 20).records
    assert [(r.key, r.items) for r in records] == list(expected.items())
    for record in records:  # each record holds its key's resources and nothing else
        assert {key for key, _ in _upb_view(signal, record.value)} == {record.key}


def test_what_upb_refuses_is_a_value_error() -> None:
    body = _resource_spans(_attribute(NAME, AnyValue(string_value="a")))
    broken = body[:-1]
    with pytest.raises(DecodeError):
        TRACES.request.FromString(broken)
    with pytest.raises(ValueError, match="ExportTraceServiceRequest"):
        split(broken)


@pytest.mark.parametrize(
    "text",
    ["plain ascii", "café ✓ 日本", b"caf\xe9", b"\xed\xa0\x80", b"ok\xf0\x9f\x98"],
    ids=["ascii", "utf-8", "latin-1", "surrogate", "truncated"],
)
def test_strings_are_checked_as_upb_checks_them(text: str | bytes) -> None:
    """ASCII is taken on sight and anything else goes through the full UTF-8 check: the outline
    accepts exactly the span names and attribute values upb accepts."""
    raw = text.encode() if isinstance(text, str) else text
    marker = "#" * len(raw)  # same length: the lengths on the wire stay right
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name=marker)
    span.attributes.add(key="k", value=AnyValue(string_value=marker))
    for replaced in (1, 2):  # the name, then also the attribute value
        body = request.SerializeToString().replace(marker.encode(), raw, replaced)
        try:
            TRACES.request.FromString(body)
        except DecodeError:
            with pytest.raises(ValueError, match="not UTF-8"):
                split(body)
        else:
            assert split(body).records[0].value == body


def test_metric_items_are_data_points() -> None:
    scope = ScopeMetrics()
    gauge = scope.metrics.add(name="g").gauge
    gauge.data_points.add(as_double=1.0)
    gauge.data_points.add(as_double=2.0)
    scope.metrics.add(name="h").histogram.data_points.add(count=3)
    scope.metrics.add(name="empty")
    assert METRICS.count_items([scope]) == 3

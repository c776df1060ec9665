"""The native decoder behind `flatten` equals the previous Python flatten, column for column.

The oracle is tests/python_flatten_oracle.py (Python's protobuf plus the old field-by-field
code). Inputs: the real OTel SDK's requests, generated requests reaching every field type, and
hostile bytes (truncated, mutated, wrong wire types, invalid UTF-8, huge repeated fields, deep
nesting, merged duplicates). Documented fixes, where the oracle crashed the whole poll instead
of answering: times past 2^63 ns (OverflowError) become dead letters; negative span kinds and
status codes (read from the end of the list, or IndexError) read UNSPECIFIED and UNSET; unknown
aggregation temporalities (IndexError) read as empty. Dead-letter reasons name the fault more
precisely than upb's "Error parsing message", so reasons are compared by their prefix.
"""

from __future__ import annotations

import struct
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    Histogram,
    HistogramDataPoint,
    Metric,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from schemas.datasets import LOGS, METRICS, SPANS
from schemas.flatten import KafkaRecord, TimeBounds, flatten, native_decoder
from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from tests import python_flatten_oracle as oracle
from tests.otlp_corpus import NOW_NS, REQUEST_STRATEGIES, sdk_requests
from tests.python_flatten_oracle import assert_same, oracle_defined

FUZZ = settings(
    max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
TOPICS = [SPANS_TOPIC, METRICS_TOPIC, LOGS_TOPIC]
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def records_of(topic: str, values: list[bytes]) -> list[KafkaRecord]:
    return [KafkaRecord(topic, 3, 100 + i, NOW_NS // 1_000_000, b"agent/1", v) for i, v in enumerate(values)]


# -- the real SDK -------------------------------------------------------------------------------------
def test_sdk_requests_of_every_signal_flatten_alike() -> None:
    for topic, values in sdk_requests().items():
        tables = assert_same(records_of(topic, values))
        assert "dead_letters" not in tables
    metrics = flatten(records_of(METRICS_TOPIC, sdk_requests()[METRICS_TOPIC])).tables["metrics"]
    assert set(metrics["type"].to_pylist()) == {"sum", "gauge", "histogram", "exponential_histogram"}


# -- generated requests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("topic", TOPICS)
def test_generated_requests_flatten_alike(topic: str) -> None:
    @FUZZ
    @given(st.lists(REQUEST_STRATEGIES[topic], min_size=1, max_size=3))
    def check(requests: list[Any]) -> None:
        assert_same(records_of(topic, [r.SerializeToString() for r in requests]))

    check()


# -- hostile bytes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("topic", TOPICS)
def test_truncated_and_mutated_requests_are_rejected_alike(topic: str) -> None:
    @FUZZ
    @given(REQUEST_STRATEGIES[topic], st.data())
    def check(request: Any, data: st.DataObject) -> None:
        value = request.SerializeToString()
        cut = data.draw(st.integers(0, len(value)))
        position = data.draw(st.integers(0, max(len(value) - 1, 0)))
        noise = data.draw(st.binary(min_size=1, max_size=4))
        mutated = value[:position] + noise + value[position + len(noise) :]
        for candidate in (value[:cut], mutated, value + value[:cut]):
            if oracle_defined(topic, candidate):
                assert_same(records_of(topic, [candidate, value]))
            else:  # a documented fix: the oracle crashes, the native path answers
                assert flatten(records_of(topic, [candidate, value])).tables

    check()


@pytest.mark.parametrize("topic", TOPICS)
def test_random_bytes_never_crash(topic: str) -> None:
    @FUZZ
    @given(st.binary(max_size=200))
    def check(value: bytes) -> None:
        if oracle_defined(topic, value):
            assert_same(records_of(topic, [value]))
        else:
            assert flatten(records_of(topic, [value])).tables

    check()


def test_documented_fixes_answer_where_the_oracle_crashed() -> None:
    absurd = Span(name="far", start_time_unix_nano=2**64 - 1, end_time_unix_nano=5)
    odd = Span(name="odd", start_time_unix_nano=NOW_NS, end_time_unix_nano=NOW_NS)
    odd.kind = -1  # type: ignore[assignment]
    odd.status.code = -2  # type: ignore[assignment]
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend([absurd, odd])
    with pytest.raises((OverflowError, IndexError, pa.ArrowInvalid)):
        oracle.flatten(records_of(SPANS_TOPIC, [request.SerializeToString()]))
    tables = flatten(records_of(SPANS_TOPIC, [request.SerializeToString()])).tables
    assert tables["spans"].select(["name", "kind", "status_code"]).to_pylist() == [
        {"name": "odd", "kind": "UNSPECIFIED", "status_code": "UNSET"}
    ]
    assert tables["dead_letters"]["items"].to_pylist() == [1]


def _with_invalid_utf8(message: Any, marker: str) -> bytes:
    encoded = message.SerializeToString()
    assert encoded.count(marker.encode()) == 1
    return encoded.replace(marker.encode(), b"\xff\xfe" + marker.encode()[2:])


@pytest.mark.parametrize("where", ["key", "value", "name", "scope", "exemplar", "nested"])
def test_invalid_utf8_anywhere_rejects_the_record_alike(where: str) -> None:
    marker = "QQmarker"
    request = ExportMetricsServiceRequest()
    scope_metrics = request.resource_metrics.add().scope_metrics.add()
    if where == "scope":
        scope_metrics.scope.name = marker
    metric = scope_metrics.metrics.add(name=marker if where == "name" else "m")
    point = metric.gauge.data_points.add(time_unix_nano=NOW_NS, as_double=1.0)
    value = AnyValue(string_value=marker if where == "value" else "v")
    if where == "nested":
        value = AnyValue(
            kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(string_value=marker))])
        )
    point.attributes.add(key=marker if where == "key" else "k", value=value)
    if where == "exemplar":
        point.exemplars.append(Exemplar(filtered_attributes=[KeyValue(key=marker)]))
    bad = _with_invalid_utf8(request, marker)
    tables = assert_same(records_of(METRICS_TOPIC, [bad, request.SerializeToString()]))
    assert tables["metrics"].num_rows == 1 and tables["dead_letters"]["offset"].to_pylist() == [100]


def _field(number: int, wire: int, payload: bytes) -> bytes:
    tag = (
        bytes([number << 3 | wire])
        if number < 16
        else bytes([(number << 3 | wire) & 0x7F | 0x80, number >> 4])
    )
    if wire == 2:
        return tag + _varint(len(payload)) + payload
    return tag + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _span_request(span: bytes) -> bytes:
    return _field(1, 2, _field(2, 2, _field(2, 2, span)))


@pytest.mark.parametrize(
    "span",
    [
        _field(5, 0, b"\x07") + _field(7, 1, struct.pack("<Q", NOW_NS)),  # name as a varint: unknown field
        _field(5, 2, b"a") + _field(5, 2, b"b") + _field(7, 1, struct.pack("<Q", NOW_NS)),  # last wins
        _field(15, 2, _field(2, 2, b"m")) + _field(15, 2, _field(3, 0, b"\x02")),  # status merges
        _field(
            9, 2, _field(1, 2, b"k") + _field(2, 2, b"\x0a\x01a") + _field(2, 2, b"\x18\x05")
        ),  # value merges
        _field(9, 2, _field(1, 2, b"k") + _field(2, 2, b"\x2a\x00\x2a\x02\x0a\x00")),  # arrays merge
        _field(
            9, 2, _field(1, 2, b"k") + _field(2, 2, b"\x2a\x02\x0a\x00\x08\x01\x2a\x00")
        ),  # a bool between
        _field(9, 2, _field(1, 5, b"\x00\x00\x00\x00")),  # key as fixed32: unknown, key empty
        _field(9, 2, _field(2, 2, b"\x42\x05")),  # string_value_strindex
        _field(3, 3, _field(1, 0, b"\x01")) + bytes([0x1C]),  # a group: skipped
        _field(3, 3, b""),  # an unterminated group
        _field(3, 3, b"\x00\x05") + bytes([0x1C]),  # field 0 inside a group: upb skips it
        _field(3, 3, b"\x03\x04") + bytes([0x1C]),  # a group numbered 0 inside a group
        _field(3, 3, b"\x00") + bytes([0x1C]),  # field 0 swallowing the end tag: unterminated
        _field(0, 0, b"\x01"),  # field number 0
        _field(6, 7, b""),  # wire type 7
        _field(7, 0, b"\xff" * 10 + b"\x01"),  # an 11-byte varint
        _field(7, 0, b"\xff" * 9 + b"\x01"),  # a 10-byte varint, on a fixed64 field: unknown
        _field(11, 2, b"\x09\x01"),  # a truncated event
    ],
)
def test_wire_corner_cases_flatten_alike(span: bytes) -> None:
    assert_same(records_of(SPANS_TOPIC, [_span_request(span)]), TimeBounds(max_past_s=2e9))


def test_doubles_print_as_python_prints_them() -> None:
    """Fewest digits that read back, nearest first, ties to even; 2**-24 where rounding does not read back."""
    ties = [2**51 + i + f for i in range(0, 40, 3) for f in (0.25, 0.75)]
    tricky = [2**-24, 0.1 + 0.2, 1e16, 1e15, 1e-5, 1e-4, 5e-324, -0.0, 2.0**63, 1 / 3, 1e300, 123456789.125]
    span = Span(name="floats", start_time_unix_nano=NOW_NS)
    for i, value in enumerate(ties + tricky):
        span.attributes.add(key=str(i), value=AnyValue(double_value=value))
    span.attributes.add(
        key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=v) for v in ties]))
    )
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    assert_same(records_of(SPANS_TOPIC, [request.SerializeToString()]))


def _nested(depth: int) -> bytes:
    """An AnyValue `depth` arrays and kvlists deep, by hand: Python's protobuf cannot build the deepest."""
    value = _field(1, 2, b"leaf")
    for level in range(depth):
        if level % 2:
            value = _field(5, 2, _field(1, 2, value))
        else:
            value = _field(6, 2, _field(1, 2, _field(1, 2, b"k") + _field(2, 2, value)))
    return value


@pytest.mark.parametrize("depth", [1, 10, *range(34, 42), 60])
def test_deep_nesting_is_accepted_or_rejected_alike(depth: int) -> None:
    attribute = _field(9, 2, _field(1, 2, b"deep") + _field(2, 2, _nested(depth)))
    span = attribute + _field(7, 1, struct.pack("<Q", NOW_NS))
    tables = assert_same(records_of(SPANS_TOPIC, [_span_request(span)]))
    assert ("spans" in tables) == (depth <= 38)  # 100 messages deep at most, as upb allows


def test_huge_repeated_fields_flatten_alike() -> None:
    span = Span(name="wide", start_time_unix_nano=NOW_NS, end_time_unix_nano=NOW_NS)
    span.attributes.extend(KeyValue(key=f"k{i % 1000}", value=AnyValue(int_value=i)) for i in range(50_000))
    span.events.extend(Span.Event(time_unix_nano=NOW_NS, name=str(i)) for i in range(5_000))
    traces = ExportTraceServiceRequest()
    traces.resource_spans.add().scope_spans.add().spans.append(span)
    point = HistogramDataPoint(
        time_unix_nano=NOW_NS, bucket_counts=range(200_000), explicit_bounds=[0.5] * 1000
    )
    metrics = ExportMetricsServiceRequest()
    metric = Metric(name="h", histogram=Histogram(data_points=[point], aggregation_temporality=CUMULATIVE))
    metrics.resource_metrics.add().scope_metrics.add().metrics.append(metric)
    many = ExportLogsServiceRequest()
    many.resource_logs.add().scope_logs.add().log_records.add(
        time_unix_nano=NOW_NS, body=AnyValue(bytes_value=b"x" * 10**6)
    )
    assert_same(records_of(SPANS_TOPIC, [traces.SerializeToString()]))
    assert_same(records_of(METRICS_TOPIC, [metrics.SerializeToString()]))
    assert_same(records_of(LOGS_TOPIC, [many.SerializeToString()]))


def test_a_poll_of_mixed_topics_and_unknown_topics() -> None:
    sdk = sdk_requests()
    records = [
        KafkaRecord(topic, 0, i, NOW_NS // 1_000_000, None, value)
        for i, (topic, value) in enumerate(
            [
                (LOGS_TOPIC, sdk[LOGS_TOPIC][0]),
                ("elsewhere", b"x"),
                (SPANS_TOPIC, b"\xff"),
                (SPANS_TOPIC, sdk[SPANS_TOPIC][0]),
            ]
        )
    ]
    tables = assert_same(records)
    assert tables["dead_letters"]["offset"].to_pylist() == [1, 2]


@FUZZ
@given(st.lists(st.floats(allow_nan=False) | st.floats(width=32, allow_nan=False), min_size=1, max_size=50))
def test_any_double_prints_as_python_prints_it(values: list[float]) -> None:
    span = Span(name="floats", start_time_unix_nano=NOW_NS)
    for i, value in enumerate(values):
        span.attributes.add(key=str(i), value=AnyValue(double_value=value))
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    assert_same(records_of(SPANS_TOPIC, [request.SerializeToString()]))


# -- calls in a row ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("signal", "topic"), [("spans", SPANS_TOPIC), ("metrics", METRICS_TOPIC), ("logs", LOGS_TOPIC)]
)
def test_each_poll_decodes_as_a_fresh_decoder_decodes_it(signal: str, topic: str) -> None:
    """A decoder sizes each call's columns from its previous call's (native/src/lib.rs, `SizeHints`):
    polls far larger, far smaller and with a rejected record, one after another, each give what a
    new decoder gives for that poll alone."""
    dataset = {"spans": SPANS, "metrics": METRICS, "logs": LOGS}[signal]
    values = sdk_requests()[topic]
    decoder = native_decoder(signal, dataset)
    for poll in (values * 20, values[:1], [b"\xff", *values], values * 20, values):
        received = [NOW_NS] * len(poll)
        batch, rows, rejected = decoder.decode(poll, received)
        fresh_batch, fresh_rows, fresh_rejected = native_decoder(signal, dataset).decode(poll, received)
        assert batch.equals(fresh_batch)
        assert rows.equals(fresh_rows)
        assert rejected == fresh_rejected
        assert batch.num_rows > 0

"""The previous, field-by-field Python flatten: the oracle the native decoder is tested against.

It decodes with Python's protobuf (upb) and builds the same tables from Python objects.
Rows are built as column lists (one Python list per column, appended per span, point or log
record) and become one Arrow table per poll. Attributes go into flat key/value lists that form a
map column, and the promoted columns are then cut out of those lists with one vectorised pivot;
resource and scope columns are computed once per resource or scope and repeated by index.
Undecodable records and rows with absurd timestamps become dead letters with their reason.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from schemas.datasets import (
    ATTRIBUTE_COLUMNS,
    DEAD_LETTERS,
    LOGS,
    METRICS,
    RESOURCE_COLUMNS,
    SPANS,
    Dataset,
)
from schemas.flatten import DeadLetters, Flattened, KafkaRecord, TimeBounds, reject_out_of_bounds
from schemas.flatten import flatten as native_flatten
from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC

_SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS_CODES = ("UNSET", "OK", "ERROR")
_TEMPORALITY = ("", "delta", "cumulative")
_PROMOTED_KEYS = {
    key: (column, rank) for column, _, keys in ATTRIBUTE_COLUMNS for rank, key in enumerate(keys)
}


# -- attributes ------------------------------------------------------------------------------------
def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind) if kind else None


def _text(value: AnyValue) -> str | None:
    """An attribute value as map text: strings as they are, scalars printed, the rest as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value" or kind == "double_value":
        return str(getattr(value, kind))
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind is None:
        return None
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


class _AttributeLists:
    """Flat keys and values plus offsets: one map entry per row, one Arrow array per poll.

    Values of promoted keys are noted as they pass, so the typed columns need no second look.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[str | None] = []
        self.offsets: list[int] = [0]
        self.hits: list[tuple[int, str, int, str | None]] = []  # (row, column, rank, value)

    def add(self, pairs: Iterable[KeyValue]) -> None:
        keys, values, row = self.keys, self.values, len(self.offsets) - 1
        for kv in pairs:
            key, text = kv.key, _text(kv.value)
            keys.append(key)
            values.append(text)
            promoted = _PROMOTED_KEYS.get(key)
            if promoted is not None:
                self.hits.append((row, promoted[0], promoted[1], text))
        self.offsets.append(len(keys))

    def array(self) -> pa.MapArray:
        offsets = pa.array(self.offsets, pa.int32())
        return pa.MapArray.from_arrays(
            offsets, pa.array(self.keys, pa.string()), pa.array(self.values, pa.string())
        )

    def promoted(self) -> dict[str, pa.Array]:
        """The typed promoted columns: per row, the value of the first key in order of preference."""
        rows = len(self.offsets) - 1
        columns: dict[str, list[Any]] = {column: [None] * rows for column, _, _ in ATTRIBUTE_COLUMNS}
        rank_of: dict[tuple[int, str], int] = {}
        for row, column, rank, text in self.hits:
            if text is not None and rank < rank_of.get((row, column), len(_PROMOTED_KEYS)):
                rank_of[row, column] = rank
                columns[column][row] = text
        arrays = {}
        for column, arrow_type, _ in ATTRIBUTE_COLUMNS:
            texts = pa.array(columns[column], pa.string())
            if pa.types.is_integer(arrow_type):  # "12" -> 12; "1.5" or "x" -> null
                arrays[column] = pl.Series(texts).cast(pl.Int64, strict=False).to_arrow().cast(arrow_type)
            else:
                arrays[column] = texts
        return arrays


class _Rows:
    """Column lists of one dataset for one poll."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        own = {"attributes", "resource_attributes", "scope_name", "scope_version"}
        own |= {c for c, _ in RESOURCE_COLUMNS} | {c for c, _, _ in ATTRIBUTE_COLUMNS}
        self.lists: dict[str, list[Any]] = {n: [] for n in dataset.schema.names if n not in own}
        self.attributes = _AttributeLists()
        self.resources = _AttributeLists()
        self.resource_of_row: list[int] = []
        self.scope_name: list[str] = []
        self.scope_version: list[str] = []
        self.record_of_row: list[int] = []  # which Kafka record of the poll each row came from

    def resource(self, resource_attributes: Iterable[KeyValue]) -> int:
        """Register a resource; returns its index for `rows_done`."""
        self.resources.add(resource_attributes)
        return len(self.resources.offsets) - 2

    def rows_done(self, resource: int, scope: Any, rows: int, record: int) -> None:
        self.resource_of_row.extend([resource] * rows)
        self.scope_name.extend([scope.name] * rows)
        self.scope_version.extend([scope.version] * rows)
        self.record_of_row.extend([record] * rows)

    def table(self) -> pa.Table:
        columns: dict[str, Any] = {
            name: pa.array(values, self.dataset.schema.field(name).type)
            for name, values in self.lists.items()
        }
        resource_index = pa.array(self.resource_of_row, pa.int32())
        columns["resource_attributes"] = self.resources.array().take(resource_index)
        for column, values in _resource_columns(self.resources).items():
            columns[column] = values.take(resource_index)
        columns["scope_name"] = pa.array(self.scope_name, pa.string())
        columns["scope_version"] = pa.array(self.scope_version, pa.string())
        columns["attributes"] = self.attributes.array()
        columns.update(self.attributes.promoted())
        return pa.Table.from_pydict(
            {n: columns[n] for n in self.dataset.schema.names}, schema=self.dataset.schema
        )


def _resource_columns(resources: _AttributeLists) -> dict[str, pa.Array]:
    """service.name, service.instance.id and service.version of each resource."""
    wanted = dict(RESOURCE_COLUMNS)
    out: dict[str, list[str | None]] = {column: [] for column in wanted}
    for start, end in zip(resources.offsets, resources.offsets[1:], strict=False):
        found = {resources.keys[i]: resources.values[i] for i in range(start, end)}
        for column, key in wanted.items():
            out[column].append(found.get(key))
    return {column: pa.array(values, pa.string()) for column, values in out.items()}


# -- per signal ------------------------------------------------------------------------------------
def _spans(request: ExportTraceServiceRequest, out: _Rows, record: int, _received_ns: int) -> None:
    c, attributes = out.lists, out.attributes
    start, end, duration = c["start_time"], c["end_time"], c["duration_ns"]
    trace_id, span_id, parent, state, name = (
        c["trace_id"], c["span_id"], c["parent_span_id"], c["trace_state"], c["name"],
    )  # fmt: skip
    kind, status_code, status_message, events, links = (
        c["kind"], c["status_code"], c["status_message"], c["events"], c["links"],
    )  # fmt: skip
    for resource_spans in request.resource_spans:
        resource = out.resource(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                start.append(span.start_time_unix_nano)
                end.append(span.end_time_unix_nano)
                duration.append(span.end_time_unix_nano - span.start_time_unix_nano)
                trace_id.append(span.trace_id.hex())
                span_id.append(span.span_id.hex())
                parent.append(span.parent_span_id.hex())
                state.append(span.trace_state)
                name.append(span.name)
                kind.append(_SPAN_KINDS[span.kind] if span.kind < len(_SPAN_KINDS) else "UNSPECIFIED")
                status_code.append(_STATUS_CODES[span.status.code] if span.status.code < 3 else "UNSET")
                status_message.append(span.status.message)
                attributes.add(span.attributes)
                events.append(
                    [
                        {"time": e.time_unix_nano, "name": e.name, "attributes": _pairs(e.attributes)}
                        for e in span.events
                    ]
                )
                links.append(
                    [
                        {
                            "trace_id": k.trace_id.hex(),
                            "span_id": k.span_id.hex(),
                            "attributes": _pairs(k.attributes),
                        }
                        for k in span.links
                    ]
                )
            out.rows_done(resource, scope_spans.scope, len(scope_spans.spans), record)


def _pairs(attributes: Iterable[KeyValue]) -> list[tuple[str, str | None]]:
    return [(kv.key, _text(kv.value)) for kv in attributes]


# Columns a data point of each type fills; the rest of _POINT_COLUMNS get nulls.
_POINT_COLUMNS = (
    "value", "count", "sum", "min", "max", "bucket_counts", "explicit_bounds", "exp_scale", "exp_zero_count",
    "exp_positive_offset", "exp_positive_counts", "exp_negative_offset", "exp_negative_counts",
    "quantiles", "quantile_values",
)  # fmt: skip


def _number_point(point: Any) -> tuple[Any, ...]:
    number = point.WhichOneof("value")
    return (float(getattr(point, number)) if number else None,) + (None,) * 14


def _histogram_point(point: Any) -> tuple[Any, ...]:
    return (
        None, point.count, point.sum if point.HasField("sum") else None,
        point.min if point.HasField("min") else None, point.max if point.HasField("max") else None,
        list(point.bucket_counts), list(point.explicit_bounds),
    ) + (None,) * 8  # fmt: skip


def _exponential_point(point: Any) -> tuple[Any, ...]:
    return (
        None, point.count, point.sum if point.HasField("sum") else None,
        point.min if point.HasField("min") else None, point.max if point.HasField("max") else None,
        None, None, point.scale, point.zero_count,
        point.positive.offset, list(point.positive.bucket_counts),
        point.negative.offset, list(point.negative.bucket_counts),
        None, None,
    )  # fmt: skip


def _summary_point(point: Any) -> tuple[Any, ...]:
    quantiles = point.quantile_values
    return (None, point.count, point.sum) + (None,) * 10 + (
        [q.quantile for q in quantiles], [q.value for q in quantiles],
    )  # fmt: skip


_POINT_READERS: dict[str, Callable[[Any], tuple[Any, ...]]] = {
    "gauge": _number_point,
    "sum": _number_point,
    "histogram": _histogram_point,
    "exponential_histogram": _exponential_point,
    "summary": _summary_point,
}


def _metrics(request: ExportMetricsServiceRequest, out: _Rows, record: int, _received_ns: int) -> None:
    c = out.lists
    point_lists = [c[name] for name in _POINT_COLUMNS]
    for resource_metrics in request.resource_metrics:
        resource = out.resource(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            rows = 0
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                points = data.data_points
                n = len(points)
                temporality = (
                    _TEMPORALITY[data.aggregation_temporality] if kind not in ("gauge", "summary") else ""
                )
                c["metric_name"].extend([metric.name] * n)
                c["metric_description"].extend([metric.description] * n)
                c["unit"].extend([metric.unit] * n)
                c["type"].extend([kind] * n)
                c["temporality"].extend([temporality] * n)
                c["is_monotonic"].extend([data.is_monotonic if kind == "sum" else None] * n)
                read = _POINT_READERS[kind]
                for point in points:
                    c["time"].append(point.time_unix_nano)
                    c["start_time"].append(point.start_time_unix_nano or None)
                    c["flags"].append(point.flags)
                    for column, value in zip(point_lists, read(point), strict=True):
                        column.append(value)
                    out.attributes.add(point.attributes)
                rows += n
            out.rows_done(resource, scope_metrics.scope, rows, record)


def _logs(request: ExportLogsServiceRequest, out: _Rows, record: int, received_ns: int) -> None:
    c = out.lists
    for resource_logs in request.resource_logs:
        resource = out.resource(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for log in scope_logs.log_records:
                c["time"].append(log.time_unix_nano or log.observed_time_unix_nano or received_ns)
                c["observed_time"].append(log.observed_time_unix_nano or None)
                c["severity_number"].append(log.severity_number)
                c["severity_text"].append(log.severity_text)
                body = log.body.WhichOneof("value")
                c["body"].append(log.body.string_value if body == "string_value" else _text(log.body))
                c["event_name"].append(log.event_name)
                c["trace_id"].append(log.trace_id.hex())
                c["span_id"].append(log.span_id.hex())
                c["flags"].append(log.flags)
                out.attributes.add(log.attributes)
            out.rows_done(resource, scope_logs.scope, len(scope_logs.log_records), record)


@dataclass(frozen=True)
class _Signal:
    dataset: Dataset
    request: Any  # the ExportXServiceRequest class
    fill: Callable[[Any, _Rows, int, int], None]


_BY_TOPIC = {
    SPANS_TOPIC: _Signal(SPANS, ExportTraceServiceRequest, _spans),
    METRICS_TOPIC: _Signal(METRICS, ExportMetricsServiceRequest, _metrics),
    LOGS_TOPIC: _Signal(LOGS, ExportLogsServiceRequest, _logs),
}


_DEFAULT_BOUNDS = TimeBounds()


def flatten(records: Sequence[KafkaRecord], bounds: TimeBounds = _DEFAULT_BOUNDS) -> Flattened:
    """The rows of a poll's records, per dataset; a bad record becomes a dead letter, never an error."""
    dead = DeadLetters()
    builders: dict[str, _Rows] = {}
    for index, record in enumerate(records):
        signal = _BY_TOPIC.get(record.topic)
        if signal is None:
            dead.add(record, f"unknown topic {record.topic}", 0, record.value)
            continue
        try:
            request = signal.request.FromString(record.value)
        except DecodeError as err:
            dead.add(record, f"undecodable {signal.request.__name__}: {err}", 0, record.value)
            continue
        rows = builders.setdefault(signal.dataset.name, _Rows(signal.dataset))
        signal.fill(request, rows, index, record.timestamp_ms * 1_000_000)
    result = Flattened()
    for rows in builders.values():
        record_of_row = np.asarray(rows.record_of_row, dtype=np.int64)
        kept = reject_out_of_bounds(rows.dataset, rows.table(), record_of_row, records, bounds, dead)
        result.add(rows.dataset, *kept)
    result.add(DEAD_LETTERS, dead.table())
    return result


# -- comparing the native path with this oracle ------------------------------------------------
def _comparable(value: Any) -> Any:
    """NaN equals NaN here (and keeps its sign apart from other floats), lists and maps recursively."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float):
        return (value, math.copysign(1.0, value))
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    return value


def _untimed(arrow_type: pa.DataType) -> pa.DataType:
    """The type with timestamps as int64 (nanoseconds do not fit Python datetimes)."""
    if pa.types.is_timestamp(arrow_type):
        return pa.int64()
    if pa.types.is_list(arrow_type):
        return pa.list_(_untimed(arrow_type.value_type))
    if pa.types.is_struct(arrow_type):
        return pa.struct([pa.field(f.name, _untimed(f.type)) for f in arrow_type])
    return arrow_type


def _values(column: pa.ChunkedArray) -> Any:
    return _comparable(column.cast(_untimed(column.type)).to_pylist())


def assert_same(records: list[KafkaRecord], bounds: TimeBounds = _DEFAULT_BOUNDS) -> dict[str, pa.Table]:
    """Native and oracle agree on every table, every column and every dead letter."""
    native_result, python_result = native_flatten(records, bounds), flatten(records, bounds)
    native, python = native_result.tables, python_result.tables
    assert native.keys() == python.keys()
    assert native_result.record_of_row.keys() == python_result.record_of_row.keys()
    for name, rows_from in python_result.record_of_row.items():  # which record each row came from
        assert native_result.record_of_row[name].tolist() == rows_from.tolist(), name
    for name, expected in python.items():
        got = native[name]
        assert got.schema == expected.schema, name
        for column in expected.column_names:
            if name == "dead_letters" and column == "reason":
                prefixes = [
                    r.split(":")[0] if r.startswith("undecodable") else r for r in got[column].to_pylist()
                ]
                assert prefixes == [
                    r.split(":")[0] if r.startswith("undecodable") else r
                    for r in expected[column].to_pylist()
                ]
                continue
            assert _values(got[column]) == _values(expected[column]), f"{name}.{column}"
    return native


def oracle_defined(topic: str, value: bytes) -> bool:
    """False for the inputs whose oracle answer is a documented bug (see the module docstring)."""
    try:
        request = _BY_TOPIC[topic].request.FromString(value)
    except Exception:
        return True  # undecodable: both make a dead letter
    return not any(_undefined(message) for message in _walk(request))


def _walk(message: Any) -> Any:
    yield message
    for field, value in message.ListFields():
        if field.message_type is not None:
            for item in value if field.is_repeated else [value]:
                yield from _walk(item)


def _undefined(message: Any) -> bool:
    name = type(message).__name__
    if name == "Span" and (message.kind < 0 or message.status.code < 0):
        return True
    if name in ("Sum", "Histogram", "ExponentialHistogram") and not 0 <= message.aggregation_temporality <= 2:
        return True
    times = ("start_time_unix_nano", "end_time_unix_nano", "time_unix_nano", "observed_time_unix_nano")
    return any(getattr(message, t, 0) >= 2**63 for t in times if t in message.DESCRIPTOR.fields_by_name)

"""Prometheus samples → OTLP ExportMetricsServiceRequest, one mapping for scraping and remote-write.

It follows the OpenTelemetry Collector's prometheus receiver, so the same series looks the same
whichever door it came through and whichever tool (talonflow or a Collector) converted it:

- `job` → `service.name`, `instance` → `service.instance.id` (and its host and port →
  `server.address`, `server.port`); every other label stays a data point attribute.
- counter → monotonic cumulative sum named as the series (`foo_total`); gauge and untyped → gauge;
  classic histogram (`_bucket{le}`, `_sum`, `_count`) → one cumulative histogram point; summary
  (`{quantile}`, `_sum`, `_count`) → one summary point; `_created` → the points' start time.
- HELP → description, UNIT → unit; Prometheus' staleness marker → FLAG_NO_RECORDED_VALUE.

Remote-write 1.0 carries no type with its samples and Prometheus spreads one histogram's series
over several concurrent requests, so there a series is typed by the request's metadata when it
has it, else by name (`_total`, `_bucket`, `_count`, `_sum` → counter; anything else → gauge), and
each series is converted on its own: a histogram arrives as its bucket series.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Protocol

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from schemas.topics import SERVICE_INSTANCE_ID, SERVICE_NAME

SCOPE_NAME: Final = "talonflow/prometheus"
JOB, INSTANCE, NAME_LABEL = "job", "instance", "__name__"
UP: Final = "up"
# What every scrape reports about its target, as Prometheus does.
REPORT_METRICS: Final = ("up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added")
_STALE_BITS: Final = 0x7FF0000000000002  # Prometheus' staleness marker, a NaN with this payload
_COUNTER_SUFFIXES: Final = ("_total", "_bucket", "_count", "_sum")
_NO_VALUE: Final = DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_MS: Final = 1_000_000


class PromSample(Protocol):
    """prometheus_client's Sample: a series' name, labels, value and (optional) timestamp in s."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def value(self) -> float: ...
    @property
    def timestamp(self) -> Any: ...


class PromFamily(Protocol):
    """prometheus_client's Metric, as its text and OpenMetrics parsers return it."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def documentation(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def samples(self) -> Sequence[PromSample]: ...


def is_stale(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == _STALE_BITS


def resource_attributes(job: str, instance: str) -> list[KeyValue]:
    """The Collector's resource for a target: service name and instance, and the instance's address."""
    attributes = [_kv(SERVICE_NAME, job), _kv(SERVICE_INSTANCE_ID, instance)]
    host, sep, port = instance.rpartition(":")
    if sep and port.isdigit():
        attributes += [_kv("server.address", host.strip("[]")), _kv("server.port", int(port))]
    return attributes


def record_key(job: str, instance: str) -> bytes:
    """The Kafka key every record of this target gets (receiver/split.py keys OTLP the same way)."""
    return f"{job}/{instance}".encode()


@lru_cache(maxsize=1 << 16)  # label pairs repeat every scrape: build each KeyValue once
def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _attributes(labels: dict[str, str], skip: frozenset[str]) -> list[KeyValue]:
    return [_kv(k, v) for k, v in labels.items() if k not in skip]


_TARGET: Final = frozenset({JOB, INSTANCE, NAME_LABEL})
_BUCKET: Final = frozenset({JOB, INSTANCE, NAME_LABEL, "le"})
_QUANTILE: Final = frozenset({JOB, INSTANCE, NAME_LABEL, "quantile"})


@dataclass
class _Assembly:
    """The series of one histogram or summary point, gathered by their labels minus le/quantile."""

    labels: dict[str, str]
    time_ms: int
    bounds: list[tuple[float, float]] = field(default_factory=list)  # (le or quantile, value)
    sum: float = 0.0
    count: float = 0.0
    created: float = 0.0


def _time_ms(sample: PromSample, default_ms: int, honor_timestamps: bool) -> int:
    if sample.timestamp is None or not honor_timestamps:
        return default_ms
    return round(float(sample.timestamp) * 1000)


# Hand-written protobuf wire encoding for the scrape path: building upb messages a point at a time
# (add, attributes.extend copying each KeyValue, setters) cost about as much CPU as parsing the
# exposition. These few OTLP messages have a small fixed layout, so a point is a join of cached
# bytes; the field numbers are opentelemetry-proto's (metrics.proto, common.proto).
_DOUBLE: Final = struct.Struct("<d").pack
_FIXED64: Final = struct.Struct("<Q").pack


def _varint(number: int) -> bytes:
    if number < 0x80:
        return bytes((number,))
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte (field number << 3 | 2), length and payload."""
    return tag + _varint(len(payload)) + payload


def _text(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode()) if text else b""


@lru_cache(maxsize=1 << 16)  # label pairs repeat every scrape: encode each KeyValue once
def _kv_bytes(key: str, value: str) -> bytes:
    """A KeyValue with a string AnyValue, length-prefixed, ready to follow an attributes tag."""
    any_value = _field(b"\x0a", value.encode())  # a oneof: written even when empty
    return _varint_prefixed(_text(b"\x0a", key) + _field(b"\x12", any_value))


def _varint_prefixed(payload: bytes) -> bytes:
    return _varint(len(payload)) + payload


def _attribute_bytes(tag: bytes, labels: dict[str, str], skip: frozenset[str]) -> bytes:
    return b"".join([tag + _kv_bytes(k, v) for k, v in labels.items() if k not in skip])


def _times(start_ns: int, time_ns: int) -> bytes:
    """A data point's start_time_unix_nano (2) and time_unix_nano (3), fixed64, omitted when 0."""
    start = b"\x11" + _FIXED64(start_ns) if start_ns else b""
    return start + b"\x19" + _FIXED64(time_ns) if time_ns else start


_NUMBER_ATTRIBUTES: Final = b"\x3a"  # NumberDataPoint.attributes = 7, also SummaryDataPoint's
_HISTOGRAM_ATTRIBUTES: Final = b"\x4a"  # HistogramDataPoint.attributes = 9
_STALE_FLAGS: Final = b"\x40" + _varint(_NO_VALUE)  # NumberDataPoint.flags = 8
_CUMULATIVE: Final = b"\x10" + _varint(AGGREGATION_TEMPORALITY_CUMULATIVE)  # field 2 of Sum, Histogram
_MONOTONIC: Final = b"\x18\x01"  # Sum.is_monotonic = 3
_GAUGE, _SUM, _HISTOGRAM, _SUMMARY = b"\x2a", b"\x3a", b"\x4a", b"\x5a"  # Metric's data oneof


def _number_point(start_ns: int, time_ns: int, value: float, attributes: bytes) -> bytes:
    stale = _STALE_FLAGS if is_stale(value) else b""
    return _field(b"\x0a", _times(start_ns, time_ns) + b"\x21" + _DOUBLE(value) + attributes + stale)


class ScrapeConverter:
    """One target's scrape → one ResourceMetrics; families are converted whole, histograms assembled.

    The request is built as bytes (`serialize`), the form Kafka takes; `request` parses it back."""

    def __init__(self, job: str, instance: str, time_ms: int, honor_timestamps: bool = True) -> None:
        resource = Resource()
        resource.attributes.extend(resource_attributes(job, instance))
        self.head = _field(b"\x0a", resource.SerializeToString())  # ResourceMetrics.resource
        self.scope = _field(b"\x0a", _field(b"\x0a", SCOPE_NAME.encode()))  # ScopeMetrics.scope.name
        self.metrics: list[bytes] = []
        self.time_ms = time_ms
        self.honor = honor_timestamps
        self.points = 0

    def serialize(self) -> bytes:
        """The ExportMetricsServiceRequest's bytes: one resource, one scope, the metrics."""
        metrics = b"".join([_field(b"\x12", metric) for metric in self.metrics])
        scope_metrics = _field(b"\x12", self.scope + metrics)
        return _field(b"\x0a", self.head + scope_metrics)

    def request(self) -> ExportMetricsServiceRequest:
        return ExportMetricsServiceRequest.FromString(self.serialize())

    def add_family(self, family: PromFamily) -> None:
        """ValueError for what OTLP cannot hold: a NaN, infinite, negative or over-2**64 count or time
        (decreasing buckets give a negative one), so the scrape fails with a reason, as on bad syntax."""
        kind = family.type
        try:
            if kind in ("histogram", "gaugehistogram", "summary"):
                self._add_assembled(family)
            else:
                self._add_simple(family, kind == "counter")
        except (struct.error, OverflowError) as err:  # packing a uint64; int() of an infinity
            raise ValueError(f"metric family {family.name!r}: a count or time out of range: {err}") from None

    def add_gauge(self, name: str, value: float, labels: dict[str, str], help_text: str = "") -> None:
        """One of the scrape's own report series (up, scrape_duration_seconds, ...), with the target's
        labels as Prometheus gives them, so `up{env="prod"} == 0` matches."""
        attributes = _attribute_bytes(_NUMBER_ATTRIBUTES, labels, _TARGET)
        point = _number_point(0, self.time_ms * _MS, value, attributes)
        self._add_metric(name, help_text, "", _GAUGE, point)
        self.points += 1

    def _add_metric(self, name: str, description: str, unit: str, kind: bytes, data: bytes) -> None:
        head = _text(b"\x0a", name) + _text(b"\x12", description) + _text(b"\x1a", unit)
        self.metrics.append(head + _field(kind, data))

    def _add_simple(self, family: PromFamily, counter: bool) -> None:
        """Counters, gauges, untyped, info and stateset: a point per sample; `_created` is a start time."""
        created = {
            _frozen(s.labels): s.value for s in family.samples if counter and s.name.endswith("_created")
        }
        metrics: dict[str, list[bytes]] = {}  # a metric per sample name, in order of appearance
        for sample in family.samples:
            points = metrics.get(sample.name)
            if points is None:
                if counter and sample.name.endswith("_created"):
                    continue
                points = metrics[sample.name] = []
            start = created.get(_frozen(sample.labels)) if created else None
            attributes = _attribute_bytes(_NUMBER_ATTRIBUTES, sample.labels, _TARGET)
            start_ns = round(start * 1e9) if start else 0
            time_ns = _time_ms(sample, self.time_ms, self.honor) * _MS
            points.append(_number_point(start_ns, time_ns, sample.value, attributes))
        for name, points in metrics.items():
            data = b"".join(points) + (_CUMULATIVE + _MONOTONIC if counter else b"")
            self._add_metric(name, family.documentation, family.unit, _SUM if counter else _GAUGE, data)
            self.points += len(points)

    def _add_assembled(self, family: PromFamily) -> None:
        summary = family.type == "summary"
        groups: dict[frozenset[tuple[str, str]], _Assembly] = {}
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("le", "quantile")}
            key = _frozen(labels)
            group = groups.get(key)
            if group is None:
                time_ms = _time_ms(sample, self.time_ms, self.honor)
                group = groups[key] = _Assembly(labels, time_ms)
            suffix = sample.name[len(family.name) :]
            if suffix in ("_bucket", "") and ("le" in sample.labels or "quantile" in sample.labels):
                bound = sample.labels.get("quantile" if summary else "le", "nan")
                group.bounds.append((float(bound), sample.value))
            elif suffix in ("_sum", "_gsum"):
                group.sum = sample.value
            elif suffix in ("_count", "_gcount"):
                group.count = sample.value
            elif suffix == "_created":
                group.created = sample.value
        if not groups:
            return
        if summary:
            data = b"".join([_summary_point(group) for group in groups.values()])
            self._add_metric(family.name, family.documentation, family.unit, _SUMMARY, data)
        else:
            data = b"".join([_histogram_point(group) for group in groups.values()]) + _CUMULATIVE
            self._add_metric(family.name, family.documentation, family.unit, _HISTOGRAM, data)
        self.points += len(groups)


def _point_head(group: _Assembly) -> bytes:
    """The times and count (field 4, fixed64) that histogram and summary points share."""
    start_ns = round(group.created * 1e9) if group.created else 0
    count = int(group.count)
    return _times(start_ns, group.time_ms * _MS) + (b"\x21" + _FIXED64(count) if count else b"")


def _histogram_point(group: _Assembly) -> bytes:
    bounds = sorted(group.bounds)
    previous = 0.0
    counts = []
    for _, cumulative in bounds:
        counts.append(int(cumulative - previous))
        previous = cumulative
    if not bounds or not math.isinf(bounds[-1][0]):  # OTLP's last bucket is the +Inf one
        counts.append(int(group.count - previous))
    else:
        bounds = bounds[:-1]
    packed_counts = _field(b"\x32", b"".join([_FIXED64(c) for c in counts]))  # bucket_counts = 6
    packed_bounds = _field(b"\x3a", b"".join([_DOUBLE(b) for b, _ in bounds])) if bounds else b""
    attributes = _attribute_bytes(_HISTOGRAM_ATTRIBUTES, group.labels, _BUCKET)
    point = _point_head(group) + b"\x29" + _DOUBLE(group.sum) + packed_counts + packed_bounds + attributes
    return _field(b"\x0a", point)


def _summary_point(group: _Assembly) -> bytes:
    quantiles = b"".join(
        [
            _field(b"\x32", (b"\x09" + _DOUBLE(q) if q else b"") + (b"\x11" + _DOUBLE(v) if v else b""))
            for q, v in sorted(group.bounds)
        ]
    )
    total = b"\x29" + _DOUBLE(group.sum) if group.sum else b""  # a plain double: omitted when 0
    attributes = _attribute_bytes(_NUMBER_ATTRIBUTES, group.labels, _QUANTILE)
    return _field(b"\x0a", _point_head(group) + total + quantiles + attributes)


def _frozen(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def _set_value(point: Any, value: float) -> None:
    point.as_double = value
    if is_stale(value):
        point.flags = _NO_VALUE


def failed_scrape(scopes: Iterable[ScopeMetrics]) -> bool:
    """True for the report of a scrape that failed (`up` is 0): that target was silent, not alive."""
    for scope in scopes:
        if scope.scope.name != SCOPE_NAME:
            return False
        for metric in scope.metrics:
            if metric.name == UP:
                return all(p.as_double == 0 for p in metric.gauge.data_points)
    return False


_COUNTER_TYPES: Final = frozenset({1, 3, 5})  # MetricMetadata COUNTER, HISTOGRAM, SUMMARY


@dataclass(frozen=True)
class SeriesType:
    """How one remote-written series becomes OTLP: its kind, and HELP and UNIT when metadata came."""

    kind: str  # "sum" (monotonic cumulative) or "gauge"
    help: str = ""
    unit: str = ""


def series_type(name: str, metadata: dict[str, Any]) -> SeriesType:
    """By the family's MetricMetadata when the request has it, else by the series name.

    Counters and a histogram's or summary's `_bucket`/`_count`/`_sum` series are cumulative
    counts; a summary's quantile series and everything else are gauges.
    """
    family, meta = name, metadata.get(name)
    for suffix in _COUNTER_SUFFIXES:
        if meta is None and name.endswith(suffix) and name[: -len(suffix)] in metadata:
            family, meta = name[: -len(suffix)], metadata[name[: -len(suffix)]]
    if meta is None:
        return SeriesType("sum" if name.endswith(_COUNTER_SUFFIXES) else "gauge")
    counts = meta.type in _COUNTER_TYPES and not (meta.type == 5 and family == name)
    return SeriesType("sum" if counts else "gauge", meta.help, meta.unit)


def _remote_metric(
    request: ExportMetricsServiceRequest,
    scopes: dict[tuple[str, str], ScopeMetrics],
    target: tuple[str, str],
    name: str,
    metadata: dict[str, Any],
) -> Any:
    """The data points of a new metric in the target's resource (created on its first series)."""
    scope = scopes.get(target)
    if scope is None:
        resource = request.resource_metrics.add()
        resource.resource.attributes.extend(resource_attributes(*target))
        scope = scopes[target] = resource.scope_metrics.add()
        scope.scope.name = SCOPE_NAME
    kind = series_type(name, metadata)
    metric = scope.metrics.add(name=name, description=kind.help, unit=kind.unit)
    if kind.kind == "gauge":
        return metric.gauge.data_points
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
    return metric.sum.data_points


def convert_write_request(write: Any) -> tuple[ExportMetricsServiceRequest, int]:
    """A decoded prometheus.WriteRequest as one OTLP request (a resource per job and instance), and
    its sample count; ValueError for a series without a metric name."""
    metadata = {m.metric_family_name: m for m in write.metadata}
    request = ExportMetricsServiceRequest()
    scopes: dict[tuple[str, str], ScopeMetrics] = {}
    metrics: dict[tuple[str, str, str], Any] = {}  # (job, instance, name) → its data points
    samples = 0
    for series in write.timeseries:
        labels = {label.name: label.value for label in series.labels}
        name = labels.get(NAME_LABEL, "")
        if not name:
            raise ValueError("a time series has no __name__ label")
        target = (labels.get(JOB, ""), labels.get(INSTANCE, ""))
        points = metrics.get((*target, name))
        if points is None:
            points = metrics[(*target, name)] = _remote_metric(request, scopes, target, name, metadata)
        attributes = _attributes(labels, _TARGET)
        for sample in series.samples:
            point = points.add(time_unix_nano=sample.timestamp * _MS)
            point.attributes.extend(attributes)
            _set_value(point, sample.value)
        samples += len(series.samples)
    return request, samples

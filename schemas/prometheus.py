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
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)

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


class ScrapeConverter:
    """One target's scrape → one ResourceMetrics; families are converted whole, histograms assembled."""

    def __init__(self, job: str, instance: str, time_ms: int, honor_timestamps: bool = True) -> None:
        self.resource = ResourceMetrics()
        self.resource.resource.attributes.extend(resource_attributes(job, instance))
        self.scope: ScopeMetrics = self.resource.scope_metrics.add()
        self.scope.scope.name = SCOPE_NAME
        self.time_ms = time_ms
        self.honor = honor_timestamps
        self.points = 0

    def request(self) -> ExportMetricsServiceRequest:
        request = ExportMetricsServiceRequest()
        request.resource_metrics.append(self.resource)
        return request

    def add_family(self, family: PromFamily) -> None:
        kind = family.type
        if kind in ("histogram", "gaugehistogram", "summary"):
            self._add_assembled(family)
        else:
            self._add_simple(family, "sum" if kind == "counter" else "gauge")

    def add_gauge(self, name: str, value: float, help_text: str = "") -> None:
        """One of the scrape's own report series (up, scrape_duration_seconds, ...)."""
        metric = self.scope.metrics.add(name=name, description=help_text)
        metric.gauge.data_points.add(time_unix_nano=self.time_ms * _MS, as_double=value)
        self.points += 1

    def _metric(self, family: PromFamily, name: str) -> Metric:
        return self.scope.metrics.add(name=name, description=family.documentation, unit=family.unit)

    def _add_simple(self, family: PromFamily, kind: str) -> None:
        """Counters, gauges, untyped, info and stateset: a point per sample; `_created` is a start time."""
        created = {
            _frozen(s.labels): s.value
            for s in family.samples
            if kind == "sum" and s.name.endswith("_created")
        }
        metrics: dict[str, Metric] = {}
        for sample in family.samples:
            if sample.name in metrics:
                metric = metrics[sample.name]
            elif kind == "sum" and sample.name.endswith("_created"):
                continue
            else:
                metric = metrics[sample.name] = self._metric(family, sample.name)
                if kind == "sum":
                    metric.sum.is_monotonic = True
                    metric.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
            points = metric.sum.data_points if kind == "sum" else metric.gauge.data_points
            point = points.add(time_unix_nano=_time_ms(sample, self.time_ms, self.honor) * _MS)
            point.attributes.extend(_attributes(sample.labels, _TARGET))
            start = created.get(_frozen(sample.labels)) if created else None
            if start:
                point.start_time_unix_nano = round(start * 1e9)
            _set_value(point, sample.value)
            self.points += 1

    def _add_assembled(self, family: PromFamily) -> None:
        summary = family.type == "summary"
        skip = _QUANTILE if summary else _BUCKET
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
        metric = self._metric(family, family.name)
        for group in groups.values():
            if summary:
                self._summary_point(metric, group, skip)
            else:
                self._histogram_point(metric, group, skip)
            self.points += 1

    def _histogram_point(self, metric: Metric, group: _Assembly, skip: frozenset[str]) -> None:
        metric.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
        point = metric.histogram.data_points.add(
            time_unix_nano=group.time_ms * _MS, sum=group.sum, count=int(group.count)
        )
        point.attributes.extend(_attributes(group.labels, skip))
        if group.created:
            point.start_time_unix_nano = round(group.created * 1e9)
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
        point.explicit_bounds.extend(b for b, _ in bounds)
        point.bucket_counts.extend(counts)

    def _summary_point(self, metric: Metric, group: _Assembly, skip: frozenset[str]) -> None:
        point = metric.summary.data_points.add(
            time_unix_nano=group.time_ms * _MS, sum=group.sum, count=int(group.count)
        )
        point.attributes.extend(_attributes(group.labels, skip))
        if group.created:
            point.start_time_unix_nano = round(group.created * 1e9)
        for quantile, value in sorted(group.bounds):
            point.quantile_values.add(quantile=quantile, value=value)


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

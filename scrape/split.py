"""A scrape too big for one Kafka record, cut into several OTLP requests that each fit.

A target is one resource and one scope, so every part repeats them and keeps the target's Kafka
key; the metrics are dealt out whole, and a metric that alone is too big is cut between its data
points. Every point lands in exactly one part. Only a single point bigger than a record (a label
value of megabytes) cannot be sent; it is counted. This is the rare path, so it works on decoded
messages instead of the hand-encoded bytes of the common one (schemas/prometheus.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

# Room for the tag and length of a metric inside ScopeMetrics, and for the length prefixes of
# ResourceMetrics and ScopeMetrics growing as their content grows (a varint is at most 5 bytes).
_SLACK = 16


@dataclass
class Parts:
    values: list[bytes] = field(default_factory=list)  # serialized requests, each within the limit
    rejected_points: int = 0


def _points(metric: Metric) -> tuple[Metric, list[Any]]:
    """The metric without its data points (the shell each piece copies), and the points."""
    kind = metric.WhichOneof("data")
    shell = Metric()
    shell.CopyFrom(metric)
    if kind is None:
        return shell, []
    del getattr(shell, kind).data_points[:]
    return shell, list(getattr(metric, kind).data_points)


def _pieces(metric: Metric, budget: int, parts: Parts) -> Iterator[Metric]:
    """The metric whole when it fits `budget` bytes, else cut into pieces of consecutive points."""
    if metric.ByteSize() + _SLACK <= budget:
        yield metric
        return
    shell, points = _points(metric)
    kind = metric.WhichOneof("data")
    room = budget - shell.ByteSize() - _SLACK
    piece, size = None, 0
    for point in points:
        point_size = point.ByteSize() + 6  # its tag and length
        if point_size > room:
            parts.rejected_points += 1
            continue
        if piece is not None and size + point_size > room:
            yield piece
            piece = None
        if piece is None:
            piece, size = Metric(), 0
            piece.CopyFrom(shell)
        getattr(piece, str(kind)).data_points.append(point)
        size += point_size
    if piece is not None:
        yield piece


def split_request(value: bytes, limit: int) -> Parts:
    """`value` (one target's request) as requests of at most `limit` bytes, all points kept once."""
    parts = Parts()
    request = ExportMetricsServiceRequest.FromString(value)
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            shell = ExportMetricsServiceRequest()
            resource = shell.resource_metrics.add()
            resource.resource.CopyFrom(resource_metrics.resource)
            resource.scope_metrics.add().scope.CopyFrom(scope_metrics.scope)
            budget = limit - shell.ByteSize() - _SLACK
            current: list[Metric] = []
            size = 0
            for metric in scope_metrics.metrics:
                for piece in _pieces(metric, budget, parts):
                    piece_size = piece.ByteSize() + _SLACK
                    if current and size + piece_size > budget:
                        parts.values.append(_with(shell, current))
                        current, size = [], 0
                    current.append(piece)
                    size += piece_size
            if current:
                parts.values.append(_with(shell, current))
    return parts


def _with(shell: ExportMetricsServiceRequest, metrics: list[Metric]) -> bytes:
    request = ExportMetricsServiceRequest()
    request.CopyFrom(shell)
    request.resource_metrics[0].scope_metrics[0].metrics.extend(metrics)
    return request.SerializeToString()

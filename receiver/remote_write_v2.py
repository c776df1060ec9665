"""Prometheus Remote-Write 2.0 (`io.prometheus.write.v2.Request`) read as the 1.0 request it carries.

2.0 interns every string in a symbols table and sends each series' type, help and unit with it.
Turned into a 1.0 `WriteRequest` (labels resolved, one MetricMetadata per typed series), it takes
the same converter and Kafka path as 1.0, so the same series lands the same either way. Native
histograms and exemplars are counted but not written: the response headers say so, as the spec
asks, and a request with native histograms is answered 400 after its samples were written.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.prometheus_remote_pb2 import MetricMetadata, WriteRequest
from schemas.prometheus_remote_v2_pb2 import Metadata, Request

PROTO_V1 = "prometheus.WriteRequest"
PROTO_V2 = "io.prometheus.write.v2.Request"
# The types whose `_bucket` / `_sum` / `_count` series belong to a family of the name without it.
_COMPOUND = frozenset({Metadata.METRIC_TYPE_HISTOGRAM, Metadata.METRIC_TYPE_GAUGEHISTOGRAM,
                       Metadata.METRIC_TYPE_SUMMARY})  # fmt: skip
_PARTS = ("_bucket", "_sum", "_count")


@dataclass
class Decoded:
    """The 1.0 request, and what the 2.0 one held (for the X-Prometheus-Remote-Write-* headers)."""

    write: WriteRequest
    histograms: int
    exemplars: int


def _symbol(symbols: list[str], ref: int) -> str:
    if ref >= len(symbols):
        raise ValueError(f"symbol reference {ref} past the table of {len(symbols)} symbols")
    return symbols[ref]


def _family(name: str, kind: int) -> str:
    """The name a series' metadata is filed under, as 1.0 files it: a histogram's family name."""
    if kind in _COMPOUND:
        for suffix in _PARTS:
            if name.endswith(suffix):
                return name[: -len(suffix)]
    return name


def to_v1(request: Request) -> Decoded:
    """ValueError for a reference past the symbols table or an odd labels_refs list."""
    symbols = list(request.symbols)
    write = WriteRequest()
    families: dict[str, MetricMetadata] = {}
    decoded = Decoded(write, histograms=0, exemplars=0)
    for series in request.timeseries:
        refs = series.labels_refs
        if len(refs) % 2:
            raise ValueError(f"labels_refs holds {len(refs)} references, not name-value pairs")
        one = write.timeseries.add()
        name = ""
        for i in range(0, len(refs), 2):
            label, value = _symbol(symbols, refs[i]), _symbol(symbols, refs[i + 1])
            one.labels.add(name=label, value=value)
            name = value if label == "__name__" else name
        for sample in series.samples:
            one.samples.add(value=sample.value, timestamp=sample.timestamp)
        meta = series.metadata
        help_text, unit = _symbol(symbols, meta.help_ref), _symbol(symbols, meta.unit_ref)
        if meta.type != Metadata.METRIC_TYPE_UNSPECIFIED and name:
            family = _family(name, meta.type)
            families[family] = MetricMetadata(
                type=meta.type, metric_family_name=family, help=help_text, unit=unit
            )
        decoded.histograms += len(series.histograms)
        decoded.exemplars += len(series.exemplars)
    write.metadata.extend(families.values())
    return decoded

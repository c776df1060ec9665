"""OTLP → Prometheus names and series, as Prometheus' OTLP receiver (prometheus/otlptranslator) makes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from promql import Vector, format_labels, instant_query, labels_of
from promql.values import is_stale
from schemas.datasets import METRICS_SCHEMA
from schemas.flatten import KafkaRecord, flatten
from schemas.prometheus import ScrapeConverter
from schemas.prometheus_names import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    SERIES,
    TIMESTAMP_MS,
    UPDOWN,
    VALUE,
    SeriesStorage,
    label_name,
    metric_name,
    prometheus_series,
)
from schemas.topics import METRICS_TOPIC

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
RESOURCE = [("service.name", "gw"), ("service.instance.id", "gw-1"), ("host.name", "h1")]


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("system.filesystem.usage", "By", GAUGE, "system_filesystem_usage_bytes"),
        ("http.server.duration", "ms", HISTOGRAM, "http_server_duration_milliseconds"),
        ("system.io", "By", COUNTER, "system_io_bytes_total"),
        ("requests.count", "1", COUNTER, "requests_count_total"),
        ("cpu.utilization", "1", GAUGE, "cpu_utilization_ratio"),
        ("queue.depth", "1", UPDOWN, "queue_depth"),
        ("net.io", "By/s", GAUGE, "net_io_bytes_per_second"),
        ("packets", "{packets}", COUNTER, "packets_total"),
        ("total.tasks", "", COUNTER, "tasks_total"),
        ("latency_seconds", "s", GAUGE, "latency_seconds"),
        ("2xx.count", "", GAUGE, "_2xx_count"),
        ("job:rate:5m", "", GAUGE, "job:rate:5m"),
        ("foo__bar", "", GAUGE, "foo_bar"),
        ("memory", "MiBy", GAUGE, "memory_mebibytes"),
        ("speed", "m/s", GAUGE, "speed_meters_per_second"),
        ("__", "", GAUGE, ""),
    ],
)
def test_metric_names(name: str, unit: str, kind: str, expected: str) -> None:
    assert metric_name(name, unit, kind) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("http.method", "http_method"),
        ("123invalid", "key_123invalid"),
        ("__reserved__", "__reserved__"),
        ("a..b", "a_b"),
        ("_x", "_x"),
        ("...", ""),
    ],
)
def test_label_names(key: str, expected: str) -> None:
    assert label_name(key) == expected


def _row(**fields: Any) -> dict[str, Any]:
    return {"time": T0, "resource_attributes": RESOURCE, "attributes": [], **fields}


def _samples(rows: list[dict[str, Any]]) -> dict[str, float]:
    frame = prometheus_series(pa.Table.from_pylist(rows, METRICS_SCHEMA))
    assert set(frame[TIMESTAMP_MS]) <= {T0_MS}
    return dict(zip(frame[SERIES], frame[VALUE], strict=True))


def test_every_point_type_expands_as_prometheus_stores_it() -> None:
    rows = [
        _row(
            metric_name="http.server.request.duration",
            unit="s",
            type="histogram",
            temporality="cumulative",
            count=10,
            sum=3.5,
            bucket_counts=[1, 2, 3, 4],
            explicit_bounds=[0.1, 1.0, 2.5],
            attributes=[("http.method", "GET"), ("http_method", "POST"), ("job", "shadowed")],
        ),
        _row(
            metric_name="rpc.latency",
            unit="ms",
            type="summary",
            count=3,
            sum=9.0,
            quantiles=[0.5, 0.99],
            quantile_values=[2.0, 5.0],
        ),
        _row(
            metric_name="agent.tasks",
            unit="{task}",
            type="sum",
            temporality="cumulative",
            is_monotonic=True,
            value=5.0,
            attributes=[("le", "x")],
        ),
        _row(metric_name="dropped.delta", type="sum", temporality="delta", is_monotonic=True, value=1.0),
        _row(metric_name="dropped.exp", type="exponential_histogram", count=1, exp_scale=0),
    ]
    labels = 'http_method="GET;POST", instance="gw-1", job="gw"'
    hist = "http_server_request_duration_seconds"
    assert _samples(rows) == {
        f'{hist}_bucket{{{labels}, le="0.1"}}': 1.0,
        f'{hist}_bucket{{{labels}, le="1"}}': 3.0,
        f'{hist}_bucket{{{labels}, le="2.5"}}': 6.0,
        f'{hist}_bucket{{{labels}, le="+Inf"}}': 10.0,
        f"{hist}_sum{{{labels}}}": 3.5,
        f"{hist}_count{{{labels}}}": 10.0,
        'rpc_latency_milliseconds{instance="gw-1", job="gw", quantile="0.5"}': 2.0,
        'rpc_latency_milliseconds{instance="gw-1", job="gw", quantile="0.99"}': 5.0,
        'rpc_latency_milliseconds_sum{instance="gw-1", job="gw"}': 9.0,
        'rpc_latency_milliseconds_count{instance="gw-1", job="gw"}': 3.0,
        'agent_tasks_total{instance="gw-1", job="gw", le="x"}': 5.0,
        'target_info{host_name="h1", instance="gw-1", job="gw"}': 1.0,
    }


def test_namespace_joins_job_and_no_recorded_value_is_stale() -> None:
    resource = [("service.name", "gw"), ("service.namespace", "fleet")]
    frame = prometheus_series(
        pa.Table.from_pylist(
            [
                _row(
                    metric_name="up.ness",
                    unit="1",
                    type="gauge",
                    value=1.0,
                    flags=1,
                    resource_attributes=resource,
                )
            ],
            METRICS_SCHEMA,
        )
    )
    assert frame[SERIES].to_list() == ['up_ness_ratio{job="fleet/gw"}']
    assert is_stale(frame[VALUE].to_numpy()).all()


def test_a_scraped_metric_reads_back_under_its_prometheus_name() -> None:
    exposition = """\
# TYPE agent_tasks_total counter
agent_tasks_total{queue="a__b",_kind="x"} 7
# TYPE legacy_requests counter
legacy_requests 3
# TYPE job:latency:rate5m gauge
job:latency:rate5m 0.25
# TYPE llm_call_duration_seconds histogram
llm_call_duration_seconds_bucket{model="m",le="0.5"} 1
llm_call_duration_seconds_bucket{model="m",le="1"} 3
llm_call_duration_seconds_bucket{model="m",le="+Inf"} 4
llm_call_duration_seconds_sum{model="m"} 2.5
llm_call_duration_seconds_count{model="m"} 4
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.9"} 0.7
rpc_seconds_sum 5
rpc_seconds_count 9
"""
    converter = ScrapeConverter("picoclaw", "127.0.0.1:9100", T0_MS)
    expected = {}
    for family in text_string_to_metric_families(exposition):
        converter.add_family(family)
        for s in family.samples:
            labels = labels_of(
                {**s.labels, "__name__": s.name, "job": "picoclaw", "instance": "127.0.0.1:9100"}
            )
            expected[format_labels(labels)] = s.value
    record = KafkaRecord(METRICS_TOPIC, 0, 0, T0_MS, b"k", converter.request().SerializeToString())
    table = flatten([record]).tables["metrics"]
    frame = prometheus_series(table)
    storage = SeriesStorage(frame)
    got = instant_query('{job="picoclaw"}', T0_MS, storage)
    assert {format_labels(ls): v for ls, v in zip(got.labels, got.values, strict=True)} == expected  # type: ignore[union-attr]


def _exponential(**fields: Any) -> dict[str, Any]:
    return _row(
        metric_name="llm.latency", unit="s", type="exponential_histogram", temporality="cumulative", **fields
    )


def test_an_exponential_histogram_becomes_classic_buckets_around_each_populated_one() -> None:
    # scale 0: base 2, positive bucket i holds (2^i, 2^(i+1)]; bucket 2 is empty, so 4 = its upper
    # bound appears only as the lower bound of bucket 3
    point = _exponential(
        count=9,
        sum=40.0,
        exp_scale=0,
        exp_zero_count=1,
        exp_positive_offset=1,
        exp_positive_counts=[3, 0, 4],
        exp_negative_offset=0,
        exp_negative_counts=[1],
    )
    name, labels = "llm_latency_seconds", 'instance="gw-1", job="gw"'
    assert _samples([point]) == {
        f'{name}_bucket{{{labels}, le="-2"}}': 0.0,
        f'{name}_bucket{{{labels}, le="-1"}}': 1.0,
        f'{name}_bucket{{{labels}, le="0"}}': 2.0,
        f'{name}_bucket{{{labels}, le="2"}}': 2.0,
        f'{name}_bucket{{{labels}, le="4"}}': 5.0,
        f'{name}_bucket{{{labels}, le="8"}}': 5.0,
        f'{name}_bucket{{{labels}, le="16"}}': 9.0,
        f'{name}_bucket{{{labels}, le="+Inf"}}': 9.0,
        f"{name}_sum{{{labels}}}": 40.0,
        f"{name}_count{{{labels}}}": 9.0,
        'target_info{host_name="h1", instance="gw-1", job="gw"}': 1.0,
    }


def _direct_quantile(
    q: float, scale: int, zero: int, positive: tuple[int, list[int]], negative: tuple[int, list[int]]
) -> float:
    """The q-quantile read straight off exponential buckets: linear within the bucket holding rank q*count."""
    base = 2.0 ** (2.0**-scale)
    (p_offset, p_counts), (n_offset, n_counts) = positive, negative
    buckets = [(-(base ** (n_offset + i + 1)), -(base ** (n_offset + i)), c) for i, c in enumerate(n_counts)][
        ::-1
    ]
    buckets += [(0.0, 0.0, zero)]
    buckets += [(base ** (p_offset + i), base ** (p_offset + i + 1), c) for i, c in enumerate(p_counts)]
    rank = q * sum(c for _lo, _hi, c in buckets)
    below = 0.0
    for lower, upper, count in buckets:
        if count and below + count >= rank:
            return lower + (upper - lower) * (rank - below) / count
        below += count
    raise AssertionError("rank past the last bucket")


@pytest.mark.parametrize("q", [0.05, 0.15, 0.3, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("scale", [-1, 0, 3])
@pytest.mark.parametrize("negative", [(2, [1, 0, 3]), (0, [])], ids=["signed", "unsigned"])
def test_histogram_quantile_of_converted_exponential_buckets_matches_the_buckets(
    q: float, scale: int, negative: tuple[int, list[int]]
) -> None:
    # q=0.05 falls in the zero bucket when there are no negative buckets (and reads 0); with them,
    # no q here does: the classic reading interpolates a zero bucket from the last negative bound
    positive, zero = (-3, [2, 0, 0, 7, 1, 0, 5]), 2
    count = zero + sum(positive[1]) + sum(negative[1])
    point = _exponential(
        count=count,
        exp_scale=scale,
        exp_zero_count=zero,
        exp_positive_offset=positive[0],
        exp_positive_counts=positive[1],
        exp_negative_offset=negative[0],
        exp_negative_counts=negative[1],
    )
    storage = SeriesStorage(prometheus_series(pa.Table.from_pylist([point], METRICS_SCHEMA)))
    got = instant_query(f"histogram_quantile({q}, llm_latency_seconds_bucket)", T0_MS, storage)
    assert isinstance(got, Vector)
    assert got.values.tolist() == pytest.approx(
        [_direct_quantile(q, scale, zero, positive, negative)], rel=1e-12
    )


def test_exponential_points_outside_the_model_are_dropped_and_delta_ones_refused_as_prometheus_does() -> None:
    good = _exponential(count=2, exp_scale=0, exp_positive_offset=0, exp_positive_counts=[2])
    assert len(_samples([good])) == 5  # le=1, le=2, +Inf, _count, target_info
    assert not any(
        "llm" in s for s in _samples([_exponential(count=2, exp_scale=21, exp_positive_counts=[2])])
    )
    assert not any("llm" in s for s in _samples([{**good, "temporality": "delta"}]))


def test_an_exponential_point_with_no_recorded_value_marks_its_series_stale() -> None:
    point = _exponential(count=0, sum=0.0, exp_scale=0, flags=1)
    frame = prometheus_series(pa.Table.from_pylist([point], METRICS_SCHEMA))
    stale = frame.filter(frame[SERIES].str.starts_with("llm"))
    assert sorted(stale[SERIES].to_list()) == [
        'llm_latency_seconds_bucket{instance="gw-1", job="gw", le="+Inf"}',
        'llm_latency_seconds_count{instance="gw-1", job="gw"}',
        'llm_latency_seconds_sum{instance="gw-1", job="gw"}',
    ]
    assert is_stale(stale[VALUE].to_numpy()).all()

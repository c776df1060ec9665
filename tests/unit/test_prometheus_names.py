"""OTLP → Prometheus names and series, as Prometheus' OTLP receiver (prometheus/otlptranslator) makes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from promql import format_labels, instant_query, labels_of
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

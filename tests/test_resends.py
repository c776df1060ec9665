"""An SDK's resend on the real stack: the same export request twice, with the flows killed in
between, is in Parquet and in the rollups once (flows/resends.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import polars as pl
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from schemas.rollups import SPAN_DURATION
from schemas.topics import METRICS_TOPIC, SPANS_TOPIC
from tests.conftest import LocalStack
from tests.isolated import Flows, isolated_flows
from tests.otlp_clients import grpc_export, http_post, span_request
from tests.test_ingest import duck, scan, wait_for_rows

pytestmark = pytest.mark.integration
SPANS, POINTS = 5, 3


def requests(instance: str, spans_count: int, points: int, first: int = 0) -> tuple[bytes, bytes]:
    """(spans, metrics) export requests of one agent, stamped now: spans and delta points of 1
    numbered from `first`; a service name of its own, as span rollups are per service."""
    spans = ExportTraceServiceRequest.FromString(
        span_request([(f"resender-{instance}", instance)], spans_count)
    )
    now = time.time_ns()
    for index, span in enumerate(spans.resource_spans[0].scope_spans[0].spans, start=first):
        span.span_id, span.name = (index + 1).to_bytes(8, "big"), f"tool_call_{index}"
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1_000_000
    metrics = ExportMetricsServiceRequest()
    resource = metrics.resource_metrics.add()
    for key, value in (("service.name", f"resender-{instance}"), ("service.instance.id", instance)):
        resource.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    metric = Metric(name="resent.counter")
    metric.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    metric.sum.is_monotonic = True
    for index in range(first, first + points):
        point = metric.sum.data_points.add(time_unix_nano=now, as_double=1.0)
        point.attributes.append(KeyValue(key="n", value=AnyValue(string_value=str(index))))
    resource.scope_metrics.add().metrics.append(metric)
    return spans.SerializeToString(), metrics.SerializeToString()


class Retryable(Exception):
    """UNAVAILABLE or 503 and the like: an SDK sends the same request again (itself a resend)."""


@retry(
    retry=retry_if_exception_type(Retryable), wait=wait_fixed(2), stop=stop_after_attempt(15), reraise=True
)
def export(local_stack: LocalStack, spans: bytes, metrics: bytes) -> None:
    """Spans over gRPC, metrics over HTTP: both transports forward a resend as the same record."""
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
        try:
            grpc_export(channel, "traces", spans)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise Retryable(error.details()) from error
            raise
    status = http_post(f"{local_stack.http_url}/v1/metrics", metrics).status
    if status in (429, 502, 503, 504):
        raise Retryable(f"HTTP {status}")
    assert status == 200


def rollups(data: Path, instance: str, timeout: float = 150) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(this agent's 1m rollups, late points of its series) once the counter's windows closed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(data.glob("rollups_1m/date=*/hour=*/*.parquet"))
        frame = pl.read_parquet(files) if files else pl.DataFrame()
        if frame.height:
            mine = frame.filter(pl.col("service_name") == f"resender-{instance}")
            counter = mine.filter(pl.col("metric_name") == "resent.counter")
            # the span series may sit on another shard, whose windows close on their own watermark
            spans_counted = mine.filter(pl.col("metric_name") == SPAN_DURATION)["count"].sum()
            if counter.height == POINTS + 1 and spans_counted >= SPANS + 1:
                time.sleep(3)  # a commit later: a second fold would show now
                frame = pl.read_parquet(list(data.glob("rollups_1m/date=*/hour=*/*.parquet")))
                mine = frame.filter(pl.col("service_name") == f"resender-{instance}")
                late_files = list(data.glob("late_points/date=*/hour=*/*.parquet"))
                late = pl.read_parquet(late_files) if late_files else pl.DataFrame({"series_id": []})
                return mine, late.filter(pl.col("series_id").is_in(mine["series_id"].implode()))
        time.sleep(1)
    raise AssertionError(f"the rollups of {instance} never closed")


def test_a_request_exported_twice_lands_once_in_parquet_and_in_the_rollups(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    instance = uuid.uuid4().hex[:10]
    flows: list[Flows] = []
    for name, settings in (
        ("ingest", {"ingest": {"commit_interval": "1s", "poll_records": 20}}),
        ("rollups", {"rollups": {"allowed_lateness": "30s", "resolutions": ["1m"], "poll_records": 20}}),
    ):
        (tmp_path / name).mkdir()
        flows.append(isolated_flows(local_stack, tmp_path / name, name, settings, 1, 1)[0])
    ingest = flows[0]
    data, rollup_data = tmp_path / "ingest" / "data", tmp_path / "rollups" / "data"
    spans, metrics = requests(instance, SPANS, POINTS)
    where = f"service_instance_id = '{instance}'"
    export(local_stack, spans, metrics)
    try:
        for flow in flows:
            flow.start()
        assert wait_for_rows(data, "spans", where, SPANS, timeout=120)[0] == SPANS, ingest.log_tail()
        assert wait_for_rows(data, "metrics", where, POINTS)[0] == POINTS
        time.sleep(3)  # rollups have read it too and snapshotted (every second): the kill comes after
        for flow in flows:
            flow.kill()
        export(local_stack, spans, metrics)  # the SDK's resend: its first answer never came, say
        key = f"resender-{instance}/{instance}".encode()
        for topic, body in ((SPANS_TOPIC, spans), (METRICS_TOPIC, metrics)):
            assert [r.value() for r in local_stack.records(topic, key, count=2)] == [body, body]
        for flow in flows:
            flow.start()  # from their recovery state: the window must remember the first copies
        # new data of the same agent, so on the same partitions: once it is in, the resend was read
        export(local_stack, *requests(instance, 1, 1, first=100))
        spans_in = wait_for_rows(data, "spans", where, SPANS + 1, timeout=120)
        assert spans_in == (SPANS + 1, SPANS + 1), ingest.log_tail()
        assert wait_for_rows(data, "metrics", where, POINTS + 1)[0] == POINTS + 1
        letters = duck(
            f"SELECT topic, reason, items, octet_length(payload) FROM {scan(data, 'dead_letters')} "
            f"WHERE key = 'resender-{instance}/{instance}' ORDER BY topic"
        )
        assert [(topic, items, size) for topic, _, items, size in letters] == [
            (METRICS_TOPIC, POINTS, 0),
            (SPANS_TOPIC, SPANS, 0),
        ]
        assert all(reason.startswith("resent: same key and bytes as offset ") for _, reason, *_ in letters)
        rows, late = rollups(rollup_data, instance)
    finally:
        for flow in flows:
            flow.stop()
    counter = rows.filter(pl.col("metric_name") == "resent.counter")
    assert counter["points"].to_list() == [1] * (POINTS + 1) and counter["increase"].sum() == POINTS + 1
    assert rows.filter(pl.col("metric_name") == SPAN_DURATION)["count"].sum() == SPANS + 1
    assert late.is_empty(), late  # not folded twice, nor counted as a late second copy

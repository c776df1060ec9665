"""The rollups flow on the real stack: what an OTel SDK exports comes back as exact window rollups."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import polars as pl
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from schemas.rollups import GENAI_COST, GENAI_TOKENS, SPAN_DURATION
from schemas.topics import ROLLUPS_TOPIC
from talonflow.query import run_query
from tests.conftest import LocalStack, read_records
from tests.isolated import isolated_flows, kill_during_stream
from tests.otlp_clients import grpc_export

pytestmark = pytest.mark.integration


def rollups_of(local_stack: LocalStack, service: str, expected: int, timeout: float = 100) -> pl.DataFrame:
    """The service's 1-minute rollups once `expected` rows are there (windows close on the clock)."""
    sql = f"SELECT * FROM rollups_1m WHERE service_name = '{service}'"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = run_query(local_stack.config, sql)
        except Exception:  # no rollup file yet: the table does not exist
            frame = pl.DataFrame()
        if frame.height >= expected:
            time.sleep(2)  # a commit later: a duplicate would show now
            return run_query(local_stack.config, sql)
        time.sleep(1)
    raise AssertionError(f"{expected} rollups for {service} never arrived")


def test_sdk_metrics_and_spans_roll_up_exactly(local_stack: LocalStack) -> None:
    instance = uuid.uuid4().hex[:10]
    resource = Resource.create({"service.name": "roller", "service.instance.id": instance})
    endpoint = local_stack.grpc_endpoint
    rng = np.random.default_rng(11)

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True), 3_600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meters.get_meter("talonflow.tests")
    tasks = meter.create_counter("agent.tasks")
    latency = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    tokens = meter.create_counter("gen_ai.client.token.usage")
    added = rng.integers(1, 20, 50)
    for amount in added:
        tasks.add(int(amount))
    durations = rng.uniform(0.1, 9.0, 200)
    for value in durations:
        latency.record(float(value), {"gen_ai.request.model": "claude-sonnet"})
    tokens.add(1000, {"gen_ai.token.type": "input", "gen_ai.request.model": "claude-sonnet"})
    tokens.add(200, {"gen_ai.token.type": "output", "gen_ai.request.model": "claude-sonnet"})
    reader.force_flush()  # one cumulative export: every point in this minute
    meters.shutdown()

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = tracer_provider.get_tracer("talonflow.tests")
    for index in range(40):
        with tracer.start_as_current_span("tool_call") as span:
            if index % 4 == 0:
                span.set_status(Status(StatusCode.ERROR))
    tracer_provider.shutdown()

    # agent.tasks, the histogram, 2 token series, 2 derived token series (per model and token type,
    # across instances), 2 cost series, 2 RED series;
    # the SDK may stamp the spans in the next minute, which only adds windows, so ask for at least 10
    rows = rollups_of(local_stack, "roller", 10)
    assert rows.select(pl.struct("series_id", "window_start").is_duplicated().any()).item() is False

    def one(name: str, **labels: str) -> dict[str, Any]:
        match = rows.filter(pl.col("metric_name") == name)
        for key, value in labels.items():
            match = match.filter(pl.col("attributes").map.get(key) == value)
        totals = match.select(pl.col("count", "sum", "increase", "points").sum(), pl.col("max").max())
        return totals.row(0, named=True)

    assert one("agent.tasks")["increase"] == added.sum()
    histogram = one("gen_ai.client.operation.duration")
    assert histogram["count"] == 200 and histogram["sum"] == pytest.approx(durations.sum())
    assert one(GENAI_TOKENS, **{"gen_ai.token.type": "input", "talon.source": "metric"})["sum"] == 1000
    assert one(GENAI_COST, **{"gen_ai.token.type": "output"})["sum"] == pytest.approx(200 * 15e-6)
    assert one(SPAN_DURATION, status_code="ERROR")["count"] == 10
    assert one(SPAN_DURATION, status_code="UNSET")["count"] == 30

    series = rows.filter(pl.col("metric_name") == "agent.tasks")["series_id"][0]
    messages = read_records(
        local_stack.config.kafka.bootstrap_servers, ROLLUPS_TOPIC, series.encode(), 1, timeout=30
    )
    document = json.loads(messages[0].value() or b"{}")
    assert document["increase"] == added.sum() and document["resolution"] == "1m"
    assert document["attributes"]["service.instance.id"] == instance
    assert document["window_start"].endswith(":00Z")


def stream_counter(local_stack: LocalStack, instance: str, stop: threading.Event, sent: list[int]) -> None:
    """An agent exporting delta counter points (value 1, event time now) until told to stop."""
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
        while not stop.is_set():
            request = ExportMetricsServiceRequest()
            resource = request.resource_metrics.add()
            for key, value in (("service.name", "killed"), ("service.instance.id", instance)):
                resource.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
            metric = Metric(name="kill.counter")
            metric.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
            metric.sum.is_monotonic = True
            now = time.time_ns()
            for index in range(10):
                point = metric.sum.data_points.add(time_unix_nano=now + index, as_double=1.0)
                point.attributes.append(KeyValue(key="loop", value=AnyValue(string_value=f"l{index % 3}")))
            resource.scope_metrics.add().metrics.append(metric)
            grpc_export(channel, "metrics", request.SerializeToString())
            sent[0] += 10
            time.sleep(0.05)


@pytest.mark.parametrize(("processes", "workers"), [(1, 2), (2, 1)], ids=["-w 2", "two processes"])
def test_kill_9_during_a_stream_keeps_every_rollup_exact(
    local_stack: LocalStack, tmp_path: Path, processes: int, workers: int
) -> None:
    """Recovery restores shards, cumulative state and open windows: counts come out exact, once each."""
    rollups = {"allowed_lateness": "1s", "resolutions": ["1m", "1h"], "poll_records": 20, "shards": 4}
    flows, data = isolated_flows(local_stack, tmp_path, "rollups", {"rollups": rollups}, processes, workers)
    instance = uuid.uuid4().hex[:10]
    sent = [0]
    kill_during_stream(
        flows, lambda stop: stream_counter(local_stack, instance, stop, sent), kills=5, pause=(1.5, 4.0)
    )

    def rows() -> pl.DataFrame:
        files = list(data.glob("rollups_1m/date=*/hour=*/*.parquet"))
        if not files:
            return pl.DataFrame()
        frame = pl.read_parquet(files)
        return frame.filter(pl.col("attributes").map.get("service.instance.id") == instance)

    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the last window closes on the clock once the stream stops
            if (found := rows()).height and found["increase"].sum() >= sent[0]:
                break
            time.sleep(1)
        time.sleep(3)  # a duplicate would show now
        found = rows()
    finally:
        flows.stop()
    assert sent[0] > 300
    assert found.select(pl.struct("series_id", "window_start").is_duplicated().any()).item() is False, (
        flows.log_tail()
    )
    assert found["increase"].sum() == sent[0], flows.log_tail()
    assert found["points"].sum() == sent[0]
    assert found["attributes"].map.get("loop").unique().sort().to_list() == ["l0", "l1", "l2"]

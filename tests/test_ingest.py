"""The ingest flow on the real stack: what agents send is in Parquet exactly once, whatever happens."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import grpc
import polars as pl
import pytest
from confluent_kafka import Producer
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from schemas.topics import LOGS_TOPIC
from talonflow.query import run_query
from tests.conftest import LocalStack
from tests.isolated import Flows, isolated_flows, kill_during_stream
from tests.otlp_clients import grpc_export, span_request, summary_request

pytestmark = pytest.mark.integration


def scan(data: Path, dataset: str) -> str:
    return f"read_parquet('{data}/{dataset}/**/*.parquet', hive_partitioning=true)"


def duck(sql: str) -> list[tuple[Any, ...]]:
    relation = duckdb.sql(sql)
    assert relation is not None
    return relation.fetchall()


def duck_count(data: Path, dataset: str, where: str) -> tuple[int, int]:
    """(rows, distinct ids) matching `where`, read by DuckDB as any user would."""
    if not any((data / dataset).glob("date=*/hour=*/*.parquet")):
        return 0, 0
    distinct = "count(DISTINCT span_id)" if dataset == "spans" else "count(*)"
    sql = f"SELECT count(*), {distinct} FROM {scan(data, dataset)} WHERE {where}"
    for _ in range(5):  # a file may vanish between glob and open while a resumed flow cleans up
        try:
            [(rows, ids)] = duck(sql)
            return int(rows), int(ids)
        except duckdb.IOException:
            time.sleep(0.2)
    raise AssertionError("parquet files kept vanishing")


def wait_for_rows(
    data: Path, dataset: str, where: str, expected: int, timeout: float = 60, quiet: float = 2.5
) -> tuple[int, int]:
    """(rows, distinct ids) once there are at least `expected` and the count held still for `quiet` s.

    Holding still matters: a flow that is still replaying, or writes a duplicate late, shows here
    instead of slipping past a count taken at one moment. On timeout, the last count.
    """
    deadline = time.monotonic() + timeout
    counts, since = duck_count(data, dataset, where), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        latest = duck_count(data, dataset, where)
        if latest != counts:
            counts, since = latest, time.monotonic()
        elif counts[0] >= expected and time.monotonic() - since >= quiet:
            break
    return counts


def written_files(data: Path, dataset: str) -> set[tuple[Path, int, int]]:
    """(path, inode, mtime) of each file of `dataset`: a file rewritten under its old name differs."""
    found = set()
    for path in (data / dataset).glob("date=*/hour=*/*.parquet"):
        with contextlib.suppress(FileNotFoundError):  # removed by a resuming flow meanwhile
            stat = path.stat()
            found.add((path, stat.st_ino, stat.st_mtime_ns))
    return found


def wait_until_replaced(
    data: Path, dataset: str, before: set[tuple[Path, int, int]], timeout: float = 120
) -> bool:
    """Whether every file in `before` was removed or rewritten within `timeout` s."""
    deadline = time.monotonic() + timeout
    while not written_files(data, dataset).isdisjoint(before):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def resource(name: str, instance: str) -> Resource:
    return Resource.create(
        {"service.name": name, "service.instance.id": instance, "service.version": "1.2.3"}
    )


def test_what_the_sdk_sends_is_counted_exactly_by_duckdb_polars_and_the_cli(local_stack: LocalStack) -> None:
    instance = uuid.uuid4().hex[:10]
    data = local_stack.config.data_dir
    endpoint = local_stack.grpc_endpoint

    tracer_provider = TracerProvider(resource=resource("planner", instance))
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = tracer_provider.get_tracer("talonflow.tests")
    for index in range(300):
        with tracer.start_as_current_span(
            "chat claude-sonnet", attributes={"gen_ai.request.model": "claude-sonnet"}
        ) as span:
            span.set_attribute("gen_ai.usage.input_tokens", index)
            span.set_attribute("gen_ai.provider.name", "anthropic")
            span.set_attribute("session.id", f"s-{index % 7}")
    tracer_provider.shutdown()

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True), 3_600_000)
    meter_provider = MeterProvider(
        resource=resource("planner", instance),
        metric_readers=[reader],
        views=[View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = meter_provider.get_meter("talonflow.tests")
    counter = meter.create_counter("gen_ai.client.token.usage")
    for token_type in ("input", "output"):
        counter.add(100, {"gen_ai.token.type": token_type})
    histogram = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    for value in (0.5, 1.5, 7.0):
        histogram.record(value)
    meter.create_histogram("latency.exp").record(0.25)
    meter.create_gauge("queue.depth").set(51)
    meter.create_up_down_counter("tasks.running").add(3)
    meter_provider.shutdown()  # 6 points: 2 sum + histogram + exponential + gauge + up-down sum

    logger_provider = LoggerProvider(resource=resource("planner", instance))
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True))
    )
    for index in range(40):
        logger_provider.get_logger("loops").emit(
            severity_number=SeverityNumber.WARN, body=f"heartbeat {index}", attributes={"loop": "cron"}
        )
    logger_provider.shutdown()

    where = f"service_instance_id = '{instance}'"
    assert wait_for_rows(data, "spans", where, 300) == (300, 300)
    assert wait_for_rows(data, "metrics", where, 6)[0] == 6
    assert wait_for_rows(data, "logs", where, 40)[0] == 40

    spans = pl.scan_parquet(data / "spans" / "**" / "*.parquet", hive_partitioning=True).filter(
        pl.col("service_instance_id") == instance
    )
    assert spans.select(pl.len()).collect().item() == 300
    sample = spans.filter(pl.col("gen_ai_usage_input_tokens") == 42).collect()
    assert sample.height == 1
    row = sample.row(0, named=True)
    assert row["name"] == "chat claude-sonnet" and row["gen_ai_provider_name"] == "anthropic"
    assert row["gen_ai_request_model"] == "claude-sonnet" and row["service_version"] == "1.2.3"
    assert row["kind"] == "INTERNAL" and len(row["trace_id"]) == 32 and len(row["span_id"]) == 16
    assert dict(row["attributes"])["session.id"] == "s-0"
    assert (
        spans.filter(pl.col("attributes").map.get("session.id") == "s-3").select(pl.len()).collect().item()
        == 43
    )

    metrics = duck(
        "SELECT metric_name, type, value, count, bucket_counts, explicit_bounds, "
        "attributes['gen_ai.token.type'] "
        f"FROM {scan(data, 'metrics')} WHERE {where} ORDER BY 1, 7"
    )
    by_name = {(m[0], m[6]): m for m in metrics}
    assert by_name["gen_ai.client.token.usage", "input"][2] == 100.0
    histogram_row = by_name["gen_ai.client.operation.duration", None]
    assert histogram_row[1] == "histogram" and histogram_row[3] == 3 and sum(histogram_row[4]) == 3
    assert by_name["latency.exp", None][1] == "exponential_histogram"
    assert by_name["queue.depth", None][2] == 51.0

    cli = local_stack.cli(
        "query",
        f"SELECT count(*) AS n FROM logs WHERE service_instance_id = '{instance}' AND severity_number = 13",
        "--format",
        "json",
    )
    assert json.loads(cli.stdout) == {"n": 40}
    cli = local_stack.cli("query", f"SELECT count(*) AS n FROM spans WHERE {where}", "--format", "csv")
    assert cli.stdout.splitlines() == ["n", "300"]


def test_summary_points_keep_their_quantiles(local_stack: LocalStack, agent_key: Any) -> None:
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
        grpc_export(channel, "metrics", summary_request(agent_key[0], agent_key[1], time.time_ns()))
    where = f"service_instance_id = '{agent_key[1]}'"
    assert wait_for_rows(local_stack.config.data_dir, "metrics", where, 1)[0] == 1
    frame = run_query(local_stack.config, f"SELECT * FROM metrics WHERE {where}")
    row = frame.row(0, named=True)
    assert (row["type"], row["count"], row["sum"]) == ("summary", 10, 12.5)
    assert (row["quantiles"], row["quantile_values"]) == ([0.5, 0.95], [1.1, 4.2])


def test_absurd_timestamps_are_dead_letters_with_their_reason(local_stack: LocalStack) -> None:
    instance = uuid.uuid4().hex[:10]
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:  # spans stamped 2023: far too old
        grpc_export(channel, "traces", span_request([("old", instance)], spans_per_agent=4))
    data = local_stack.config.data_dir
    where = f"key = 'old/{instance}'"
    assert wait_for_rows(data, "dead_letters", where, 1)[0] == 1
    [(reason, items)] = duck(f"SELECT reason, items FROM {scan(data, 'dead_letters')} WHERE {where}")
    assert items == 4 and "start_time more than 604800s before" in reason
    assert duck_count(data, "spans", f"service_instance_id = '{instance}'") == (0, 0)


def test_poison_record_goes_to_dead_letters_and_the_rest_flows(local_stack: LocalStack) -> None:
    instance = uuid.uuid4().hex[:10]
    producer = Producer({"bootstrap.servers": local_stack.config.kafka.bootstrap_servers})
    producer.produce(LOGS_TOPIC, b"\x0a\xff\xff\xff garbage", f"poison/{instance}".encode())
    producer.flush(10)
    provider = LoggerProvider(resource=resource("poison", instance))
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=local_stack.grpc_endpoint, insecure=True))
    )
    provider.get_logger("x").emit(body="after the poison", severity_number=SeverityNumber.INFO)
    provider.shutdown()
    data = local_stack.config.data_dir
    assert wait_for_rows(data, "logs", f"service_instance_id = '{instance}'", 1)[0] == 1
    dead = duck(
        f"SELECT topic, reason, payload FROM {scan(data, 'dead_letters')} WHERE key = 'poison/{instance}'"
    )
    assert len(dead) == 1
    assert dead[0][0] == LOGS_TOPIC and "undecodable" in dead[0][1] and dead[0][2].startswith(b"\x0a\xff")


# -- crash safety and scale ----------------------------------------------------------------------
def isolated_flow(
    local_stack: LocalStack, tmp_path: Path, processes: int, workers: int
) -> tuple[Flows, Path]:
    # tiny files: writers also write mid-epoch, so a kill leaves files a resume must remove
    ingest = {"commit_interval": "1s", "poll_records": 20, "roll_bytes": "16KiB"}
    return isolated_flows(local_stack, tmp_path, "ingest", {"ingest": ingest}, processes, workers)


def stream_spans(local_stack: LocalStack, instance: str, stop: threading.Event, sent: list[int]) -> None:
    """Agents exporting 20 spans a request, as fast as acks allow, until told to stop."""
    now = time.time_ns()
    batch = 0
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
        while not stop.is_set():
            request = ExportTraceServiceRequest.FromString(
                span_request([("stream", instance)], spans_per_agent=20)
            )
            for index, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
                span.span_id = (batch * 20 + index + 1).to_bytes(8, "big")
                span.start_time_unix_nano = now
                span.end_time_unix_nano = now + 1000
            grpc_export(channel, "traces", request.SerializeToString())
            sent[0] += 20
            batch += 1
            time.sleep(0.01)


@pytest.mark.parametrize(("processes", "workers"), [(1, 2), (2, 1)], ids=["-w 2", "two processes"])
def test_kill_9_at_any_moment_loses_and_duplicates_nothing(
    local_stack: LocalStack, tmp_path: Path, processes: int, workers: int
) -> None:
    instance = uuid.uuid4().hex[:10]
    flows, data = isolated_flow(local_stack, tmp_path, processes, workers)
    sent = [0]
    kill_during_stream(
        flows, lambda stop: stream_spans(local_stack, instance, stop, sent), kills=6, pause=(1.0, 3.5)
    )
    try:
        rows, distinct = wait_for_rows(
            data, "spans", f"service_instance_id = '{instance}'", sent[0], timeout=90
        )
    finally:
        flows.stop()
    assert sent[0] > 500
    assert (rows, distinct) == (sent[0], sent[0])


def test_restart_without_recovery_state_rewrites_rather_than_duplicates(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """No recovery state: the flow re-reads the retained topics and replaces its files, row for row."""
    instance = uuid.uuid4().hex[:10]
    request = ExportTraceServiceRequest.FromString(span_request([("replay", instance)], spans_per_agent=50))
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
        grpc_export(channel, "traces", request.SerializeToString())
    flows, data = isolated_flow(local_stack, tmp_path, 1, 1)
    where = f"service_instance_id = '{instance}'"
    flows.start()
    try:
        assert wait_for_rows(data, "spans", where, 50) == (50, 50)
        everything = wait_for_rows(data, "spans", "true", 0, quiet=3)[0]
        before = written_files(data, "spans")
        flows.kill()
        for path in flows.recovery.iterdir():
            path.unlink()
        subprocess.run([sys.executable, "-m", "bytewax.recovery", str(flows.recovery), "4"], check=True)
        flows.start()
        # until the new run has removed or rewritten every file, the old ones still count
        replaced = wait_until_replaced(data, "spans", before)
        assert replaced, f"the restarted flow left files of the last run in place\n{flows.log_tail()}"
        # tiny polls and files replay every span of the session: minutes when the other flows compete
        again = wait_for_rows(data, "spans", "true", everything, timeout=300)[0]
        assert again == everything, f"{again} rows after the restart, {everything} before\n{flows.log_tail()}"
        assert duck_count(data, "spans", where) == (50, 50)
    finally:
        flows.stop()

"""Ingest throughput: pre-filled `otlp_*` topics → Parquet, next to the floor of consume + decode.

    python -m bench.ingest [--records 400] [--items 100] [--workers 1]

For each signal: fill its topic with `--records` export requests of `--items` spans, data points
or log records each; measure (a) the floor, a plain consumer reading the topic and decoding the
protobuf, and (b) the ingest flow (bytewax, recovery on) from start until its committed offsets
reach the end of the topic, with the files on disk. Prints items/s, MB/s of OTLP, bytes on disk
per item against OTLP bytes per item, the flow's peak RSS and its CPU time (start-up included, so
that a figure on a loaded machine still compares).

Before that, in this process and on the same requests cut into polls of `--poll` records, side by
side: the decode floor (Python's protobuf parsing each request, nothing more), `flatten` (the
native decoder) and the previous Python flatten (tests/python_flatten_oracle.py). `--flatten-only`
prints that table alone, without starting the stack.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_ERROR, SEVERITY_NUMBER_INFO, LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from bench.receiver import agent_request
from bench.stack import bench_stack, stack_settings
from schemas.flatten import KafkaRecord, flatten
from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC
from talonflow.stack import FLOWS
from tests import python_flatten_oracle


def _attributes(pairs: dict[str, str | int]) -> list[KeyValue]:
    return [
        KeyValue(key=k, value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v))
        for k, v in pairs.items()
    ]


def metrics_request(points: int, now_ns: int, seed: int) -> bytes:
    """Agent metrics: token counters, latency histograms and queue gauges, `points` data points."""
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend(
        _attributes({"service.name": "openclaw-gateway", "service.instance.id": "gw-0"})
    )
    scope = resource.scope_metrics.add()
    for index in range(points):
        labels = _attributes(
            {"gen_ai.request.model": "claude-sonnet-4", "gen_ai.token.type": "input", "loop": index}
        )
        kind = index % 3
        metric = Metric(
            name=("gen_ai.client.token.usage", "gen_ai.client.operation.duration", "queue.depth")[kind]
        )
        if kind == 0:
            metric.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
            metric.sum.is_monotonic = True
            metric.sum.data_points.add(
                time_unix_nano=now_ns, as_int=1000 + index + seed * 37, attributes=labels
            )
        elif kind == 1:
            metric.histogram.aggregation_temporality = (
                AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
            )
            metric.histogram.data_points.add(
                time_unix_nano=now_ns,
                count=12 + seed % 5,
                sum=30.5 + seed,
                bucket_counts=[1, 2, 3, 4, 2, 0],
                explicit_bounds=[0.5, 1, 2.5, 5, 10],
                attributes=labels,
            )
        else:
            metric.gauge.data_points.add(
                time_unix_nano=now_ns, as_double=float(index % 60), attributes=labels
            )
        scope.metrics.append(metric)
    return request.SerializeToString()


def logs_request(records: int, now_ns: int, seed: int) -> bytes:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.extend(
        _attributes({"service.name": "email_processor", "service.instance.id": "ep-0"})
    )
    scope = resource.scope_logs.add()
    for index in range(records):
        scope.log_records.append(
            LogRecord(
                time_unix_nano=now_ns,
                severity_number=SEVERITY_NUMBER_INFO if index % 10 else SEVERITY_NUMBER_ERROR,
                severity_text="INFO" if index % 10 else "ERROR",
                body=AnyValue(
                    string_value=f"gmail poll {seed}.{index}: fetched {index % 7} messages, 1 needs a reply"
                ),
                attributes=_attributes(
                    {"loop": "email_processor", "attempt": index % 3, "session.id": "s-1"}
                ),
                trace_id=os.urandom(16),
                span_id=os.urandom(8),
            )
        )
    return request.SerializeToString()


def spans_request(spans: int, now_ns: int, seed: int) -> bytes:
    request = ExportTraceServiceRequest.FromString(agent_request(spans, seed % 16))
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.start_time_unix_nano, span.end_time_unix_nano = now_ns, now_ns + 900_000_000
    return request.SerializeToString()


SIGNALS: dict[str, tuple[str, Callable[[int, int, int], bytes], Any]] = {
    "spans": (SPANS_TOPIC, spans_request, ExportTraceServiceRequest),
    "metrics": (METRICS_TOPIC, metrics_request, ExportMetricsServiceRequest),
    "logs": (LOGS_TOPIC, logs_request, ExportLogsServiceRequest),
}


# Ports of this bench's own stack, apart from other benches' (bench/stack.py) and the tests'.
PORTS: dict[str, Any] = {
    "kafka": {"bootstrap_servers": "127.0.0.1:33092", "controller_port": 33093},
    "minio": {"endpoint": {"port": 33000}, "console": {"port": 33001}},
    "receiver": {"grpc": {"port": 33317}, "http": {"port": 33318}, "ops": {"port": 33133}},
    "lifecycle": {"ops": {"port": 33134}},
    "scrape": {"ops_port": 33135},
    "tailer": {"port": 33140},
    "console": {"port": 33300},
}


@dataclass
class Row:
    dataset: str
    items: int
    otlp_mb: float
    floor_items_per_s: float
    ingest_items_per_s: float  # from the flow's start until every row is in a file
    ingest_mb_per_s: float
    parquet_bytes_per_item: float
    otlp_bytes_per_item: float
    peak_rss_mb: float
    flow_cpu_s: float  # the flow's user + system time, start-up included: the load-independent figure


def fill(bootstrap: str, topic: str, bodies: list[bytes]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "compression.type": "lz4"}
    )
    for index, body in enumerate(bodies):
        producer.produce(topic, body, f"agent/{index % 16}".encode())
        producer.poll(0)
    producer.flush(60)


def consume_and_decode(bootstrap: str, topic: str, message_type: Any, records: int) -> float:
    """Seconds for a plain consumer to read `records` records from the start and decode each."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-floor", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    started, seen = 0.0, 0
    while seen < records:
        for message in consumer.consume(500, timeout=1):
            if message.error() is None:
                started = started or time.perf_counter()  # from the first record: no connection set-up
                message_type.FromString(message.value())
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def flatten_rates(polls: list[list[KafkaRecord]], message_type: Any, items: int) -> list[float]:
    """Items/s of the decode floor, flatten and the previous Python flatten, best of two runs each."""

    def floor(batch: list[KafkaRecord]) -> None:
        for record in batch:
            message_type.FromString(record.value)

    rates = []
    for step in (floor, flatten, python_flatten_oracle.flatten):
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            for batch in polls:
                step(batch)
            best = min(best, time.perf_counter() - started)
        rates.append(items / best)
    return rates


def print_flatten_table(args: argparse.Namespace) -> None:
    print(f"in process, polls of {args.poll} requests of {args.items} items:")
    print(
        f"{'dataset':<9}{'decode floor/s':>16}{'flatten/s':>12}{'previous Python/s':>19}{'native/Python':>15}"
    )
    for dataset, (topic, make, message_type) in SIGNALS.items():
        now = time.time_ns()
        bodies = [make(args.items, now, seed) for seed in range(args.records)]
        records = [KafkaRecord(topic, 0, i, now // 1_000_000, None, b) for i, b in enumerate(bodies)]
        polls = [records[i : i + args.poll] for i in range(0, len(records), args.poll)]
        floor, native, python = flatten_rates(polls, message_type, args.records * args.items)
        print(f"{dataset:<9}{floor:>16,.0f}{native:>12,.0f}{python:>19,.0f}{native / python:>15.1f}")


def rows_on_disk(folder: Path) -> int:
    if not folder.exists():
        return 0
    return int(ds.dataset(folder, format="parquet", partitioning="hive").count_rows())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (fields 14 and 15 of stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400, help="export requests per signal")
    parser.add_argument("--items", type=int, default=100, help="spans, points or log records per request")
    parser.add_argument("--workers", type=int, default=1, help="bytewax -w")
    parser.add_argument("--poll", type=int, default=500, help="records per poll, as ingest.poll_records")
    parser.add_argument("--roll-bytes", default="128MiB", help="ingest.roll_bytes of the flow")
    parser.add_argument("--flatten-only", action="store_true", help="the in-process table alone")
    args = parser.parse_args()
    print_flatten_table(args)
    if args.flatten_only:
        return 0
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-ingest-") as tmp:
        folder = Path(tmp)
        data = folder / "data"
        config = folder / "talonflow.yaml"
        ingest = {"commit_interval": "2s", "roll_bytes": args.roll_bytes, "poll_records": args.poll}
        document = {**stack_settings(folder), **PORTS, "ingest": ingest}
        # the bench runs its own ingest, timed; the other flows would compete for CPU
        with bench_stack(config, document, stopped=FLOWS) as stack:
            bootstrap = stack.config.kafka.bootstrap_servers
            recovery = folder / "recovery"
            recovery.mkdir()
            subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "8"], check=True)
            for dataset, (topic, make, message_type) in SIGNALS.items():
                now = time.time_ns()
                bodies = [make(args.items, now, seed) for seed in range(args.records)]
                otlp_bytes = sum(len(b) for b in bodies)
                print(
                    f"{dataset}: filling {topic} with {args.records} requests, {otlp_bytes} bytes",
                    file=sys.stderr,
                )
                fill(bootstrap, topic, bodies)
                floor = consume_and_decode(bootstrap, topic, message_type, args.records)
                flow = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bytewax.run",
                        "flows.ingest:flow",
                        "-r",
                        str(recovery),
                        "-s",
                        "2",
                        "-b",
                        "0",
                        "-w",
                        str(args.workers),
                    ],
                    env={**os.environ, "TALONFLOW_CONFIG": str(config)},
                )
                started = time.perf_counter()
                items = args.records * args.items
                while rows_on_disk(data / dataset) < items:
                    time.sleep(0.1)
                elapsed = time.perf_counter() - started
                rss, cpu = peak_rss_mb(flow.pid), cpu_seconds(flow.pid)
                flow.terminate()
                flow.wait(30)
                files = list((data / dataset).rglob("*.parquet"))
                on_disk = sum(f.stat().st_size for f in files)
                assert rows_on_disk(data / dataset) == items, f"{dataset}: more rows than were sent"
                rows.append(
                    Row(
                        dataset=dataset,
                        items=items,
                        otlp_mb=otlp_bytes / 1e6,
                        floor_items_per_s=items / floor,
                        ingest_items_per_s=items / elapsed,
                        ingest_mb_per_s=otlp_bytes / elapsed / 1e6,
                        parquet_bytes_per_item=on_disk / items,
                        otlp_bytes_per_item=otlp_bytes / items,
                        peak_rss_mb=rss,
                        flow_cpu_s=cpu,
                    )
                )
    print(
        f"{'dataset':<9}{'items':>9}{'OTLP MB':>9}{'floor items/s':>15}{'ingest items/s':>16}{'MB/s':>7}"
        f"{'parquet B/item':>16}{'OTLP B/item':>13}{'peak RSS MB':>13}{'flow CPU s':>12}{'items/CPU-s':>13}"
    )
    for r in rows:
        print(
            f"{r.dataset:<9}{r.items:>9}{r.otlp_mb:>9.1f}{r.floor_items_per_s:>15.0f}{r.ingest_items_per_s:>16.0f}"
            f"{r.ingest_mb_per_s:>7.1f}{r.parquet_bytes_per_item:>16.1f}{r.otlp_bytes_per_item:>13.1f}"
            f"{r.peak_rss_mb:>13.1f}{r.flow_cpu_s:>12.1f}{r.items / r.flow_cpu_s:>13.0f}"
        )
    print("(ingest time: from the flow's start, including start-up and its last commit interval of 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

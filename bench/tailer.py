"""Log tailer throughput: JSON lines from a file into Kafka, beside the floors and the Collector.

    python -m bench.tailer [--lines 200000] [--collector]

One file of `--lines` agent-style JSON lines (time, level, msg, trace context, correlation ids,
a few fields; about 330 bytes each) is written first. Then, on a private Kafka (ports in
24000-24999, everything but Kafka stopped):
- floors in this process: reading the file's lines, and reading plus `json.loads` of each line;
- `python -m tailer` (start_at beginning, a fresh id) from its start until every line is a
  committed log record on `otlp_logs` (counted read_committed, as the ingest flow reads): lines/s
  and lines per CPU-second of the process;
- with `--collector`: the OpenTelemetry Collector's filelog receiver (json_parser, time and
  severity parsed, trace context, file_storage checkpoints) → kafkaexporter (otlp_proto,
  acks=all, no queue), the same way. Build it first (a few minutes) with the builder that
  bench/collector/build.sh installs, from bench/collector/filelog-builder-config.yaml, into
  $TMPDIR/tailer-otelcol/dist.
Each contender runs twice: once clean, once killed with SIGKILL at a quarter, half and three
quarters of the way and started again on its saved state each time; the records counted in
Kafka after the second run show loss or duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from bench.procstat import cpu_seconds
from bench.stack import bench_stack, stack_settings
from schemas.topics import LOGS_TOPIC

KAFKA_PORT = 24092
KAFKA = f"127.0.0.1:{KAFKA_PORT}"
TAILER_PORT = 24137
COLLECTOR = Path(tempfile.gettempdir()) / "tailer-otelcol" / "dist" / "otelcol-filelog"


def write_lines(path: Path, count: int) -> int:
    now = time.time()
    with path.open("w") as out:
        for i in range(count):
            line = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{i % 1000:03d}Z",
                "level": ("info", "warn", "error", "debug")[i % 4],
                "msg": f"tool call {i} finished",
                "trace_id": f"{i:032x}",
                "span_id": f"{i + 1:016x}",
                "session_id": f"s-{i % 50}",
                "agent_id": "browser_controller",
                "task_id": f"t-{i % 1000}",
                "request_id": f"r-{i}",
                "tool": "browser.navigate",
                "latency_ms": i % 900,
            }
            out.write(json.dumps(line) + "\n")
    return path.stat().st_size


def floors(path: Path) -> tuple[float, float]:
    """(lines/s reading lines, lines/s reading and json.loads-ing them)."""
    started = time.perf_counter()
    with path.open("rb") as source:
        count = sum(1 for _ in source)
    read = count / (time.perf_counter() - started)
    started = time.perf_counter()
    with path.open("rb") as source:
        for line in source:
            json.loads(line)
    return read, count / (time.perf_counter() - started)


class LogRecordCounter:
    """Log records committed to `otlp_logs` since it was created (read_committed, incremental)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-tailer-{os.getpid()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.message.max.bytes": 16 * 1024**2,
            }
        )
        partitions = self.consumer.list_topics(LOGS_TOPIC, timeout=10).topics[LOGS_TOPIC].partitions
        assigned = []
        for partition in partitions:
            _low, high = self.consumer.get_watermark_offsets(
                TopicPartition(LOGS_TOPIC, partition), timeout=10
            )
            assigned.append(TopicPartition(LOGS_TOPIC, partition, high))
        self.consumer.assign(assigned)
        self.total = 0
        self.keys: set[str] = set()

    def count(self) -> int:
        while messages := self.consumer.consume(1000, timeout=0.2):
            for message in messages:
                if message.error() is None:
                    self.keys.add(repr(message.key()))
                    request = ExportLogsServiceRequest.FromString(message.value())
                    self.total += sum(
                        len(scope.log_records) for rl in request.resource_logs for scope in rl.scope_logs
                    )
        return self.total

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Outcome:
    seconds: float
    cpu: float
    records: int  # log records in Kafka at the end, after a quiet spell
    keys: set[str]  # the Kafka keys of the records


def race(command: list[str], log: Path, counter: LogRecordCounter, lines: int, kills: list[float]) -> Outcome:
    """Run `command` until `lines` records are in Kafka, SIGKILL-ing it and starting it again at
    each fraction in `kills`. Then wait until the count holds still for 3 s, to see duplicates."""
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=out)
        cpu = 0.0
        try:
            while counter.count() < lines:
                if process.poll() is not None:
                    raise SystemExit(f"{command[0]} exited {process.returncode}: {log.read_text()[-2000:]}")
                if kills and counter.total >= kills[0] * lines:
                    cpu += cpu_seconds(process.pid)
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    process = subprocess.Popen(command, stdout=out, stderr=out)
                    kills = kills[1:]
                time.sleep(0.1)
            seconds = time.perf_counter() - started
            cpu += cpu_seconds(process.pid)
            settled = time.monotonic()
            while time.monotonic() - settled < 3.0:
                before = counter.total
                time.sleep(0.5)
                if counter.count() != before:
                    settled = time.monotonic()
            return Outcome(seconds, cpu, counter.total, counter.keys)
        finally:
            process.terminate()
            process.wait(30)
            counter.close()


def collector_config(path: Path, folder: Path) -> Path:
    """The filelog → kafkaexporter config doing the tailer's job: JSON, time, severity, trace context."""
    storage = folder / f"otelcol-storage-{time.monotonic_ns()}"
    storage.mkdir()
    config = {
        "extensions": {"file_storage": {"directory": str(storage)}},
        "receivers": {
            "filelog": {
                "include": [str(path)],
                "start_at": "beginning",
                "storage": "file_storage",
                "operators": [
                    {
                        "type": "json_parser",
                        "timestamp": {"parse_from": "attributes.time", "layout_type": "gotime",
                                      "layout": "2006-01-02T15:04:05.000Z07:00"},
                        "severity": {"parse_from": "attributes.level"},
                    },
                    {"type": "move", "from": "attributes.msg", "to": "body"},
                    {"type": "trace_parser", "trace_id": {"parse_from": "attributes.trace_id"},
                     "span_id": {"parse_from": "attributes.span_id"}},
                ],
            }
        },
        "exporters": {
            "kafka": {
                "brokers": [f"127.0.0.1:{KAFKA_PORT}"],
                "logs": {"topic": LOGS_TOPIC, "encoding": "otlp_proto"},
                "producer": {"required_acks": -1, "compression": "lz4", "linger": "5ms",
                             "max_message_bytes": 8388608},
                "sending_queue": {"enabled": False},
            }
        },
        "service": {
            "extensions": ["file_storage"],
            "telemetry": {"logs": {"level": "warn"}, "metrics": {"level": "none"}},
            "pipelines": {"logs": {"receivers": ["filelog"], "exporters": ["kafka"]}},
        },
    }  # fmt: skip
    config_file = storage / "otelcol.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return config_file


def tailer_config(document: dict[str, Any], path: Path, folder: Path) -> Path:
    """The tailer's config on the bench stack's Kafka, with a fresh id: no stored positions."""
    settings = {"port": TAILER_PORT, "id": f"bench-{time.monotonic_ns()}"}
    source = {"include": [str(path)], "service_name": "bench-agent", "start_at": "beginning"}
    config_file = folder / f"{settings['id']}.yaml"
    config_file.write_text(yaml.safe_dump({**document, "log_files": [source], "tailer": settings}))
    return config_file


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--collector", action="store_true", help=f"also measure {COLLECTOR}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tailer-") as tmp:
        folder = Path(tmp)
        log = folder / "agent.log"
        size = write_lines(log, args.lines)
        document: dict[str, Any] = {
            **stack_settings(folder),
            "kafka": {"bootstrap_servers": f"127.0.0.1:{KAFKA_PORT}", "controller_port": KAFKA_PORT + 1},
            "minio": {"endpoint": {"port": 24000}, "console": {"port": 24001}},
            "receiver": {"grpc": {"port": 24317}, "http": {"port": 24318}, "ops": {"port": 24133}},
            "lifecycle": {"ops": {"port": 24134}},
            "console": {"port": 24300},
        }

        def tailer() -> list[str]:  # runs outside the stack, timed, with a fresh id each time
            return [sys.executable, "-m", "tailer", "--config", str(tailer_config(document, log, folder))]

        def collector() -> list[str]:
            return [str(COLLECTOR), f"--config=file:{collector_config(log, folder)}"]

        contenders: dict[str, Callable[[], list[str]]] = {"talonflow tailer": tailer}
        if args.collector:
            contenders["Collector filelog"] = collector
        stopped = ("receiver", "ingest", "rollups", "alerts", "heartbeats", "lifecycle", "console")
        rows: list[tuple[str, Outcome, Outcome]] = []
        with bench_stack(folder / "talonflow.yaml", document, stopped=stopped):
            read, parse = floors(log)
            for name, command in contenders.items():
                clean, killed = (
                    race(command(), folder / "contender.log", LogRecordCounter(KAFKA), args.lines, kills)
                    for kills in ([], [0.25, 0.5, 0.75])
                )
                rows.append((name, clean, killed))
    print(f"\n{args.lines:,} lines of {size / args.lines:.0f} bytes; floors in one Python process: read the")
    print(f"lines {read:,.0f}/s, read and json.loads them {parse:,.0f}/s\n")
    print("| into Kafka, acks=all | lines/s | lines per CPU-s | records | after 3 kill -9 | Kafka keys |")
    print("|---|---|---|---|---|---|")
    for name, clean, killed in rows:
        rate, per_cpu = args.lines / clean.seconds, args.lines / clean.cpu
        extra = killed.records - args.lines
        keys = ", ".join(sorted(clean.keys)[:2]) + (" …" if len(clean.keys) > 2 else "")
        records = f"{clean.records:,} | {killed.records:,} ({extra:+,}) | {keys}"
        print(f"| {name} | {rate:,.0f} | {per_cpu:,.0f} | {records} |")


if __name__ == "__main__":
    main()

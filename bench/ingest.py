"""Ingest throughput: pre-filled `otlp_*` topics → Parquet, next to the floor of consume + decode.

    python -m bench.ingest [--records 400] [--items 100] [--workers 1]

For each signal: fill its topic with `--records` export requests of `--items` spans, data points
or log records each; measure (a) the floor, a plain consumer reading the topic and decoding the
protobuf, and (b) the ingest flow (bytewax, recovery on) from start until its committed offsets
reach the end of the topic, with the files on disk. Prints items/s, MB/s of OTLP, bytes on disk
per item against OTLP bytes per item, the flow's peak RSS and its CPU time (start-up included, so
that a figure on a loaded machine still compares). The steady figures leave start-up out: items/s
and the flow's CPU µs per item from the first file commit to the last (use `--records 4000` or
more, so that there are many commits). `--before DIR` runs the flow of another source tree (say
`git archive HEAD | tar -x -C DIR`) on the same topic right after, each with its config defaults
unless `--flow-poll`, `--roll-bytes`, `--buffer-bytes` or `--prefetch-bytes` set them.
`--rounds N` runs each tree's flow N times, alternating, on a machine whose load comes and
goes. `--profile DIR` samples each flow run with py-spy (raw stacks in DIR) and prints its share
of samples per stage: poll, resend screening, decode, concat/sort, Parquet write, commit, start-up.

Before that, in this process and on the same requests cut into polls of `--poll` records, side by
side: the decode floor (Python's protobuf parsing each request, nothing more), `flatten` (the
native decoder) and the previous Python flatten (tests/python_flatten_oracle.py). `--flatten-only`
prints that table alone, without starting the stack.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_ERROR, SEVERITY_NUMBER_INFO, LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from talonflow_native import Decoder

from bench.procstat import cpu_seconds, peak_rss_mb
from bench.receiver import agent_request
from bench.stack import bench_stack, stack_settings
from bench.stages import print_stages
from schemas.datasets import LOGS, METRICS, SPANS
from schemas.flatten import KafkaRecord, flatten, native_decoder
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
DATASETS = {"spans": SPANS, "metrics": METRICS, "logs": LOGS}


def ports(base: int) -> dict[str, Any]:
    """Ports of this bench's own stack, `base` to `base + 49` (`--port-base`; 33000 by default, apart
    from other benches' (bench/stack.py) and the tests'), so that two runs can go side by side and
    a run fits in a range of 100 ports."""
    return {
        "kafka": {"bootstrap_servers": f"127.0.0.1:{base + 2}", "controller_port": base + 3},
        "minio": {"endpoint": {"port": base}, "console": {"port": base + 1}},
        "receiver": {"grpc": {"port": base + 4}, "http": {"port": base + 5}, "ops": {"port": base + 6}},
        "lifecycle": {"ops": {"port": base + 7}},
        "scrape": {"ops_port": base + 10},  # one per scraper shard from here on
        "tailer": {"port": base + 8},
        "console": {"port": base + 9},
    }


@dataclass
class Row:
    dataset: str
    items: int
    otlp_mb: float
    floor_items_per_s: float
    ingest_items_per_s: float  # from the flow's start until every row is in a file
    steady_items_per_s: float  # between the first and the last file commit: no start-up
    ingest_mb_per_s: float
    parquet_bytes_per_item: float
    otlp_bytes_per_item: float
    peak_rss_mb: float
    flow_cpu_s: float  # the flow's user + system time, start-up included: the load-independent figure
    steady_cpu_us_per_item: float  # the flow's CPU between the first and the last file commit, per item


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


def protobuf_floor(message_type: Any) -> Callable[[list[KafkaRecord]], object]:
    """The decode floor: Python's protobuf parsing each request of a poll, nothing more."""

    def parse(batch: list[KafkaRecord]) -> None:
        for record in batch:
            message_type.FromString(record.value)

    return parse


def native_decoding(dataset: str, build: type[Decoder]) -> Callable[[list[KafkaRecord]], object]:
    """One `decode` call per poll of a build's native decoder, without flatten's time bounds."""
    decoder = native_decoder(dataset, DATASETS[dataset], build)
    return lambda batch: decoder.decode([r.value for r in batch], [r.timestamp_ms * 1_000_000 for r in batch])


def flatten_rates(polls: list[list[KafkaRecord]], message_type: Any, items: int) -> list[float]:
    """Items/s of the decode floor, flatten and the previous Python flatten, best of two runs each."""
    steps = (protobuf_floor(message_type), flatten, python_flatten_oracle.flatten)
    return [best_rate(step, polls, items, runs=2, clock=time.perf_counter) for step in steps]


def best_rate(
    step: Callable[[list[KafkaRecord]], object],
    polls: list[list[KafkaRecord]],
    items: int,
    runs: int = 5,
    clock: Callable[[], float] = time.process_time,
) -> float:
    """Items per second of `step` over the polls, best of `runs`; by default per CPU-second, not
    wall time, so that builds measured back to back on a busy machine still compare."""
    best = float("inf")
    for _ in range(runs):
        started = clock()
        for batch in polls:
            step(batch)
        best = min(best, clock() - started)
    return items / best


def native_build(path: str) -> type[Decoder]:
    """The Decoder class of another build of the native decoder (a talonflow_native .so kept aside)."""
    spec = importlib.util.spec_from_file_location("talonflow_native", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline-native {path}: not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Decoder


def print_flatten_table(args: argparse.Namespace) -> None:
    print(f"in process, polls of {args.poll} requests of {args.items} items:")
    print(
        f"{'dataset':<9}{'decode floor/s':>16}{'flatten/s':>12}{'previous Python/s':>19}{'native/Python':>15}"
    )
    runs = []
    for dataset, (topic, make, message_type) in SIGNALS.items():
        now = time.time_ns()
        bodies = [make(args.items, now, seed) for seed in range(args.records)]
        records = [KafkaRecord(topic, 0, i, now // 1_000_000, None, b) for i, b in enumerate(bodies)]
        polls = [records[i : i + args.poll] for i in range(0, len(records), args.poll)]
        floor, native, python = flatten_rates(polls, message_type, args.records * args.items)
        print(f"{dataset:<9}{floor:>16,.0f}{native:>12,.0f}{python:>19,.0f}{native / python:>15.1f}")
        runs.append((dataset, message_type, polls))
    print_decode_table(args, runs)


def print_decode_table(
    args: argparse.Namespace, runs: list[tuple[str, Any, list[list[KafkaRecord]]]]
) -> None:
    """The native decoder alone (no time bounds, no dead-letter table), items per CPU-second, beside
    Python's protobuf parsing the same requests and, with --baseline-native, another build."""
    baseline = native_build(args.baseline_native) if args.baseline_native else None
    print("decode alone, items per CPU-second (best of 5):")
    print(f"{'dataset':<9}{'protobuf floor':>16}{'native':>12}{'baseline build':>16}{'native/baseline':>17}")
    for dataset, message_type, polls in runs:
        items = args.records * args.items
        steps = [protobuf_floor(message_type), native_decoding(dataset, Decoder)]
        if baseline is not None:
            steps.append(native_decoding(dataset, baseline))
        rates = [best_rate(step, polls, items) for step in steps]
        line = f"{dataset:<9}{rates[0]:>16,.0f}{rates[1]:>12,.0f}"
        if baseline is not None:
            line += f"{rates[2]:>16,.0f}{rates[1] / rates[2]:>17.2f}"
        print(line)


def rows_on_disk(folder: Path) -> int:
    if not folder.exists():
        return 0
    return int(ds.dataset(folder, format="parquet", partitioning="hive").count_rows())


MIN_COMMITS = 5  # samples that saw new rows, below which a run has no steady figure


@dataclass
class Progress:
    """Rows committed so far, sampled with the flow's CPU time: files appear whole (renamed into
    place), so each file's footer is read once, and a sample costs a directory walk, not a scan."""

    folder: Path
    pid: int
    counted: dict[Path, int] = field(default_factory=dict)
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (time, rows, flow CPU s)

    def sample(self) -> int:
        now = time.perf_counter()
        for path in self.folder.rglob("*.parquet") if self.folder.exists() else ():
            if path not in self.counted:
                self.counted[path] = pq.read_metadata(path).num_rows
        rows = sum(self.counted.values())
        self.samples.append((now, rows, cpu_seconds(self.pid)))
        return rows

    def steady(self) -> tuple[float, float]:
        """(items/s, flow CPU µs per item) from the first sample that saw a file to the last sample:
        the first commit and the start-up before it are left out."""
        first = next((s for s in self.samples if s[1] > 0), self.samples[-1])
        last = self.samples[-1]
        items = last[1] - first[1]
        commits = sum(1 for a, b in itertools.pairwise(self.samples) if b[1] > a[1])
        if items <= 0 or commits < MIN_COMMITS:  # the first commit held most rows: no steady state seen
            return float("nan"), float("nan")
        return items / (last[0] - first[0]), (last[2] - first[2]) * 1e6 / items


@dataclass
class FlowRun:
    """The ingest flow of source tree `tree` (this checkout, or another for a before/after), with
    recovery on and its own recovery folder and data under `run`, from its start until `items`
    rows of a dataset are in files."""

    tree: Path
    run: Path
    config: Path
    workers: int
    profile: Path | None = None  # py-spy's raw stacks of the run go here

    def until_written(self, dataset: str, items: int) -> tuple[float, float, float, tuple[float, float]]:
        """(seconds, peak RSS MB, CPU s, (steady items/s, steady CPU µs per item))."""
        recovery = self.run / "recovery"
        if not recovery.exists():
            recovery.mkdir()
            subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "8"], check=True)
        command = ["-m", "bytewax.run", "flows.ingest:flow", "-r", str(recovery), "-s", "2", "-b", "0"]
        flow = subprocess.Popen(
            [sys.executable, *command, "-w", str(self.workers)],
            cwd=self.tree,
            env={**os.environ, "TALONFLOW_CONFIG": str(self.config), "PYTHONPATH": str(self.tree)},
        )
        started = time.perf_counter()
        spy = None
        if self.profile is not None:  # non-blocking: the flow is never paused to be sampled
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(flow.pid),
                    "--rate",
                    "100",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "-o",
                    str(self.profile),
                ],
                stdout=subprocess.DEVNULL,
            )
        progress = Progress(self.run / "data" / dataset, flow.pid)
        while progress.sample() < items:
            if flow.poll() is not None:  # a flow that died would never write the rest: say so, not hang
                raise SystemExit(f"the ingest flow of {self.tree} exited with {flow.returncode}")
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        rss, cpu = peak_rss_mb(flow.pid), cpu_seconds(flow.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
        flow.terminate()
        flow.wait(30)
        return elapsed, rss, cpu, progress.steady()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=400, help="export requests per signal")
    parser.add_argument("--items", type=int, default=100, help="spans, points or log records per request")
    parser.add_argument("--workers", type=int, default=1, help="bytewax -w")
    parser.add_argument("--poll", type=int, default=500, help="records per poll of the in-process table")
    parser.add_argument("--roll-bytes", default=None, help="ingest.roll_bytes of the flow")
    parser.add_argument("--flow-poll", default=None, help="ingest.poll_records of the flow")
    parser.add_argument("--prefetch-bytes", default=None, help="ingest.prefetch_bytes of the flow")
    parser.add_argument("--flatten-only", action="store_true", help="the in-process table alone")
    parser.add_argument(
        "--baseline-native",
        help="another build's talonflow_native .so, decoded beside this one (kept aside before a rebuild)",
    )
    parser.add_argument("--no-flatten", action="store_true", help="skip the in-process table")
    parser.add_argument("--datasets", default=",".join(SIGNALS), help="which of spans,metrics,logs")
    parser.add_argument("--port-base", type=int, default=33000, help="the bench stack's ports from here on")
    parser.add_argument("--buffer-bytes", default=None, help="ingest.buffer_bytes of the flow")
    parser.add_argument(
        "--before", help="another source tree (e.g. `git archive HEAD` unpacked): its flow runs next"
    )
    parser.add_argument("--profile", type=Path, help="py-spy each flow run; raw stacks into this folder")
    parser.add_argument("--rounds", type=int, default=1, help="flow runs per tree, alternating with --before")
    args = parser.parse_args()
    if not args.no_flatten:
        print_flatten_table(args)
    if args.flatten_only:
        return 0
    rows: list[Row] = []
    profiles: list[tuple[Path, float]] = []  # (py-spy's raw stacks, the run's flow CPU s)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="talonflow-bench-ingest-") as tmp:
        folder = Path(tmp)
        ingest = {"commit_interval": "2s"}
        for key, value in (
            ("roll_bytes", args.roll_bytes),
            ("poll_records", args.flow_poll),
            ("buffer_bytes", args.buffer_bytes),
            ("prefetch_bytes", args.prefetch_bytes),
        ):
            if value is not None:  # otherwise the config's default, which may differ in a --before tree
                ingest[key] = value
        document = {**stack_settings(folder), **ports(args.port_base), "ingest": ingest}
        # the bench runs its own ingest, timed; the other flows would compete for CPU
        with bench_stack(folder / "talonflow.yaml", document, stopped=FLOWS) as stack:
            bootstrap = stack.config.kafka.bootstrap_servers
            for dataset in args.datasets.split(","):
                topic, make, message_type = SIGNALS[dataset]
                now = time.time_ns()
                bodies = [make(args.items, now, seed) for seed in range(args.records)]
                otlp_bytes = sum(len(b) for b in bodies)
                print(
                    f"{dataset}: filling {topic} with {args.records} requests, {otlp_bytes} bytes",
                    file=sys.stderr,
                )
                fill(bootstrap, topic, bodies)
                floor = consume_and_decode(bootstrap, topic, message_type, args.records)
                trees = [("now", Path.cwd()), *([("before", Path(args.before))] if args.before else [])]
                # alternated, so that a load that comes and goes falls on both trees alike
                for round_, (tree_name, tree) in itertools.product(range(args.rounds), trees):
                    label = tree_name if args.rounds == 1 else f"{tree_name} {round_ + 1}"
                    run = folder / label.replace(" ", "-")
                    run.mkdir(exist_ok=True)
                    config = run / "talonflow.yaml"
                    config.write_text(yaml.safe_dump({**document, "data_dir": str(run / "data")}))
                    profile = (
                        args.profile / f"{dataset}-{label.replace(' ', '-')}.txt" if args.profile else None
                    )
                    flow = FlowRun(tree, run, config, args.workers, profile)
                    items = args.records * args.items
                    elapsed, rss, cpu, (steady_rate, steady_cpu) = flow.until_written(dataset, items)
                    if profile is not None:
                        profiles.append((profile, cpu))
                    files = list((run / "data" / dataset).rglob("*.parquet"))
                    on_disk = sum(f.stat().st_size for f in files)
                    assert rows_on_disk(run / "data" / dataset) == items, (
                        f"{dataset}: more rows than were sent"
                    )
                    rows.append(
                        Row(
                            dataset=f"{dataset} {label}",
                            items=items,
                            otlp_mb=otlp_bytes / 1e6,
                            floor_items_per_s=items / floor,
                            ingest_items_per_s=items / elapsed,
                            steady_items_per_s=steady_rate,
                            ingest_mb_per_s=otlp_bytes / elapsed / 1e6,
                            parquet_bytes_per_item=on_disk / items,
                            otlp_bytes_per_item=otlp_bytes / items,
                            peak_rss_mb=rss,
                            flow_cpu_s=cpu,
                            steady_cpu_us_per_item=steady_cpu,
                        )
                    )
    print(
        f"{'dataset':<18}{'items':>9}{'OTLP MB':>9}{'floor items/s':>15}{'ingest items/s':>16}"
        f"{'steady items/s':>16}{'MB/s':>7}{'parquet B/item':>16}{'OTLP B/item':>13}{'peak RSS MB':>13}"
        f"{'flow CPU s':>12}{'items/CPU-s':>13}{'steady CPU µs/item':>20}"
    )
    for r in rows:
        print(
            f"{r.dataset:<18}{r.items:>9}{r.otlp_mb:>9.1f}{r.floor_items_per_s:>15.0f}{r.ingest_items_per_s:>16.0f}"
            f"{r.steady_items_per_s:>16.0f}{r.ingest_mb_per_s:>7.1f}{r.parquet_bytes_per_item:>16.1f}"
            f"{r.otlp_bytes_per_item:>13.1f}{r.peak_rss_mb:>13.1f}{r.flow_cpu_s:>12.1f}"
            f"{r.items / r.flow_cpu_s:>13.0f}{r.steady_cpu_us_per_item:>20.2f}"
        )
    print("(ingest items/s: from the flow's start, including start-up and its last commit interval of 2 s;")
    print(" steady: from the first file commit to the last, as 0.25 s samples of the rows on disk see them;")
    print(f" nan when fewer than {MIN_COMMITS} samples saw new rows: no steady state to speak of)")
    for profile, cpu in profiles:
        print_stages(profile, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())

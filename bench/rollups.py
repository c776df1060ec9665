"""Rollups, alerts and heartbeats: throughput against bytewax's own windows, and end-to-end latencies.

    python -m bench.rollups [--requests 200] [--points 500] [--per-poll 1,20] [--samples 15]

1. Throughput, in process, on the same points: (a) flows/rollups.py's per-poll path (flatten,
   points, shard split, fold into 1-minute windows and close them), next to (b) the floor of
   flattening alone, (c) the previous path (flows/rollups.py and flows/aggregates.py as of
   commit PREVIOUS, loaded from git; its rollup rows must equal the current ones) and (d) the
   reference, bytewax's `fold_window` over tumbling windows with one item per data point (what
   BYTEWAX.md warns about), counting the same count/sum/min/max.
2. Latencies on a private stack (bench/stack.py), in real time: export → rollup on `talon_rollups`
   (mostly the wait for the 1-minute window to end, so also the delay after it closed),
   export → alert event on `talon_alerts` (a `for: 0s` PromQL rule every 1 s), and last heartbeat →
   down verdict beyond interval + grace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import polars as pl
import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

import flows.aggregates
import flows.rollups
from bench.ingest import flatten_rates, metrics_request
from bench.percentiles import nearest_rank
from bench.procstat import peak_rss_mb
from bench.stack import RECEIVER, bench_stack, stack_settings
from schemas.config import RollupsConfig
from schemas.flatten import KafkaRecord, TimeBounds, flatten
from schemas.prices import PriceTable
from schemas.topics import ALERTS_TOPIC, HEARTBEATS_TOPIC, METRICS_TOPIC, ROLLUPS_TOPIC

PREVIOUS = "e755e44ede42e2ca8412a4a2bd2def046c056f8f"  # rollups before the per-flow series cache
GOAL = 500_000  # points/s end to end, issue 11
RULES = """
groups:
  - name: bench
    interval: 1s
    rules:
      - alert: BenchGauge
        expr: bench_gauge > 50
        labels: {severity: info}
"""


def polls(count: int, points: int, per_poll: int) -> list[list[KafkaRecord]]:
    """`count` metrics requests over two minutes of event time, `per_poll` of them per Kafka poll
    (a flow that keeps up reads small polls; one catching up reads `rollups.poll_records`)."""
    start = time.time_ns() - 180 * 10**9
    records = []
    for seed in range(count):
        now = start + seed * (120 * 10**9 // count)
        body = metrics_request(points, now, seed)
        records.append(KafkaRecord(METRICS_TOPIC, 0, seed, now // 10**6, b"k", body))
    return [records[i : i + per_poll] for i in range(0, count, per_poll)]


def flattened(batches: list[list[KafkaRecord]], runs: int = 3) -> tuple[float, float, list[pa.Table]]:
    """Seconds and CPU seconds to flatten every poll (the floor both paths share), best of `runs`,
    and the metrics tables. One pass of a tenth of a second measured the scheduler and the first
    touch of fresh pages for the tables it keeps (a flow lets each poll's table go), not the
    decoder: that floor read 40-95k points/s at load 55-75, where the decoder does 1-2M."""
    best, best_cpu, tables = float("inf"), float("inf"), []
    for _ in range(runs):
        started, cpu = time.perf_counter(), time.process_time()
        tables = [flatten(records, TimeBounds(max_past_s=86400)).tables["metrics"] for records in batches]
        best, best_cpu = min(best, time.perf_counter() - started), min(best_cpu, time.process_time() - cpu)
    return best, best_cpu, tables


def ours(
    tables: list[pa.Table], config: RollupsConfig, path: tuple[Any, Any] = (flows.aggregates, flows.rollups)
) -> tuple[float, float, list[pa.Table]]:
    """Seconds and CPU seconds (all threads: comparable under other load) for the rollups flow's
    work after flattening, per poll, and the rollup rows closed; `path` is a pair of modules
    (aggregates, rollups), the current ones or `previous_path()`."""
    aggregates, rollups = path
    shards = {str(s): rollups.ShardWindows(config, rollups.ShardState()) for s in range(config.shards)}
    closed = []
    started, cpu = time.perf_counter(), time.process_time()
    points = points_of(aggregates)
    for table in tables:
        for shard, frame in rollups.by_shard(points(table), config.shards):
            closed += [out for _seq, (_d, out) in shards[shard].on_item(frame)[0]]
    for logic in shards.values():  # close what is still open: the watermark past everything
        logic.state.newest_ns += 10**13
        closed += [out for _seq, (_d, out) in logic.on_notify()[0]]
    return time.perf_counter() - started, time.process_time() - cpu, closed


def points_of(aggregates: Any) -> Callable[[pa.Table], pl.DataFrame]:
    """A path's metric points of a poll, with a flow's cache of series where the path has one
    (the previous path may not): a fresh one per run, as a flow starts with."""
    prices = PriceTable({})
    if hasattr(aggregates, "SeriesCache"):
        cache = aggregates.SeriesCache(prices)
        return lambda table: aggregates.metric_points(table, prices, cache)
    return lambda table: aggregates.metric_points(table, prices)


def warm(
    tables: list[pa.Table], config: RollupsConfig, path: tuple[Any, Any] = (flows.aggregates, flows.rollups)
) -> tuple[float, float, list[pa.Table]]:
    """The faster of two runs: a process's first Polars queries pay set-up that a running flow has paid."""
    first, second = ours(tables, config, path), ours(tables, config, path)
    return min(first, second, key=lambda run: run[0])


def previous_path() -> tuple[types.ModuleType, types.ModuleType] | str:
    """flows/aggregates.py and flows/rollups.py as of PREVIOUS, beside the current ones (or why not)."""
    modules: list[types.ModuleType] = []
    for name in ("aggregates", "rollups"):
        shown = subprocess.run(
            ["git", "show", f"{PREVIOUS}:flows/{name}.py"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        )
        if shown.returncode:
            return shown.stderr.strip() or f"git show exited {shown.returncode}"
        module = types.ModuleType(f"bench_previous_{name}")
        sys.modules[module.__name__] = module  # dataclasses look their module up
        current = sys.modules["flows.aggregates"]
        sys.modules["flows.aggregates"] = modules[0] if modules else current  # rollups imports it
        try:
            exec(compile(shown.stdout, f"{PREVIOUS[:7]}:flows/{name}.py", "exec"), module.__dict__)
        finally:
            sys.modules["flows.aggregates"] = current
        modules.append(module)
    return modules[0], modules[1]


def same_rows(left: list[pa.Table], right: list[pa.Table]) -> bool:
    """Whether two runs closed the same rollup rows, whatever their order."""
    if not left or not right:
        return left == right
    frames = [pl.from_arrow(pa.concat_tables(tables)) for tables in (left, right)]
    a, b = (f.sort(f.columns[:4]) for f in frames if isinstance(f, pl.DataFrame))
    return a.equals(b)


def reference(tables: list[pa.Table]) -> tuple[float, int]:
    """bytewax fold_window keyed by series, one item per data point: the per-item cost avoided."""
    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    points = []
    for table in tables:
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        series = pl.concat_str("metric_name", pl.col("attributes").map.get("loop"))
        values = frame.select(series, "time", pl.coalesce("value", "sum", pl.lit(0.0)))
        for key, at, value in values.iter_rows():
            points.append((key, at.replace(tzinfo=UTC), value))  # bytewax wants datetime.UTC itself
    flow = Dataflow("reference")
    stream = op.input("in", flow, TestingSource(points, batch_size=500))
    keyed = op.key_on("key", stream, lambda p: p[0])
    clock: win.EventClock[Any] = win.EventClock(
        lambda p: p[1], wait_for_system_duration=timedelta(seconds=30)
    )
    windower = win.TumblingWindower(length=timedelta(minutes=1), align_to=datetime(2020, 1, 1, tzinfo=UTC))

    def fold(acc: tuple[int, float, float, float], p: Any) -> tuple[int, float, float, float]:
        return acc[0] + 1, acc[1] + p[2], min(acc[2], p[2]), max(acc[3], p[2])

    out = win.fold_window(
        "fold", keyed, clock, windower, lambda: (0, 0.0, float("inf"), float("-inf")), fold, lambda a, b: a
    )
    closed: list[Any] = []
    op.output("out", out.down, TestingSink(closed))
    started = time.perf_counter()
    run_main(flow)
    return time.perf_counter() - started, len(closed)


# -- latencies on a live stack -------------------------------------------------------------------
def gauge_request(instance: str, value: float, at_ns: int, service: str = "bench") -> bytes:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    for key, text in (("service.name", service), ("service.instance.id", instance)):
        resource.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=text)))
    metric = Metric(name="bench.gauge")
    metric.gauge.data_points.add(time_unix_nano=at_ns, as_double=value)
    resource.scope_metrics.add().metrics.append(metric)
    return request.SerializeToString()


class Tail:
    """A topic read from its end: (arrival time, document) as they come."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}"})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # concrete end offsets now: OFFSET_END would resolve at the first fetch, maybe much later
        ends = [self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts]
        self.consumer.assign([TopicPartition(topic, p, end) for p, end in zip(parts, ends, strict=True)])
        self.seen: list[tuple[float, dict[str, Any]]] = []

    def wait(self, match: Any, timeout: float = 60) -> tuple[float, dict[str, Any]]:
        """(arrival time, document) of the first match; what does not match is kept for later waits."""
        deadline = time.monotonic() + timeout
        while True:
            for seen in self.seen:
                if match(seen[1]):
                    self.seen.remove(seen)
                    return seen
            if time.monotonic() > deadline:
                raise TimeoutError("no matching document")
            message = self.consumer.poll(0.05)
            if message is not None and not message.error():
                self.seen.append((time.time(), json.loads(message.value() or b"{}")))

    def close(self) -> None:
        self.consumer.close()


def percentiles(samples: list[float]) -> str:
    p50, p99 = nearest_rank(samples, 0.5), nearest_rank(samples, 0.99)
    return f"p50 {p50 * 1000:8.0f} ms   p99 {p99 * 1000:8.0f} ms   (n={len(samples)})"


def latencies(folder: Path, samples: int) -> None:
    rules = folder / "rules.yaml"
    rules.write_text(RULES)
    document = stack_settings(folder) | {
        "rollups": {"allowed_lateness": "1s", "commit_interval": "1s", "resolutions": ["1m"]},
        "alerts": {"rule_files": [str(rules)], "allowed_lateness": "1s", "commit_interval": "1s"},
        "heartbeats": {
            "components": {
                "bench": {
                    "match": {"service.name": "bench-hb"},
                    "expected_interval": "1s",
                    "grace_period": "1s",
                }
            },
            "tick": "100ms",
            "startup_grace": "1s",
        },
    }
    with bench_stack(folder / "talonflow.yaml", document) as stack:
        latency_samples(stack.config.kafka.bootstrap_servers, samples)


def latency_samples(bootstrap: str, samples: int) -> None:
    """Export, then time each hop on the topics the flows write, and print percentiles."""
    with contextlib.ExitStack() as tails:  # closed before the broker goes: no reconnect noise
        rollups, alerts, beats = (
            tails.enter_context(contextlib.closing(Tail(bootstrap, topic)))
            for topic in (ROLLUPS_TOPIC, ALERTS_TOPIC, HEARTBEATS_TOPIC)
        )
        measure_latencies(rollups, alerts, beats, samples)


def measure_latencies(rollups: Tail, alerts: Tail, beats: Tail, samples: int) -> None:
    to_rollup, after_close, to_alert, to_down = [], [], [], []
    lateness = 1.0  # rollups.allowed_lateness above
    with grpc.insecure_channel(f"127.0.0.1:{RECEIVER['grpc']['port']}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        for window in range(max(1, samples // 5)):  # real time: 5 agents cross the threshold per minute
            time.sleep(62 - time.time() % 60)  # just after a minute starts
            window_end = (time.time() // 60 + 1) * 60
            sent = {}
            for agent in range(5):
                instance = f"w{window}-a{agent}"
                export(gauge_request(instance, 75.0, time.time_ns()), timeout=10)
                sent[instance] = time.time()
                fired, _ = alerts.wait(lambda d, i=instance: d["labels"].get("instance") == i)
                to_alert.append(fired - sent[instance])
                time.sleep(1)
            for instance, at in sent.items():
                closed, _ = rollups.wait(
                    lambda d, i=instance: d["attributes"].get("service.instance.id") == i, timeout=120
                )
                to_rollup.append(closed - at)
                after_close.append(closed - window_end - lateness)
            print(f"  window {window + 1}", file=sys.stderr)
        for index in range(max(3, samples // 4)):
            export(gauge_request("x", 0.0, time.time_ns(), service="bench-hb"), timeout=10)
            beat = time.time() - 0.2  # the receiver's Kafka timestamp is a little before the ack

            def stale(d: dict[str, Any], after: float = beat) -> bool:
                seen = datetime.fromisoformat(d["last_seen"]).timestamp()
                return d["component"] == "bench" and d["state"] == "down" and seen >= after

            down, document = beats.wait(stale)
            last_seen = datetime.fromisoformat(document["last_seen"]).timestamp()
            to_down.append(down - last_seen - 2.0)  # beyond interval + grace
            print(f"  heartbeat sample {index + 1}", file=sys.stderr)
    print(f"export -> rollup on talon_rollups (1m windows):                  {percentiles(to_rollup)}")
    print(f"  of which after the window closed (its end + allowed lateness): {percentiles(after_close)}")
    print(f"export -> alert event on talon_alerts (for: 0s, interval 1s):    {percentiles(to_alert)}")
    print(f"last heartbeat -> down verdict, beyond interval + grace:          {percentiles(to_down)}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--points", type=int, default=500, help="data points per request")
    parser.add_argument("--per-poll", default="1,20", help="requests per Kafka poll, comma-separated")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--samples", type=int, default=15, help="latency samples (5 per minute)")
    parser.add_argument("--skip-stack", action="store_true", help="throughput only")
    args = parser.parse_args()
    total = args.requests * args.points
    config = RollupsConfig(resolutions=("1m", "1h"), shards=args.shards)
    print(f"{total} data points in {args.requests} requests, {args.points // 3} series per metric, 3 metrics")
    previous = previous_path()
    if isinstance(previous, str):
        print(f"previous path ({PREVIOUS[:7]}) not available: {previous}")
    summary = []
    for per_poll in (int(n) for n in args.per_poll.split(",")):
        batches = polls(args.requests, args.points, per_poll)
        flat, flat_cpu, tables = flattened(batches)
        decode, _, python = flatten_rates(batches, ExportMetricsServiceRequest, total)
        print(f"{per_poll:>3} requests/poll: flatten (the floor) {total / flat:>10,.0f} points/s   ", end="")
        print(f"({total / flat_cpu:,.0f} per CPU-s; ", end="")
        print(f"protobuf decode alone {decode:,.0f}, the previous Python flatten {python:,.0f})")
        runs = [("talonflow windows", *warm(tables, config))]
        if not isinstance(previous, str):
            runs.append((f"previous ({PREVIOUS[:7]})", *warm(tables, config, previous)))
            same = same_rows(runs[0][3], runs[1][3])
            print(f"{per_poll:>3} requests/poll: same rollup rows as the previous path: {same}")
        row = [f"{per_poll:>3}", f"{total / flat:>10,.0f} ({total / flat_cpu:,.0f})"]
        for label, seconds, cpu, closed in runs:
            print(f"{per_poll:>3} requests/poll: {label:<19} {total / seconds:>10,.0f} points/s   ", end="")
            print(f"({total / cpu:,.0f} per CPU-s) ", end="")
            print(f"{sum(t.num_rows for t in closed)} rollup rows; ", end="")
            print(f"end to end with flatten: {total / (flat + seconds):>10,.0f} points/s (goal {GOAL:,})")
            row.append(f"{total / (flat + seconds):>10,.0f} ({total / (flat_cpu + cpu):,.0f})")
        summary.append(" | ".join(row))
    print("end to end (flatten + windows), points/s wall (per CPU-s):")
    print(f"per poll | flatten alone | now | previous ({PREVIOUS[:7]})")
    print("\n".join(summary))
    ref_s, ref_rows = reference(tables)
    print(f"reference: bytewax fold_window per point     {total / ref_s:>10,.0f} points/s   ", end="")
    print(f"{ref_rows} windows (count, sum, min, max only)")
    print(f"peak RSS of this process: {peak_rss_mb(os.getpid()):.0f} MB")
    if not args.skip_stack:
        with tempfile.TemporaryDirectory(prefix="talonflow-bench-rollups-") as tmp:
            latencies(Path(tmp), args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())

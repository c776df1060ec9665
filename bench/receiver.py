"""Receiver throughput into Kafka (acks=all): items/s, MB/s, export latency p50/p99, peak RSS.

    python -m bench.receiver [--duration 8] [--sizes 10,100,1000] [--concurrency 1,16]
                             [--clients confluent-kafka,kafka-python] [--transport grpc,http]
                             [--collector] [--port-base N] [--target HOST:PORT] [--json]

Starts its own local stack (Kafka, MinIO) on bench ports, then for each Kafka client runs a
receiver process of its own and drives it from a load generator in a separate process.
`--collector` also runs the reference OpenTelemetry Collector of bench/collector/ on the same
broker and measures it right after talonflow on every shape, so both see the same machine load.
`--port-base` moves every port of the run (stack, receivers, Collector) to N..N+49.
`--target` drives any OTLP/gRPC endpoint instead, on its own.
The reference line is the Kafka producer alone, producing the same records with no receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bench.percentiles import nearest_rank
from bench.procstat import cpu_seconds, peak_rss_mb
from bench.stack import bench_stack, stack_settings
from receiver.signals import TRACES
from schemas.topics import SPANS_TOPIC
from talonflow.stack import FLOWS

RECEIVERS_PORT = 21400  # the receivers under test: grpc, http and ops ports from here, 10 apart
COLLECTOR = Path(__file__).parent / "collector" / "run.sh"


@dataclass
class Result:
    target: str
    transport: str
    spans_per_request: int
    concurrency: int
    duration_s: float
    requests: int
    errors: int
    items_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    receiver_cpu_s: float
    peak_rss_mb: float


def agent_request(spans: int, agent: int = 0) -> bytes:
    """A realistic agent export: LLM and tool-call spans with GenAI attributes (~450 bytes each)."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for key, value in (
        ("service.name", "openclaw-gateway"),
        ("service.instance.id", f"gw-{agent}"),
        ("service.version", "2026.11.1"),
        ("host.name", "agent-host-07"),
    ):
        resource.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    scope = resource.scope_spans.add()
    scope.scope.name = "openclaw.agent"
    for index in range(spans):
        attributes = {
            "gen_ai.operation.name": "chat" if index % 3 else "execute_tool",
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.tool.name": "browser.navigate",
            "session.id": f"sess-{index % 17:04d}",
            "http.response.status_code": 200,
            "gen_ai.usage.input_tokens": 1200 + index,
            "gen_ai.usage.output_tokens": 300 + index,
        }
        scope.spans.append(
            Span(
                trace_id=os.urandom(16),
                span_id=os.urandom(8),
                parent_span_id=os.urandom(8),
                name="chat claude-sonnet-4" if index % 3 else "execute_tool browser.navigate",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=1_790_000_000_000_000_000 + index * 1000,
                end_time_unix_nano=1_790_000_000_900_000_000 + index * 1000,
                attributes=[
                    KeyValue(
                        key=k,
                        value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v),
                    )
                    for k, v in attributes.items()
                ],
                status=Status(code=Status.STATUS_CODE_OK),
            )
        )
    return request.SerializeToString()


# -- load generator (runs in its own process) ----------------------------------------------------
def _load(target: str, transport: str, body: bytes, concurrency: int, duration: float, out: Any) -> None:
    latencies: list[float] = []
    errors = 0

    async def grpc_worker(stop_at: float) -> None:
        nonlocal errors
        async with grpc.aio.insecure_channel(target) as channel:
            method = channel.unary_unary(f"/{TRACES.service}/Export")
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    await method(body, timeout=30)
                    latencies.append(time.perf_counter() - started)
                except grpc.aio.AioRpcError:
                    errors += 1

    async def http_worker(stop_at: float) -> None:
        nonlocal errors
        import aiohttp

        headers = {"Content-Type": "application/x-protobuf"}
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                async with session.post(f"http://{target}/v1/traces", data=body, headers=headers) as reply:
                    await reply.read()
                    if reply.status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

    async def main() -> None:
        stop_at = time.perf_counter() + duration
        worker = grpc_worker if transport == "grpc" else http_worker
        await asyncio.gather(*(worker(stop_at) for _ in range(concurrency)))

    asyncio.run(main())
    out.put((latencies, errors))


def drive(
    target: str, transport: str, body: bytes, concurrency: int, duration: float
) -> tuple[list[float], int]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_load, args=(target, transport, body, concurrency, duration, queue))
    process.start()
    latencies, errors = queue.get(timeout=duration + 120)
    process.join()
    return latencies, errors


# -- the receiver under test ---------------------------------------------------------------------
def move_ports(base: dict[str, Any], port_base: int) -> int:
    """Put every port of the bench stack at `port_base`.. ; the first port for receivers under test."""
    base["kafka"].update(bootstrap_servers=f"127.0.0.1:{port_base}", controller_port=port_base + 1)
    base["minio"] = {"endpoint": {"port": port_base + 2}, "console": {"port": port_base + 3}}
    base["receiver"] = {
        "grpc": {"port": port_base + 10},
        "http": {"port": port_base + 11},
        "ops": {"port": port_base + 12},
    }
    base["lifecycle"] = {"ops": {"port": port_base + 13}}
    base["console"] = {"port": port_base + 14}
    return port_base + 20


@contextmanager
def receiver_process(base: dict[str, Any], client: str, linger: str, folder: Path, first_port: int) -> Any:
    document = {
        **base,
        "receiver": {
            "grpc": {"port": first_port},
            "http": {"port": first_port + 1},
            "ops": {"port": first_port + 2},
            "producer": {"client": client, "linger": linger},
        },
    }
    path = folder / f"receiver-{client}.yaml"
    path.write_text(yaml.safe_dump(document))
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / f"receiver-{client}.log", "w"),  # noqa: SIM115 - lives as long as the process
    )
    ops = f"http://127.0.0.1:{first_port + 2}/readyz"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(ops, timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"receiver ({client}) did not become ready; see {folder}") from None
            time.sleep(0.2)
    try:
        yield process, document
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def collector_process(bootstrap: str, port: int, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The reference Collector (built on first use by bench/collector/build.sh) on `port`."""
    log = folder / "collector.log"
    process = subprocess.Popen(
        [str(COLLECTOR)],
        env={**os.environ, "KAFKA_BROKERS": bootstrap, "OTLP_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # noqa: SIM115 - lives as long as the process
    )
    try:
        deadline = time.monotonic() + 600  # a first build takes minutes
        while "Everything is ready" not in log.read_text():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the Collector did not become ready; see {log}")
            time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        process.wait(30)


def measure(
    label: str, target: str, transport: str, pid: int | None, spans: int, concurrency: int, duration: float
) -> Result:
    body = agent_request(spans)
    drive(target, transport, body, concurrency, 1.0)  # warm-up: connections, metadata, JIT in the broker
    if pid:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak-RSS counter
    cpu_before = cpu_seconds(pid) if pid else 0.0
    latencies, errors = drive(target, transport, body, concurrency, duration)
    cpu_after, peak = (cpu_seconds(pid), peak_rss_mb(pid)) if pid else (0.0, 0.0)
    count = len(latencies)
    return Result(
        target=label,
        transport=transport,
        spans_per_request=spans,
        concurrency=concurrency,
        duration_s=duration,
        requests=count,
        errors=errors,
        items_per_s=count * spans / duration,
        mb_per_s=count * len(body) / duration / 1e6,
        p50_ms=nearest_rank(latencies, 0.5) * 1000,
        p99_ms=nearest_rank(latencies, 0.99) * 1000 if count >= 100 else float("nan"),
        receiver_cpu_s=cpu_after - cpu_before,
        peak_rss_mb=peak,
    )


def producer_reference(bootstrap: str, spans: int, duration: float) -> Result:
    """The floor under any receiver: confluent-kafka alone producing the same records (acks=all)."""
    from confluent_kafka import Producer

    body = agent_request(spans)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "compression.type": "lz4"}
    )
    delivered = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered
        delivered += err is None

    stop_at = time.perf_counter() + duration
    while time.perf_counter() < stop_at:
        try:
            producer.produce(SPANS_TOPIC, body, b"openclaw-gateway/gw-0", on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
    producer.flush(30)
    nan = float("nan")
    return Result(
        "kafka producer alone",
        "-",
        spans,
        0,
        duration,
        delivered,
        0,
        delivered * spans / duration,
        delivered * len(body) / duration / 1e6,
        nan,
        nan,
        nan,
        nan,
    )


def print_table(results: list[Result]) -> None:
    header = (
        f"{'target':<28}{'proto':<6}{'spans/req':>9}{'conc':>6}{'req/s':>9}{'items/s':>11}"
        f"{'MB/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'items/cpu-s':>12}{'peak RSS MB':>12}{'err':>5}"
    )
    print(header)
    for r in results:
        per_cpu = r.requests * r.spans_per_request / r.receiver_cpu_s if r.receiver_cpu_s else float("nan")
        print(
            f"{r.target:<28}{r.transport:<6}{r.spans_per_request:>9}{r.concurrency:>6}"
            f"{r.requests / r.duration_s:>9.0f}{r.items_per_s:>11.0f}{r.mb_per_s:>8.1f}"
            f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{per_cpu:>12.0f}{r.peak_rss_mb:>12.1f}{r.errors:>5}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement (default 8)")
    parser.add_argument("--sizes", default="10,100,1000", help="spans per request")
    parser.add_argument("--concurrency", default="1,16", help="requests in flight")
    parser.add_argument("--clients", default="confluent-kafka,kafka-python")
    parser.add_argument("--transport", default="grpc", help="grpc, http or both (grpc,http)")
    parser.add_argument("--target", help="drive this OTLP/gRPC endpoint instead of talonflow's receiver")
    parser.add_argument("--linger", default="5ms", help="receiver.producer.linger for talonflow's receivers")
    parser.add_argument("--target-pid", type=int, help="with --target: its process, for CPU and peak RSS")
    parser.add_argument(
        "--collector", action="store_true", help="measure the Collector of bench/collector/ side by side"
    )
    parser.add_argument("--port-base", type=int, help="run every port at N..N+49 (default: bench ports)")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    transports = args.transport.split(",")
    results: list[Result] = []

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.target:
        for spans in sizes:
            for concurrency in levels:
                progress(f"{args.target}: {spans} spans x {concurrency} in flight")
                results.append(
                    measure(
                        args.target, args.target, "grpc", args.target_pid, spans, concurrency, args.duration
                    )
                )
        return report(results, args.json)

    with tempfile.TemporaryDirectory(prefix="talonflow-bench-") as tmp, ExitStack() as running:
        folder = Path(tmp)
        base = stack_settings(folder)
        base["kafka"]["topics"] = {"partitions": 4}
        first_port = move_ports(base, args.port_base) if args.port_base else RECEIVERS_PORT
        # the flows, and the stack's own idle receiver, console and lifecycle, would compete for CPU
        stopped = (*FLOWS, "receiver", "console", "lifecycle")
        stack = running.enter_context(bench_stack(folder / "stack.yaml", base, stopped=stopped))
        bootstrap = stack.config.kafka.bootstrap_servers
        targets: list[tuple[str, str, str, int]] = []  # (label, transport, address, pid)
        for offset, client in enumerate(args.clients.split(",")):
            process, document = running.enter_context(
                receiver_process(base, client, args.linger, folder, first_port + offset * 10)
            )
            for transport in transports:
                address = f"127.0.0.1:{document['receiver'][transport]['port']}"
                targets.append((f"receiver ({client})", transport, address, process.pid))
        if args.collector:
            port = first_port + 20
            collector = running.enter_context(collector_process(bootstrap, port, folder))
            targets.append(("otelcol v0.160", "grpc", f"127.0.0.1:{port}", collector.pid))
        for spans in sizes:
            for concurrency in levels:
                for label, transport, address, pid in targets:
                    progress(f"{label}: {transport} {spans} spans x {concurrency} in flight")
                    results.append(measure(label, address, transport, pid, spans, concurrency, args.duration))
        for spans in sizes:
            progress(f"reference: kafka producer alone, {spans} spans per record")
            results.append(producer_reference(bootstrap, spans, args.duration))
    return report(results, args.json)


def report(results: list[Result], as_json: bool) -> int:
    if as_json:
        for result in results:
            print(json.dumps(asdict(result)))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

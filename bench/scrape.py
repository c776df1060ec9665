"""Scraper samples per CPU-second beside a real Prometheus on the same targets, and remote-write into Kafka.

    python -m bench.scrape [--targets 100] [--series 1000] [--interval 5] [--duration 20]
                           [--processes 1] [--write-concurrency 8] [--json]

Starts a private stack (bench/stack.py: Kafka and the receiver; the flows are stopped so they do
not compete for the CPU) on ports 29xxx, one static exporter process serving `--targets` targets
of about `--series` seed-family series each, then the scraper (`python -m scrape`, acks=all into
Kafka) and Prometheus 2.42 scraping the same targets at the same time. Each side's figure is the
samples it ingested (talonflow_scrape_samples_total / prometheus_tsdb_head_samples_appended_total)
over the CPU seconds its processes used. Then remote-write: `--write-concurrency` clients post
snappy WriteRequests of 500 samples (Prometheus' max_samples_per_send) for `--duration` seconds.
The goal from issue 10: one scraper core sustains 1,000 targets x 1,000 series every 15 s (67k/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Process
from pathlib import Path

import aiohttp
import cramjam
import yaml
from prometheus_client import generate_latest

from bench.procstat import cpu_seconds
from bench.stack import bench_stack, stack_settings
from schemas.prometheus_remote_pb2 import WriteRequest
from tests.scrape_targets import seed_registry

EXPORTER, PROMETHEUS, SCRAPER_OPS = 29201, 29290, 29235
PORTS = {
    "kafka": {"bootstrap_servers": "127.0.0.1:29092", "controller_port": 29093},
    "minio": {"endpoint": {"port": 29000}, "console": {"port": 29001}},
    "receiver": {"grpc": {"port": 29317}, "http": {"port": 29318}, "ops": {"port": 29133}},
    "lifecycle": {"ops": {"port": 29134}},
    "console": {"port": 29300},
}
STOPPED = ("ingest", "rollups", "alerts", "heartbeats", "lifecycle", "console", "tailer", "minio")


@dataclass
class Figure:
    what: str
    samples_per_s: float
    cpu_seconds: float
    samples_per_cpu_s: float


def exposition(series: int) -> bytes:
    """About `series` seed-family series as text 0.0.4 (one registry copy is ~40 series)."""
    one = generate_latest(seed_registry(1)).count(b"\n") // 2  # lines are HELP/TYPE or samples
    return generate_latest(seed_registry(max(1, series // max(1, one))))


def serve_static(body: bytes, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def tree_cpu(pid: int) -> float:
    """CPU of a process and its live children (the scraper's shard processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.exists() else []
    return cpu_seconds(pid, waited_children=True) + sum(cpu_seconds(k, waited_children=True) for k in kids)


def counter(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def scraper_samples(processes: int) -> float:
    urls = [f"http://127.0.0.1:{SCRAPER_OPS + i}/metrics" for i in range(processes)]
    return sum(counter(u, "talonflow_scrape_samples_total") for u in urls)


def prometheus_samples() -> float:
    return counter(f"http://127.0.0.1:{PROMETHEUS}/metrics", "prometheus_tsdb_head_samples_appended_total")


def measure(sides: dict[str, tuple[int, Callable[[], float]]], duration: float) -> list[Figure]:
    """The same window for every side: (pid, sample counter) by name."""
    before = {name: (tree_cpu(pid), samples()) for name, (pid, samples) in sides.items()}
    started = time.monotonic()
    time.sleep(duration)
    elapsed = time.monotonic() - started
    figures = []
    for name, (pid, samples) in sides.items():
        cpu, n = tree_cpu(pid) - before[name][0], samples() - before[name][1]
        figures.append(Figure(name, n / elapsed, cpu, n / cpu if cpu else 0.0))
    return figures


def write_body(samples: int, stamp_ms: int | None = None) -> bytes:
    """A snappy WriteRequest of `samples` series, one sample each at `stamp_ms` (now by default)."""
    stamp = int(time.time() * 1000) if stamp_ms is None else stamp_ms
    write = WriteRequest()
    for i in range(samples):
        series = write.timeseries.add()
        for name, value in (
            ("__name__", "wundr_queue_depth"),
            ("instance", "w:1"),
            ("job", "wundr"),
            ("i", str(i)),
        ):
            series.labels.add(name=name, value=value)
        series.samples.add(value=float(i), timestamp=stamp)
    return bytes(cramjam.snappy.compress_raw(write.SerializeToString()))


async def remote_write(url: str, concurrency: int, duration: float, receiver_pid: int) -> Figure:
    body = write_body(500)
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    sent = 0
    deadline = time.monotonic() + duration

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while time.monotonic() < deadline:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 204:
                    raise RuntimeError(f"remote-write answered {response.status}: {await response.text()}")
                sent += 500

    started, cpu = time.monotonic(), tree_cpu(receiver_pid)
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    elapsed, cpu = time.monotonic() - started, tree_cpu(receiver_pid) - cpu
    return Figure(f"remote-write x{concurrency}", sent / elapsed, cpu, sent / cpu if cpu else 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--series", type=int, default=1000, help="series per target (about)")
    parser.add_argument("--interval", type=float, default=5.0, help="scrape interval, seconds")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--processes", type=int, default=1, help="scrape.processes")
    parser.add_argument("--write-concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    body = exposition(args.series)
    exporter = Process(target=serve_static, args=(body, EXPORTER), daemon=True)
    exporter.start()
    paths = [f"/metrics/{i}" for i in range(args.targets)]
    static = [
        {"targets": [f"127.0.0.1:{EXPORTER}"], "labels": {"__metrics_path__": p, "instance": f"t{p[9:]}"}}
        for p in paths
    ]
    job = {
        "job_name": "bench",
        "scrape_interval": f"{args.interval:g}s",
        "scrape_timeout": f"{args.interval:g}s",
        "static_configs": static,
    }
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as folder:
        root = Path(folder)
        document = {**stack_settings(root), **PORTS}
        with bench_stack(root / "talonflow.yaml", document, stopped=STOPPED) as stack:
            scrape_config = {
                **document,
                "scrape": {"processes": args.processes, "ops_port": SCRAPER_OPS},
                "scrape_configs": [job],
            }
            (root / "scrape.yaml").write_text(yaml.safe_dump(scrape_config))
            (root / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": [job]}))
            log = (root / "peers.log").open("wb")
            scraper = subprocess.Popen(
                [sys.executable, "-m", "scrape", "--config", str(root / "scrape.yaml")],
                stdout=log,
                stderr=log,
            )
            prometheus = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={root / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{PROMETHEUS}",
                ],
                stdout=log,
                stderr=log,
            )
            try:
                time.sleep(args.interval + 3)  # every target scraped once: connections and caches warm
                print(f"{len(body.splitlines())} lines per target, {args.targets} targets", file=sys.stderr)
                sides = {
                    "talonflow scraper": (scraper.pid, lambda: scraper_samples(args.processes)),
                    "prometheus 2.42": (prometheus.pid, prometheus_samples),
                }
                figures += measure(sides, args.duration)
            finally:
                for process in (scraper, prometheus):
                    process.terminate()
                    process.wait(30)
                log.close()
            url = f"http://{stack.config.receiver.http.address}/api/v1/write"
            receiver_pid = stack.rpc().supervisor.getProcessInfo("receiver")["pid"]
            figures.append(
                asyncio.run(remote_write(url, args.write_concurrency, args.duration, receiver_pid))
            )
    exporter.terminate()
    for figure in figures:
        if args.json:
            print(json.dumps(asdict(figure)))
        else:
            print(
                f"{figure.what:<22} {figure.samples_per_s:>10,.0f} samples/s {figure.cpu_seconds:>6.1f} CPU-s"
                f"  {figure.samples_per_cpu_s:>10,.0f} samples per CPU-s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

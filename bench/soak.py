"""Soak: the whole stack at steady load for `--minutes`, every part's RSS, CPU and open files
sampled, and every flow's Kafka consumer lag; flat after warm-up is the goal (issue 12).

    python -m bench.soak --minutes 30 --rate 200

It runs a private stack (`talonflow up --detach`, bench/stack.py) on ports `--base-port` to
`--base-port + 19` (29500 by default; the short test uses 29750) in its own folder, with a
scrape target and a tailed log file configured, so the scraper and the tailer run too. Load:
spans, metric points and log lines through the OTel SDK's own exporters (bench/chaos.py's `Load`,
`--rate` items per second of each; points on `--series` series, as a fleet's metrics are a
bounded set), one remote-write request a second, JSON lines appended to the tailed file (renamed
away every `--rotate` seconds, as logrotate does), the scrape target and a console query every
15 s. Every `--every` seconds each supervised part is sampled with all its processes (Kafka's
JVM, MinIO, each flow's workers, the scraper's shards): RSS summed, CPU seconds, open fds; and
each flow's consumer group: end offsets minus committed offsets over its partitions.

At the end it prints per part the RSS at warm-up end and at the end, the least-squares RSS slope
after warm-up in MB per 10 minutes, CPU %, fds min/max and restarts; per group the lag max and
last; and per way in, records acknowledged against rows in Parquet. Exit 1 when a slope exceeds
`--max-slope`, a lag is still rising at the end, a part restarted or an acknowledged record is missing.
The samples go to `samples.csv` and `lag.csv` under `--out` for plotting.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from bench.chaos import Ledger, Load
from bench.landed import ID, landed_ids
from bench.scrape import counter
from bench.stack import bench_stack, stack_settings
from bench.ways_in import SCRAPE_EVERY, WRITTEN, Delivery, WaysInCounts, ways_in_load, ways_in_settings
from bench.ways_in import deliveries as ways_in_deliveries
from schemas.config import LifecycleConfig, TalonflowConfig
from talonflow.stack import Stack

# The flows' consumer groups (flows/*.py CONSUMER_GROUP; named here, as importing a flow module
# builds its dataflow from the config).
GROUPS = ("talonflow-ingest", "talonflow-rollups", "talonflow-alerts", "talonflow-heartbeats")
SHARDS = 2  # scrape.processes: the scraper's parent process and its two shard processes
SOAK_CACHES = {  # bytes
    "index_cache": 256 * 1024,
    "partial_cache": 1024**2,
    "catalogue_cache": 1024**2,
    "results_cache": 256 * 1024,
}
RANGE_S = 2 * 3600  # the console's query_range: the last two hours, as a dashboard shows them


def soak_settings(folder: Path, base: int, commit: float, hot_for: float | None = None) -> dict[str, Any]:
    """The bench stack's document on 20 ports from `base`, with a scrape target, a tailed file
    and the repo's alert rules, so that every part `up` can run is running; with `hot_for`
    (seconds), every dataset's hour is compacted into MinIO that long after it closes, so that a
    run passes a compaction (by default after days, which a soak never sees)."""
    document = stack_settings(folder)
    document["kafka"] = {"bootstrap_servers": f"127.0.0.1:{base + 2}", "controller_port": base + 3}
    document["minio"] = {"endpoint": {"port": base}, "console": {"port": base + 1}}
    document["receiver"] = {"grpc": {"port": base + 4}, "http": {"port": base + 5}, "ops": {"port": base + 6}}
    document["lifecycle"] = {"ops": {"port": base + 7}}
    if hot_for is not None:
        defaults = LifecycleConfig().policies.items()
        document["lifecycle"]["policies"] = {
            name: {**p.model_dump(), "hot_for": hot_for} for name, p in defaults
        }
    # The console's in-memory caches bounded low enough to fill during the warm-up: what grows
    # after it is then not a cache filling up (console/frame_memory.py; README, "Soak").
    document["console"] = {"port": base + 8, **SOAK_CACHES}
    document.update(ways_in_settings(folder, base + 19, base + 9, SHARDS, base + 9 + SHARDS))
    document["alerts"] = {"rule_files": [str(Path(__file__).resolve().parents[1] / "alerts.yaml")]}
    document["ingest"] = {"commit_interval": f"{commit}s"}
    document["rollups"] = {"commit_interval": f"{commit}s"}
    return document


# -- load beyond the SDK: bounded metric series, remote-write, a tailed file, console queries --
class SteadyLoad(Load):
    """bench.chaos's SDK load (unique span and log ids, every export booked), but its counter
    adds go to `series` series: a new series per point would grow the rollups' state by design."""

    def __init__(self, config: TalonflowConfig, rate: float, ledger: Ledger, series: int) -> None:
        super().__init__(config, rate, ledger)
        self.series = series

    def _run(self) -> None:
        tracer = self.tracer_provider.get_tracer("talonflow.soak")
        counter = self.meter_provider.get_meter("talonflow.soak").create_counter("soak.items")
        logger = self.logger_provider.get_logger("talonflow.soak")
        started, step = time.monotonic(), 0
        while not self.stop.is_set():
            with tracer.start_as_current_span("soak_step", attributes={ID: f"s{step}"}):
                counter.add(1, {ID: f"series-{step % self.series}"})
                logger.emit(body=f"soak step {step}", attributes={ID: f"l{step}"}, timestamp=time.time_ns())
            step += 1
            self.stop.wait(max(0.0, started + step / self.rate - time.monotonic()))


@dataclass
class Queries:
    """The console queries made during the load, and the errors they met."""

    done: int = 0
    errors: list[str] = field(default_factory=list)


@contextmanager
def console_queries(config: TalonflowConfig, every: float = 15.0) -> Iterator[Queries]:
    """Every `every` seconds a PromQL query to the console, instant and over the last two hours
    at 60 s steps, as a dashboard refreshing would make (the range's closed hours are kept)."""
    queries, stop = Queries(), threading.Event()
    api = f"http://{config.console.host}:{config.console.port}/api/v1"
    expression = f"sum(rate({WRITTEN}[1m]))"

    def query() -> None:
        while not stop.wait(every):
            now = time.time()
            ranged = {"query": expression, "start": now - RANGE_S, "end": now, "step": 60}
            for path, wanted in (("query", {"query": expression}), ("query_range", ranged)):
                try:
                    with urllib.request.urlopen(
                        f"{api}/{path}?{urllib.parse.urlencode(wanted)}", timeout=60
                    ) as answer:
                        answer.read()
                    queries.done += 1
                except OSError as error:
                    queries.errors.append(f"{path}: {error}")

    thread = threading.Thread(target=query, name="soak-query")
    thread.start()
    try:
        yield queries
    finally:
        stop.set()
        thread.join()


# -- sampling --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    at: float  # seconds since load started
    part: str
    pid: int  # the part's supervised process: a new one is a restart
    processes: int
    rss_mb: float
    cpu_s: float
    fds: int
    # RSS but the file-backed pages (shared libraries' code: Polars' is 170 MB, paged in as new
    # code paths run; clean, bounded by the files, droppable): what a leak would grow.
    anon_mb: float = 0.0


def part_processes(pid: int, recursive: bool = True) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *(root.children(recursive=True) if recursive else [])]


def sample_part(at: float, part: str, pid: int, recursive: bool = True) -> Sample | None:
    """The part's process and all its descendants, summed; None if it is gone meanwhile."""
    rss, anon, cpu, fds, alive = 0, 0, 0.0, 0, 0
    try:
        processes = part_processes(pid, recursive)
    except psutil.NoSuchProcess:
        return None
    for process in processes:
        try:
            with process.oneshot():
                memory = process.memory_info()
                rss += memory.rss
                anon += memory.rss - memory.shared  # shared: RssFile + RssShmem
                times = process.cpu_times()
                cpu += times.user + times.system
                fds += process.num_fds()
            alive += 1
        except psutil.NoSuchProcess:  # a child that ended between listing and reading
            continue
    return Sample(at, part, pid, alive, rss / 1024**2, cpu, fds, anon / 1024**2)


def sample_stack(stack: Stack, at: float) -> list[Sample]:
    """Every supervised part (process group), and supervisord itself (without its children)."""
    samples = []
    for info in stack.process_info():
        if info["statename"] == "RUNNING" and info["pid"]:
            samples.append(sample_part(at, info["name"], info["pid"]))
    supervisord = int(stack.pidfile.read_text())
    samples.append(sample_part(at, "supervisord", supervisord, recursive=False))
    return [s for s in samples if s is not None]


class LagReader:
    """End offsets minus committed offsets per flow consumer group, over the partitions it has
    committed (the flows commit at each snapshot, for lag tools only: a partition it reads and
    has data is committed from its first snapshot on)."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def lags(self) -> dict[str, int]:
        requests = [ConsumerGroupTopicPartitions(group) for group in GROUPS]
        committed: dict[str, dict[tuple[str, int], int]] = {}
        for request in requests:  # librdkafka takes one group per request
            answers = self.admin.list_consumer_group_offsets([request])
            found = answers[request.group_id].result().topic_partitions
            committed[request.group_id] = {(p.topic, p.partition): p.offset for p in found if p.offset >= 0}
        every = {tp for offsets in committed.values() for tp in offsets}
        latest = {TopicPartition(topic, partition): OffsetSpec.latest() for topic, partition in every}
        futures = self.admin.list_offsets(latest) if latest else {}
        ends = {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
        return {
            g: sum(ends[tp] - offset for tp, offset in offsets.items()) for g, offsets in committed.items()
        }


# -- what landed -------------------------------------------------------------------------------
def deliveries(config: TalonflowConfig, ledger: Ledger, counts: WaysInCounts) -> list[Delivery]:
    result = []
    for signal in ("spans", "logs"):
        landed = landed_ids(config, signal)
        ids = set(ledger.acked[signal]) & set(landed["id"])
        duplicated = landed.filter(pl.col("n") > 1).height
        result.append(Delivery(f"sdk {signal}", len(set(ledger.acked[signal])), len(ids), duplicated))
    points = int(landed_ids(config, "metrics")["n"].sum() or 0)  # the SDK's points carry the id label
    result.append(Delivery("sdk points", len(ledger.acked["metrics"]), points))
    return result + ways_in_deliveries(config, counts)


def wait_landed(
    config: TalonflowConfig, ledger: Ledger, counts: WaysInCounts, timeout: float
) -> list[Delivery]:
    """Until every way in has landed what it sent (a commit interval or two), or `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = deliveries(config, ledger, counts)
        if all(d.missing == 0 for d in result) or time.monotonic() > deadline:
            return result
        time.sleep(5)


# -- the report ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartFigures:
    part: str
    processes: int
    rss_warm: float
    rss_end: float
    slope: float  # MB per 10 minutes, least squares after warm-up
    anon_slope: float  # the same of the RSS but file-backed pages (Sample.anon_mb)
    cpu_percent: float
    fds_min: int
    fds_max: int
    restarts: int


def part_figures(samples: list[Sample], warmup: float) -> list[PartFigures]:
    figures = []
    for part in sorted({s.part for s in samples}):
        mine = [s for s in samples if s.part == part]
        after = [s for s in mine if s.at >= warmup] or mine[-1:]
        minutes = np.array([s.at for s in after]) / 600
        slope, anon_slope = (
            (float(np.polyfit(minutes, np.array(mb), 1)[0]) if len(after) > 2 else 0.0)
            for mb in ([s.rss_mb for s in after], [s.anon_mb for s in after])
        )
        cpu = sum(b.cpu_s - a.cpu_s for a, b in itertools.pairwise(after) if a.pid == b.pid)
        elapsed = after[-1].at - after[0].at
        restarts = sum(a.pid != b.pid for a, b in itertools.pairwise(mine))
        fds = [s.fds for s in after]
        figures.append(
            PartFigures(
                part,
                after[-1].processes,
                after[0].rss_mb,
                after[-1].rss_mb,
                slope,
                anon_slope,
                100 * cpu / elapsed if elapsed else 0.0,
                min(fds),
                max(fds),
                restarts,
            )
        )
    return figures


def lag_unbounded(series: list[tuple[float, int]], warmup: float) -> bool:
    """Still rising at the end, which is what a consumer that falls behind a steady load does.
    Two conditions after warm-up, both needed: the lag never came back, in the last quarter, to
    the highest it reached in the first (one that keeps up drops to near 0 at each commit, a
    saw-tooth); and over the last half its least-squares line rises by more than twice the
    samples' spread around that line (their standard deviation). A lag that stepped up once (a
    slower snapshot, more partitions committed) and then stayed flat is bounded: ingest's went
    5-77 -> 160-270 records after 25 minutes of an hour's soak and stayed (issue 12)."""
    after = [(at, lag) for at, lag in series if at >= warmup]
    quarter = len(after) // 4
    if quarter == 0 or min(lag for _, lag in after[-quarter:]) <= max(lag for _, lag in after[:quarter]):
        return False
    half = np.array(after[len(after) // 2 :], dtype=float)
    at, lag = half[:, 0], half[:, 1]
    slope, intercept = np.polyfit(at, lag, 1)
    spread = float(np.std(lag - (slope * at + intercept)))
    return bool(slope * (at[-1] - at[0]) > 2 * spread)


def render(figures: list[PartFigures], lags: dict[str, list[tuple[float, int]]], warmup: float,
           delivered: list[Delivery], max_slope: float) -> str:  # fmt: skip
    header = f"{'part':<13}{'procs':>6}{'RSS warm MB':>13}{'RSS end MB':>12}{'MB/10min':>10}{'anon':>7}"
    lines = [header + f"{'CPU %':>7}{'fds':>10}{'restarts':>9}"]
    for f in figures:
        flag = " <- over" if f.slope > max_slope else ""
        rss = f"{f.rss_warm:>13.1f}{f.rss_end:>12.1f}{f.slope:>10.2f}{f.anon_slope:>7.2f}"
        row = f"{f.part:<13}{f.processes:>6}{rss}{f.cpu_percent:>7.1f}{f'{f.fds_min}-{f.fds_max}':>10}"
        lines.append(row + f"{f.restarts:>9}{flag}")
    lines += ["", f"{'group':<22}{'lag max':>8}{'lag last':>9}  bounded"]
    for group, series in sorted(lags.items()):
        values = [lag for _, lag in series]
        bounded = "no" if lag_unbounded(series, warmup) else "yes"
        lines.append(f"{group:<22}{max(values):>8}{values[-1]:>9}  {bounded}")
    lines += ["", f"{'way in':<14}{'sent':>9}{'landed':>9}{'missing':>8}{'duplicated':>11}"]
    for d in delivered:
        lines.append(f"{d.way:<14}{d.sent:>9}{d.landed:>9}{d.missing:>8}{d.duplicated:>11}")
    return "\n".join(lines)


def write_samples(out: Path, samples: list[Sample], lag_rows: list[tuple[float, str, int]]) -> None:
    with (out / "samples.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(Sample.__dataclass_fields__)
        writer.writerows(astuple(s) for s in samples)
    with (out / "lag.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("at", "group", "lag"))
        writer.writerows(lag_rows)


def scrape_count(base: int) -> int:
    """Scrapes done so far, by the scraper's own counter over its shards."""
    shards = [f"http://127.0.0.1:{base + 9 + i}/metrics" for i in range(SHARDS)]
    return int(sum(counter(ops, "talonflow_scrape_scrapes_total") for ops in shards))


def soak(args: argparse.Namespace, folder: Path) -> int:
    ledger, samples, lag_rows = Ledger(), [], []
    document = soak_settings(folder, args.base_port, args.commit, args.hot_for)
    with bench_stack(folder / "soak.yaml", document, timeout=args.up_timeout) as stack:
        programs = sorted(p.name for p in stack.programs())
        reader = LagReader(stack.config.kafka.bootstrap_servers)
        load = SteadyLoad(stack.config, args.rate, ledger, args.series)
        ways_in = ways_in_load(
            stack.config, folder, args.base_port + 19, args.line_rate, args.rotate, give_up=60
        )
        with ways_in as counts, console_queries(stack.config) as queries:
            scrapes, since = scrape_count(args.base_port), datetime.now(UTC) - SCRAPE_EVERY
            load.start()
            started = time.monotonic()
            try:
                while (at := time.monotonic() - started) < args.minutes * 60:
                    samples += sample_stack(stack, at)
                    lag_rows += [(at, group, lag) for group, lag in reader.lags().items()]
                    if int(at) // 60 != int(at - args.every) // 60:
                        rss = sum(s.rss_mb for s in samples if s.at == at)
                        lag = max((n for t, _, n in lag_rows if t == at), default=0)
                        print(
                            f"{at / 60:5.1f} min: RSS {rss:.0f} MB, lag <= {lag}", file=sys.stderr, flush=True
                        )
                    time.sleep(max(0.0, started + at + args.every - time.monotonic()))
            finally:
                load.finish()
        # The scraper's count, then the scraper stopped, so that its rows can catch up with it.
        counts.scrapes = scrape_count(args.base_port) - scrapes
        counts.scrape_window = (since, datetime.now(UTC) + SCRAPE_EVERY)
        stack.rpc().supervisor.stopProcess("scraper")
        delivered = wait_landed(stack.config, ledger, counts, args.settle)
    figures = part_figures(samples, args.warmup)
    lags: dict[str, list[tuple[float, int]]] = {}
    for at, group, lag in lag_rows:
        lags.setdefault(group, []).append((at, lag))
    write_samples(args.out, samples, lag_rows)
    print(render(figures, lags, args.warmup, delivered, args.max_slope), flush=True)
    summary = {
        "programs": programs,
        "parts": [f.__dict__ for f in figures],
        "deliveries": [d.__dict__ for d in delivered],
        "lags": {g: [lag for _, lag in series] for g, series in lags.items()},
        "side": {
            "remote_refused": counts.remote_refused,
            "queries": queries.done,
            "query_errors": queries.errors[:5],
        },
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    failed = any(f.slope > args.max_slope or f.restarts for f in figures)
    failed |= any(lag_unbounded(series, args.warmup) for series in lags.values())
    failed |= any(d.missing or d.duplicated for d in delivered)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30, help="minutes of steady load")
    parser.add_argument("--warmup", type=float, default=300, help="seconds left out of slopes and lag bounds")
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument(
        "--rate", type=float, default=200, help="spans, counter adds and log records per second, each"
    )
    parser.add_argument("--series", type=int, default=100, help="metric series the counter adds go to")
    parser.add_argument(
        "--line-rate", type=float, default=50, help="lines per second appended to the tailed file"
    )
    parser.add_argument(
        "--rotate", type=float, default=300, help="seconds between renames of the tailed file"
    )
    parser.add_argument(
        "--commit", type=float, default=10, help="ingest and rollups commit interval, seconds"
    )
    parser.add_argument(
        "--hot-for", type=float, help="seconds after its hour closes that each hour is compacted into MinIO"
    )
    parser.add_argument("--max-slope", type=float, default=1.0, help="MB per 10 min: the goal, per part")
    parser.add_argument("--settle", type=float, default=180, help="longest wait for the last rows, seconds")
    parser.add_argument(
        "--base-port", type=int, default=29500, help="the stack uses this port and the next 19"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(".talonflow/soak"), help="samples.csv, lag.csv, summary.json"
    )
    parser.add_argument(
        "--up-timeout", type=float, default=600, help="seconds for the niced stack to be healthy"
    )
    parser.add_argument(
        "--keep", action="store_true", help="run the stack in --out/stack and keep it afterwards"
    )
    args = parser.parse_args(argv)
    positive = (args.minutes, args.every, args.rate, args.line_rate, args.rotate, args.commit, args.max_slope)
    if min(positive) <= 0 or args.series < 1 or args.warmup < 0 or not 1024 <= args.base_port <= 65515:
        parser.error("--minutes, --every, --rate, --line-rate, --rotate, --commit, --max-slope above 0; "
                     "--series at least 1; --warmup at least 0; --base-port 1024-65515")  # fmt: skip
    if args.hot_for is not None and args.hot_for < 0:
        parser.error("--hot-for at least 0")
    if args.warmup >= args.minutes * 60:
        parser.error("--warmup must end before the run does (seconds against --minutes)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.keep:
        (args.out / "stack").mkdir(exist_ok=True)
        return soak(args, (args.out / "stack").resolve())
    with tempfile.TemporaryDirectory(prefix="talonflow-soak-") as folder:
        return soak(args, Path(folder))


if __name__ == "__main__":
    sys.exit(main())

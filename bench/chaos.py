"""Chaos harness: steady OTLP load through the OTel SDK while random parts are kill -9'd, then a
count by unique id of what the SDK was told was exported against what landed in Parquet.

    python -m bench.chaos --rounds 6 --every 15 --seed 1

It runs a private stack (`talonflow up --detach`, bench/stack.py) on ports 27000-27499 in a temp
folder, so it runs beside the test suite's and the other benches' stacks. Every `--every` seconds
one program `up` supervises (Kafka, MinIO, the receiver, each flow, the lifecycle mover, the
console) has its process group killed with SIGKILL; the harness waits until supervisord has
restarted it and its health check passes, and records that recovery time. After the rounds the
load stops, the harness waits for quiescence (no new Parquet rows for a while) and checks: every
span, point and log line the SDK reported as exported is present exactly once, and every rollup
window is present once per (series, window, resolution). Exit 1 on any loss, duplicate or part
that did not recover.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter as CounterInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.chaos_alerts import AGENTS, STARTUP_GRACE_S, Beaters, Flipper, Outage, Schedule, alerting_verdict
from bench.chaos_alerts import render as render_alerting
from bench.chaos_alerts import settings as alerting_settings
from bench.landed import ID, landed_ids, tiered
from bench.percentiles import nearest_rank
from bench.stack import bench_stack, stack_settings
from bench.ways_in import (
    SCRAPE_EVERY,
    SCRAPES,
    Delivery,
    WaysInCounts,
    scrape_times,
    ways_in_load,
    ways_in_settings,
)
from bench.ways_in import deliveries as ways_in_deliveries
from bench.webhook import Webhook
from schemas.config import TalonflowConfig
from talonflow.health import part_problem
from talonflow.stack import Stack

SIGNALS = ("spans", "metrics", "logs")  # also the Parquet datasets they land in
ROLLUPS = ("rollups_1m", "rollups_1h", "rollups_1d")
BASE_PORT = 27000  # below Linux's ephemeral ports (32768 on), where a client socket could take one
EXPORT_TIMEOUT_S = 30  # the SDK exporters retry retryable answers until this deadline
HOOK_PORT = 400  # from the base port: the harness's webhook, which the stack's notifier calls
TARGET_PORT = 150  # from the base port: the scrape target the scraper scrapes
SCRAPER_OPS_PORT, TAILER_OPS_PORT = 140, 141  # from the base port: the scraper's and the tailer's ops ports
SCRAPE_GAP_PARTS = ("scraper", "kafka")  # an outage of these may cost scrapes (a scrape has no ack)
ROTATE_S = 60  # the tailed file is renamed away this often
BACKDATE_S = 2 * 3600  # spans and logs land in an hour that ended over an hour ago: due to move
TIERED = ("spans", "logs")  # the datasets given short tier ages, so that they move while counted
REMOTE_WRITE_GIVE_UP_S = 180  # Prometheus retries a request until its WAL lets go; longer than any outage


def chaos_settings(folder: Path, brokers: int, base_port: int = BASE_PORT) -> dict[str, Any]:
    """The bench stack's document moved to this harness's ports (500 from `base_port`), with short
    commit intervals so that quiescence comes soon. More brokers change only this document."""
    document = stack_settings(folder)
    kafka_ports = [base_port + 92 + 2 * node for node in range(brokers)]
    document["kafka"] = {
        "bootstrap_servers": ",".join(f"127.0.0.1:{port}" for port in kafka_ports),
        "controller_port": base_port + 120,
        **({"brokers": brokers} if brokers > 1 else {}),
    }
    document["minio"] = {"endpoint": {"port": base_port}, "console": {"port": base_port + 1}}
    document["receiver"] = {
        "grpc": {"port": base_port + 317},
        "http": {"port": base_port + 318},
        "ops": {"port": base_port + 133},
    }
    document["lifecycle"] = {"ops": {"port": base_port + 134}, "interval": "5s"}
    document["console"] = {"port": base_port + 300}
    document["alerts"] = {"rule_files": [str(Path(__file__).resolve().parents[1] / "alerts.yaml")]}
    document["ingest"] = {"commit_interval": "2s"}
    document["rollups"] = {"commit_interval": "2s"}
    return document


def short_tiers(document: dict[str, Any]) -> dict[str, Any]:
    """Spans and logs move to warm 10 s after their hour ends (the load stamps them two hours
    back); a moved file's local copy goes 30 s later."""
    short = {"hot_for": 10, "warm_for": 30 * 86400, "cold_for": 60 * 86400}
    document["lifecycle"] |= {"grace": 30, "policies": dict.fromkeys(TIERED, short)}
    return document


# -- load: the SDK's own exporters, each export's outcome booked by unique id ------------------
@dataclass
class Ledger:
    """What the SDK reported per signal: ids acknowledged, ids failed (thread-safe)."""

    acked: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SIGNALS})
    failed: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def book(self, signal_name: str, ids: list[str], ok: bool) -> None:
        with self.lock:
            if ok:
                self.acked[signal_name].extend(ids)
            else:
                self.failed[signal_name] += len(ids)


def _span_ids(batch: Sequence[Any]) -> list[str]:
    return [str(span.attributes[ID]) for span in batch]


def _log_ids(batch: Sequence[Any]) -> list[str]:
    return [str(getattr(item, "log_record", item).attributes[ID]) for item in batch]


def _point_ids(data: Any) -> list[str]:
    return [
        str(point.attributes[ID])
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]


def booking(base: type, signal_name: str, ids: Callable[[Any], list[str]], ledger: Ledger) -> type:
    """`base` (an SDK exporter class) booking each export's ids as acknowledged or failed."""

    class Booking(base):
        def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
            result = super().export(batch, *args, **kwargs)
            ledger.book(signal_name, ids(batch), result.name == "SUCCESS")
            return result

    return Booking


def batching(processor: type, exporter: Any, timeout: float) -> Any:
    """The SDK's batching processor, with a queue that never drops an item during an outage (an
    item dropped unexported would be neither acknowledged nor failed) and the exporter's deadline."""
    return processor(
        exporter,
        schedule_delay_millis=200,
        max_queue_size=1_000_000,
        export_timeout_millis=timeout * 1000,
    )


class Load:
    """Spans (gRPC), metric points (HTTP, delta counters: one series per id) and log lines (gRPC)
    at `rate` items per second each, through the SDK's batching processors and readers. `timeout`
    is the exporters' (OTEL_EXPORTER_OTLP_TIMEOUT); spans and log lines are stamped `backdate_s`
    in the past (metric points cannot be: the SDK stamps them), so that they land in an older hour."""

    def __init__(
        self,
        config: TalonflowConfig,
        rate: float,
        ledger: Ledger,
        timeout: float = EXPORT_TIMEOUT_S,
        backdate_s: float = 0.0,
    ) -> None:
        grpc = f"http://{config.receiver.grpc.address}"
        resource = Resource.create({"service.name": "chaos-agent", "service.instance.id": "chaos-1"})
        spans = booking(OTLPSpanExporter, "spans", _span_ids, ledger)
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            batching(BatchSpanProcessor, spans(endpoint=grpc, insecure=True, timeout=timeout), timeout)
        )
        metrics = booking(OTLPMetricExporter, "metrics", _point_ids, ledger)
        exporter = metrics(
            endpoint=f"http://{config.receiver.http.address}/v1/metrics",
            timeout=timeout,
            preferred_temporality={CounterInstrument: AggregationTemporality.DELTA},
        )
        reader = PeriodicExportingMetricReader(
            exporter, export_interval_millis=500, export_timeout_millis=timeout * 1000
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        logs = booking(OTLPLogExporter, "logs", _log_ids, ledger)
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(
            batching(BatchLogRecordProcessor, logs(endpoint=grpc, insecure=True, timeout=timeout), timeout)
        )
        self.rate, self.backdate_ns = rate, int(backdate_s * 1e9)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-load")

    def _run(self) -> None:
        tracer = self.tracer_provider.get_tracer("talonflow.chaos")
        counter = self.meter_provider.get_meter("talonflow.chaos").create_counter("chaos.items")
        logger = self.logger_provider.get_logger("talonflow.chaos")
        started, sent = time.monotonic(), 0
        while not self.stop.is_set():
            stamp = time.time_ns() - self.backdate_ns
            tracer.start_span("chaos_step", attributes={ID: f"s{sent}"}, start_time=stamp).end(stamp)
            counter.add(1, {ID: f"m{sent}"})
            logger.emit(body=f"chaos step {sent}", attributes={ID: f"l{sent}"}, timestamp=stamp)
            sent += 1
            self.stop.wait(max(0.0, started + sent / self.rate - time.monotonic()))

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """Stop making items, then let the SDK flush (and retry) what it still holds."""
        self.stop.set()
        self.thread.join()
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            provider.shutdown()


# -- faults: kill -9 a supervised part, time its way back to healthy -------------------------
def kill_and_time(stack: Stack, name: str, timeout: float = 180) -> float | None:
    """SIGKILL the part's process group (a crash of the whole part, children included); seconds
    until supervisord runs a new process whose health check passes, None if it never does (or
    the part was not running to begin with: killpg(0) would kill this harness's own group)."""
    before = next(p for p in stack.process_info() if p["name"] == name)
    old = before["pid"]
    if before["statename"] != "RUNNING" or not old:
        return None
    killed = time.monotonic()
    os.killpg(old, signal.SIGKILL)
    while time.monotonic() - killed < timeout:
        info = next(p for p in stack.process_info() if p["name"] == name)
        if info["statename"] == "FATAL":
            return None
        restarted = info["statename"] == "RUNNING" and info["pid"] not in (0, old)
        if restarted and part_problem(stack.config, name, info["pid"]) is None:
            return time.monotonic() - killed
        time.sleep(0.2)
    return None


# -- verdict: Polars over the Parquet datasets -------------------------------------------------
def hot_file(stem: str) -> bool:
    """A file the sink wrote (`<topic>-<partition>-<first offset>-<last offset>`), not a MinIO
    object the lifecycle mover compacted (named by its content's hash)."""
    return len(stem.rsplit("-", 3)) == 4


def replayed(files: list[str]) -> bool:
    """Whether two copies of an item come from overlapping Kafka offset ranges of one partition
    (the same record written twice: the pipeline's fault), rather than from two records (the SDK
    sent the request again after the receiver died before answering: OTLP is at least once)."""
    ranges = [stem.rsplit("-", 3) for stem in files if hot_file(stem)]
    return any(
        a[:2] == b[:2] and int(a[2]) <= int(b[3]) and int(b[2]) <= int(a[3])
        for i, a in enumerate(ranges)
        for b in ranges[i + 1 :]
    )


def rollup_points_doubled(config: TalonflowConfig) -> int:
    """Series of the load's counter (one per id, one point each) whose 1m rollups folded more than
    one point: a resend counted twice inside an open window, which window counts cannot see."""

    def doubled(frame: pl.LazyFrame) -> pl.LazyFrame:
        ids = frame.select(pl.col("attributes").map.get(ID).alias("id"), "points").drop_nulls("id")
        return ids.group_by("id").agg(pl.col("points").sum()).filter(pl.col("points") > 1).select(pl.len())

    return int(tiered(config, "rollups_1m", doubled).item())


def resends_dropped(config: TalonflowConfig) -> tuple[int, int]:
    """(records, items) the flows dropped as an SDK's resends, from their dead letters."""

    def resent(frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.filter(pl.col("reason").str.starts_with("resent")).select(
            pl.len(), pl.col("items").sum()
        )

    records, items = tiered(config, "dead_letters", resent).row(0)
    return int(records), int(items or 0)


def rollup_duplicates(config: TalonflowConfig) -> int:
    """Rollup rows beyond the first per (series, window, resolution), over all resolutions."""

    def extra(frame: pl.LazyFrame) -> pl.LazyFrame:
        keys = frame.group_by("series_id", "window_start", "resolution").len("n")
        return keys.select((pl.col("n") - 1).sum())

    return sum(int(tiered(config, dataset, extra).item() or 0) for dataset in ROLLUPS)


def row_total(config: TalonflowConfig) -> int:
    return sum(int(tiered(config, d, lambda f: f.select(pl.len())).item()) for d in (*SIGNALS, *ROLLUPS))


def quiesce(
    config: TalonflowConfig, ledger: Ledger, counts: WaysInCounts, quiet: float, timeout: float
) -> None:
    """Until every acknowledged id (and every remote-written sample and tailed line) has landed
    and the row count has stood still for `quiet` seconds (a replay's duplicates would land within
    that), or `timeout` seconds passed."""
    started = time.monotonic()
    last, still_since = -1, time.monotonic()
    while time.monotonic() - started < timeout:
        total = row_total(config)
        if total != last:
            last, still_since = total, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            landed = {s: set(landed_ids(config, s)["id"]) for s in SIGNALS}
            ways = [d for d in ways_in_deliveries(config, counts) if d.way != SCRAPES]
            if all(set(ledger.acked[s]) <= landed[s] for s in SIGNALS) and not any(d.missing for d in ways):
                return
        time.sleep(1)


@dataclass
class Verdict:
    """Counts by unique id, per signal; any lost or doubled item (or rollup window) fails the run."""

    acked: dict[str, int]
    failed: dict[str, int]
    lost: dict[str, int]
    duplicated: dict[str, int]
    resent: dict[str, int]  # of the duplicated: two Kafka records (the request was sent twice)
    rollup_duplicates: int
    rollup_points_doubled: int = 0
    resends_dropped: tuple[int, int] = (0, 0)  # (records, items) the flows recognised as resends
    ways_in: list[Delivery] = field(default_factory=list)  # remote-write, tailed lines, scrapes
    scrape_gaps: list[str] = field(default_factory=list)  # gaps in `up` that no outage explains
    moved: dict[str, int] = field(default_factory=dict)  # ids counted in a MinIO object (warm or cold)

    @property
    def clean(self) -> bool:
        doubled = any(self.duplicated.values()) or self.rollup_duplicates or self.rollup_points_doubled
        doubled = doubled or any(d.duplicated for d in self.ways_in)
        lost = any(self.lost.values()) or any(d.missing for d in self.ways_in) or self.scrape_gaps
        return not lost and not doubled


def unexplained_gaps(times: list[datetime], outages: list[Outage], every: float, slack: float) -> list[str]:
    """Gaps between scrapes longer than two intervals that no outage of the scraper or Kafka
    (until `slack` seconds after it) overlaps."""
    found = []
    for before, after in itertools.pairwise(times):
        start, end = before.timestamp(), after.timestamp()
        if end - start <= 2 * every:
            continue
        if not any(o.part in SCRAPE_GAP_PARTS and o.killed < end and o.back + slack > start for o in outages):
            found.append(f"{before:%H:%M:%S}-{after:%H:%M:%S}")
    return found


def verdict(config: TalonflowConfig, ledger: Ledger, counts: WaysInCounts, outages: list[Outage]) -> Verdict:
    lost, duplicated, resent, acked, moved = {}, {}, {}, {}, {}
    for name in SIGNALS:
        landed = landed_ids(config, name)
        moved[name] = sum(any(not hot_file(f) for f in files) for files in landed["files"])
        sent = set(ledger.acked[name])
        acked[name] = len(sent)
        lost[name] = len(sent - set(landed["id"]))
        doubled = landed.filter(pl.col("n") > 1)
        duplicated[name] = doubled.height
        resent[name] = sum(not replayed(files) for files in doubled["files"])
    return Verdict(
        acked,
        dict(ledger.failed),
        lost,
        duplicated,
        resent,
        rollup_duplicates(config),
        rollup_points_doubled(config),
        resends_dropped(config),
        ways_in_deliveries(config, counts),
        unexplained_gaps(
            scrape_times(config, counts.scrape_window)["k0"].to_list(),
            outages,
            SCRAPE_EVERY.total_seconds(),
            EXPORT_TIMEOUT_S,
        ),
        moved,
    )


def render(rounds: int, recoveries: dict[str, list[float | None]], result: Verdict) -> str:
    lines = [f"rounds: {rounds}", "", f"{'part':<12}{'kills':>6}{'recovered':>10}{'p50 s':>8}{'p99 s':>8}"]
    for part, times in sorted(recoveries.items()):
        done = [t for t in times if t is not None]
        p50 = f"{nearest_rank(done, 0.5):.1f}" if done else "-"
        p99 = f"{nearest_rank(done, 0.99):.1f}" if done else "-"
        lines.append(f"{part:<12}{len(times):>6}{len(done):>10}{p50:>8}{p99:>8}")
    lines += ["", f"{'signal':<12}{'acked':>8}{'failed':>8}{'lost':>6}{'duplicated':>12}{'resent':>8}"]
    for name in SIGNALS:
        failed = result.failed.get(name, 0)
        row = f"{result.acked[name]:>8}{failed:>8}{result.lost[name]:>6}{result.duplicated[name]:>12}"
        lines.append(f"{name:<12}{row}{result.resent[name]:>8}")
    lines.append(f"{'rollups':<12}{'-':>8}{'-':>8}{'-':>6}{result.rollup_duplicates:>12}{'-':>8}")
    lines.append(f"{'rollup_pts':<12}{'-':>8}{'-':>8}{'-':>6}{result.rollup_points_doubled:>12}{'-':>8}")
    records, items = result.resends_dropped
    lines += ["", f"resends dropped by the flows (dead_letters): {records} records, {items} items"]
    lines += ["", f"{'way in':<14}{'sent':>9}{'landed':>9}{'missing':>8}{'duplicated':>11}"]
    for d in result.ways_in:
        lines.append(f"{d.way:<14}{d.sent:>9}{d.landed:>9}{d.missing:>8}{d.duplicated:>11}")
    moved = ", ".join(f"{name} {n}" for name, n in result.moved.items())
    lines.append("")
    lines.append(f"ids counted in MinIO objects (moved by the lifecycle mover): {moved}")
    gaps = ", ".join(result.scrape_gaps) or "none"
    lines.append(f"scrape gaps no outage of {' or '.join(SCRAPE_GAP_PARTS)} explains: {gaps}")
    return "\n".join(lines)


def victims(parts: list[str], rounds: int, seed: int) -> list[str]:
    """Which part dies each round: shuffled decks of all parts dealt one after the other, so that
    every part dies once per len(parts) rounds (20 rounds over 9 parts: each at least twice)."""
    chooser = random.Random(seed)
    order: list[str] = []
    while len(order) < rounds:
        deck = list(parts)
        chooser.shuffle(deck)
        order += deck
    return order[:rounds]


def run(args: argparse.Namespace, folder: Path) -> int:
    config_file = folder / "chaos.yaml"
    ledger = Ledger()
    recoveries: dict[str, list[float | None]] = {}
    outages: list[Outage] = []
    document = short_tiers(chaos_settings(folder, args.brokers))
    rule_files = document["alerts"]["rule_files"]
    document.update(alerting_settings(folder, BASE_PORT + HOOK_PORT, AGENTS))
    document.update(
        ways_in_settings(
            folder, BASE_PORT + TARGET_PORT, BASE_PORT + SCRAPER_OPS_PORT, 1, BASE_PORT + TAILER_OPS_PORT
        )
    )
    document["alerts"]["rule_files"] = rule_files + document["alerts"]["rule_files"]
    hook = Webhook(BASE_PORT + HOOK_PORT)
    try:
        with bench_stack(config_file, document) as stack, ExitStack() as ways:
            parts = sorted(p.name for p in stack.programs())
            schedule = Schedule(time.time() + STARTUP_GRACE_S + 5, AGENTS)  # heartbeats judge by then
            loads: list[Load | Flipper | Beaters] = [
                Load(stack.config, args.rate, ledger, backdate_s=BACKDATE_S),
                Flipper(stack.config, schedule, EXPORT_TIMEOUT_S),
                Beaters(stack.config, schedule, EXPORT_TIMEOUT_S),
            ]
            for load in loads:
                load.start()
            counts = ways.enter_context(
                ways_in_load(
                    stack.config, folder, BASE_PORT + TARGET_PORT, args.rate, ROTATE_S, REMOTE_WRITE_GIVE_UP_S
                )
            )
            load_started = datetime.now(UTC)
            try:
                for round_number, part in enumerate(victims(parts, args.rounds, args.seed), start=1):
                    time.sleep(args.every)
                    killed = time.time()
                    took = kill_and_time(stack, part)
                    recoveries.setdefault(part, []).append(took)
                    outages.append(Outage(part, killed, time.time()))
                    state = f"back in {took:.1f}s" if took is not None else "DID NOT RECOVER"
                    print(f"round {round_number}: killed {part}, {state}", file=sys.stderr, flush=True)
                time.sleep(args.after)
            finally:
                stopped = time.time()
                for load in loads:
                    load.finish()
                ways.close()  # remote-write's last retries end, the file stops growing
            counts.scrape_window = (load_started, datetime.fromtimestamp(stopped, UTC))
            quiesce(stack.config, ledger, counts, quiet=args.quiet, timeout=args.settle)
            result = verdict(stack.config, ledger, counts, outages)
            alerting = alerting_verdict(stack.config.data_dir, hook, schedule, stopped, outages)
    finally:
        hook.close()
    if args.keep:  # what the webhook received, beside the logs and data, for a second look
        arrivals = [dataclasses.asdict(a) for a in hook.received()]
        (folder / "notifications.json").write_text(
            json.dumps(
                {
                    "outages": [dataclasses.asdict(o) for o in outages],
                    "stopped": stopped,
                    "t0": schedule.t0,
                    "arrivals": arrivals,
                }
            )
        )
    print(render(args.rounds, recoveries, result), flush=True)
    print("\n".join(render_alerting(alerting)), flush=True)
    unrecovered = any(t is None for times in recoveries.values() for t in times)
    return 0 if result.clean and alerting.clean and not unrecovered else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="kills, one per round")
    parser.add_argument("--every", type=float, default=15, help="seconds of load before each kill")
    parser.add_argument("--seed", type=int, default=1, help="chooses which part dies each round")
    parser.add_argument("--rate", type=float, default=20, help="items per second, of each signal")
    parser.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="Kafka brokers: only changes the config document written (kafka.brokers, bootstrap list)",
    )
    parser.add_argument(
        "--after", type=float, default=25, help="seconds of load after the last round: episodes to count"
    )
    parser.add_argument("--quiet", type=float, default=15, help="seconds without new rows: quiescence")
    parser.add_argument("--settle", type=float, default=240, help="longest wait for quiescence, seconds")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (logs, data) afterwards")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.every <= 0 or args.rate <= 0 or args.brokers < 1 or args.after < 0:
        parser.error(
            "--rounds, --brokers must be at least 1; --every and --rate above 0; --after not below 0"
        )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="talonflow-chaos-") as folder:
        return run(args, Path(folder))


if __name__ == "__main__":
    sys.exit(main())

"""Faults beyond kill -9, each on its own private stack under steady OTel SDK load, counted by id.

    python -m bench.faults --kafka-away 60 --minio-away 600 --disk-full 60

- kafka: every broker is stopped through supervisord and kept down, then started again. The
  exporters are set up as the README says (OTEL_EXPORTER_OTLP_TIMEOUT=120): none may give up on
  an item, every item it reported exported must be in Parquet once, and the receiver may only
  answer retryable codes.
- minio: MinIO is stopped while the lifecycle mover runs with short tier ages (spans and log
  lines are stamped two hours back, so that their hour is due). No hot file may vanish unless a
  verified copy was recorded before MinIO went; once it is back, every hot file left then moves;
  every stored object matches its size and SHA-256; queries across tiers see each item once.
- disk: the data dir is a small tmpfs, filled to the last byte while the load runs, and the ingest
  flow is killed with SIGKILL while it is full. Ingest must not commit what it could not write
  (the bytewax recovery store's frontier stands still), leave no temp or unreadable Parquet file,
  log the full disk, and resume by itself once the filler is deleted: every acknowledged item
  once. Needs root for `mount -t tmpfs`; otherwise the scenario says why and is skipped.
- clock (not run unless named, `--scenarios clock`): the host's wall clock is stepped
  `--clock-step` seconds ahead, and `--clock-hold` seconds later back to the true time (a step
  back), under the load plus a beating heartbeat agent and a gauge whose alert fires and stays
  firing (bench/chaos_alerts.py's, on a schedule that never ends). Every acknowledged item once,
  no dead letter, no rollup window twice, no verdict other than up for the beating agent, and,
  for a step shorter than PromQL's 5 min lookback, the alert pending and firing once and never
  resolved; every flow exits on the step back and is restarted (flows/clock_watch.py). It steps
  the clock of every process on the host (bench/host_clock.py puts it back by the monotonic time
  elapsed): run it alone. Needs root or CAP_SYS_TIME; otherwise it is skipped.

The load and the id checks are bench/chaos.py's (Load, Ledger, kill_and_time), counted here
across tiers (talonflow.query), since the lifecycle moves rows out of the local files. Each
scenario runs on ports 28500-28999 in a temp folder. Exit 1 on any loss, duplicate, failed check
or part that did not come back.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families

from bench.chaos import (
    BACKDATE_S,
    HOOK_PORT,
    SIGNALS,
    TIERED,
    Ledger,
    Load,
    chaos_settings,
    kill_and_time,
    rollup_duplicates,
    short_tiers,
)
from bench.chaos_alerts import ALERT, STARTUP_GRACE_S, Beaters, Flipper, Schedule, transitions
from bench.chaos_alerts import settings as alerting_settings
from bench.host_clock import HostClock, host_clock, settable
from bench.landed import landed_ids, tiered
from bench.stack import bench_stack
from bench.webhook import Webhook
from flows.clock_watch import STEP_BACK_S
from promql.engine import DEFAULT_LOOKBACK_MS
from schemas.config import TalonflowConfig
from sinks.tiers import Manifest, minio_client
from talonflow.stack import FLOWS, Stack, broker_names

PORT_BASE = 28500  # H4's range, 28500-28999: apart from chaos (27000) and the tests' stack
TEST_PORT_BASE = 28510  # the tests' scenarios: every port 10 from a bench run's, so both can run
README_TIMEOUT_S = 120  # OTEL_EXPORTER_OTLP_TIMEOUT as the README advises, for a Kafka outage
RETRYABLE = ("unavailable", "overloaded")  # the receiver's outcome labels of UNAVAILABLE / 429-503
SCENARIOS = ("kafka", "minio", "disk", "clock")
DEFAULT_SCENARIOS = ("kafka", "minio", "disk")  # clock steps the whole host's clock: only when named


@dataclass
class Outcome:
    """One scenario's row: counts by id over the signals, and every other check it made."""

    scenario: str
    fault_s: float = 0.0
    acked: int = 0
    sdk_failed: int = 0  # items the SDK gave up on and dropped: lost to the agent, a failure too
    lost: int = 0  # acknowledged, absent
    duplicated: int = 0  # ids with more than one row
    retryable: int = 0  # UNAVAILABLE / RESOURCE_EXHAUSTED (503 / 429) answers
    refused: int = 0  # any other non-OK answer
    recovered_s: float | None = None
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # figures that pass or fail nothing
    skipped: str = ""

    def check(self, ok: bool, what: str) -> None:
        (self.checks if ok else self.problems).append(what)

    @property
    def clean(self) -> bool:
        return self.skipped != "" or (
            not self.lost and not self.duplicated and not self.sdk_failed and not self.problems
            and not self.refused and self.recovered_s is not None
        )  # fmt: skip


# -- observing the stack --------------------------------------------------------------------------
def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A part's Prometheus /metrics, {} when it does not answer (it may be the part that is down)."""
    try:
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def answers(config: TalonflowConfig) -> Counter[str]:
    """The receiver's answers so far, by outcome."""
    counts: Counter[str] = Counter()
    for (name, labels), value in scrape(config.receiver.ops.address).items():
        if name == "talonflow_receiver_requests_total":
            counts[dict(labels)["outcome"]] += int(value)
    return counts


def lifecycle_gauge(config: TalonflowConfig, name: str) -> float | None:
    samples = [v for (n, _), v in scrape(config.lifecycle.ops.address).items() if n == name]
    return sum(samples) if samples else None


def ready(config: TalonflowConfig) -> bool:
    try:
        return urllib.request.urlopen(f"http://{config.receiver.ops.address}/readyz", timeout=2).status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `predicate` holds, None if it did not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def id_counts(config: TalonflowConfig, dataset: str) -> dict[str, int]:
    """Rows per unique id across all tiers (bench/landed.py)."""
    landed = landed_ids(config, dataset)
    return dict(zip(landed["id"].to_list(), landed["n"].to_list(), strict=True))


def acked_so_far(ledger: Ledger) -> dict[str, set[str]]:
    """The ids the SDK reported exported until now, per signal."""
    with ledger.lock:
        return {name: set(ledger.acked[name]) for name in SIGNALS}


def in_parquet(config: TalonflowConfig, acked: dict[str, set[str]]) -> bool:
    """Whether every one of these ids is in Parquet (any tier)."""
    return all(acked[name] <= id_counts(config, name).keys() for name in SIGNALS)


def all_landed(config: TalonflowConfig, ledger: Ledger) -> bool:
    return in_parquet(config, acked_so_far(ledger))


def settle(config: TalonflowConfig, ledger: Ledger, quiet: float, timeout: float) -> None:
    """Until every acknowledged id is visible and the counts stood still for `quiet` seconds (a
    replay's doubles would land within that), or `timeout` passed; the count then says what's off."""
    started, last, still_since = time.monotonic(), None, time.monotonic()
    while time.monotonic() - started < timeout:
        counts = {name: sum(id_counts(config, name).values()) for name in SIGNALS}
        if counts != last:
            last, still_since = counts, time.monotonic()
        elif time.monotonic() - still_since >= quiet and all_landed(config, ledger):
            return
        time.sleep(1)


def tally(outcome: Outcome, config: TalonflowConfig, ledger: Ledger) -> None:
    for name in SIGNALS:
        counts = id_counts(config, name)
        acked = set(ledger.acked[name])
        outcome.acked += len(acked)
        outcome.lost += len(acked - counts.keys())
        outcome.duplicated += sum(1 for n in counts.values() if n > 1)
    outcome.sdk_failed = sum(ledger.failed.values())


def tally_answers(outcome: Outcome, before: Counter[str], after: Counter[str]) -> None:
    change = after - before
    outcome.retryable = sum(change[o] for o in RETRYABLE)
    outcome.refused = sum(n for o, n in change.items() if o not in (*RETRYABLE, "ok"))


@contextlib.contextmanager
def loaded(stack: Stack, rate: float, ledger: Ledger, backdate_s: float = 0.0) -> Iterator[Load]:
    """The SDK load for the body of the block; on leaving it the SDK flushes what it still holds."""
    load = Load(stack.config, rate, ledger, timeout=README_TIMEOUT_S, backdate_s=backdate_s)
    load.start()
    try:
        yield load
    finally:
        load.finish()


def finish(outcome: Outcome, stack: Stack, ledger: Ledger, args: argparse.Namespace) -> None:
    """After the load: wait for quiescence, count, and require every part healthy."""
    settle(stack.config, ledger, quiet=args.quiet, timeout=args.settle)
    tally(outcome, stack.config, ledger)
    down = [p["name"] for p in stack.process_info() if p["statename"] != "RUNNING"]
    outcome.check(not down, f"every part running at the end{f' (not: {down})' if down else ''}")


# -- kafka away ----------------------------------------------------------------------------------
def kafka_away(stack: Stack, args: argparse.Namespace) -> Outcome:
    outcome, ledger, config = Outcome("kafka"), Ledger(), stack.config
    supervisor = stack.rpc().supervisor
    before = answers(config)
    with loaded(stack, args.rate, ledger):
        time.sleep(args.warmup)
        stopped = time.monotonic()
        for broker in broker_names(config):
            supervisor.stopProcess(broker)
        outcome.check(
            wait_until(lambda: not ready(config), 30) is not None, "/readyz red while Kafka is away"
        )
        time.sleep(max(0.0, args.kafka_away - (time.monotonic() - stopped)))
        outcome.fault_s = time.monotonic() - stopped
        for broker in broker_names(config):
            supervisor.startProcess(broker)
        outcome.recovered_s = wait_until(lambda: ready(config), 300)
        time.sleep(args.warmup)
    tally_answers(outcome, before, answers(config))
    finish(outcome, stack, ledger, args)
    return outcome


# -- minio away ----------------------------------------------------------------------------------
def hot_paths(data_dir: Path) -> set[Path]:
    return {p for name in TIERED for p in (data_dir / name).glob("date=*/hour=*/*.parquet")}


def moved_names(data_dir: Path) -> set[tuple[str, str]]:
    """(dataset, file name) of every local file a recorded, verified copy replaced."""
    return {
        (name, moved)
        for name in TIERED
        for entry in Manifest.load(data_dir, name).partitions.values()
        for moved in entry.moved
    }


class Vanishing:
    """Watches the hot files of the tiered datasets: when each one disappeared."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.gone_at = data_dir, dict[Path, float]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vanishing", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seen: set[Path] = set()
        while not self._stop.wait(0.5):
            now = hot_paths(self.data_dir)
            for path in seen - now:
                self.gone_at[path] = time.monotonic()
            seen = now

    def between(self, start: float, end: float) -> set[Path]:
        return {p for p, at in self.gone_at.items() if start <= at <= end}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def objects_verified(config: TalonflowConfig, folder: Path) -> tuple[int, list[str]]:
    """Every object the manifests list: (how many, those whose size or SHA-256 is not as stored)."""
    client, bad, total = minio_client(config.minio), [], 0
    for name in TIERED:
        for entry in Manifest.load(config.data_dir, name).partitions.values():
            for stored in entry.objects:
                total += 1
                local = folder / "object.parquet"
                client.fget_object(config.minio.bucket, stored.key, str(local))
                stat = client.stat_object(config.minio.bucket, stored.key)
                digest = hashlib.sha256(local.read_bytes()).hexdigest()
                wanted = (stat.metadata or {}).get("x-amz-meta-sha256")
                if local.stat().st_size != stored.bytes or digest != wanted:
                    bad.append(stored.key)
    return total, bad


def minio_away(stack: Stack, args: argparse.Namespace) -> Outcome:
    outcome, ledger, config = Outcome("minio"), Ledger(), stack.config
    supervisor, data = stack.rpc().supervisor, config.data_dir
    before = answers(config)
    watcher = Vanishing(data)
    try:
        with loaded(stack, args.rate, ledger, backdate_s=BACKDATE_S):
            moved_once = wait_until(lambda: len(moved_names(data)) > 0, 300)
            outcome.check(moved_once is not None, "the mover moved files before the outage")
            time.sleep(args.warmup)
            copied_before = moved_names(data)
            stopped = time.monotonic()
            supervisor.stopProcess("minio")
            store_down = wait_until(lambda: lifecycle_gauge(config, "talonflow_lifecycle_store_up") == 0, 120)
            outcome.check(store_down is not None, "talonflow_lifecycle_store_up 0 while MinIO is away")
            time.sleep(max(0.0, args.minio_away - (time.monotonic() - stopped)))
            overdue = lifecycle_gauge(config, "talonflow_lifecycle_overdue_hot_bytes") or 0
            outcome.check(overdue > 0, f"overdue hot bytes grew while away ({overdue:,.0f} B)")
            outcome.fault_s = time.monotonic() - stopped
            restarted = time.monotonic()
            left_hot = {(p.parent.parent.parent.name, p.name) for p in hot_paths(data)}
            supervisor.startProcess("minio")
            outcome.recovered_s = wait_until(lambda: left_hot <= moved_names(data), 600)
            outcome.check(outcome.recovered_s is not None, f"all {len(left_hot)} hot files left then moved")
            time.sleep(args.warmup)
        gone = watcher.between(stopped, restarted)
        uncopied = sorted(p.name for p in gone if (p.parent.parent.parent.name, p.name) not in copied_before)
        outcome.check(
            not uncopied,
            f"{len(gone)} hot files deleted while away, each copied and verified before"
            + (f"; NOT copied: {uncopied[:5]}" if uncopied else ""),
        )
    finally:
        watcher.stop()
    tally_answers(outcome, before, answers(config))
    finish(outcome, stack, ledger, args)
    with tempfile.TemporaryDirectory(prefix="talonflow-faults-verify-") as scratch:
        total, bad = objects_verified(config, Path(scratch))
    outcome.check(not bad and total > 0, f"{total} stored objects read back with their size and SHA-256")
    return outcome


# -- data disk full ------------------------------------------------------------------------------
def mount_tmpfs(folder: Path, size: str) -> str:
    """Mount a tmpfs of `size` on `folder`; "" when done, else why it cannot be."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if mount.returncode == 0 else f"mount -t tmpfs not permitted: {mount.stderr.strip()}"


def fill(data_dir: Path) -> Path:
    """A file that takes every free byte of the data disk (unbuffered: a short write is kept)."""
    filler = data_dir / "filler.bin"
    with filler.open("wb", buffering=0) as handle:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * size)
    return filler


def committed_epoch(stack: Stack, flow: str) -> int:
    """The epoch a restart of the flow resumes from: the bytewax recovery store's frontier (the
    lowest worker's) of the latest execution that recorded one. It moves only when an epoch has
    closed on every step, the sink's snapshot (its writes) included."""
    fronts: dict[int, list[int]] = {}
    for store in sorted(stack.recovery_dir(flow).glob("*.sqlite3")):
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            for execution, frontier in db.execute("SELECT ex_num, worker_frontier FROM fronts"):
                fronts.setdefault(int(execution), []).append(int(frontier))
    return max((min(frontiers) for frontiers in fronts.values()), default=-1)


def unreadable(data_dir: Path) -> list[str]:
    """Parquet files (and left-over temp files) a reader would choke on."""
    bad = [str(p) for p in data_dir.glob("*/date=*/hour=*/.*.tmp")]
    for path in data_dir.glob("*/date=*/hour=*/*.parquet"):
        try:
            pq.read_table(path)
        except Exception as err:  # any reader error is the finding
            bad.append(f"{path}: {err}")
    return bad


def disk_full(stack: Stack, args: argparse.Namespace) -> Outcome:
    outcome, ledger, config = Outcome("disk"), Ledger(), stack.config
    data = config.data_dir
    before = answers(config)
    with loaded(stack, args.rate, ledger):
        landed = wait_until(lambda: bool(ledger.acked["spans"]) and all_landed(config, ledger), 300)
        outcome.check(landed is not None, "items landed before the disk filled")
        filler = fill(data)
        filled = time.monotonic()
        time.sleep(min(10.0, args.disk_full / 3))  # an epoch in flight when it filled may still commit
        committed = committed_epoch(stack, "ingest")
        killed = kill_and_time(stack, "ingest")
        outcome.check(killed is not None, "ingest, killed -9 while the disk is full, came back")
        time.sleep(max(0.0, args.disk_full - (time.monotonic() - filled)))
        now_committed = committed_epoch(stack, "ingest")
        outcome.check(
            now_committed == committed,
            f"ingest committed nothing while the disk was full (epoch {committed} -> {now_committed})",
        )
        broken = unreadable(data)
        outcome.check(
            not broken, f"no temp or unreadable Parquet file while full{f': {broken[:3]}' if broken else ''}"
        )
        said = "data disk full" in (stack.logs / "ingest.log").read_text(errors="replace")
        outcome.check(said, "ingest.log says 'data disk full'")
        outcome.fault_s = time.monotonic() - filled
        acked_then = acked_so_far(ledger)
        filler.unlink()
        outcome.recovered_s = wait_until(lambda: in_parquet(config, acked_then), 600)
        time.sleep(args.warmup)
    tally_answers(outcome, before, answers(config))
    finish(outcome, stack, ledger, args)
    broken = unreadable(data)
    outcome.check(not broken, "every Parquet file reads after the disk freed")
    return outcome


# -- the host's clock stepped ------------------------------------------------------------------
def steady_schedule() -> Schedule:
    """bench/chaos_alerts.py's schedule with one episode that outlasts the run: the gauge reads 1
    from the start (its alert fires once and stays firing) and the beat agent is never silent."""
    forever = 1e9
    return Schedule(time.time() - 1, agents=1, period=forever, high=forever, low=0.0, silent=0.0)


def steady_settings(document: dict[str, Any], folder: Path, hook_port: int) -> dict[str, Any]:
    """The gauge's rule file beside the stack's, the beat agent's component, the webhook route."""
    steady = alerting_settings(folder, hook_port, agents=1)
    steady["alerts"]["rule_files"] = document["alerts"]["rule_files"] + steady["alerts"]["rule_files"]
    return document | steady


def late_points(config: TalonflowConfig) -> int:
    """Points the rollups flow counted as late or out of order instead of folding them."""
    return int(tiered(config, "late_points", lambda f: f.select(pl.col("points").sum())).item() or 0)


def dead_letters(config: TalonflowConfig) -> int:
    return int(tiered(config, "dead_letters", lambda f: f.select(pl.len())).item())


def clock_step(stack: Stack, args: argparse.Namespace) -> Outcome:
    outcome, ledger, config = Outcome("clock"), Ledger(), stack.config
    schedule = steady_schedule()
    agents = (Flipper(config, schedule, README_TIMEOUT_S), Beaters(config, schedule, README_TIMEOUT_S))
    hook = Webhook(args.port_base + HOOK_PORT)
    before = answers(config)
    try:
        with loaded(stack, args.rate, ledger), host_clock() as clock:
            for agent in agents:
                agent.start()
            try:
                stepped_at = step_and_back(clock, args)
                outcome.fault_s = time.monotonic() - stepped_at
                acked_then = acked_so_far(ledger)
                outcome.recovered_s = wait_until(lambda: in_parquet(config, acked_then), 300)
                time.sleep(args.warmup)
                found, _ = transitions(config.data_dir, schedule, math.inf)  # before the agents stop
            finally:
                for agent in agents:
                    agent.finish()
    finally:
        hook.close()
    tally_answers(outcome, before, answers(config))
    finish(outcome, stack, ledger, args)
    judge_steady(outcome, found, hook, args.clock_step)
    if args.clock_step >= STEP_BACK_S:
        quiet = [
            f for f in FLOWS if "stepped back" not in (stack.logs / f"{f}.log").read_text(errors="replace")
        ]
        outcome.check(
            not quiet, f"every flow exited on the step back and was restarted (not: {quiet or 'none'})"
        )
    outcome.check(dead_letters(config) == 0, "no dead letter (every item within the time bounds)")
    doubled = rollup_duplicates(config)
    outcome.check(doubled == 0, f"no rollup window twice ({doubled} beyond the first)")
    outcome.notes.append(f"the rollups flow counted {late_points(config):,} points late or out of order")
    return outcome


def step_and_back(clock: HostClock, args: argparse.Namespace) -> float:
    """Once the agent is judged up and the alert fires: the clock `--clock-step` s ahead, and after
    `--clock-hold` s back to the true time. The monotonic time of the first step."""
    time.sleep(STARTUP_GRACE_S + args.warmup)
    stepped_at = time.monotonic()
    clock.step(args.clock_step)
    print(f"clock: stepped {args.clock_step:+g}s", file=sys.stderr, flush=True)
    time.sleep(args.clock_hold)
    clock.step(0.0)
    print(f"clock: stepped back to the true time after {args.clock_hold:g}s", file=sys.stderr, flush=True)
    return stepped_at


def judge_steady(outcome: Outcome, found: dict[str, Any], hook: Webhook, step_s: float) -> None:
    """The beat agent never late or down; the steady alert pending and firing once and never
    resolved. A step ahead past the lookback makes the gauge's last sample stale at the next
    evaluation, as in Prometheus (it evaluates on the wall clock): the alert then resolves and
    fires again, a note rather than a failure."""
    verdicts = {kind: dict(sum(found[kind].values(), Counter())) for kind in ("heartbeat", "HeartbeatDown")}
    outcome.check(
        not any(verdicts.values()), f"the beating agent stayed up (verdicts after its first: {verdicts})"
    )
    states = dict(sum(found["alert"].values(), Counter()))
    resolved = sum(
        1
        for a in hook.received()
        if a.alert["labels"].get("alertname") == ALERT and a.alert["status"] == "resolved"
    )
    told = f"{ALERT}: transitions {states}, {resolved} resolved notifications"
    if step_s * 1000 < DEFAULT_LOOKBACK_MS:
        outcome.check(states == {"pending": 1, "firing": 1} and resolved == 0, told)
    else:
        outcome.notes.append(f"{told} (a step past the {DEFAULT_LOOKBACK_MS // 1000}s lookback)")


# -- running ---------------------------------------------------------------------------------------
def run_scenario(name: str, args: argparse.Namespace, folder: Path) -> Outcome:
    """One scenario on a fresh private stack in `folder`."""
    document = chaos_settings(folder, args.brokers, base_port=args.port_base)
    if name == "minio":
        document = short_tiers(document)
    if name == "clock":
        why = settable()
        if why:
            return Outcome("clock", skipped=why)
        document = steady_settings(document, folder, args.port_base + HOOK_PORT)
    data = Path(document["data_dir"])
    if name == "disk":
        why = mount_tmpfs(data, args.disk_size)
        if why:
            return Outcome("disk", skipped=why)
    try:
        with bench_stack(folder / f"faults-{name}.yaml", document) as stack:
            scenarios = {"kafka": kafka_away, "minio": minio_away, "disk": disk_full, "clock": clock_step}
            return scenarios[name](stack, args)
    finally:
        if name == "disk":
            subprocess.run(["umount", "--lazy", str(data)], check=False)


def render(outcomes: list[Outcome]) -> str:
    head = f"{'scenario':<9}{'fault s':>8}{'acked':>7}{'sdk failed':>11}{'lost':>6}{'duplicated':>11}"
    lines = [head + f"{'retryable':>10}{'refused':>8}{'recovered s':>12}"]
    for o in outcomes:
        if o.skipped:
            lines.append(f"{o.scenario:<9}skipped: {o.skipped}")
            continue
        back = f"{o.recovered_s:.1f}" if o.recovered_s is not None else "never"
        row = f"{o.scenario:<9}{o.fault_s:>8.1f}{o.acked:>7}{o.sdk_failed:>11}{o.lost:>6}{o.duplicated:>11}"
        lines.append(row + f"{o.retryable:>10}{o.refused:>8}{back:>12}")
    for o in outcomes:
        lines += [f"  {o.scenario} ok: {c}" for c in o.checks] + [
            f"  {o.scenario} FAILED: {p}" for p in o.problems
        ]
        lines += [f"  {o.scenario} note: {n}" for n in o.notes]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parse.add_argument(
        "--scenarios", default=",".join(DEFAULT_SCENARIOS), help=f"comma-separated, of: {','.join(SCENARIOS)}"
    )
    parse.add_argument("--kafka-away", type=float, default=60, help="seconds every broker stays stopped")
    parse.add_argument("--minio-away", type=float, default=600, help="seconds MinIO stays stopped")
    parse.add_argument("--disk-full", type=float, default=60, help="seconds the data disk stays full")
    parse.add_argument("--disk-size", default="256m", help="the data dir's tmpfs size (mount -o size=)")
    parse.add_argument("--clock-step", type=float, default=120, help="seconds the clock jumps ahead")
    parse.add_argument("--clock-hold", type=float, default=60, help="seconds before it steps back")
    parse.add_argument("--rate", type=float, default=10, help="items per second, of each signal")
    parse.add_argument("--warmup", type=float, default=15, help="seconds of load before and after a fault")
    parse.add_argument("--brokers", type=int, default=1, help="Kafka brokers (kafka.brokers)")
    parse.add_argument("--quiet", type=float, default=10, help="seconds without new rows: quiescence")
    parse.add_argument("--settle", type=float, default=300, help="longest wait for quiescence, seconds")
    parse.add_argument("--port-base", type=int, default=PORT_BASE, help="ports from here to +499")
    parse.add_argument("--keep", type=Path, help="run in this folder and keep it (logs, data) afterwards")
    return parse


def main(argv: list[str] | None = None) -> int:
    parse = parser()
    args = parse.parse_args(argv)
    chosen = [s for s in args.scenarios.split(",") if s]
    if not chosen or set(chosen) - set(SCENARIOS):
        parse.error(f"--scenarios: choose among {', '.join(SCENARIOS)}")
    if (
        min(args.kafka_away, args.minio_away, args.disk_full, args.clock_hold, args.rate) <= 0
        or args.brokers < 1
    ):
        parse.error("fault durations and --rate must be above 0, --brokers at least 1")
    outcomes = []
    for name in chosen:
        if args.keep:
            folder = args.keep.resolve() / name
            folder.mkdir(parents=True, exist_ok=True)
            outcomes.append(run_scenario(name, args, folder))
        else:
            with tempfile.TemporaryDirectory(prefix=f"talonflow-faults-{name}-") as scratch:
                outcomes.append(run_scenario(name, args, Path(scratch)))
        print(render(outcomes[-1:]), file=sys.stderr, flush=True)
    print(render(outcomes), flush=True)
    return 0 if all(o.clean for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

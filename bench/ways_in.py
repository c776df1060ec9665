"""The ways in besides the OTel SDK, for the soak and chaos runs: a scrape target, remote-write
sent as Prometheus sends it, and a tailed log file; each counted so that what landed can be
checked against it, and each copy in Parquet beyond the first counted as duplicated.

Remote-write keeps a request and sends it again on a connection error, a 5xx or a 429 with
Prometheus' backoff (30 ms doubling to 5 s), as its queue manager does: a request answered 2xx is
acknowledged. Each request's samples carry one timestamp (ms), so (series, timestamp) is unique.
Every line written to the tailed file has a unique `request_id`, which the tailer keeps as an
attribute. A scrape has no acknowledgement (Prometheus too loses the scrapes of a restart), so
only its copies are checked, and gaps by the caller.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bench.landed import tiered
from bench.scrape import write_body
from schemas.config import TalonflowConfig
from tests.scrape_targets import seed_registry, serve_registry

TAILED = "bench-tailer"  # service.name of the tailed file's lines
SCRAPED = "bench-target"  # the scrape job: service.name of what it scrapes
WRITTEN = "wundr_queue_depth"  # bench.scrape's remote-write metric (job wundr; the seeds scrape one too)
LINE_ID = "request_id"  # a correlation key the tailer keeps as an attribute (tailer/records.py)
SCRAPE_EVERY = timedelta(seconds=5)
RW_SERIES = 100  # series per remote-write request, one request a second
_BACKOFF = (0.03, 5.0)  # Prometheus' remote-write min_backoff and max_backoff
SCRAPES = "scrapes (up)"  # the way in that counts scrapes, by their `up` samples


def ways_in_settings(
    folder: Path, target_port: int, scrape_ops_port: int, shards: int, tailer_port: int
) -> dict[str, Any]:
    """The config keys that run the scraper (on the target) and the tailer (on `folder/agent.log*`)."""
    return {
        "scrape": {"ops_port": scrape_ops_port, "processes": shards},  # a parent and its shard processes
        "scrape_configs": [
            {
                "job_name": SCRAPED,
                "scrape_interval": f"{SCRAPE_EVERY.total_seconds():.0f}s",
                "scrape_timeout": "4s",
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
            }
        ],
        "tailer": {"port": tailer_port, "id": "bench"},
        "log_files": [
            {"include": [str(folder / "agent.log*")], "service_name": TAILED, "start_at": "beginning"}
        ],
    }


@dataclass
class WaysInCounts:
    """What the ways in delivered: remote-write requests answered 2xx (by their timestamp), samples
    given up, lines written to the file; scrapes and their window are filled in by the caller."""

    written_ms: list[int] = field(default_factory=list)
    remote_refused: int = 0
    remote_retries: int = 0
    lines: int = 0
    scrapes: int | None = None  # the scraper's own count over the load, when it was never restarted
    scrape_window: tuple[datetime, datetime] = (datetime.min.replace(tzinfo=UTC),) * 2  # load, ± a scrape


def _every(stop: threading.Event, seconds: float, action: Any) -> None:
    while not stop.wait(seconds):
        action()


def _retryable(error: OSError) -> bool:
    """Prometheus retries what may pass later (5xx, 429, no connection) and drops a 4xx."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code == 429
    return True


@contextmanager
def ways_in_load(
    config: TalonflowConfig, folder: Path, target_port: int, line_rate: float, rotate: float, give_up: float
) -> Iterator[WaysInCounts]:
    """A scrape target on `target_port`, remote-write of RW_SERIES samples a second (a request
    retried for up to `give_up` seconds), and `line_rate` JSON lines/s appended to the tailed file
    (renamed to `.1` every `rotate` seconds, as logrotate does)."""
    counts, stop = WaysInCounts(), threading.Event()
    target = serve_registry(seed_registry(1), target_port)
    url = f"http://{config.receiver.http.address}/api/v1/write"
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    log = folder / "agent.log"
    log.touch()

    def remote_write() -> None:
        stamp = int(time.time() * 1000)
        request = urllib.request.Request(url, write_body(RW_SERIES, stamp), headers, method="POST")
        delay, deadline = _BACKOFF[0], time.monotonic() + give_up
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30):
                    counts.written_ms.append(stamp)
                return
            except OSError as error:  # urllib's HTTPError (4xx/5xx) is an OSError too
                if not _retryable(error) or time.monotonic() + delay > deadline:
                    counts.remote_refused += RW_SERIES
                    return
            counts.remote_retries += 1
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF[1])

    def append_lines() -> None:
        started, rotated = time.monotonic(), time.monotonic()
        while not stop.is_set():
            if time.monotonic() - rotated >= rotate:
                log.rename(log.with_name("agent.log.1"))  # replaces the one before: rename rotation
                rotated = time.monotonic()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            line = {
                "time": stamp,
                "level": "info",
                "msg": f"tool call {counts.lines}",
                LINE_ID: f"r{counts.lines}",
            }
            with log.open("a") as out:
                out.write(json.dumps(line) + "\n")
            counts.lines += 1
            stop.wait(max(0.0, started + counts.lines / line_rate - time.monotonic()))

    threads = [
        threading.Thread(target=_every, args=(stop, 1.0, remote_write), name="bench-remote-write"),
        threading.Thread(target=append_lines, name="bench-lines"),
    ]
    for thread in threads:
        thread.start()
    try:
        yield counts
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        target.shutdown()


@dataclass(frozen=True)
class Delivery:
    """One way in: records acknowledged (or written to the file) against rows in Parquet."""

    way: str
    sent: int
    landed: int
    duplicated: int = 0  # items in Parquet more than once

    @property
    def missing(self) -> int:
        return max(0, self.sent - self.landed)


def _copies(config: TalonflowConfig, dataset: str, where: pl.Expr, keys: list[pl.Expr]) -> pl.DataFrame:
    """Rows per key among the dataset's rows `where` selects, across tiers: columns k0, k1, ... and n."""
    named = [key.alias(f"k{i}") for i, key in enumerate(keys)]
    return tiered(config, dataset, lambda frame: frame.filter(where).group_by(named).agg(pl.len().alias("n")))


def scrape_times(config: TalonflowConfig, window: tuple[datetime, datetime]) -> pl.DataFrame:
    """The scraped target's `up` rows per scrape time within `window`: columns k0 (time) and n."""
    up = (pl.col("metric_name") == "up") & (pl.col("service_name") == SCRAPED)
    return _copies(config, "metrics", up & pl.col("time").is_between(*window), [pl.col("time")]).sort("k0")


def deliveries(config: TalonflowConfig, counts: WaysInCounts) -> list[Delivery]:
    """Remote-written samples by (series, timestamp), tailed lines by id, scrapes by time."""
    written = (pl.col("metric_name") == WRITTEN) & (pl.col("service_name") == "wundr")
    stamps = pl.col("time").dt.epoch("ms")
    samples = _copies(config, "metrics", written, [pl.col("attributes").map.get("i"), stamps])
    landed = samples.filter(pl.col("k1").is_in(set(counts.written_ms)))
    result = [Delivery("remote-write", len(counts.written_ms) * RW_SERIES, landed.height, _doubled(samples))]
    tailed = pl.col("service_name") == TAILED
    lines = _copies(config, "logs", tailed, [pl.col("attributes").map.get(LINE_ID)])
    result.append(Delivery("tailed lines", counts.lines, lines.height, _doubled(lines)))
    ups = scrape_times(config, counts.scrape_window)
    sent = ups.height if counts.scrapes is None else counts.scrapes  # every scrape sends one `up`
    result.append(Delivery(SCRAPES, sent, ups.height, _doubled(ups)))
    return result


def _doubled(copies: pl.DataFrame) -> int:
    return int(copies.filter(pl.col("n") > 1).height)

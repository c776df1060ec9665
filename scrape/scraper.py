"""The scrape loops of one shard: each target on its own interval, each scrape one Kafka record.

A scrape that fails for any reason (timeout, HTTP error, oversized or unparsable body, too many
samples) still produces its report series with `up` = 0 and a log line naming target and reason;
nothing a target sends stops the loop. Targets start at a stable offset within their interval
(from the target's hash, as Prometheus spreads them), so a restart keeps the same rhythm.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from receiver.producer import ProduceError, Producer
from schemas.prometheus import REPORT_METRICS, ScrapeConverter, record_key
from schemas.scrape import ScrapeConfig
from schemas.topics import METRICS_TOPIC
from scrape.fetch import ScrapeError, fetch, ssl_context
from scrape.parse import Parsed, parse
from scrape.relabel import hashmod
from scrape.split import split_request
from scrape.targets import FileSd, Target, discover
from scrape.timestamps import TimestampGuard

log = logging.getLogger("scrape")


def next_slot(planned: float, now: float, interval: float, offset: float) -> float:
    """When to scrape next (wall seconds): `planned`, unless it is past (a scrape ran late) or more
    than an interval ahead (the host's clock stepped back, which would otherwise stall the target
    for as long as the step); then the first slot of the target's grid (`offset` into each
    interval) after `now`. Prometheus' scrape loop runs on a monotonic ticker: no step stalls it."""
    if now <= planned <= now + interval:
        return planned
    return ((now - offset) // interval + 1) * interval + offset


class ScrapeMetrics:
    """The scraper's own series, served on its ops port."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.scrapes = Counter(
            "talonflow_scrape_scrapes",
            "Scrapes by job and outcome.",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.samples = Counter(
            "talonflow_scrape_samples",
            "Samples sent to Kafka, by job, counted as Prometheus counts them (a bucket is a sample).",
            ["job"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "talonflow_scrape_rejected_samples",
            "Samples not sent, by job and reason (duplicate, relabel_drop, out_of_order, "
            "duplicate_timestamp, too_large, kafka).",
            ["job", "reason"],
            registry=self.registry,
        )
        self.targets = Gauge(
            "talonflow_scrape_targets", "Targets of this shard.", ["job"], registry=self.registry
        )


class TargetLoop:
    """Scrapes one target every `scrape_interval` until cancelled."""

    def __init__(
        self,
        target: Target,
        session: aiohttp.ClientSession,
        producer: Producer,
        metrics: ScrapeMetrics,
        max_record_bytes: int,
    ) -> None:
        self.target, self.session, self.producer, self.metrics = target, session, producer, metrics
        self.max_record_bytes = max_record_bytes
        self.context: ssl.SSLContext | bool = ssl_context(target.job)
        self.previous: set[int] = set()
        self.timestamps = TimestampGuard()

    async def run(self) -> None:
        interval = self.target.job.scrape_interval
        offset = hashmod(self.target.identity, 1_000_000) / 1_000_000 * interval
        next_at = time.time() // interval * interval + offset
        while True:
            now = time.time()
            next_at = next_slot(next_at, now, interval, offset)
            await asyncio.sleep(next_at - now)
            await self.scrape_once()
            next_at += interval

    async def scrape_once(self) -> None:
        job, target = self.target.job, self.target
        labels = dict(target.labels)
        started, time_ms = time.perf_counter(), int(time.time() * 1000)
        parsed = Parsed()
        fresh = functools.partial(
            ScrapeConverter, job.job_name, target.instance, time_ms, job.honor_timestamps
        )
        converter = fresh()
        try:
            body = await fetch(self.session, target.url, job, self.context)
            parsed = parse(body.text, body.content_type, labels, job.honor_labels, job.metric_relabel_configs)
            if job.sample_limit and len(parsed.series) > job.sample_limit:
                raise ScrapeError(f"{len(parsed.series)} samples exceed sample_limit {job.sample_limit}")
            if job.honor_timestamps:
                self._check_timestamps(parsed)
            for family in parsed.families:  # a histogram with a NaN or negative count fails here
                converter.add_family(family)
            up = 1.0
        except Exception as err:  # any failure of a hostile target fails this scrape only
            log.warning("scrape failed: job=%s target=%s: %s", job.job_name, target.url, err)
            parsed, up = Parsed(samples=parsed.samples), 0.0
            converter = fresh()  # a failed scrape sends its report series only
        self.metrics.scrapes.labels(job.job_name, "up" if up else "down").inc()
        if parsed.duplicates:
            log.warning(
                "job=%s target=%s: %d duplicate series dropped", job.job_name, target.url, parsed.duplicates
            )
            self.metrics.rejected.labels(job.job_name, "duplicate").inc(parsed.duplicates)
        if parsed.dropped:
            self.metrics.rejected.labels(job.job_name, "relabel_drop").inc(parsed.dropped)
        added = len(parsed.series - self.previous)
        self.previous = parsed.series
        converter.add_gauge("up", up, labels, "1 if the target was scraped successfully, else 0.")
        converter.add_gauge("scrape_duration_seconds", time.perf_counter() - started, labels)
        converter.add_gauge("scrape_samples_scraped", float(parsed.samples), labels)
        converter.add_gauge("scrape_series_added", float(added), labels)
        if await self._send(converter, len(parsed.series) + len(REPORT_METRICS)) and up:
            self.timestamps.commit()  # only what reached Kafka counts as sent

    def _check_timestamps(self, parsed: Parsed) -> None:
        """Drop the samples with explicit timestamps that this target already sent, or older ones."""
        job, target = self.target.job.job_name, self.target.url
        verdicts = self.timestamps.filter(parsed.families)
        if verdicts.out_of_order:
            self.metrics.rejected.labels(job, "out_of_order").inc(verdicts.out_of_order)
        if verdicts.duplicate_timestamp:
            self.metrics.rejected.labels(job, "duplicate_timestamp").inc(verdicts.duplicate_timestamp)
        if verdicts.rejected:
            log.warning("job=%s target=%s: %d out-of-order and %d duplicate-timestamp samples dropped",
                        job, target, verdicts.out_of_order, verdicts.duplicate_timestamp)  # fmt: skip

    async def _send(self, converter: ScrapeConverter, samples: int) -> bool:
        """`samples` as Prometheus counts them (each bucket a sample), for side-by-side figures.

        A scrape bigger than a Kafka record goes as several, all with the target's key."""
        job_name = self.target.job.job_name
        values = [converter.serialize()]
        if len(values[0]) > self.max_record_bytes:
            parts = split_request(values[0], self.max_record_bytes)
            values = parts.values
            log.info("job=%s target=%s: scrape bigger than kafka.max_message_bytes sent as %d records",
                     job_name, self.target.url, len(values))  # fmt: skip
            if parts.rejected_points:
                log.error("job=%s target=%s: %d points each bigger than kafka.max_message_bytes dropped",
                          job_name, self.target.url, parts.rejected_points)  # fmt: skip
                self.metrics.rejected.labels(job_name, "too_large").inc(parts.rejected_points)
        key = record_key(job_name, self.target.instance)
        try:
            await asyncio.gather(*(self.producer.send(METRICS_TOPIC, key, value) for value in values))
        except ProduceError as err:
            log.error("job=%s target=%s: scrape not delivered to Kafka: %s", job_name, self.target.url, err)
            self.metrics.rejected.labels(job_name, "kafka").inc(converter.points)
            return False
        self.metrics.samples.labels(job_name).inc(samples)
        return True


class Shard:
    """This process' share of the targets; re-discovered every few seconds (file_sd changes)."""

    def __init__(
        self,
        jobs: tuple[ScrapeConfig, ...],
        shard: int,
        shards: int,
        producer: Producer,
        metrics: ScrapeMetrics,
        max_record_bytes: int,
    ) -> None:
        self.jobs, self.shard, self.shards = jobs, shard, shards
        self.producer, self.metrics, self.max_record_bytes = producer, metrics, max_record_bytes
        self.file_sd = FileSd()
        self.loops: dict[str, tuple[Target, asyncio.Task[None]]] = {}

    def refresh(self, session: aiohttp.ClientSession) -> None:
        wanted = {t.identity: t for t in discover(self.jobs, self.file_sd, self.shard, self.shards)}
        for identity, (target, task) in list(self.loops.items()):
            if wanted.get(identity) != target:
                task.cancel()
                del self.loops[identity]
                log.info("target removed: job=%s %s", target.job.job_name, target.url)
        for identity, target in wanted.items():
            if identity not in self.loops:
                loop = TargetLoop(target, session, self.producer, self.metrics, self.max_record_bytes)
                self.loops[identity] = (target, asyncio.create_task(loop.run()))
                log.info("target added: job=%s %s", target.job.job_name, target.url)
        for job in self.jobs:
            count = sum(1 for t, _ in self.loops.values() if t.job.job_name == job.job_name)
            self.metrics.targets.labels(job.job_name).set(count)

    async def run(self, stop: asyncio.Event, rediscover: float = 5.0) -> None:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            try:
                while not stop.is_set():
                    self.refresh(session)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rediscover)
            finally:
                for _, task in self.loops.values():
                    task.cancel()
                await asyncio.gather(*(task for _, task in self.loops.values()), return_exceptions=True)

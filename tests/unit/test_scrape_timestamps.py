"""Explicit timestamps across scrapes: a repeated sample is sent once, an older one is counted."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiohttp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from prometheus_client import generate_latest

from receiver.producer import ProduceError, Producer
from schemas.scrape import ScrapeConfig
from scrape import scraper
from scrape.fetch import Body
from scrape.scraper import ScrapeMetrics, TargetLoop
from scrape.targets import Target
from tests.unit.test_scrape_split import Recorder

T = 1_700_000_000_000  # ms


def _value(point: Any) -> float:
    return float(point.sum if hasattr(point, "bucket_counts") else point.as_double)


def sent(
    bodies: list[str], honor_timestamps: bool = True
) -> tuple[list[dict[str, list[tuple[int, float]]]], str]:
    """What each scrape of the successive `bodies` sent, by metric: [(time ms, value)]; and /metrics."""
    queue = list(bodies)

    async def fetch(*_args: object) -> Body:
        return Body(queue.pop(0), "text/plain; version=0.0.4")

    recorder, metrics = Recorder(), ScrapeMetrics()
    job = ScrapeConfig(job_name="fed", honor_timestamps=honor_timestamps)
    target = Target(job, "http://fed:9090/federate", (("instance", "fed:9090"),))
    loop = TargetLoop(target, cast(aiohttp.ClientSession, None), cast(Producer, recorder), metrics, 1 << 20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scraper, "fetch", fetch)
        for _ in bodies:
            asyncio.run(loop.scrape_once())
    scrapes = []
    for _, value in recorder.records:
        found: dict[str, list[tuple[int, float]]] = {}
        for metric in (
            ExportMetricsServiceRequest.FromString(value).resource_metrics[0].scope_metrics[0].metrics
        ):
            if not metric.name.startswith(("up", "scrape_")):
                data = getattr(metric, str(metric.WhichOneof("data")))
                found[metric.name] = [(p.time_unix_nano // 1_000_000, _value(p)) for p in data.data_points]
        scrapes.append(found)
    return scrapes, generate_latest(metrics.registry).decode()


def test_a_repeated_sample_is_sent_once_a_newer_one_again_and_an_older_one_counted() -> None:
    bodies = [
        f"agent_fixed 1 {T}\nagent_moving 1 {T}\nagent_back 5 {T}\nagent_plain 7\n",
        f"agent_fixed 1 {T}\nagent_moving 2 {T + 1000}\nagent_back 4 {T - 1000}\nagent_plain 7\n",
        f"agent_fixed 2 {T}\nagent_moving 2 {T + 1000}\nagent_back 5 {T}\nagent_plain 7\n",
    ]
    scrapes, metrics = sent(bodies)
    assert [sorted(s) for s in scrapes] == [
        ["agent_back", "agent_fixed", "agent_moving", "agent_plain"],
        ["agent_moving", "agent_plain"],
        ["agent_plain"],
    ]
    assert scrapes[1]["agent_moving"] == [(T + 1000, 2.0)]
    assert 'talonflow_scrape_rejected_samples_total{job="fed",reason="out_of_order"} 1.0' in metrics
    assert 'talonflow_scrape_rejected_samples_total{job="fed",reason="duplicate_timestamp"} 1.0' in metrics


def test_without_honor_timestamps_every_scrape_is_sent_at_its_own_time() -> None:
    scrapes, _ = sent([f"agent_fixed 1 {T}\n"] * 2, honor_timestamps=False)
    assert [sorted(s) for s in scrapes] == [["agent_fixed"], ["agent_fixed"]]
    assert scrapes[0]["agent_fixed"][0][0] != T


def test_a_failed_scrape_does_not_count_its_samples_as_sent() -> None:
    hostile = f'# TYPE lat histogram\nlat_bucket{{le="+Inf"}} 1 {T}\nlat_sum 1 {T}\nlat_count NaN {T}\n'
    good = f'# TYPE lat histogram\nlat_bucket{{le="+Inf"}} 1 {T}\nlat_sum 1 {T}\nlat_count 1 {T}\n'
    scrapes, _ = sent([f"agent_fixed 1 {T}\n" + hostile, f"agent_fixed 1 {T}\n" + good])
    assert [sorted(s) for s in scrapes] == [[], ["agent_fixed", "lat"]]


class FailingOnce(Recorder):
    """Kafka refuses the first scrape, then takes the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if not self.failed:
            self.failed = True
            raise ProduceError("broker down")
        await super().send(topic, key, value)


def test_a_scrape_kafka_did_not_take_is_sent_again() -> None:
    async def fetch(*_args: object) -> Body:
        return Body(f"agent_fixed 1 {T}\n", "text/plain; version=0.0.4")

    recorder = FailingOnce()
    target = Target(ScrapeConfig(job_name="fed"), "http://fed:9090/federate", (("instance", "fed:9090"),))
    loop = TargetLoop(
        target, cast(aiohttp.ClientSession, None), cast(Producer, recorder), ScrapeMetrics(), 1 << 20
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scraper, "fetch", fetch)
        asyncio.run(loop.scrape_once())
        asyncio.run(loop.scrape_once())
    [(_, value)] = recorder.records
    names = [
        m.name
        for m in ExportMetricsServiceRequest.FromString(value).resource_metrics[0].scope_metrics[0].metrics
    ]
    assert "agent_fixed" in names

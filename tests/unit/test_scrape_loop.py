"""One scrape of a target whose histogram cannot be converted: the scrape fails, the loop goes on."""

from __future__ import annotations

import asyncio
from typing import cast

import aiohttp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from receiver.producer import Producer
from schemas.scrape import ScrapeConfig
from scrape import scraper
from scrape.fetch import Body
from scrape.scraper import ScrapeMetrics, TargetLoop, next_slot
from scrape.targets import Target

# Valid text, but a NaN count has no OTLP (uint64) form.
HOSTILE = '# TYPE lat histogram\nlat_bucket{le="+Inf"} 1\nlat_sum 1\nlat_count NaN\n'


class Recorder:
    """Stands in for the Kafka producer: keeps what the scrape sends."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def send(self, _topic: str, _key: bytes | None, value: bytes) -> None:
        self.values.append(value)


def test_an_unconvertible_family_fails_the_scrape_not_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fetch(*_args: object) -> Body:
        return Body(HOSTILE, "text/plain; version=0.0.4")

    monkeypatch.setattr(scraper, "fetch", fetch)
    recorder = Recorder()
    target = Target(ScrapeConfig(job_name="picoclaw"), "http://gw:18790/metrics", (("instance", "gw:18790"),))
    session, producer = cast(aiohttp.ClientSession, None), cast(Producer, recorder)
    loop = TargetLoop(target, session, producer, ScrapeMetrics(), 1 << 20)
    asyncio.run(loop.scrape_once())

    [value] = recorder.values
    metrics = ExportMetricsServiceRequest.FromString(value).resource_metrics[0].scope_metrics[0].metrics
    by_name = {m.name: m for m in metrics}
    assert by_name["up"].gauge.data_points[0].as_double == 0.0
    assert "lat" not in by_name


def test_the_next_scrape_keeps_the_targets_grid_through_late_scrapes_and_clock_steps() -> None:
    interval, offset = 15.0, 4.0  # slots at 4, 19, 34, ... past each minute
    assert next_slot(19.0, 10.0, interval, offset) == 19.0  # on time
    assert next_slot(19.0, 19.0, interval, offset) == 19.0  # due now
    assert next_slot(19.0, 50.0, interval, offset) == 64.0  # a scrape ran late: the next slot, no burst
    assert next_slot(3619.0, 10.0, interval, offset) == 19.0  # the clock stepped back an hour
    assert next_slot(19.0, 3610.0, interval, offset) == 3619.0  # ... or ahead an hour

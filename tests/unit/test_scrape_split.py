"""A scrape bigger than a Kafka record goes as several records: every point once, each record fits."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

import aiohttp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from prometheus_client import generate_latest

from receiver.producer import Producer
from schemas.prometheus import ScrapeConverter
from schemas.scrape import ScrapeConfig
from scrape import scraper
from scrape.fetch import Body
from scrape.parse import parse
from scrape.scraper import ScrapeMetrics, TargetLoop
from scrape.split import split_request
from scrape.targets import Target
from tests.scrape_targets import seed_registry

Point = tuple[str, str, str, str]  # resource, metric name, kind, the point's bytes


def converted(text: str) -> bytes:
    converter = ScrapeConverter("picoclaw", "gw:18790", 1_700_000_000_000)
    for family in parse(text, "text/plain; version=0.0.4", {}, False, ()).families:
        converter.add_family(family)
    return converter.serialize()


def points(values: list[bytes]) -> Counter[Point]:
    found: Counter[Point] = Counter()
    for value in values:
        for resource in ExportMetricsServiceRequest.FromString(value).resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "talonflow/prometheus"
                for metric in scope.metrics:
                    kind = str(metric.WhichOneof("data"))
                    data = getattr(metric, kind)
                    shape = str([f.name for f, _ in data.ListFields() if f.name != "data_points"])
                    for point in data.data_points:
                        head = f"{metric.name}|{metric.description}|{kind}|{shape}"
                        found[(str(resource.resource), head, kind, point.SerializeToString().hex())] += 1
    return found


@pytest.mark.parametrize("limit", [2_000, 10_000, 30_000])
def test_every_point_is_in_exactly_one_part_and_every_part_fits(limit: int) -> None:
    value = converted(generate_latest(seed_registry(scale=60)).decode())
    parts = split_request(value, limit)
    assert len(parts.values) > 1 and parts.rejected_points == 0
    assert all(len(part) <= limit for part in parts.values)
    whole = points([value])
    assert sum(whole.values()) > 1000 and points(parts.values) == whole


def test_a_metric_bigger_than_a_record_is_cut_between_its_points() -> None:
    text = "".join(f'agent_queue_depth{{queue="q{i}"}} {i}\n' for i in range(3000))
    value = converted(text)
    parts = split_request(value, 8_000)
    assert len(parts.values) >= len(value) // 8_000
    assert all(len(part) <= 8_000 for part in parts.values)
    assert points(parts.values) == points([value])


def test_a_single_point_bigger_than_a_record_is_counted_and_the_rest_sent() -> None:
    text = f'agent_big{{pad="{"x" * 5000}"}} 1\nagent_small 2\n'
    parts = split_request(converted(text), 2_000)
    assert parts.rejected_points == 1
    [metric] = (
        ExportMetricsServiceRequest.FromString(b"".join(parts.values))
        .resource_metrics[0]
        .scope_metrics[0]
        .metrics
    )
    assert metric.name == "agent_small"


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []

    async def send(self, _topic: str, key: bytes | None, value: bytes) -> None:
        self.records.append((key, value))


def test_the_scraper_sends_a_big_scrape_as_several_records_with_the_targets_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = generate_latest(seed_registry(scale=60)).decode()

    async def fetch(*_args: object) -> Body:
        return Body(text, "text/plain; version=0.0.4")

    monkeypatch.setattr(scraper, "fetch", fetch)
    recorder = Recorder()
    target = Target(ScrapeConfig(job_name="picoclaw"), "http://gw:18790/metrics", (("instance", "gw:18790"),))
    loop = TargetLoop(
        target, cast(aiohttp.ClientSession, None), cast(Producer, recorder), ScrapeMetrics(), 20_000
    )
    asyncio.run(loop.scrape_once())

    assert len(recorder.records) > 1
    assert {key for key, _ in recorder.records} == {b"picoclaw/gw:18790"}
    assert all(len(value) <= 20_000 for _, value in recorder.records)
    names = Counter(
        m.name
        for _, value in recorder.records
        for m in ExportMetricsServiceRequest.FromString(value).resource_metrics[0].scope_metrics[0].metrics
    )
    assert names["up"] == 1 and names["picoclaw_response_time_seconds"] >= 1

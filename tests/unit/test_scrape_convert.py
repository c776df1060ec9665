"""The Prometheus → OTLP mapping, relabeling and target discovery, on prometheus_client's own output."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from flows.heartbeats import Matcher
from schemas.config import HeartbeatsConfig
from schemas.flatten import KafkaRecord
from schemas.prometheus import ScrapeConverter, convert_write_request, failed_scrape
from schemas.prometheus_remote_pb2 import MetricMetadata, WriteRequest
from schemas.scrape import RelabelConfig, ScrapeConfig
from schemas.topics import METRICS_TOPIC
from scrape.fast_text import families
from scrape.parse import OPENMETRICS, parse
from scrape.relabel import relabel
from scrape.targets import FileSd, discover
from tests.scrape_targets import seed_registry

TARGET = {"job": "picoclaw", "instance": "127.0.0.1:18790", "env": "prod"}


def exposition() -> CollectorRegistry:
    registry = CollectorRegistry()
    messages = Counter("picoclaw_messages", "Messages handled.", ["channel"], registry=registry)
    messages.labels("telegram").inc(3)
    Gauge("picoclaw_session_count", "Open sessions.", registry=registry).set(7)
    latency = Histogram(
        "picoclaw_response_time_seconds", "Response time.", buckets=(0.1, 1.0), registry=registry
    )
    for value in (0.05, 0.5, 0.7, 3.0):
        latency.observe(value)
    Summary("wundr_tool_execution_duration_seconds", "Tool time.", registry=registry).observe(2.0)
    return registry


def convert(body: bytes, content_type: str) -> dict[str, object]:
    parsed = parse(body.decode(), content_type, TARGET, False, ())
    converter = ScrapeConverter("picoclaw", TARGET["instance"], 1_700_000_000_000)
    for family in parsed.families:
        converter.add_family(family)
    resource = converter.request().resource_metrics[0]
    metrics = {m.name: m for m in resource.scope_metrics[0].metrics}
    return {"resource": resource.resource, **metrics}


@pytest.mark.parametrize("openmetrics", [False, True])
def test_families_map_as_the_collector_maps_them(openmetrics: bool) -> None:
    registry = exposition()
    body = openmetrics_latest(registry) if openmetrics else generate_latest(registry)
    out = convert(body, f"{OPENMETRICS}; version=1.0.0" if openmetrics else "text/plain; version=0.0.4")
    resource = {a.key: a.value for a in out["resource"].attributes}  # type: ignore[attr-defined]
    assert resource["service.name"].string_value == "picoclaw"
    assert resource["service.instance.id"].string_value == "127.0.0.1:18790"
    assert resource["server.port"].int_value == 18790

    counter = out["picoclaw_messages_total"]
    assert counter.sum.is_monotonic and counter.sum.aggregation_temporality == 2  # type: ignore[attr-defined]
    [point] = counter.sum.data_points  # type: ignore[attr-defined]
    assert point.as_double == 3.0 and point.time_unix_nano == 1_700_000_000_000 * 1_000_000
    attributes = {a.key: a.value.string_value for a in point.attributes}
    assert attributes == {"channel": "telegram", "env": "prod"}  # job and instance are the resource
    # OpenMetrics puts _created in the family: the start time; 0.0.4 exposes it as its own gauge
    assert (point.start_time_unix_nano > 0) is openmetrics
    assert ("picoclaw_messages_created" in out) is not openmetrics

    assert out["picoclaw_session_count"].gauge.data_points[0].as_double == 7  # type: ignore[attr-defined]
    [hist] = out["picoclaw_response_time_seconds"].histogram.data_points  # type: ignore[attr-defined]
    assert list(hist.explicit_bounds) == [0.1, 1.0]
    assert list(hist.bucket_counts) == [1, 2, 1]
    assert hist.count == 4 and hist.sum == pytest.approx(4.25)
    [summary] = out["wundr_tool_execution_duration_seconds"].summary.data_points  # type: ignore[attr-defined]
    assert summary.count == 1 and summary.sum == 2.0


def test_bad_expositions_fail_or_are_counted() -> None:
    with pytest.raises(ValueError):
        parse("this is { not metrics", "text/plain", TARGET, False, ())
    with pytest.raises(ValueError, match="invalid"):
        parse('bad-name{a="1"} 1\n', "text/plain", TARGET, False, ())
    parsed = parse("a 1\na 2\nb NaN\nc +Inf\n", "text/plain", TARGET, False, ())
    assert parsed.duplicates == 1 and parsed.samples == 4
    values = [s.value for f in parsed.families for s in f.samples]
    assert values[0] == 1 and math.isnan(values[1]) and values[2] == math.inf


def test_target_labels_win_unless_honor_labels() -> None:
    body = 'x{env="dev",job="other"} 1\n'
    [sample] = parse(body, "text/plain", TARGET, False, ()).families[0].samples
    assert sample.labels["env"] == "prod" and sample.labels["exported_env"] == "dev"
    assert sample.labels["exported_job"] == "other"
    [honored] = parse(body, "text/plain", TARGET, True, ()).families[0].samples
    assert honored.labels["env"] == "dev"


def test_metric_relabel_drop_and_rename() -> None:
    steps = (
        RelabelConfig(action="drop", source_labels=("__name__",), regex="go_.*"),
        RelabelConfig(
            source_labels=("__name__",), regex="(.*)_total", target_label="__name__", replacement="${1}_count"
        ),
    )
    parsed = parse("go_gc 1\nreq_total 2\n", "text/plain", TARGET, False, steps)
    assert parsed.dropped == 1
    assert [s.name for f in parsed.families for s in f.samples] == ["req_count"]


def test_relabel_actions() -> None:
    labels = {"__address__": "host-1:9100", "team": "a", "__meta_zone": "eu"}
    out = relabel(
        labels,
        [
            RelabelConfig(source_labels=("__address__",), regex="(.*):.*", target_label="host"),
            RelabelConfig(action="labelmap", regex="__meta_(.*)", replacement="${1}"),
            RelabelConfig(action="hashmod", source_labels=("host",), modulus=8, target_label="shard"),
            RelabelConfig(action="labeldrop", regex="team"),
        ],
    )
    assert out is not None
    assert out["host"] == "host-1" and out["zone"] == "eu" and "team" not in out
    assert 0 <= int(out["shard"]) < 8
    assert relabel(labels, [RelabelConfig(action="keep", source_labels=("team",), regex="b")]) is None
    kept = relabel(labels, [RelabelConfig(action="labelkeep", regex="__.*")])
    assert kept == {"__address__": "host-1:9100", "__meta_zone": "eu"}


def test_remote_write_types_by_metadata_then_by_name() -> None:
    stale = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
    write = WriteRequest()
    for name, value in (("wundr_queue_depth", 4.0), ("wundr_agent_spawned_total", 9.0), ("lat_sum", stale)):
        series = write.timeseries.add()
        series.labels.add(name="__name__", value=name)
        series.labels.add(name="instance", value="w:1")
        series.labels.add(name="job", value="wundr")
        series.samples.add(value=value, timestamp=1_700_000_000_123)
    write.metadata.add(type=MetricMetadata.GAUGE, metric_family_name="lat", help="latency")
    request, samples = convert_write_request(write)
    assert samples == 3
    [resource] = request.resource_metrics
    metrics = {m.name: m for m in resource.scope_metrics[0].metrics}
    assert metrics["wundr_queue_depth"].WhichOneof("data") == "gauge"
    assert metrics["wundr_agent_spawned_total"].sum.is_monotonic
    lat = metrics["lat_sum"]
    assert lat.WhichOneof("data") == "gauge" and lat.description == "latency"  # a gauge histogram's
    assert lat.gauge.data_points[0].flags == 1  # the staleness marker: no recorded value
    assert lat.gauge.data_points[0].time_unix_nano == 1_700_000_000_123_000_000
    nameless = WriteRequest()
    nameless.timeseries.add().samples.add(value=1, timestamp=1)
    with pytest.raises(ValueError, match="__name__"):
        convert_write_request(nameless)


def test_a_failed_scrape_is_no_heartbeat() -> None:
    """A dead target's `up` = 0 report must leave its component silent for the heartbeats flow."""
    matcher = Matcher(HeartbeatsConfig())
    for up, failed in ((0.0, True), (1.0, False)):
        converter = ScrapeConverter("picoclaw", "gw:18790", 1)
        converter.add_gauge("up", up, {"job": "picoclaw", "instance": "gw:18790", "env": "prod"})
        request = converter.request()
        assert failed_scrape(request.resource_metrics[0].scope_metrics) is failed
        point = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
        assert [(a.key, a.value.string_value) for a in point.attributes] == [("env", "prod")]  # as Prometheus
        record = KafkaRecord(METRICS_TOPIC, 0, 0, 1_000, b"picoclaw/gw:18790", request.SerializeToString())
        assert bool(matcher.beats([record])) is not failed


def test_targets_from_static_and_file_sd_sharded_stably(tmp_path: Path) -> None:
    sd = tmp_path / "targets.json"
    sd.write_text(json.dumps([{"targets": [f"10.0.0.{i}:9100" for i in range(20)], "labels": {"dc": "x"}}]))
    job = ScrapeConfig.model_validate(
        {
            "job_name": "node",
            "params": {"format": ["prometheus"]},
            "static_configs": [{"targets": ["localhost:9090"]}],
            "file_sd_configs": [{"files": [str(tmp_path / "*.json")]}],
            "relabel_configs": [{"action": "drop", "source_labels": ["__address__"], "regex": "10.0.0.0:.*"}],
        }
    )
    files = FileSd()
    everything = discover((job,), files, 0, 1)
    assert len(everything) == 20  # 21 minus the dropped one
    assert everything[0].url == "http://localhost:9090/metrics?format=prometheus"
    assert dict(everything[1].labels) == {"dc": "x", "instance": "10.0.0.1:9100", "job": "node"}
    shards = [discover((job,), files, i, 3) for i in range(3)]
    assert sorted(t.url for s in shards for t in s) == sorted(t.url for t in everything)
    assert [t.url for t in discover((job,), FileSd(), 1, 3)] == [t.url for t in shards[1]]
    sd.write_text("not json")  # a broken file keeps the previous targets
    assert len(discover((job,), files, 0, 1)) == 20


@pytest.mark.parametrize("openmetrics", [False, True])
def test_the_fast_reader_reads_what_prometheus_client_reads(openmetrics: bool) -> None:
    registry = seed_registry(2)
    text = (openmetrics_latest(registry) if openmetrics else generate_latest(registry)).decode()
    text += 'escaped{path="a\\"b\\\\c\\nd",x="}"} 1 1700000000000\n' if not openmetrics else ""
    reference = (openmetrics_families if openmetrics else text_families)(text)
    expected = [(s.name, s.labels, s.value, s.timestamp) for f in reference for s in f.samples]
    ours = families(text, openmetrics)
    assert [(s.name, s.labels, s.value, s.timestamp) for f in ours for s in f.samples] == expected
    assert [f.type for f in ours] == [
        f.type for f in (openmetrics_families if openmetrics else text_families)(text)
    ]
    with pytest.raises(ValueError):
        families('x{a="1" b="2"} 1\n', openmetrics)

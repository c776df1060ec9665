"""Scraping and remote-write beside a real Prometheus 2.42 on the session stack.

One exporter (prometheus_client, seed metric families) is scraped by talonflow's scraper directly
and by a real Prometheus that remote-writes into talonflow's receiver. What Prometheus stored,
read through its own HTTP API, is compared with the `metrics` dataset the ingest flow wrote.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
import yaml
from prometheus_client.utils import floatToGoString

from tests.conftest import LocalStack
from tests.isolated import isolated_flows
from tests.scrape_targets import seed_registry, serve_hostile, serve_registry

pytestmark = pytest.mark.integration

# Ports of this test (range 23000-23999).
EXPORTER, DYING, HOSTILE, PROMETHEUS, SCRAPER_OPS = 23001, 23002, 23003, 23090, 23135
Series = tuple[str, frozenset[tuple[str, str]]]  # (metric name, labels incl. job and instance)
HOSTILE_PATHS = ("slow", "error", "garbage", "huge", "duplicates", "special", "bad-name", "gzip")


def rows(data: Path, where: str) -> list[dict[str, Any]]:
    if not any((data / "metrics").glob("date=*/hour=*/*.parquet")):
        return []
    sql = (
        "SELECT metric_name, epoch_ms(time::TIMESTAMPTZ) AS time_ms, value, type, count, sum, bucket_counts, "
        "explicit_bounds, quantiles, quantile_values, flags, attributes, service_name, service_instance_id, "
        "start_time IS NOT NULL AS has_start_time "
        f"FROM read_parquet('{data}/metrics/**/*.parquet', hive_partitioning=true) WHERE {where}"
    )
    for _ in range(5):
        try:
            relation = duckdb.sql(sql)
            assert relation is not None
            names = [c[0] for c in relation.description]
            return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
        except duckdb.IOException:
            time.sleep(0.3)  # a file renamed between glob and read
    raise AssertionError("parquet files kept vanishing")


def time_ms(row: dict[str, Any]) -> int:
    return int(row["time_ms"])


def as_prometheus(row: dict[str, Any]) -> list[tuple[Series, float]]:
    """A talonflow row as the Prometheus series and values it stands for (histograms unfolded)."""
    labels = {
        **dict(row["attributes"] or {}),
        "job": row["service_name"],
        "instance": row["service_instance_id"],
    }
    name = row["metric_name"]

    def series(suffix: str, **extra: str) -> Series:
        return name + suffix, frozenset({**labels, **extra}.items())

    if row["type"] == "histogram":
        out, cumulative = [], 0
        bounds = [*row["explicit_bounds"], math.inf]
        for bound, count in zip(bounds, row["bucket_counts"], strict=True):
            cumulative += count
            out.append((series("_bucket", le=floatToGoString(bound)), float(cumulative)))
        return [*out, (series("_sum"), row["sum"]), (series("_count"), float(row["count"]))]
    if row["type"] == "summary":
        quantiles = zip(row["quantiles"], row["quantile_values"], strict=True)
        out = [(series("", quantile=floatToGoString(q)), v) for q, v in quantiles]
        return [*out, (series("_sum"), row["sum"]), (series("_count"), float(row["count"]))]
    return [(series(""), row["value"])]


def prometheus_samples(at: float, job: str, port: int = PROMETHEUS) -> dict[Series, list[tuple[int, float]]]:
    """Every raw sample the Prometheus on `port` stored for `job` up to `at`, through its HTTP API."""
    query = urllib.parse.urlencode({"query": f'{{job="{job}"}}[10m]', "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=10) as response:
        result = json.load(response)["data"]["result"]
    stored = {}
    for item in result:
        labels = dict(item["metric"])
        name = labels.pop("__name__")
        stored[(name, frozenset(labels.items()))] = [(round(t * 1000), float(v)) for t, v in item["values"]]
    return stored


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, Any]]:
    exporter = serve_registry(seed_registry(), EXPORTER)
    dying = serve_registry(seed_registry(), DYING)
    hostile = serve_hostile(HOSTILE)
    servers = {"exporter": exporter, "dying": dying, "hostile": hostile}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def prometheus(
    local_stack: LocalStack, targets: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    root = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": "seed-prom", "static_configs": [{"targets": [f"127.0.0.1:{EXPORTER}"]}]}
        ],
        "remote_write": [
            {
                "url": f"{local_stack.http_url}/api/v1/write",
                "queue_config": {"batch_send_deadline": "500ms", "min_backoff": "100ms", "max_backoff": "1s"},
                "metadata_config": {"send_interval": "2s"},
            }
        ],
    }
    with run_prometheus(root, config, PROMETHEUS):
        yield None


@contextmanager
def run_prometheus(root: Path, config: dict[str, Any], port: int) -> Iterator[Path]:
    """A real Prometheus with `config` on 127.0.0.1:`port` while the block runs; yields its log file."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: run compose/native/install-peers.sh")
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    log_path = root / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
        try:
            yield log_path
        finally:
            process.terminate()
            process.wait(30)


@pytest.fixture(scope="module")
def scraper(
    local_stack: LocalStack, targets: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """talonflow's scraper (`python -m scrape`, as `talonflow up` runs it) against the session Kafka."""
    root = tmp_path_factory.mktemp("scraper")
    hostile = [
        {
            "targets": [f"127.0.0.1:{HOSTILE}"],
            "labels": {"__metrics_path__": f"/{p}", "instance": f"hostile-{p}"},
        }
        for p in HOSTILE_PATHS
    ]
    settings = {
        "kafka": {"bootstrap_servers": local_stack.config.kafka.bootstrap_servers},
        "scrape": {"processes": 2, "ops_port": SCRAPER_OPS},
        "scrape_configs": [
            {"job_name": "seed-talon", "scrape_interval": "1s", "scrape_timeout": "900ms",
             "static_configs": [{"targets": [f"127.0.0.1:{EXPORTER}"]}]},
            {"job_name": "dying", "scrape_interval": "1s", "scrape_timeout": "500ms",
             "static_configs": [{"targets": [f"127.0.0.1:{DYING}"]}]},
            {"job_name": "hostile", "scrape_interval": "1s", "scrape_timeout": "500ms",
             "body_size_limit": "1MiB", "static_configs": hostile},
        ],
    }  # fmt: skip
    with run_scraper(root, settings) as log_path:
        yield log_path


@contextmanager
def run_scraper(root: Path, settings: dict[str, Any]) -> Iterator[Path]:
    """`python -m scrape` (as `talonflow up` runs it) with `settings` as its config; yields its log."""
    (root / "scrape.yaml").write_text(yaml.safe_dump(settings))
    log_path = root / "scraper.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scrape", "--config", str(root / "scrape.yaml")], stdout=log, stderr=log
        )
        try:
            yield log_path
        finally:
            process.terminate()
            process.wait(30)


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


def assert_remote_written_once(
    data: Path, stored: dict[Series, list[tuple[int, float]]], job: str, at: float
) -> None:
    """Every sample Prometheus `stored` for `job` up to `at` is in `metrics` with its value, once."""
    expected = Counter((series, t, v) for series, samples in stored.items() for t, v in samples)
    assert expected, f"Prometheus stored nothing for {job}"

    def remote_written() -> Counter[tuple[Series, int, float]] | None:
        found = Counter(
            (series, time_ms(row), value)
            for row in rows(data, f"service_name = '{job}' AND flags = 0")
            if time_ms(row) <= at * 1000
            for series, value in as_prometheus(row)
        )
        return found if found >= expected else None

    wait_until(remote_written, 60, "Prometheus' samples in the metrics dataset")
    time.sleep(3)  # an unexpected duplicate would land meanwhile
    assert remote_written() == expected  # same series, timestamps and values, each exactly once


def test_every_sample_prometheus_stored_arrives_once_by_remote_write_and_by_scraping(
    local_stack: LocalStack, prometheus: None, scraper: Path
) -> None:
    data = local_stack.config.data_dir
    time.sleep(8)  # several scrapes by both
    at = time.time() - 1
    stored = prometheus_samples(at, "seed-prom")
    assert any(name.startswith("picoclaw_response_time_seconds_bucket") for name, _ in stored)
    assert_remote_written_once(data, stored, "seed-prom", at)

    # The scrape path: the same series and values as Prometheus read (job aside), once per scrape.
    scraped = [r for r in rows(data, "service_name = 'seed-talon'") if time_ms(r) <= at * 1000]
    ours = Counter((s, time_ms(r)) for r in scraped for s, _ in as_prometheus(r))
    assert ours and max(ours.values()) == 1

    def rename(series: Series) -> Series:
        name, labels = series
        return name, frozenset((k, "seed" if k == "job" else v) for k, v in labels)

    skip = ("up", "scrape_")
    mine = {rename(s): v for r in scraped for s, v in as_prometheus(r) if not s[0].startswith(skip)}
    theirs = {
        rename(s): samples[-1][1]
        for s, samples in stored.items()
        if not s[0].startswith(skip)
        and not s[0].endswith("_created")  # a start time here, as in the Collector
    }
    assert mine == theirs
    counters = [r for r in scraped if r["metric_name"] == "picoclaw_messages_total"]
    assert counters and all(r["type"] == "sum" and r["has_start_time"] for r in counters)


def test_a_dead_target_is_down_from_its_next_scrape_and_up_when_back(
    local_stack: LocalStack, targets: dict[str, Any], scraper: Path
) -> None:
    data = local_stack.config.data_dir

    def up(since_ms: int) -> list[tuple[int, float]]:
        found = rows(
            data,
            f"service_name = 'dying' AND metric_name = 'up' AND epoch_ms(time::TIMESTAMPTZ) > {since_ms}",
        )
        return sorted((time_ms(r), r["value"]) for r in found)

    wait_until(lambda: up(0), 60, "the dying target's first scrape")
    targets["dying"].shutdown()
    targets["dying"].server_close()
    killed = int(time.time() * 1000) + 50  # a scrape in flight at the moment may still succeed
    down = wait_until(lambda: [v for _, v in up(killed)][:3] or None, 30, "scrapes after the kill")
    assert down == [0.0, 0.0, 0.0][: len(down)]
    samples = rows(
        data, f"service_name = 'dying' AND metric_name <> 'up' AND epoch_ms(time::TIMESTAMPTZ) > {killed}"
    )
    assert {r["metric_name"] for r in samples} <= {"scrape_duration_seconds", "scrape_samples_scraped",
                                                   "scrape_series_added"}  # fmt: skip
    targets["dying"] = serve_registry(seed_registry(), DYING)
    back = int(time.time() * 1000)
    wait_until(lambda: any(v == 1.0 for _, v in up(back)), 30, "the target back up")


def test_hostile_targets_are_down_or_counted_and_the_rest_flows(
    local_stack: LocalStack, scraper: Path
) -> None:
    data = local_stack.config.data_dir

    def verdicts() -> dict[str, float] | None:
        found = rows(data, "service_name = 'hostile' AND metric_name = 'up'")
        latest = {r["service_instance_id"]: r["value"] for r in sorted(found, key=time_ms)}
        return latest if len(latest) == len(HOSTILE_PATHS) else None

    latest = wait_until(verdicts, 60, "a scrape of every hostile target")
    assert latest == {
        "hostile-slow": 0.0, "hostile-error": 0.0, "hostile-garbage": 0.0, "hostile-huge": 0.0,
        "hostile-bad-name": 0.0, "hostile-duplicates": 1.0, "hostile-special": 1.0, "hostile-gzip": 1.0,
    }  # fmt: skip
    special = {r["metric_name"]: r["value"] for r in rows(data, "service_instance_id = 'hostile-special'")}
    assert math.isnan(special["agent_nan"]) and special["agent_inf"] == math.inf
    assert special["agent_ninf"] == -math.inf
    dupes = rows(data, "metric_name = 'agent_dupe'")
    per_scrape = Counter((time_ms(r), dict(r["attributes"])["a"]) for r in dupes)
    assert per_scrape and set(per_scrape.values()) == {1}  # the repeated series kept once
    assert {r["value"] for r in dupes if dict(r["attributes"])["a"] == "1"} == {1.0}
    assert rows(data, "metric_name = 'agent_gzipped' AND value = 42")

    log = scraper.read_text()
    for reason in ("timed out", "HTTP status 500", "body_size_limit", "invalid metric name"):
        assert reason in log, reason
    metrics = ""
    for shard in range(2):
        with urllib.request.urlopen(f"http://127.0.0.1:{SCRAPER_OPS + shard}/metrics", timeout=5) as response:
            metrics += response.read().decode()
    assert 'talonflow_scrape_rejected_samples_total{job="hostile",reason="duplicate"}' in metrics
    # and the healthy target went on being scraped throughout
    recent = rows(
        data,
        f"service_name = 'seed-talon' AND epoch_ms(time::TIMESTAMPTZ) > {int(time.time() * 1000) - 5000}",
    )
    assert recent


def test_a_dead_target_goes_down_in_the_heartbeats_flow_and_up_when_back(
    local_stack: LocalStack, targets: dict[str, Any], scraper: Path, tmp_path: Path
) -> None:
    """Its `up` = 0 reports keep coming every second, and must not count as beats."""
    component = {"match": {"service.name": "dying"}, "expected_interval": "2s", "grace_period": "2s"}
    heartbeats = {"components": {"dying_target": component}, "tick": "250ms", "startup_grace": "1s"}
    flows, data = isolated_flows(local_stack, tmp_path, "heartbeats", {"heartbeats": heartbeats}, 1, 1)

    def states(after: float) -> list[str]:
        files = list(data.glob("heartbeats/date=*/hour=*/*.parquet"))
        if not files:
            return []
        verdicts = pl.read_parquet(files).filter(pl.col("component") == "dying_target")
        return (
            verdicts.filter(pl.col("time").dt.epoch("ms") >= int(after * 1000))
            .sort("time")["state"]
            .to_list()
        )

    flows.start()
    try:
        wait_until(lambda: "up" in states(0), 60, f"the scraped target up:\n{flows.log_tail()}")
        targets["dying"].shutdown()
        targets["dying"].server_close()
        killed = time.time()
        wait_until(lambda: "down" in states(killed), 60, f"the dead target down:\n{flows.log_tail()}")
        assert states(killed)[:2] == ["late", "down"]
        targets["dying"] = serve_registry(seed_registry(), DYING)
        back = time.time()
        wait_until(lambda: "up" in states(back), 60, "the target up again")
    finally:
        flows.stop()

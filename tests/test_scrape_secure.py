"""Scrape targets behind TLS and credentials, a scrape bigger than a Kafka record, and samples
with explicit timestamps scraped again: talonflow's scraper on the session stack.

The exporters are prometheus_client's own server with an ssl-wrapped socket and a WSGI wrapper
that checks the Authorization header, as a real exporter behind TLS or a proxy with auth does.
"""

from __future__ import annotations

import base64
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.exposition import generate_latest

from schemas.prometheus import REPORT_METRICS, ScrapeConverter
from schemas.topics import METRICS_TOPIC
from scrape.parse import OPENMETRICS, parse
from tests.conftest import LocalStack
from tests.receivers import self_signed_certificate
from tests.scrape_targets import (
    HostileServer,
    seed_registry,
    serve_guarded,
    serve_hostile,
    serve_registry,
    serve_static,
)
from tests.test_scrape_prometheus import rows, run_scraper, time_ms, wait_until

pytestmark = pytest.mark.integration

# Ports of this test (range 30000-30499).
HTTPS, GUARDED, HOSTILE, BIG, SCRAPER_OPS = 30001, 30002, 30003, 30004, 30135
BIG_SCALE, RECORD_LIMIT = 300, 64 * 1024  # a target of ~4,000 samples, several records per scrape
TOKEN, PASSWORD = "exporter-token", "exporter-password"
BIG_BODY = generate_latest(seed_registry(BIG_SCALE)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def scraper(local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("scrape-secure")
    cert, key = self_signed_certificate(root)
    wrong = root / "wrong"
    wrong.mkdir()
    wrong_ca, _ = self_signed_certificate(wrong)
    (root / "token").write_text(TOKEN + "\n")
    servers = [
        serve_registry(seed_registry(), HTTPS, tls=(cert, key)),
        serve_guarded(seed_registry(), GUARDED, [basic("prom", PASSWORD), f"Bearer {TOKEN}"]),
        serve_hostile(HOSTILE),
        serve_static(BIG_BODY.encode(), OPENMETRICS, BIG),
    ]

    def job(name: str, port: int, **settings: Any) -> dict[str, Any]:
        return {"job_name": name, "scrape_interval": "1s", "scrape_timeout": "900ms",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}], **settings}  # fmt: skip

    https = {"scheme": "https"}
    settings = {
        "kafka": {"bootstrap_servers": local_stack.config.kafka.bootstrap_servers,
                  "max_message_bytes": RECORD_LIMIT},
        "scrape": {"processes": 1, "ops_port": SCRAPER_OPS},
        "scrape_configs": [
            job("tls-ca", HTTPS, **https, tls_config={"ca_file": str(cert)}),
            job("tls-skip", HTTPS, **https, tls_config={"insecure_skip_verify": True}),
            job("tls-wrong-ca", HTTPS, **https, tls_config={"ca_file": str(wrong_ca)}),
            job("tls-plain-http", HTTPS),
            job("basic-ok", GUARDED, basic_auth={"username": "prom", "password": PASSWORD}),
            job("basic-wrong", GUARDED, basic_auth={"username": "prom", "password": "nope"}),
            job("bearer-file", GUARDED, authorization={"credentials_file": str(root / "token")}),
            job("bearer-none", GUARDED),
            {**job("timestamped", HOSTILE), "metrics_path": "/timestamped"},
            job("big", BIG, scrape_interval="2s", scrape_timeout="1900ms"),
        ],
    }  # fmt: skip
    try:
        with run_scraper(root, settings) as log:
            yield {"log": log, "hostile": servers[2]}
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def latest_up(data: Path, jobs: list[str]) -> dict[str, float] | None:
    names = ", ".join(f"'{j}'" for j in jobs)
    found = rows(data, f"metric_name = 'up' AND service_name IN ({names})")
    latest = {r["service_name"]: r["value"] for r in sorted(found, key=time_ms)}
    return latest if len(latest) == len(jobs) else None


def failures(log: str, job: str) -> str:
    """The first log line of a failed scrape of `job`."""
    found = [line for line in log.splitlines() if f"scrape failed: job={job} " in line]
    assert found, f"no failed scrape of {job} logged"
    return found[0]


def scraper_metrics() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{SCRAPER_OPS}/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.parametrize(
    ("expected", "sample", "reasons"),
    [
        (
            {"tls-ca": 1.0, "tls-skip": 1.0, "tls-wrong-ca": 0.0, "tls-plain-http": 0.0},
            "service_name = 'tls-ca' AND metric_name = 'picoclaw_messages_total' AND value = 12",
            {"tls-wrong-ca": "certificate verify failed"},
        ),
        (
            {"basic-ok": 1.0, "basic-wrong": 0.0, "bearer-file": 1.0, "bearer-none": 0.0},
            "service_name = 'bearer-file' AND metric_name = 'wundr_queue_depth' AND value = 17",
            {"basic-wrong": "HTTP status 401", "bearer-none": "HTTP status 401"},
        ),
    ],
    ids=["tls", "credentials"],
)
def test_tls_and_credentials_targets_are_up_or_down_with_the_reason_logged(
    local_stack: LocalStack,
    scraper: dict[str, Any],
    expected: dict[str, float],
    sample: str,
    reasons: dict[str, str],
) -> None:
    data = local_stack.config.data_dir
    latest = wait_until(lambda: latest_up(data, list(expected)), 60, f"a scrape of every job of {expected}")
    assert latest == expected
    assert rows(data, sample)
    log = scraper["log"].read_text()
    for job, reason in reasons.items():
        line = failures(log, job)
        assert reason in line, line
    assert PASSWORD not in log and TOKEN not in log


def test_samples_with_explicit_timestamps_land_once_however_often_scraped(
    local_stack: LocalStack, scraper: dict[str, Any]
) -> None:
    hostile: HostileServer = scraper["hostile"]
    wait_until(lambda: hostile.timestamped >= 5, 60, "five scrapes of /timestamped")
    data = local_stack.config.data_dir

    def scrapes() -> list[dict[str, Any]] | None:
        found = rows(data, "service_name = 'timestamped' AND metric_name = 'up'")
        return found if len(found) >= 5 else None

    up = wait_until(scrapes, 60, "five scrapes in Parquet")
    assert {r["value"] for r in up} == {1.0}
    landed = Counter(
        (r["metric_name"], time_ms(r), r["value"])
        for r in rows(data, "service_name = 'timestamped' AND metric_name LIKE 'agent_%'")
    )
    fixed = int(hostile.started * 1000)
    # the repeated sample once; the one going back in time only at its first (newest) timestamp
    assert landed == Counter({("agent_fixed", fixed, 1.0): 1, ("agent_back", fixed - 1000, 1.0): 1})
    metrics = scraper_metrics()
    [out_of_order] = [
        line
        for line in metrics.splitlines()
        if line.startswith("talonflow_scrape_rejected_samples_total") and 'reason="out_of_order"' in line
    ]
    assert float(out_of_order.split()[-1]) >= 3


def test_a_scrape_bigger_than_a_kafka_record_lands_whole_from_several_records(
    local_stack: LocalStack, scraper: dict[str, Any]
) -> None:
    converter = ScrapeConverter("big", "127.0.0.1", 0)
    for family in parse(BIG_BODY, OPENMETRICS, {}, False, ()).families:
        converter.add_family(family)
    per_scrape = converter.points + len(REPORT_METRICS)
    assert len(converter.serialize()) > 2 * RECORD_LIMIT
    data = local_stack.config.data_dir

    def complete_scrapes() -> list[int] | None:
        found = Counter(time_ms(r) for r in rows(data, "service_name = 'big'"))
        assert max(found.values(), default=0) <= per_scrape, "a point landed twice"
        complete = [t for t, count in found.items() if count == per_scrape]
        return complete if len(complete) >= 3 else None

    wait_until(complete_scrapes, 90, "three complete scrapes of the big target")
    points = Counter(
        (time_ms(r), r["metric_name"], tuple(sorted((r["attributes"] or {}).items())))
        for r in rows(data, "service_name = 'big'")
    )
    assert max(points.values()) == 1
    records = local_stack.records(METRICS_TOPIC, f"big/127.0.0.1:{BIG}".encode(), 6)
    assert len(records) >= 6 and all(len(r.value() or b"") <= RECORD_LIMIT for r in records)
    assert 'reason="too_large"' not in scraper_metrics()

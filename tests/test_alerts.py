"""The alerts flow on the real stack: a threshold crossed by SDK metrics fires, notifies and resolves."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from confluent_kafka import Producer
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from schemas.topics import ROLLUPS_TOPIC
from talonflow.query import run_query
from tests.conftest import LocalStack
from tests.isolated import Flows, isolated_flows

pytestmark = pytest.mark.integration
FUTURE_DAYS = itertools.count(30)
WEBHOOK_PORT = 18099  # tests/conftest.py routes every notification of the session stack here


@pytest.fixture
def webhook() -> Iterator[list[dict[str, Any]]]:
    """A local Alertmanager-webhook receiver: the POSTed documents, in arrival order."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", WEBHOOK_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()


def set_queue_depth(local_stack: LocalStack, instance: str, depth: int) -> None:
    resource = Resource.create({"service.name": "queue-worker", "service.instance.id": instance})
    exporter = OTLPMetricExporter(endpoint=local_stack.grpc_endpoint, insecure=True)
    meters = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter, 3_600_000)]
    )
    meters.get_meter("talonflow.tests").create_gauge("test.queue.depth").set(depth)
    meters.shutdown()


def transitions(local_stack: LocalStack, instance: str) -> pl.DataFrame:
    try:
        rows = run_query(local_stack.config, "SELECT * FROM alerts WHERE alertname = 'TestQueueBacklog'")
    except Exception:  # no alert file yet
        return pl.DataFrame()
    return rows.filter(pl.col("labels").map.get("service.instance.id") == instance).sort("time")


def at_least(rows: pl.DataFrame, count: int) -> pl.DataFrame | None:
    return rows if rows.height >= count else None


def wait_for(check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (result := check()) is not None:
            return result
        time.sleep(1)
    raise AssertionError("timed out")


def test_threshold_fires_notifies_and_resolves(
    local_stack: LocalStack, webhook: list[dict[str, Any]]
) -> None:
    instance = uuid.uuid4().hex[:10]
    set_queue_depth(local_stack, instance, 75)
    fired = wait_for(lambda: at_least(transitions(local_stack, instance), 1))
    first = fired.row(0, named=True)
    assert (first["state"], first["previous_state"], first["value"]) == ("firing", "inactive", 75.0)
    assert (
        first["severity"] == "warning"
        and dict(first["annotations"])["summary"] == f"queue of {instance} at 75"
    )

    def notified(status: str) -> dict[str, Any] | None:
        for document in webhook:
            for alert in document["alerts"]:
                if alert["labels"].get("service.instance.id") == instance and alert["status"] == status:
                    return alert
        return None

    alert = wait_for(lambda: notified("firing"), timeout=30)
    assert alert["fingerprint"] == first["fingerprint"] and alert["labels"]["alertname"] == "TestQueueBacklog"

    set_queue_depth(local_stack, instance, 10)
    both = wait_for(lambda: at_least(transitions(local_stack, instance), 2))
    assert both["state"].to_list() == ["firing", "resolved"]
    resolved = wait_for(lambda: notified("resolved"), timeout=30)
    assert resolved["endsAt"] != "0001-01-01T00:00:00Z"
    time.sleep(3)
    assert transitions(local_stack, instance).height == 2  # nothing repeated


def rollup_document(metric: str, instance: str, end: datetime, value: float) -> bytes:
    """A 1-minute gauge rollup as the rollups flow writes it to `talon_rollups`."""
    labels = {"service.name": "killed-rules", "service.instance.id": instance}
    document = {
        "window_start": f"{end - timedelta(minutes=1):%Y-%m-%dT%H:%M:%SZ}",
        "window_end": f"{end:%Y-%m-%dT%H:%M:%SZ}",
        "resolution": "1m",
        "series_id": f"{metric}/{instance}",
        "metric_name": metric,
        "type": "gauge",
        "service_name": "killed-rules",
        "attributes": labels,
        "points": 1,
        "count": 1.0,
        "last": value,
    }
    return json.dumps(document).encode()


def expected_transitions(
    instances: list[str], ends: list[datetime], high: list[bool]
) -> set[tuple[str, ...]]:
    """Per instance: `Slow` (for: 1m) goes pending, then firing, then resolved; `Fast` fires at once."""
    expected: set[tuple[str, ...]] = set()
    for instance in instances:
        slow = fast = "inactive"
        for end, on in zip(ends, high, strict=True):
            at = end.isoformat()
            if on and slow == "inactive":
                slow = "pending"
                expected.add(("Slow", instance, at, "pending"))
            elif on and slow == "pending":
                slow = "firing"
                expected.add(("Slow", instance, at, "firing"))
            elif not on and slow == "firing":
                slow = "inactive"
                expected.add(("Slow", instance, at, "resolved"))
            if on != (fast == "firing"):
                fast = "firing" if on else "inactive"
                expected.add(("Fast", instance, at, "firing" if on else "resolved"))
    return expected


def stream_windows(
    local_stack: LocalStack,
    flows: Flows,
    metric: str,
    instances: list[str],
    ends: list[datetime],
    high: list[bool],
) -> None:
    """One window of every instance every 0.4 s, killing and restarting the flows four times."""
    producer = Producer({"bootstrap.servers": local_stack.config.kafka.bootstrap_servers})
    kills = random.sample(range(2, len(ends) - 2), 4)
    for index, (end, on) in enumerate(zip(ends, high, strict=True)):
        for instance in instances:
            document = rollup_document(metric, instance, end, 90.0 if on else 10.0)
            producer.produce(ROLLUPS_TOPIC, document, instance.encode())
        producer.flush(10)
        time.sleep(0.4)
        if index in kills:
            flows.kill()
            flows.start()


@pytest.mark.parametrize(("processes", "workers"), [(1, 2), (2, 1)], ids=["-w 2", "two processes"])
def test_kill_9_during_a_stream_loses_and_repeats_no_transition(
    local_stack: LocalStack, tmp_path: Path, processes: int, workers: int
) -> None:
    """Rules spread over workers; recovery restores their states: every transition once, none lost."""
    metric, tag = f"killed.depth.{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:6]
    expr = {"value": {"metric": metric, "field": "last", "by": ["service.instance.id"]}}
    rules = {
        "groups": [
            {
                "name": "killed",
                "rules": [
                    {
                        "alert": f"Slow{tag}",
                        "expr": expr,
                        "op": ">",
                        "threshold": 50,
                        "for": "1m",
                        "labels": {"severity": "info"},
                    },
                    {
                        "alert": f"Fast{tag}",
                        "expr": expr,
                        "op": ">",
                        "threshold": 80,
                        "labels": {"severity": "info"},
                    },
                ],
            }
        ]
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    alerts = {"rule_files": ["rules.yaml"], "settle": "1s"}
    flows, data = isolated_flows(local_stack, tmp_path, "alerts", {"alerts": alerts}, processes, workers)
    # Windows in the future, a day later for each test: neither the session's own rollups (now) nor
    # an earlier test's windows, which every rule reads too, move these rules' event time past them.
    base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=next(FUTURE_DAYS))
    ends = [base + timedelta(minutes=m) for m in range(26)]
    high = [m % 5 < 3 for m in range(25)] + [False]  # the last window only closes the one before
    instances = ["i0", "i1", "i2"]
    flows.start()
    try:
        stream_windows(local_stack, flows, metric, instances, ends, high)
        expected = expected_transitions(instances, ends[:-1], high[:-1])

        def found() -> list[tuple[str, ...]]:
            files = list(data.glob("alerts/date=*/hour=*/*.parquet"))
            if not files:
                return []
            rows = pl.read_parquet(files).filter(pl.col("alertname").str.ends_with(tag))
            return [
                (
                    row["alertname"].removesuffix(tag),
                    dict(row["labels"])["service.instance.id"],
                    row["time"].isoformat(),
                    row["state"],
                )
                for row in rows.iter_rows(named=True)
            ]

        deadline = time.monotonic() + 90
        while len(found()) < len(expected) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(3)  # a duplicate would show now
        rows = found()
    finally:
        flows.stop()
    assert len(expected) == 75
    assert len(rows) == len(set(rows)), f"duplicated transitions\n{flows.log_tail()}"
    missing, extra = sorted(expected - set(rows)), sorted(set(rows) - expected)
    assert not missing and not extra, f"missing {missing}\nextra {extra}\n{flows.log_tail()}"

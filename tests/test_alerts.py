"""The alerts flow on the real stack: a threshold crossed by SDK metrics fires, notifies and resolves."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import polars as pl
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from talonflow.query import run_query
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration
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

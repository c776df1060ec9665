"""The alerts flow on the real stack: PromQL rules fire, notify, resolve; kill -9 loses none."""

from __future__ import annotations

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
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from schemas.topics import METRICS_TOPIC
from talonflow.query import run_query
from tests.conftest import LocalStack
from tests.isolated import isolated_flows

pytestmark = pytest.mark.integration
WEBHOOK_PORT = 18099  # tests/conftest.py routes every notification of the session stack here
STEP = timedelta(seconds=15)  # the kill test's group interval, and its samples' spacing in event time


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


def set_gauge(local_stack: LocalStack, name: str, unit: str, instance: str, value: float) -> None:
    """One export of one gauge by the OTel SDK, as an agent `queue-worker/<instance>`."""
    resource = Resource.create({"service.name": "queue-worker", "service.instance.id": instance})
    exporter = OTLPMetricExporter(endpoint=local_stack.grpc_endpoint, insecure=True)
    meters = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter, 3_600_000)]
    )
    meters.get_meter("talonflow.tests").create_gauge(name, unit=unit).set(value)
    meters.shutdown()


def transitions(local_stack: LocalStack, alertname: str, instance: str) -> pl.DataFrame:
    try:
        rows = run_query(local_stack.config, f"SELECT * FROM alerts WHERE alertname = '{alertname}'")
    except Exception:  # no alert file yet
        return pl.DataFrame()
    return rows.filter(pl.col("labels").map.get("instance") == instance).sort("time")


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
    """`test_queue_depth > 50` (the SDK's `test.queue.depth`), in a group evaluated every second."""
    instance = uuid.uuid4().hex[:10]
    set_gauge(local_stack, "test.queue.depth", "", instance, 75)
    fired = wait_for(lambda: at_least(transitions(local_stack, "TestQueueBacklog", instance), 1))
    first = fired.row(0, named=True)
    assert (first["state"], first["previous_state"], first["value"]) == ("firing", "inactive", 75.0)
    labels = dict(first["labels"])
    assert (labels["job"], labels["alertname"], labels["severity"]) == (
        "queue-worker",
        "TestQueueBacklog",
        "warning",
    )
    assert dict(first["annotations"])["summary"] == f"queue of {instance} at 75"

    def notified(status: str) -> dict[str, Any] | None:
        for document in webhook:
            for alert in document["alerts"]:
                if alert["labels"].get("instance") == instance and alert["status"] == status:
                    return alert
        return None

    alert = wait_for(lambda: notified("firing"), timeout=30)
    assert alert["fingerprint"] == first["fingerprint"] and alert["labels"]["alertname"] == "TestQueueBacklog"

    set_gauge(local_stack, "test.queue.depth", "", instance, 10)
    both = wait_for(lambda: at_least(transitions(local_stack, "TestQueueBacklog", instance), 2))
    assert both["state"].to_list() == ["firing", "resolved"]
    resolved = wait_for(lambda: notified("resolved"), timeout=30)
    assert resolved["endsAt"] != "0001-01-01T00:00:00Z"
    time.sleep(3)
    assert transitions(local_stack, "TestQueueBacklog", instance).height == 2  # nothing repeated


def test_for_30s_in_a_15s_group_fires_two_intervals_after_pending(local_stack: LocalStack) -> None:
    """`for: 30s` with `interval: 15s`: pending at an evaluation, firing exactly 30 s of event time later."""
    instance = uuid.uuid4().hex[:10]
    set_gauge(local_stack, "test.queue.stuck", "1", instance, 0.9)  # unit "1": test_queue_stuck_ratio
    fired = wait_for(lambda: at_least(transitions(local_stack, "TestQueueStuck", instance), 2), timeout=90)
    pending, firing = fired.row(0, named=True), fired.row(1, named=True)
    assert (pending["state"], firing["state"], firing["previous_state"]) == ("pending", "firing", "pending")
    assert firing["time"] - pending["time"] == timedelta(seconds=30)
    assert pending["time"].timestamp() % 15 == 0  # evaluations at the group's aligned times
    assert (
        firing["starts_at"] == firing["time"]
        and dict(firing["annotations"])["summary"] == f"{instance} stuck at 90%"
    )
    set_gauge(local_stack, "test.queue.stuck", "1", instance, 0.1)
    done = wait_for(lambda: at_least(transitions(local_stack, "TestQueueStuck", instance), 3), timeout=60)
    assert done["state"].to_list() == ["pending", "firing", "resolved"]


def depth_request(metric: str, values: dict[str, float], at: datetime) -> bytes:
    """One OTLP export request with one gauge point per instance, as the receiver writes it to Kafka."""
    request = ExportMetricsServiceRequest()
    for instance, value in values.items():
        resource = request.resource_metrics.add()
        for key, text in (("service.name", "killed-rules"), ("service.instance.id", instance)):
            resource.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=text)))
        point = resource.scope_metrics.add().metrics.add(name=metric).gauge.data_points.add()
        point.time_unix_nano, point.as_double = int(at.timestamp() * 1e9), value
    return request.SerializeToString()


def expected_transitions(
    instances: list[str], evaluations: list[datetime], high: list[bool]
) -> set[tuple[str, ...]]:
    """Per instance: `Slow` (for: 30s, every 15 s) goes pending, fires at its third high evaluation,
    resolves; `Fast` (for: 0s) fires at once. Evaluation k sees the sample of step k - 1."""
    expected: set[tuple[str, ...]] = set()
    for instance in instances:
        slow, active, fast = "inactive", evaluations[0], False
        for at, on in zip(evaluations, high, strict=True):
            when = at.isoformat()
            if on and slow == "inactive":
                slow, active = "pending", at
                expected.add(("Slow", instance, when, "pending"))
            elif on and slow == "pending" and at - active >= timedelta(seconds=30):
                slow = "firing"
                expected.add(("Slow", instance, when, "firing"))
            elif not on and slow != "inactive":
                expected.add(("Slow", instance, when, "resolved" if slow == "firing" else "inactive"))
                slow = "inactive"
            if on != fast:
                fast = on
                expected.add(("Fast", instance, when, "firing" if on else "resolved"))
    return expected


@pytest.mark.parametrize(("processes", "workers"), [(1, 2), (2, 1)], ids=["-w 2", "two processes"])
def test_kill_9_during_a_stream_loses_and_repeats_no_transition(
    local_stack: LocalStack, tmp_path: Path, processes: int, workers: int
) -> None:
    """Two groups (one per worker) over raw samples 15 s of event time apart, sent 0.4 s apart while
    the flows are killed and restarted four times: every transition once, none lost."""
    tag = uuid.uuid4().hex[:8]
    metric = f"killed_depth_{tag}"
    rules = {
        "groups": [
            {
                "name": f"slow-{tag}",
                "interval": "15s",
                "rules": [{"alert": f"Slow{tag}", "expr": f"{metric} > 50", "for": "30s"}],
            },
            {
                "name": f"fast-{tag}",
                "interval": "15s",
                "rules": [{"alert": f"Fast{tag}", "expr": f"{metric} > 80"}],
            },
        ]
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    alerts = {"rule_files": ["rules.yaml"], "allowed_lateness": "5s", "commit_interval": "1s"}
    flows, data = isolated_flows(local_stack, tmp_path, "alerts", {"alerts": alerts}, processes, workers)
    now = datetime.now(UTC)
    base = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    steps = 26
    high = [k % 5 < 3 for k in range(steps - 1)] + [False]
    instances = ["i0", "i1", "i2"]
    flows.start()
    try:
        producer = Producer({"bootstrap.servers": local_stack.config.kafka.bootstrap_servers})
        kills = random.sample(range(2, steps - 2), 4)
        for k, on in enumerate(high):
            values = {instance: 90.0 if on else 10.0 for instance in instances}
            # one key: one partition, so the steps arrive in order whichever worker reads it
            producer.produce(
                METRICS_TOPIC,
                depth_request(metric, values, base + k * STEP + timedelta(seconds=5)),
                tag.encode(),
            )
            producer.flush(10)
            time.sleep(0.4)
            if k in kills:
                flows.kill()
                flows.start()
        expected = expected_transitions(instances, [base + (k + 1) * STEP for k in range(steps)], high)

        def found() -> list[tuple[str, ...]]:
            files = list(data.glob("alerts/date=*/hour=*/*.parquet"))
            if not files:
                return []
            rows = pl.read_parquet(files).filter(pl.col("alertname").str.ends_with(tag))
            return [
                (
                    row["alertname"].removesuffix(tag),
                    dict(row["labels"])["instance"],
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


def test_absent_of_a_metric_never_sent_fires_while_other_metrics_flow(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """`absent(never_sent_metric{job="x"})` with `for: 0s` and `for: 30s`, in a group that no sample
    ever reaches, evaluated on the pipeline's time as other metrics flow, in two processes killed
    and restarted once: firing once, pending then firing 30 s later, each transition once."""
    tag = uuid.uuid4().hex[:8]
    metric, never = f"flowing_depth_{tag}", f"never_sent_metric_{tag}"
    rules = {
        "groups": [
            {
                "name": f"absent-{tag}",
                "interval": "15s",
                "rules": [
                    {"alert": f"Gone{tag}", "expr": f'absent({never}{{job="x"}})'},
                    {"alert": f"GoneFor30s{tag}", "expr": f'absent({never}{{job="x"}})', "for": "30s"},
                ],
            },
            {
                "name": f"flowing-{tag}",
                "interval": "15s",
                "rules": [{"alert": f"Deep{tag}", "expr": f"{metric} > 80"}],
            },
        ]
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    alerts = {"rule_files": ["rules.yaml"], "allowed_lateness": "5s", "commit_interval": "1s"}
    flows, data = isolated_flows(local_stack, tmp_path, "alerts", {"alerts": alerts}, 2, 1)
    base = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    steps = 10
    flows.start()
    try:
        producer = Producer({"bootstrap.servers": local_stack.config.kafka.bootstrap_servers})
        for k in range(steps):
            producer.produce(
                METRICS_TOPIC,
                depth_request(metric, {"i0": 90.0}, base + k * STEP + timedelta(seconds=5)),
                tag.encode(),
            )
            producer.flush(10)
            time.sleep(0.4)
            if k == steps // 2:
                flows.kill()
                flows.start()

        def rows() -> pl.DataFrame:
            files = list(data.glob("alerts/date=*/hour=*/*.parquet"))
            if not files:
                return pl.DataFrame()
            return (
                pl.read_parquet(files)
                .filter(pl.col("alertname").str.ends_with(tag))
                .sort("time", "alertname")
            )

        def complete() -> pl.DataFrame | None:
            found = rows()
            return found if found.height >= 4 else None

        found = wait_for(complete, timeout=90)
        time.sleep(3)  # a duplicate would show now
        found = rows()
    finally:
        flows.stop()
    by_rule = {
        name.removesuffix(tag): group.sort("time")
        for (name,), group in found.group_by("alertname", maintain_order=True)
    }
    assert sorted(by_rule) == ["Deep", "Gone", "GoneFor30s"], flows.log_tail()
    gone, gone_for, deep = by_rule["Gone"], by_rule["GoneFor30s"], by_rule["Deep"]
    assert gone["state"].to_list() == ["firing"] and gone_for["state"].to_list() == ["pending", "firing"]
    assert gone_for["time"][1] - gone_for["time"][0] == timedelta(seconds=30)
    assert gone["time"][0] == gone_for["time"][0] and gone["time"][0].timestamp() % 15 == 0
    assert all(dict(labels) == {"alertname": f"Gone{tag}", "job": "x"} for labels in gone["labels"])
    assert (
        deep["state"].to_list() == ["firing"] and deep["time"][0] == base + STEP
    )  # the flowing metric's own

"""The Grafana dashboards of compose/grafana, queried as Grafana queries them, on the real stack.

Two agents of a seed-like fleet export the metrics the seed specs name (agent health, heartbeats,
LLM latency, tokens and cost, errors, queues, PicoClaw, Wundr, OpenClaw gateway, a Windows host,
and the GenAI semantic conventions) through the OpenTelemetry SDK's OTLP exporter into the
receiver, with 30 minutes of backdated points every 15 s so that a dashboard range holds data.
Then for every template variable and every panel target the test sends the request Grafana's
Prometheus data source sends (tests/grafana_requests.py: step, aligned start and end, variables,
form POST to /api/v1/query_range) and requires a 200 with data for every one.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from tests.conftest import LocalStack
from tests.grafana_requests import panel_query, targets, variable_value
from tests.test_ingest import wait_for_rows

pytestmark = pytest.mark.integration

DASHBOARDS = sorted(
    (Path(__file__).resolve().parents[1] / "compose" / "grafana" / "dashboards").glob("*.json")
)
SCRAPE_MS = 60_000  # the provisioned data source's timeInterval
STEP_S, POINTS = 15, 120  # 30 minutes of points
RUN = uuid.uuid4().hex[:6]
JOBS = (f"fleet-{RUN}-a", f"fleet-{RUN}-b")
CUMULATIVE = AggregationTemporality.CUMULATIVE
BOUNDS = (0.1, 0.5, 1.0, 5.0, 30.0)
SHARES = (0.1, 0.4, 0.7, 0.9, 0.97, 1.0)  # cumulative share of observations per bucket, +Inf last

Value = Callable[[int], float]  # point index -> value


@dataclass(frozen=True)
class Seeded:
    """One metric as an agent reports it: kind counter, gauge or histogram (unit s: observations)."""

    name: str
    kind: str
    unit: str
    labels: tuple[dict[str, str], ...] = ({},)
    value: Value = lambda i: float(i)


def _every(n: int) -> Value:
    return lambda i: float(i // n)


SEEDED = (
    # seed 000: agent core, LLM, Windows host
    Seeded("agent.state", "gauge", "", value=lambda i: float(i % 3)),
    Seeded("agent.active_sessions", "gauge", "", value=lambda i: float(2 + i % 4)),
    Seeded("agent.last_heartbeat_timestamp", "gauge", ""),  # value: the sample's own time
    Seeded("agent.uptime", "counter", "s", value=lambda i: 600.0 + i * STEP_S),
    Seeded("agent.tasks", "counter", "", ({"task_type": "email", "status": "completed"},), lambda i: i * 3.0),
    Seeded("agent.tasks", "counter", "", ({"task_type": "email", "status": "failed"},), _every(4)),
    Seeded("agent.errors", "counter", "", ({"error_type": "timeout", "component": "gmail"},), _every(3)),
    Seeded("agent.loop.health", "gauge", "", ({"loop_id": "1", "loop_name": "inbox"},), lambda i: 1.0),
    Seeded("agent.loop.health", "gauge", "", ({"loop_id": "3", "loop_name": "calendar"},), lambda i: 0.0),
    Seeded(
        "agent.queue.depth", "gauge", "", ({"queue_type": "tasks"}, {"queue_type": "tts"}), lambda i: i % 60
    ),
    Seeded("llm.requests", "counter", "", ({"model": "gpt-4o", "status": "ok"},), lambda i: i * 5.0),
    Seeded("llm.requests", "counter", "", ({"model": "gpt-4o", "status": "error"},), _every(5)),
    Seeded("llm.request.duration", "histogram", "s", ({"model": "gpt-4o"}, {"model": "claude-sonnet"})),
    Seeded("llm.tokens", "counter", "", ({"model": "gpt-4o", "token_type": "input"},), lambda i: i * 900.0),
    Seeded("llm.cost.usd", "counter", "", ({"model": "gpt-4o"},), lambda i: i * 0.012),
    Seeded("windows_cpu_time", "counter", "", ({"core": "0,0", "mode": "idle"},), lambda i: i * 12.0),
    Seeded("windows_cs_physical_memory", "gauge", "By", value=lambda i: 16e9),
    Seeded("windows_os_physical_memory_free", "gauge", "By", value=lambda i: 6e9 - i * 1e7),
    Seeded("windows_logical_disk_free", "gauge", "By", ({"volume": "C:"},), lambda i: 5.5e10),
    Seeded("windows_logical_disk_size", "gauge", "By", ({"volume": "C:"},), lambda i: 2.5e11),
    # GenAI semantic conventions, as OpenClaw and the OTel GenAI instrumentations report them
    Seeded(
        "gen_ai.client.operation.duration",
        "histogram",
        "s",
        (
            {"gen_ai.request.model": "claude-sonnet", "gen_ai.provider.name": "anthropic"},
            {
                "gen_ai.request.model": "claude-sonnet",
                "gen_ai.provider.name": "anthropic",
                "error.type": "timeout",
            },
        ),
    ),
    Seeded(
        "gen_ai.client.token.usage",
        "histogram",
        "{token}",
        tuple({"gen_ai.request.model": "claude-sonnet", "gen_ai.token.type": t} for t in ("input", "output")),
    ),
    # seed 001: OpenClaw gateway
    Seeded("gateway.requests", "counter", "", ({"method": "agentTurn", "status": "200"},), lambda i: i * 7.0),
    Seeded("gateway.errors", "counter", "", ({"error_type": "ws_closed"},), _every(6)),
    Seeded("gateway.uptime", "gauge", "s", value=lambda i: 3600.0 + i * STEP_S),
    Seeded("heartbeat.stale", "counter", "", value=_every(10)),
    Seeded("task.latency", "histogram", "s"),
    Seeded("session.duration", "histogram", "s", ({"type": "main", "model": "claude-sonnet"},)),
    Seeded("spawn.queue.depth", "gauge", "", value=lambda i: float(i % 25)),
    # seed 002: PicoClaw
    Seeded("picoclaw_messages", "counter", "", ({"channel": "telegram"},), lambda i: i * 12.0),
    Seeded("picoclaw_provider_errors", "counter", "", ({"provider": "openrouter"},), _every(8)),
    Seeded("picoclaw_session_count", "gauge", "", value=lambda i: 3.0),
    Seeded("picoclaw_response_time", "histogram", "s"),
    # seed 003: Wundr orchestrator
    Seeded("wundr_agent_spawned", "counter", "", ({"session_type": "coder"},), lambda i: i * 2.0),
    Seeded("wundr_agent_completed", "counter", "", ({"session_type": "coder"},), lambda i: i * 1.5),
    Seeded("wundr_agent_failed", "counter", "", ({"session_type": "coder"},), _every(5)),
    Seeded("wundr_agent_running", "gauge", "", ({"session_type": "coder"},), lambda i: float(i % 7)),
    Seeded("wundr_model_request_duration", "histogram", "s", ({"provider": "anthropic", "model": "opus"},)),
    Seeded(
        "wundr_model_cost_dollars",
        "counter",
        "",
        ({"provider": "anthropic", "model": "opus"},),
        lambda i: i * 0.3,
    ),
    Seeded("wundr_memory_cache_hits", "counter", "", ({"tier": "hot"},), lambda i: i * 9.0),
    Seeded("wundr_memory_cache_misses", "counter", "", ({"tier": "hot"},), lambda i: i * 1.0),
    Seeded("wundr_tool_errors", "counter", "", ({"tool_name": "bash", "error_type": "exit"},), _every(4)),
    Seeded("wundr_queue_depth", "gauge", "", ({"queue_name": "tasks"},), lambda i: float(100 + i % 9)),
)


def _points(seeded: Seeded, labels: dict[str, str], steps: range, first_s: int) -> Sum | Gauge | Histogram:
    """The points of one series at steps `steps` (0 = the first, at `first_s`): cumulative from before it."""
    start_ns = (first_s - 60) * 1_000_000_000
    times = [(first_s + i * STEP_S) * 1_000_000_000 for i in steps]
    if seeded.kind == "histogram":
        observations = []
        for i, t in zip(steps, times, strict=True):
            total = (i + 1) * 10
            cumulative = [round(total * share) for share in SHARES]
            counts = [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]
            observations.append(
                HistogramDataPoint(labels, start_ns, t, total, total * 0.8, counts, BOUNDS, 0.05, 42.0)
            )
        return Histogram(observations, CUMULATIVE)
    timestamp = seeded.name.endswith("timestamp")
    numbers = [
        NumberDataPoint(labels, start_ns, t, float(t // 1_000_000_000) if timestamp else seeded.value(i))
        for i, t in zip(steps, times, strict=True)
    ]
    return Sum(numbers, CUMULATIVE, True) if seeded.kind == "counter" else Gauge(numbers)


def _metrics_data(job: str, steps: range, first_s: int) -> MetricsData:
    metrics = [
        Metric(s.name, "", s.unit, _points(s, labels, steps, first_s)) for s in SEEDED for labels in s.labels
    ]
    resource = Resource.create({"service.name": job, "service.instance.id": f"{job}-1"})
    scope = ScopeMetrics(InstrumentationScope("talonflow.tests.grafana"), metrics, "")
    return MetricsData([ResourceMetrics(resource, [scope], "")])


def _sent_points() -> int:
    return len(JOBS) * POINTS * sum(len(s.labels) for s in SEEDED)


@pytest.fixture(scope="module")
def fleet(local_stack: LocalStack) -> tuple[int, int]:
    """Exports the fleet's 30 minutes through the SDK exporter; returns the data's (first, last) ms."""
    end_s = (int(time.time()) // 60) * 60 - STEP_S
    first_s = end_s - (POINTS - 1) * STEP_S
    exporter = OTLPMetricExporter(endpoint=local_stack.grpc_endpoint, insecure=True, timeout=60)
    for job in JOBS:
        for chunk in range(0, POINTS, 40):  # 10 minutes per request: well under the request limit
            steps = range(chunk, min(chunk + 40, POINTS))
            assert exporter.export(_metrics_data(job, steps, first_s)) == MetricExportResult.SUCCESS
    exporter.shutdown()
    where = "service_name IN ({})".format(", ".join(f"'{job}'" for job in JOBS))
    rows, _ = wait_for_rows(local_stack.config.data_dir, "metrics", where, _sent_points(), timeout=180)
    assert rows == _sent_points()
    _wait_until_queryable(local_stack, end_s)
    return first_s * 1000, end_s * 1000


def _wait_until_queryable(local_stack: LocalStack, end_s: int, timeout: float = 120) -> None:
    """The console answers for the sent points: Parquet holding them is not yet the console seeing them."""
    jobs = "|".join(JOBS)
    query = urllib.parse.urlencode({"query": f'count(agent_state{{job=~"{jobs}"}})', "time": end_s})
    deadline, body = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status, body = _call(f"{local_stack.config.console.url}/api/v1/query?{query}")
        if status == 200 and body["data"]["result"]:
            return
        time.sleep(1)
    raise AssertionError(f"the console has no agent_state of {JOBS} after {timeout}s: {body}")


def _call(url: str, form: dict[str, str] | None = None) -> tuple[int, Any]:
    body = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, body, {"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_answers_grafanas_request_with_data(
    local_stack: LocalStack, fleet: tuple[int, int], path: Path
) -> None:
    dashboard = json.loads(path.read_text())
    base = local_stack.config.console.url
    to_ms = int(time.time() * 1000)
    from_ms = to_ms - 6 * 3_600_000  # the dashboards open on the last 6 hours
    assert dashboard["time"] == {"from": "now-6h", "to": "now"}
    selections: dict[str, str] = {}
    for variable in dashboard["templating"][
        "list"
    ]:  # label_values(job): what Grafana asks to fill the picker
        name = variable["definition"].removeprefix("label_values(").removesuffix(")")
        window = urllib.parse.urlencode({"start": from_ms // 1000, "end": to_ms // 1000})
        status, body = _call(f"{base}/api/v1/label/{name}/values?{window}")
        assert status == 200 and set(JOBS) <= set(body["data"]), body
        selections[variable["name"]] = variable_value(list(JOBS), variable)
    empty = []
    for panel, target in targets(dashboard):
        query = panel_query(target["expr"], panel, from_ms, to_ms, SCRAPE_MS, selections)
        form = query.form()
        # the range as sent, not as meant: a lossy format once moved it off the data by up to 83 min
        assert float(form["start"]) * 1000 < fleet[0] and float(form["end"]) * 1000 > fleet[1], form
        status, body = _call(f"{base}/api/v1/query_range", form)
        assert status == 200 and body["status"] == "success", f"{panel['title']}: {query.expr}: {body}"
        assert body["data"]["resultType"] == "matrix"
        series = body["data"]["result"]
        if not series or not any(s["values"] for s in series):
            empty.append(f"{panel['title']}: {form} -> {body['data']}")
    assert not empty, "panels without data:\n" + "\n".join(empty)

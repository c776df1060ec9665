"""The seed rules of rules/seeds/ end to end on the real stack: they fire and resolve, notify, and
amtool silences one.

The rule files are loaded through a talonflow.yaml (`alerts.rule_files`, `evaluation_interval: 1s`,
an Alertmanager `notifications:` section) by an alerts flow of their own reading the session's
Kafka. Exercised: picoclaw (seed 002) `HighMemoryUsage` and `PicoClawDown`, wundr (seed 003)
`HighAgentFailureRate` (a ratio of rates), and seed 000's `AgentLoopFailure` (a `for:`, and a
`$labels` template) and `LLMResponseTimeHigh` (histogram_quantile over rate). The telemetry comes
(a) from the real OTel SDK metrics exporter and (b) from talonflow's scraper reading
prometheus_client exporters. Notifications reach a local webhook server and an aiosmtpd SMTP
server; the real `amtool` silences one alert through the session stack's console.

Changed for wall time: the test copies of the rule files set every non-zero `for:` to 3s (the
expressions, labels and annotations are as written), and evaluation_interval is 1s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.topics import ALERTS_TOPIC
from tests.conftest import LocalStack
from tests.isolated import Flows, isolated_flows
from tests.scrape_targets import serve_registry
from tests.test_alertmanager_api import amtool
from tests.test_notify import HttpSink, SmtpSink, eventually

pytestmark = pytest.mark.integration

# This suite's ports (range 31000-31499).
WEBHOOK, SMTP, PICOCLAW_TARGET, FLEET_TARGET, SCRAPER_OPS = 31001, 31002, 31003, 31004, 31135
SEEDS = Path(__file__).resolve().parent.parent / "rules" / "seeds"
RULE_FILES = ("picoclaw_alerts.yml", "wundr_alerts.yml", "agent_alerts.yml")
SHORT_FOR = "3s"
MB = 1_000_000
# The alerts each telemetry path must fire and resolve, with their severity as the seed writes it.
SEVERITIES = {
    "HighMemoryUsage": "warning",  # seed 002: process_resident_memory_bytes{job="picoclaw"} > 52428800
    "HighAgentFailureRate": "warning",  # seed 003: rate(failed[5m]) / rate(spawned[5m]) > 0.1
    "AgentLoopFailure": "high",  # seed 000: agent_loop_health == 0, for: 1m
    "LLMResponseTimeHigh": "warning",  # seed 000: histogram_quantile(0.95, rate(..._bucket[5m])) > 5000
}
Event = dict[str, Any]


class SmtpAt(SmtpSink):
    """tests/test_notify.py's SMTP server on a port of this suite's range."""

    def __init__(self, port: int) -> None:  # SmtpSink picks a free port; the same server on ours
        self.messages: list[EmailMessage] = []
        self.port = port
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.controller.start()


def short_for_copy(source: Path, folder: Path) -> Path:
    """The rule file with each non-zero `for:` at SHORT_FOR; every other key as written."""
    document = yaml.safe_load(source.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if rule.get("for") not in (None, "0m", "0s", "0"):
                rule["for"] = SHORT_FOR
    target = folder / source.name
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


class AlertsTopic:
    """talon_alerts read from its start: the transitions (Alertmanager-shaped events) seen so far."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"seed-e2e-{uuid.uuid4()}"})
        partitions = self.consumer.list_topics(ALERTS_TOPIC, timeout=10).topics[ALERTS_TOPIC].partitions
        self.consumer.assign([TopicPartition(ALERTS_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        self.events: list[Event] = []

    def read(self) -> list[Event]:
        while (message := self.consumer.poll(0.2)) is not None:
            if not message.error():
                self.events.append(json.loads(message.value() or b"{}"))
        return self.events

    def of(self, match: Callable[[dict[str, str]], bool]) -> dict[str, list[Event]]:
        """Per alertname, the matching transitions, deduplicated (the topic is at least once), by time."""
        seen: dict[tuple[str, str, str], Event] = {}
        for event in self.read():
            if match(event["labels"]):
                seen[(event["fingerprint"], event["state"], event["evaluatedAt"])] = event
        out: dict[str, list[Event]] = {}
        for event in sorted(seen.values(), key=lambda e: e["evaluatedAt"]):
            out.setdefault(event["labels"]["alertname"], []).append(event)
        return out

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def topic(local_stack: LocalStack) -> Iterator[AlertsTopic]:
    reader = AlertsTopic(local_stack.config.kafka.bootstrap_servers)
    yield reader
    reader.close()


def reached(
    topic: AlertsTopic, match: Callable[[dict[str, str]], bool], names: list[str], state: str
) -> dict[str, list[Event]]:
    """The transitions once each of `names` has one in `state`, else nothing (to poll on)."""
    found = topic.of(match)
    return found if all(any(e["state"] == state for e in found.get(n, [])) for n in names) else {}


def notified(hook: HttpSink, match: Callable[[dict[str, str]], bool]) -> list[dict[str, Any]]:
    """The webhook's alerts about `match`, in arrival order."""
    return [a for body in hook.bodies("/hook") for a in body["alerts"] if match(a["labels"])]


def mailed(smtp: SmtpSink, marker: str) -> list[str]:
    """Subjects of the mails about `marker` (Alertmanager's default subject lists the labels' values)."""
    return [subject for m in smtp.messages if marker in (subject := str(m["Subject"]).strip())]


@pytest.fixture(scope="module")
def endpoints() -> Iterator[tuple[HttpSink, SmtpSink]]:
    hook, smtp = HttpSink(WEBHOOK), SmtpAt(SMTP)
    yield hook, smtp
    hook.server.shutdown()
    hook.server.server_close()
    smtp.controller.stop()


@pytest.fixture(scope="module")
def seed_flow(
    local_stack: LocalStack, endpoints: tuple[HttpSink, SmtpSink], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flows]:
    """An alerts flow with the seed rules and an Alertmanager config, as a user's talonflow.yaml says."""
    hook, smtp = endpoints
    root = tmp_path_factory.mktemp("seed-flow")
    rules = root / "rules"
    rules.mkdir()
    settings = {
        "alerts": {
            "rule_files": [str(short_for_copy(SEEDS / name, rules)) for name in RULE_FILES],
            "evaluation_interval": "1s",
            "commit_interval": "1s",
        },
        "notifications": {
            "global": {"smtp_smarthost": f"127.0.0.1:{smtp.port}", "smtp_from": "talonflow@example.com",
                       "smtp_require_tls": False},
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "instance"],
                "group_wait": "100ms",
                "group_interval": "1s",
                "repeat_interval": "1h",
                "routes": [{"matchers": ['severity="warning"'], "receiver": "mail", "continue": True},
                           {"receiver": "hook"}],
            },
            "receivers": [
                {"name": "hook", "webhook_configs": [{"url": f"{hook.url}/hook"}]},
                {"name": "mail", "email_configs": [{"to": "oncall@example.com"}]},
            ],
        },
    }  # fmt: skip
    flows, _data = isolated_flows(local_stack, root, "alerts", settings, 1, 1)
    flows.start()
    try:
        yield flows
    finally:
        flows.stop()


class SdkAgents:
    """Three agents exporting with the real OTel SDK every second: picoclaw, wundr and an OpenClaw
    agent, each `<service>/<instance>`. The gauges read `values`; counters and histograms are added to."""

    def __init__(self, endpoint: str, instance: str) -> None:
        self.values = {"memory": 30 * MB, "loop": 1.0}
        self.providers: list[MeterProvider] = []
        picoclaw, wundr, agent = (
            self._meter(endpoint, name, instance) for name in ("picoclaw", "wundr", "agent")
        )
        picoclaw.create_observable_gauge(
            "process.resident_memory", [self._observe("memory")], unit="By"
        )  # process_resident_memory_bytes
        self.spawned = wundr.create_counter("wundr.agent.spawned")  # wundr_agent_spawned_total
        self.failed = wundr.create_counter("wundr.agent.failed")
        agent.create_observable_gauge("agent.loop.health", [self._observe("loop", loop_id="main")])
        self.llm = agent.create_histogram("agent.llm.response.duration")  # ms, the SDK's default buckets
        self.spawned.add(5)
        self.failed.add(0)
        for _ in range(20):
            self.llm.record(100)

    def _meter(self, endpoint: str, service: str, instance: str) -> Any:
        resource = Resource.create({"service.name": service, "service.instance.id": instance})
        exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
        provider = MeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter, 1000)]
        )
        self.providers.append(provider)
        return provider.get_meter("talonflow.tests.seeds")

    def _observe(self, key: str, **attributes: str) -> Callable[[CallbackOptions], list[Observation]]:
        return lambda _options: [Observation(self.values[key], attributes)]

    def bad(self) -> None:
        self.values.update(memory=80 * MB, loop=0.0)
        self.failed.add(5)
        self.spawned.add(5)
        for _ in range(20):
            self.llm.record(9000)

    def good(self) -> None:
        self.values.update(memory=30 * MB, loop=1.0)
        self.spawned.add(1000)
        for _ in range(2000):
            self.llm.record(100)

    def close(self) -> None:
        for provider in self.providers:
            provider.shutdown()


class Exporters:
    """The same families for scraping: job `picoclaw` (its memory) and job `fleet` (the rest)."""

    def __init__(self) -> None:
        self.picoclaw_registry, fleet = CollectorRegistry(), CollectorRegistry()
        self.memory = Gauge("process_resident_memory_bytes", "RSS.", registry=self.picoclaw_registry)
        self.spawned = Counter("wundr_agent_spawned", "Agents spawned.", registry=fleet)
        self.failed = Counter("wundr_agent_failed", "Agents failed.", registry=fleet)
        self.loop = Gauge("agent_loop_health", "Loop health.", ["loop_id"], registry=fleet)
        self.llm = Histogram(
            "agent_llm_response_duration", "LLM time, ms.", buckets=(100, 1000, 5000, 10000), registry=fleet
        )
        self.memory.set(30 * MB)
        self.loop.labels("main").set(1)
        self.spawned.inc(5)
        for _ in range(20):
            self.llm.observe(90)
        self.picoclaw = serve_registry(self.picoclaw_registry, PICOCLAW_TARGET)
        self.fleet = serve_registry(fleet, FLEET_TARGET)

    def bad(self) -> None:
        self.memory.set(80 * MB)
        self.loop.labels("main").set(0)
        self.failed.inc(5)
        self.spawned.inc(5)
        for _ in range(20):
            self.llm.observe(9000)

    def good(self) -> None:
        self.memory.set(30 * MB)
        self.loop.labels("main").set(1)
        self.spawned.inc(1000)
        for _ in range(2000):
            self.llm.observe(90)

    def close(self) -> None:
        for server in (self.picoclaw, self.fleet):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def scraper(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Exporters, str]]:
    """talonflow's scraper (`python -m scrape`, as `talonflow up` runs it) on the two exporters."""
    run = uuid.uuid4().hex[:10]
    exporters = Exporters()
    root = tmp_path_factory.mktemp("seed-scraper")
    jobs = [
        {"job_name": job, "scrape_interval": "1s", "scrape_timeout": "900ms",
         "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"run": run}}]}
        for job, port in (("picoclaw", PICOCLAW_TARGET), ("fleet", FLEET_TARGET))
    ]  # fmt: skip
    settings = {
        "kafka": {"bootstrap_servers": local_stack.config.kafka.bootstrap_servers},
        "scrape": {"processes": 1, "ops_port": SCRAPER_OPS},
        "scrape_configs": jobs,
    }
    (root / "scrape.yaml").write_text(yaml.safe_dump(settings))
    with (root / "scraper.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scrape", "--config", str(root / "scrape.yaml")], stdout=log, stderr=log
        )
        try:
            yield exporters, run
        finally:
            process.terminate()
            process.wait(30)
            exporters.close()


def check_cycle(
    topic: AlertsTopic,
    match: Callable[[dict[str, str]], bool],
    bad: Callable[[], None],
    good: Callable[[], None],
    flows: Flows,
) -> dict[str, list[Event]]:
    """Healthy, then bad until every seed alert fires, then good until each resolved: the transitions."""
    names = sorted(SEVERITIES)
    time.sleep(4)  # a few healthy samples: the rate windows start before the trouble
    assert not topic.of(match), "an alert fired on healthy telemetry"
    bad()
    try:
        eventually(lambda: reached(topic, match, names, "firing"), 120)
    except AssertionError as err:
        raise AssertionError(f"not every seed alert fired: {topic.of(match)}\n{flows.log_tail()}") from err
    good()
    found = eventually(lambda: reached(topic, match, names, "resolved"), 120)
    for name in names:
        states = [e["state"] for e in found[name]]
        assert states == ["pending", "firing", "resolved"], (name, states)
        pending, firing = found[name][0], found[name][1]
        assert firing["labels"]["severity"] == SEVERITIES[name]
        assert (parse_ms(firing["evaluatedAt"]) - parse_ms(pending["evaluatedAt"])) == 3000  # for: 3s at 1s
    loop = found["AgentLoopFailure"][1]
    assert loop["annotations"]["description"] == "Loop main is unhealthy"  # the template, as written
    return found


def parse_ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def check_notified(
    hook: HttpSink, smtp: SmtpSink, match: Callable[[dict[str, str]], bool], names: list[str], marker: str
) -> None:
    """Each alert's firing and resolved webhook notification; an email for each warning one."""

    def both() -> list[dict[str, Any]]:
        alerts = notified(hook, match)
        done = all({"firing", "resolved"} <= {a["status"] for a in alerts if a["labels"]["alertname"] == n}
                   for n in names)  # fmt: skip
        return alerts if done else []

    alerts = eventually(both, 30)
    for name in names:
        statuses = [a["status"] for a in alerts if a["labels"]["alertname"] == name]
        assert statuses == ["firing", "resolved"], (name, statuses)
    warnings = [n for n in names if SEVERITIES.get(n) == "warning"]

    def mails() -> list[str]:
        subjects = mailed(smtp, marker)
        return subjects if all(any(n in s for s in subjects) for n in warnings) else []

    subjects = eventually(mails, 30)
    assert all(s.startswith("[FIRING:1]") for s in subjects), subjects  # email sends no resolved by default


def test_seed_rules_fire_and_resolve_on_sdk_telemetry_and_amtool_silences_one(
    local_stack: LocalStack, seed_flow: Flows, endpoints: tuple[HttpSink, SmtpSink], topic: AlertsTopic
) -> None:
    hook, smtp = endpoints
    instance = uuid.uuid4().hex[:10]
    console = f"http://{local_stack.config.console.address}"  # the session stack's Alertmanager API
    silence = amtool(
        console, "silence", "add", "alertname=AgentLoopFailure", f"instance={instance}",
        "--comment=loop under repair", "--duration=1h",
    ).strip()  # fmt: skip
    agents = SdkAgents(local_stack.grpc_endpoint, instance)

    def mine(labels: dict[str, str]) -> bool:
        return labels.get("instance") == instance

    try:
        found = check_cycle(topic, mine, agents.bad, agents.good, seed_flow)
    finally:
        agents.close()
    assert found["HighMemoryUsage"][1]["labels"]["job"] == "picoclaw"
    notifying = [n for n in SEVERITIES if n != "AgentLoopFailure"]
    check_notified(hook, smtp, mine, notifying, instance)
    # the silenced alert: on talon_alerts (above), never notified
    assert not [a for a in notified(hook, mine) if a["labels"]["alertname"] == "AgentLoopFailure"]
    listed = json.loads(amtool(console, "silence", "query", "-o", "json", "alertname=AgentLoopFailure"))
    assert silence in [s["id"] for s in listed]
    amtool(console, "silence", "expire", silence)


def test_seed_rules_fire_and_resolve_on_scraped_telemetry(
    local_stack: LocalStack,
    seed_flow: Flows,
    endpoints: tuple[HttpSink, SmtpSink],
    scraper: tuple[Exporters, str],
    topic: AlertsTopic,
) -> None:
    hook, smtp = endpoints
    exporters, run = scraper

    def mine(labels: dict[str, str]) -> bool:
        return labels.get("run") == run

    found = check_cycle(topic, mine, exporters.bad, exporters.good, seed_flow)
    assert found["HighMemoryUsage"][1]["labels"]["instance"] == f"127.0.0.1:{PICOCLAW_TARGET}"
    check_notified(hook, smtp, mine, sorted(SEVERITIES), run)

    # seed 002's PicoClawDown: `up{job="picoclaw"} == 0` once the target stops answering; `up`
    # carries the target's labels (`run`), as Prometheus' does.
    def target(labels: dict[str, str]) -> bool:
        return mine(labels) and labels.get("job") == "picoclaw"

    exporters.picoclaw.shutdown()
    exporters.picoclaw.server_close()
    eventually(lambda: reached(topic, target, ["PicoClawDown"], "firing"), 60)
    exporters.picoclaw = serve_registry(exporters.picoclaw_registry, PICOCLAW_TARGET)
    down = eventually(lambda: reached(topic, target, ["PicoClawDown"], "resolved"), 60)
    assert [e["state"] for e in down["PicoClawDown"]] == ["pending", "firing", "resolved"]
    assert down["PicoClawDown"][1]["labels"]["severity"] == "critical"
    check_notified(hook, smtp, target, ["PicoClawDown"], f"127.0.0.1:{PICOCLAW_TARGET}")

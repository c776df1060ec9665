"""The default rules end to end without a stack: samples → PromQL rules → notifier → real local endpoints.

Each rule of alerts.yaml below is driven every 15 s with promtool-notation input series until it
fires and resolves; its events go to a notifier routed by severity (critical → PagerDuty and the
webhook, high → Slack and email, warning → email), whose payloads must arrive at a real HTTP
server and a real SMTP server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.alerts import transition_event
from rules.loader import load_groups
from rules.series_notation import expand_values, parse_series_labels
from rules.stream import GroupStream, StreamState
from rules.templates import TemplateContext
from sinks.notify import Notifier
from tests.test_notify import HttpSink, SmtpSink, eventually, severity_config
from tests.test_notify import http as http  # the fixtures, by name
from tests.test_notify import smtp as smtp

ALERTS_YAML = Path(__file__).resolve().parent.parent / "alerts.yaml"
STEP_MS = 15_000
CALLS = "gen_ai_client_operation_duration_seconds_count"
FIRES_AND_RESOLVES = {  # alert -> input series, one value per 15 s (promtool's expanding notation)
    "BudgetNearlySpent": {'orchestrator_budget_utilization_percent{job="orch", instance="o1"}': "95x8 50x8"},
    "LlmProviderErrorRateHigh": {
        CALLS + '{gen_ai_provider_name="openai"}': "0+9x100",
        CALLS + '{gen_ai_provider_name="openai", error_type="timeout"}': "0+1x40 40x60",
    },
    "AgentQueueBacklog": {'agent_queue_depth{job="queue", instance="q1"}': "60x12 10x4"},
}


def events_of(alert: str) -> list[dict[str, Any]]:
    context = TemplateContext()
    stream = GroupStream(load_groups([ALERTS_YAML], context), StreamState(), 60_000, context)
    end = 0
    for series, values in FIRES_AND_RESOLVES[alert].items():
        labels = parse_series_labels(series)
        points = [(i * STEP_MS, v) for i, v in enumerate(expand_values(values)) if v is not None]
        stream.add([(labels, [t for t, _ in points], [v for _, v in points])])
        end = max(end, points[-1][0])
    events = [transition_event(change, "") for change in stream.advance(end + STEP_MS)]
    return [e for e in events if e["labels"]["alertname"] == alert and e["status"] in ("firing", "resolved")]


@pytest.fixture
def notifier(http: HttpSink, smtp: SmtpSink) -> Iterator[Notifier]:
    started = Notifier(severity_config(http, smtp), timeout=2.0, backoff=0.05, attempts=3)
    started.start()
    yield started
    started.close()


def alerts_in(bodies: list[Any], name: str) -> list[dict[str, Any]]:
    return [a for body in bodies for a in body.get("alerts", []) if a["labels"]["alertname"] == name]


@pytest.mark.parametrize("alert", sorted(FIRES_AND_RESOLVES))
def test_seed_rule_notifies_its_severitys_channels(
    alert: str,
    notifier: Notifier,
    http: HttpSink,
    smtp: SmtpSink,
) -> None:
    events = events_of(alert)
    assert [e["status"] for e in events] == ["firing", "resolved"]
    severity = events[0]["labels"]["severity"]
    mails_before = len(smtp.messages)

    def mails() -> list[Any]:
        return [m for m in smtp.messages[mails_before:] if alert in str(m["Subject"])]

    notifier.submit(events[0])  # the resolution comes minutes later in event time; here once sent
    first: dict[str, Callable[[], Any]] = {
        "critical": lambda: http.bodies("/pagerduty"),
        "high": lambda: http.bodies("/slack/T0/B0/secret"),
        "warning": mails,
    }
    eventually(first[severity], timeout=10)
    notifier.submit(events[1])

    if severity == "critical":  # PagerDuty and the webhook send resolved notifications too
        eventually(
            lambda: (
                len(alerts_in(http.bodies("/webhook"), alert)) >= 2 and len(http.bodies("/pagerduty")) >= 2
            )
        )
    if severity == "critical":
        trigger, resolve = http.bodies("/pagerduty")[:2]
        assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
        assert trigger["dedup_key"] == resolve["dedup_key"] and alert in trigger["payload"]["summary"]
        statuses = [a["status"] for a in alerts_in(http.bodies("/webhook"), alert)]
        assert statuses == ["firing", "resolved"]
        assert alerts_in(http.bodies("/webhook"), alert)[0]["fingerprint"] == events[0]["fingerprint"]
    if severity in ("high", "warning"):
        mail = eventually(mails, timeout=10)[0]
        assert alert in str(mail["Subject"]) and "oncall@example.com" in str(mail["To"])
    if severity == "high":
        (chat,) = http.bodies("/slack/T0/B0/secret")[:1]
        assert chat["channel"] == "#alerts" and alert in str(chat)

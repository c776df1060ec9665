"""The seed rules end to end without a stack: rollups → rule engine → notifier → real local endpoints.

Each seed rule is driven minute by minute with the rollups of tests/unit/test_rules.py until it
fires and resolves; its events go to a notifier routed by severity (critical → PagerDuty and the
webhook, high → Slack and email, warning → email), whose payloads must arrive at a real HTTP
server and a real SMTP server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flows.rule_engine import RuleRunner
from sinks.notify import Notifier
from tests.test_notify import HttpSink, SmtpSink, eventually, severity_config
from tests.test_notify import http as http  # the fixtures, by name
from tests.test_notify import smtp as smtp
from tests.unit.test_rules import SEEDS, at, frame, seed

FIRES_AND_RESOLVES = {
    alert: (rows, until) for alert, rows, until, expected in reversed(SEEDS) if expected[-1][2] == "resolved"
}


def events_of(alert: str) -> list[dict[str, Any]]:
    rows, until = FIRES_AND_RESOLVES[alert]
    runner = RuleRunner(seed(alert))
    events = []
    for minute in range(1, until + 1):
        runner.add(frame(rows(minute)))
        events += runner.evaluate(at(minute))
    return [e for e in events if e["status"] in ("firing", "resolved")]


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

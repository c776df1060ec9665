"""Notifications end to end against real local endpoints: an HTTP server and an SMTP server."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from pydantic import ValidationError

from schemas.notify import NotifyConfig
from sinks.notify import Notifier
from sinks.notify.routing import RouteNode

T = TypeVar("T")
TIMING = {"group_wait": "200ms", "group_interval": "1s", "repeat_interval": "2s"}


def eventually(check: Callable[[], T], timeout: float = 5.0) -> T:
    """Poll until `check` returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check()!r}")
        time.sleep(0.02)
    return value


def stays(check: Callable[[], bool], seconds: float) -> None:
    """Assert `check` holds for the whole period (for things that must not happen)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert check()
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Post:
    path: str
    body: Any
    at: float


class HttpSink:
    """Records JSON POSTs by path; `fail[path]` lists statuses to answer before answering 200."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.fail: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with sink.lock:
                    sink.posts.append(Post(self.path, body, time.monotonic()))
                    queued = sink.fail.get(self.path)
                    status = queued.pop(0) if queued else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def at(self, path: str) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == path]

    def bodies(self, path: str) -> list[Any]:
        return [p.body for p in self.at(path)]


class SmtpSink:
    """A real SMTP server (aiosmtpd) keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@pytest.fixture
def http() -> Iterator[HttpSink]:
    sink = HttpSink()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.controller.stop()


@pytest.fixture
def notifiers() -> Iterator[Callable[..., Notifier]]:
    started: list[Notifier] = []

    def start(config: NotifyConfig, **options: Any) -> Notifier:
        notifier = Notifier(config, **{"timeout": 2.0, "backoff": 0.05, "attempts": 3, **options})
        notifier.start()
        started.append(notifier)
        return notifier

    yield start
    for notifier in started:
        notifier.close()


def alert(name: str, severity: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    all_labels = {"alertname": name, "severity": severity, **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {
            "summary": f"{name} on {labels.get('agent', 'fleet')}",
            "description": f"{name} is {status}",
            "runbook_url": f"https://runbooks.example/{name}",
        },
        "startsAt": "2026-11-25T10:00:00Z",
        "endsAt": "2026-11-25T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": hashlib.sha256(json.dumps(all_labels, sort_keys=True).encode()).hexdigest()[:16],
    }


def severity_config(http: HttpSink, smtp: SmtpSink) -> NotifyConfig:
    """critical → PagerDuty + webhook, high → Slack + email, warning → email, the rest → default."""
    return NotifyConfig.model_validate(
        {
            "route": {
                "receiver": "default",
                "group_by": ["alertname", "severity"],
                **TIMING,
                "routes": [
                    {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
                    {"matchers": ['severity="critical"'], "receiver": "hook"},
                    {"matchers": ["severity=high"], "receiver": "chat", "continue": True},
                    {"matchers": ['severity=~"high|warning"', 'team!="muted"'], "receiver": "mail"},
                ],
            },
            "receivers": [
                {"name": "default", "webhook_configs": [{"url": f"{http.url}/default"}]},
                {
                    "name": "pager",
                    "pagerduty_configs": [{"routing_key": "pd-routing-key", "url": f"{http.url}/pagerduty"}],
                },
                {"name": "hook", "webhook_configs": [{"url": f"{http.url}/webhook"}]},
                {
                    "name": "chat",
                    "slack_configs": [{"api_url": f"{http.url}/slack/T0/B0/secret", "channel": "#alerts"}],
                },
                {
                    "name": "mail",
                    "email_configs": [
                        {
                            "to": "oncall@example.com",
                            "from": "talonflow@example.com",
                            "smarthost": f"127.0.0.1:{smtp.port}",
                            "require_tls": False,
                        }
                    ],
                },
            ],
        }
    )


def webhook_config(urls: list[str], **route: Any) -> NotifyConfig:
    return NotifyConfig.model_validate(
        {
            "route": {"receiver": "hook", "group_by": ["alertname", "severity"], **TIMING, **route},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": url} for url in urls]}],
        }
    )


def notifications(notifier: Notifier, receiver: str, integration: str, outcome: str) -> float:
    labels = {"receiver": receiver, "integration": integration, "outcome": outcome}
    return notifier.metrics.registry.get_sample_value("talonflow_notifications_total", labels) or 0.0


def test_severity_routing_with_continue(
    http: HttpSink, smtp: SmtpSink, notifiers: Callable[..., Notifier]
) -> None:
    notifier = notifiers(severity_config(http, smtp), external_url="http://talonflow.test")
    mails_before = len(smtp.messages)
    for submitted in (
        alert("ToolErrors", "critical", agent="a1"),
        alert("SlowLLM", "high", agent="a2"),
        alert("TokenBudget", "warning", agent="a3"),
        alert("Heartbeat", "info", agent="a4"),
        alert("TokenBudget", "warning", agent="a5", team="muted"),  # team!="muted": to the default
    ):
        notifier.submit(submitted)

    [page] = eventually(lambda: http.bodies("/pagerduty"))
    assert page["routing_key"] == "pd-routing-key"
    assert page["event_action"] == "trigger"
    assert len(page["dedup_key"]) == 64
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["source"] == "talonflow"
    assert page["payload"]["summary"] == "[FIRING:1] ToolErrors critical"
    assert page["payload"]["custom_details"]["firing"] == ["ToolErrors on a1"]
    assert page["client_url"] == "http://talonflow.test"

    [hook] = eventually(lambda: http.bodies("/webhook"))
    assert hook["version"] == "4"
    assert hook["receiver"] == "hook"
    assert hook["status"] == "firing"
    assert hook["groupLabels"] == {"alertname": "ToolErrors", "severity": "critical"}
    assert hook["externalURL"] == "http://talonflow.test"
    assert hook["truncatedAlerts"] == 0
    assert hook["groupKey"].endswith(':{alertname="ToolErrors", severity="critical"}')
    assert [a["labels"]["agent"] for a in hook["alerts"]] == ["a1"]
    assert hook["alerts"][0]["annotations"]["runbook_url"] == "https://runbooks.example/ToolErrors"

    [chat] = eventually(lambda: http.bodies("/slack/T0/B0/secret"))
    assert chat["channel"] == "#alerts"
    assert chat["text"] == "[FIRING:1] SlowLLM high"
    assert chat["attachments"][0]["color"] == "danger"
    assert "SlowLLM on a2" in chat["attachments"][0]["text"]
    assert "https://runbooks.example/SlowLLM" in chat["attachments"][0]["text"]

    mails = eventually(lambda: smtp.messages[mails_before:] if len(smtp.messages) >= mails_before + 2 else [])
    by_subject = {m["Subject"]: m for m in mails}
    assert set(by_subject) == {"[FIRING:1] SlowLLM high", "[FIRING:1] TokenBudget warning"}
    warning = by_subject["[FIRING:1] TokenBudget warning"]
    assert warning["To"] == "oncall@example.com"
    assert warning["From"] == "talonflow@example.com"
    body = warning.get_content()
    assert "TokenBudget on a3" in body
    assert "agent = a3" in body
    assert "a5" not in body

    defaults = eventually(lambda: http.bodies("/default") if len(http.bodies("/default")) == 2 else [])
    assert sorted(d["groupLabels"]["alertname"] for d in defaults) == ["Heartbeat", "TokenBudget"]
    stays(lambda: len(http.posts) == 5 and len(smtp.messages) == mails_before + 2, 0.5)  # nothing else
    assert notifications(notifier, "pager", "pagerduty", "sent") == 1
    assert notifications(notifier, "mail", "email", "sent") == 2


def test_grouping_and_group_wait(http: HttpSink, notifiers: Callable[..., Notifier]) -> None:
    notifier = notifiers(webhook_config([f"{http.url}/hook"]))
    submitted_at = time.monotonic()
    notifier.submit(alert("ToolErrors", "critical", agent="a1"))
    notifier.submit(alert("ToolErrors", "critical", agent="a2"))
    notifier.submit(alert("SlowLLM", "critical", agent="a1"))

    posts = eventually(lambda: http.at("/hook") if len(http.at("/hook")) == 2 else [])
    assert all(p.at - submitted_at >= 0.2 for p in posts)  # group_wait
    by_name = {p.body["groupLabels"]["alertname"]: p.body for p in posts}
    tool = by_name["ToolErrors"]
    assert [a["labels"]["agent"] for a in tool["alerts"]] == ["a1", "a2"]
    assert tool["commonLabels"] == {"alertname": "ToolErrors", "severity": "critical"}
    assert tool["commonAnnotations"] == {
        "description": "ToolErrors is firing",
        "runbook_url": "https://runbooks.example/ToolErrors",
    }  # the summaries differ
    assert [a["labels"]["agent"] for a in by_name["SlowLLM"]["alerts"]] == ["a1"]


def test_new_alert_in_a_flushed_group_waits_for_group_interval(
    http: HttpSink, notifiers: Callable[..., Notifier]
) -> None:
    notifier = notifiers(webhook_config([f"{http.url}/hook"]))
    notifier.submit(alert("ToolErrors", "critical", agent="a1"))
    [first] = eventually(lambda: http.at("/hook"))
    notifier.submit(alert("ToolErrors", "critical", agent="a2"))
    second = eventually(lambda: http.at("/hook")[1:])[0]
    assert 0.9 <= second.at - first.at < 1.9  # the next group_interval tick, not after group_wait
    assert [a["labels"]["agent"] for a in second.body["alerts"]] == ["a1", "a2"]


def test_repeat_interval_and_deduplication(http: HttpSink, notifiers: Callable[..., Notifier]) -> None:
    notifier = notifiers(webhook_config([f"{http.url}/hook"]))
    firing = alert("ToolErrors", "critical", agent="a1")
    notifier.submit(firing)
    [first] = eventually(lambda: http.at("/hook"))
    for _ in range(5):
        notifier.submit(dict(firing))  # the same transition again: no news
    stays(lambda: len(http.at("/hook")) == 1, 1.5)  # the group_interval tick at +1s sent nothing
    repeat = eventually(lambda: http.at("/hook")[1:])[0]
    assert repeat.at - first.at >= 2.0  # repeat_interval
    assert repeat.body["alerts"] == first.body["alerts"]


def test_resolved_notifications(http: HttpSink, smtp: SmtpSink, notifiers: Callable[..., Notifier]) -> None:
    notifier = notifiers(severity_config(http, smtp))
    mails_before = len(smtp.messages)
    notifier.submit(alert("ToolErrors", "critical", agent="a1"))
    notifier.submit(alert("TokenBudget", "warning", agent="a3"))
    [trigger] = eventually(lambda: http.bodies("/pagerduty"))
    eventually(lambda: len(smtp.messages) == mails_before + 1)

    notifier.submit(alert("ToolErrors", "critical", "resolved", agent="a1"))
    notifier.submit(alert("TokenBudget", "warning", "resolved", agent="a3"))
    resolve = eventually(lambda: http.bodies("/pagerduty")[1:])[0]
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert resolve["routing_key"] == "pd-routing-key"
    resolved_hook = eventually(lambda: http.bodies("/webhook")[1:])[0]
    assert resolved_hook["status"] == "resolved"
    assert resolved_hook["alerts"][0]["status"] == "resolved"
    assert resolved_hook["alerts"][0]["endsAt"] == "2026-11-25T10:05:00Z"

    notifier.submit(alert("ToolErrors", "critical", "resolved", agent="a1"))  # repeated: no news
    # past repeat_interval: the resolved alerts left their groups; email has send_resolved false
    stays(lambda: len(http.bodies("/pagerduty")) == 2 and len(http.bodies("/webhook")) == 2, 2.5)
    assert len(smtp.messages) == mails_before + 1


def test_failing_endpoint_is_retried(http: HttpSink, notifiers: Callable[..., Notifier]) -> None:
    http.fail["/flaky"] = [500, 503]
    notifier = notifiers(webhook_config([f"{http.url}/flaky"]))
    notifier.submit(alert("ToolErrors", "critical", agent="a1"))
    posts = eventually(lambda: http.at("/flaky") if len(http.at("/flaky")) == 3 else [])
    assert posts[0].body == posts[2].body
    eventually(lambda: notifications(notifier, "hook", "webhook", "sent") == 1)
    assert notifications(notifier, "hook", "webhook", "failed") == 0


def test_client_error_is_not_retried_and_is_counted(
    http: HttpSink, notifiers: Callable[..., Notifier]
) -> None:
    http.fail["/bad"] = [400]
    notifier = notifiers(webhook_config([f"{http.url}/bad"]))
    notifier.submit(alert("ToolErrors", "critical", agent="a1"))
    eventually(lambda: notifications(notifier, "hook", "webhook", "failed") == 1)
    assert len(http.at("/bad")) == 1


def test_dead_endpoints_do_not_delay_others(http: HttpSink, notifiers: Callable[..., Notifier]) -> None:
    with socket.socket() as blackhole:  # accepts connections, never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        silent = f"http://127.0.0.1:{blackhole.getsockname()[1]}/hook"
        refused = f"http://127.0.0.1:{free_port()}/hook"
        notifier = notifiers(webhook_config([silent, refused, f"{http.url}/hook"]), timeout=2.0, attempts=2)
        submitted_at = time.monotonic()
        notifier.submit(alert("ToolErrors", "critical", agent="a1"))
        [post] = eventually(lambda: http.at("/hook"))
        assert post.at - submitted_at < 1.0  # not held up by the 2s timeout of the silent one
        eventually(lambda: notifications(notifier, "hook", "webhook", "failed") == 1)  # refused
        eventually(lambda: notifications(notifier, "hook", "webhook", "failed") == 2, timeout=10)  # silent


def test_email_requiring_tls_is_not_sent_in_clear(smtp: SmtpSink, notifiers: Callable[..., Notifier]) -> None:
    config = NotifyConfig.model_validate(
        {
            "route": {"receiver": "mail", **TIMING},
            "receivers": [
                {
                    "name": "mail",
                    "email_configs": [
                        {
                            "to": "a@example.com",
                            "from": "b@example.com",
                            "smarthost": f"127.0.0.1:{smtp.port}",
                        }
                    ],
                }
            ],
        }
    )
    before = len(smtp.messages)
    notifier = notifiers(config)
    notifier.submit(alert("ToolErrors", "critical"))
    eventually(lambda: notifications(notifier, "mail", "email", "failed") == 1)
    assert len(smtp.messages) == before


def test_submit_never_blocks_or_raises() -> None:
    notifier = Notifier(NotifyConfig(), queue_size=2)  # not started: the queue fills up
    started = time.monotonic()
    for _ in range(5):
        notifier.submit(alert("ToolErrors", "critical"))
    assert time.monotonic() - started < 0.1
    assert (
        notifier.metrics.registry.get_sample_value("talonflow_notify_alerts_total", {"outcome": "dropped"})
        == 3
    )
    notifier.start()
    notifier.submit({"status": "pending", "labels": {}})
    notifier.close()
    values = {
        outcome: notifier.metrics.registry.get_sample_value(
            "talonflow_notify_alerts_total", {"outcome": outcome}
        )
        for outcome in ("accepted", "invalid")
    }
    assert values == {"accepted": 2, "invalid": 1}


def test_empty_config_means_no_notifications() -> None:
    config = NotifyConfig()
    assert not config.enabled
    with Notifier(config) as notifier:
        notifier.submit(alert("ToolErrors", "critical"))


def test_templates_use_jinja_and_the_alertmanager_names(
    http: HttpSink, notifiers: Callable[..., Notifier]
) -> None:
    config = NotifyConfig.model_validate(
        {
            "route": {"receiver": "chat", "group_by": ["alertname"], **TIMING},
            "receivers": [
                {
                    "name": "chat",
                    "slack_configs": [
                        {
                            "api_url": f"{http.url}/slack",
                            "title": "{{ Status }}: {{ GroupLabels.alertname }}"
                            " ({{ Alerts.Firing | length }})",
                            "text": "{% for a in Alerts %}{{ a.Labels.agent }}={{ a.Annotations.summary }};"
                            "{% endfor %} common={{ CommonLabels.severity }}",
                        }
                    ],
                }
            ],
        }
    )
    notifier = notifiers(config)
    notifier.submit(alert("ToolErrors", "high", agent="a1"))
    notifier.submit(alert("ToolErrors", "high", agent="a2"))
    [body] = eventually(lambda: http.bodies("/slack"))
    assert body["text"] == "firing: ToolErrors (2)"
    assert body["attachments"][0]["text"] == "a1=ToolErrors on a1;a2=ToolErrors on a2; common=high"


def receivers_config(route: dict[str, Any], **receiver: Any) -> dict[str, Any]:
    return {"route": route, "receivers": [{"name": "hook", **receiver}]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            receivers_config({"receiver": "pager"}),
            r"route\.receiver: unknown receiver 'pager'; defined: \['hook'\]",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"receiver": "hook"}, {"receiver": "nope"}]}),
            r"route\.routes\[1\]\.receiver: unknown receiver 'nope'",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"matchers": ["severity=='critical'"]}]}),
            r"route\.routes\.0\.matchers\.0\n.*invalid matcher \"severity=='critical'\"",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"matchers": ['agent=~"(unclosed"']}]}),
            r"route\.routes\.0\.matchers\.0\n.*invalid regex",
        ),
        (receivers_config({}), r"route\.receiver: the root route needs a receiver"),
        (
            receivers_config({"receiver": "hook", "matchers": ['severity="critical"']}),
            r"the root route matches every alert",
        ),
        (
            receivers_config({"receiver": "hook", "group_by": ["...", "alertname"]}),
            r"route\.group_by\n.*must be the only entry",
        ),
        (receivers_config({"receiver": "hook", "group_interval": "0s"}), r"route\.group_interval\n"),
        (
            receivers_config(
                {"receiver": "hook"}, slack_configs=[{"api_url": "http://x/y", "title": "{{ .Status }}"}]
            ),
            r"slack_configs\.0\.title\n.*Go-template syntax is not supported",
        ),
        (
            receivers_config(
                {"receiver": "hook"}, pagerduty_configs=[{"routing_key": "k", "summary": "{% if %}"}]
            ),
            r"pagerduty_configs\.0\.summary\n.*template error on line 1",
        ),
        (
            receivers_config({"receiver": "hook"}, email_configs=[{"to": "a@b.c", "smarthost": "mail"}]),
            r"email_configs\.0\.from\n.*Field required(.|\n)*email_configs\.0\.smarthost",
        ),
        (
            {"receivers": [{"name": "hook"}, {"name": "hook"}], "route": {"receiver": "hook"}},
            r"names must be unique, repeated: \['hook'\]",
        ),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NotifyConfig.model_validate(raw)


def test_config_errors_do_not_echo_secrets() -> None:
    raw = receivers_config({"receiver": "hook"}, slack_configs=[{"api_url": "hooks.slack.example/T0/s3cr3t"}])
    with pytest.raises(ValidationError) as caught:
        NotifyConfig.model_validate(raw)
    assert "s3cr3t" not in str(caught.value)


def test_defaults_follow_alertmanager() -> None:
    config = NotifyConfig.model_validate(
        receivers_config(
            {"receiver": "hook", "routes": [{"matchers": ["a=b"], "group_wait": "1s"}]},
            webhook_configs=[{"url": "http://127.0.0.1:1/"}],
            slack_configs=[{"api_url": "http://127.0.0.1:1/"}],
            email_configs=[{"to": "a@b.c", "from": "d@e.f", "smarthost": "mail:25"}],
            pagerduty_configs=[{"routing_key": "k"}],
        )
    )
    [receiver] = config.receivers
    assert receiver.webhook_configs[0].send_resolved and receiver.pagerduty_configs[0].send_resolved
    assert not receiver.slack_configs[0].send_resolved and not receiver.email_configs[0].send_resolved
    assert receiver.email_configs[0].require_tls
    assert receiver.pagerduty_configs[0].url == "https://events.pagerduty.com/v2/enqueue"
    [child] = RouteNode.root(config.route).children
    assert (child.receiver, child.group_wait, child.group_interval, child.repeat_interval) == (
        "hook",
        1.0,
        300.0,
        4 * 3600.0,
    )

"""Notifications end to end against real local endpoints: an HTTP server and an SMTP server."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from sinks.notify.silences import Silences, rfc3339

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

    def __init__(self, port: int = 0) -> None:
        self.posts: list[Post] = []
        self.fail: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
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
                    "pagerduty_configs": [
                        {
                            "routing_key": "pd-routing-key",
                            "url": f"{http.url}/pagerduty",
                            "severity": "{{ .CommonLabels.severity }}",
                        }
                    ],
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
    assert page["payload"]["source"] == page["client"] == "Alertmanager"  # Alertmanager's defaults
    assert page["payload"]["summary"] == "[FIRING:1] ToolErrors critical (a1)"
    details = page["payload"]["custom_details"]
    assert " - summary = ToolErrors on a1\n" in details["firing"]
    assert (details["num_firing"], details["num_resolved"], details["resolved"]) == ("1", "0", "")
    assert page["client_url"] == "http://talonflow.test/#/alerts?receiver=pager"

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
    assert (chat["channel"], chat["username"]) == ("#alerts", "Alertmanager")
    [attachment] = chat["attachments"]
    assert attachment["title"] == "[FIRING:1] SlowLLM high (a2)"
    assert attachment["title_link"] == "http://talonflow.test/#/alerts?receiver=chat"
    assert (
        attachment["fallback"]
        == "[FIRING:1] SlowLLM high (a2) | http://talonflow.test/#/alerts?receiver=chat"
    )
    assert attachment["color"] == "danger"
    assert "text" not in attachment  # slack.default.text is empty

    mails = eventually(lambda: smtp.messages[mails_before:] if len(smtp.messages) >= mails_before + 2 else [])
    by_subject = {m["Subject"]: m for m in mails}
    assert set(by_subject) == {"[FIRING:1] SlowLLM high (a2)", "[FIRING:1] TokenBudget warning (a3)"}
    warning = by_subject["[FIRING:1] TokenBudget warning (a3)"]
    assert warning["To"] == "oncall@example.com"
    assert warning["From"] == "talonflow@example.com"
    assert warning.get_content_type() == "text/html"  # email.default.html, as Alertmanager sends
    body = warning.get_content()
    assert "summary = TokenBudget on a3<br " in body
    assert "agent = a3<br " in body
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
    assert all(p.at - submitted_at >= 0.2 for p in posts)  # not before group_wait
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
    assert second.at - first.at >= 0.9  # the next group_interval tick, not after group_wait
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
        notifier.submit(alert("ToolErrors", "critical", agent="a1"))
        eventually(lambda: http.at("/hook"))
        # delivered while the silent one still waits for its timeouts: not held up by it
        assert notifications(notifier, "hook", "webhook", "failed") < 2
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


def test_go_templates_over_the_alertmanager_data_model(
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
                            "title": "{{ .Status | toUpper }}: {{ .GroupLabels.alertname }}"
                            " ({{ .Alerts.Firing | len }})",
                            "text": "{{ range .Alerts }}{{ .Labels.agent }}={{ .Annotations.summary }};"
                            "{{ end }} common={{ .CommonLabels.severity }} "
                            "{{ with .CommonLabels.Remove .GroupLabels.Names }}"
                            '{{ .Values | join "," }}{{ end }}',
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
    assert body["attachments"][0]["title"] == "FIRING: ToolErrors (2)"
    assert body["attachments"][0]["text"] == "a1=ToolErrors on a1;a2=ToolErrors on a2; common=high high"


def receivers_config(route: dict[str, Any], **receiver: Any) -> dict[str, Any]:
    return {"route": route, "receivers": [{"name": "hook", **receiver}]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            receivers_config({"receiver": "pager"}),
            r"route\.receiver: undefined receiver 'pager' used in route",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"receiver": "hook"}, {"receiver": "nope"}]}),
            r"route\.routes\[1\]\.receiver: undefined receiver 'nope'",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"matchers": ["=critical"]}]}),
            r"route\.routes\.0\.matchers\.0\n.*invalid matcher '=critical'",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"matchers": ['agent=~"(unclosed"']}]}),
            r"route\.routes\.0\.matchers\.0\n.*invalid regex",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"match_re": {"agent": "(unclosed"}}]}),
            r"route\.routes\.0\.match_re\n.*invalid regex",
        ),
        (receivers_config({}), r"route\.receiver: root route must specify a default receiver"),
        (
            receivers_config({"receiver": "hook", "match": {"severity": "critical"}}),
            r"root route must not have any matchers",
        ),
        (
            receivers_config({"receiver": "hook", "routes": [{"mute_time_intervals": ["nights"]}]}),
            r"route\.routes\[0\]: undefined time interval 'nights' used in route",
        ),
        (
            receivers_config({"receiver": "hook", "group_by": ["...", "alertname"]}),
            r"route\.group_by\n.*must be the only entry",
        ),
        (receivers_config({"receiver": "hook", "group_interval": "0s"}), r"route\.group_interval\n"),
        (receivers_config({"receiver": "hook", "group_wait": "30 seconds"}), r"not a valid duration string"),
        (
            receivers_config(
                {"receiver": "hook"}, slack_configs=[{"api_url": "http://x/y", "title": "{{ .Status"}]
            ),
            r"slack_configs\.0\.title\n.*template: template:1: unclosed action",
        ),
        (
            receivers_config(
                {"receiver": "hook"},
                pagerduty_configs=[{"routing_key": "k", "description": "{{ nosuch . }}"}],
            ),
            r"pagerduty_configs\.0\.description\n.*function \"nosuch\" not defined",
        ),
        (
            receivers_config({"receiver": "hook"}, pagerduty_configs=[{"severity": "critical"}]),
            r"missing service or routing key in PagerDuty config",
        ),
        (
            receivers_config({"receiver": "hook"}, email_configs=[{"to": "a@b.c", "smarthost": "mail"}]),
            r"email_configs\.0\.smarthost\n",
        ),
        (
            receivers_config({"receiver": "hook"}, email_configs=[{"to": "a@b.c"}]),
            r"receivers\[hook\]\.email_configs\[0\]: no global SMTP smarthost set",
        ),
        (
            receivers_config({"receiver": "hook"}, slack_configs=[{"channel": "#x"}]),
            r"no global Slack API URL set",
        ),
        (
            receivers_config({"receiver": "hook"}, opsgenie_configs=[{"api_key": "k"}]),
            r"opsgenie_configs: not supported by talonflow",
        ),
        (
            receivers_config({"receiver": "hook"}, webhook_configs=[{"url": "${TALONFLOW_TEST_UNSET}"}]),
            r"notifications\.receivers\[0\]\.webhook_configs\[0\]\.url: environment variable "
            r"TALONFLOW_TEST_UNSET is not set",
        ),
        (
            {
                **receivers_config({"receiver": "hook"}),
                "global": {"smtp_smarthost": "mail:25", "smtp_form": "x"},
            },
            r"global\.smtp_form\n.*Extra inputs are not permitted",
        ),
        (
            {"receivers": [{"name": "hook"}, {"name": "hook"}], "route": {"receiver": "hook"}},
            r"names must be unique, repeated: \['hook'\]",
        ),
        ({"receivers": [{"name": "hook"}]}, r"no route provided in config"),
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
        {
            "global": {
                "smtp_smarthost": "mail:25",
                "smtp_from": "am@example.com",
                "slack_api_url": "http://s/",
            },
            **receivers_config(
                {"receiver": "hook", "routes": [{"matchers": ["a=b"], "group_wait": "1s"}]},
                webhook_configs=[{"url": "http://127.0.0.1:1/"}],
                slack_configs=[{}],
                email_configs=[{"to": "a@b.c"}],
                pagerduty_configs=[{"routing_key": "k"}, {"service_key": "v1"}],
            ),
        }
    )
    [receiver] = config.receivers
    assert receiver.webhook_configs[0].send_resolved and receiver.pagerduty_configs[0].send_resolved
    assert not receiver.slack_configs[0].send_resolved and not receiver.email_configs[0].send_resolved
    email = receiver.email_configs[0]
    assert (email.smarthost, email.from_, email.require_tls, email.hello) == (
        "mail:25",
        "am@example.com",
        True,
        "localhost",
    )
    assert receiver.slack_configs[0].api_url is not None
    assert receiver.slack_configs[0].api_url.get_secret_value() == "http://s/"
    assert [p.url for p in receiver.pagerduty_configs] == [
        "https://events.pagerduty.com/v2/enqueue",
        "https://events.pagerduty.com/generic/2010-04-15/create_event.json",
    ]
    assert config.global_.resolve_timeout == 300
    [child] = RouteNode.root(config.route).children
    assert (child.receiver, child.group_wait, child.group_interval, child.repeat_interval) == (
        "hook",
        1.0,
        300.0,
        4 * 3600.0,
    )


def test_silenced_and_inhibited_alerts_are_not_notified(
    http: HttpSink, notifiers: Callable[..., Notifier]
) -> None:
    config = NotifyConfig.model_validate(
        {
            "route": {"receiver": "hook", "group_by": ["alertname", "severity"], **TIMING},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{http.url}/hook"}]}],
            "inhibit_rules": [
                {
                    "source_matchers": ["severity=critical"],
                    "target_matchers": ["severity=warning"],
                    "equal": ["agent"],
                }
            ],
        }
    )
    silences = Silences()
    start = datetime.now(UTC)
    silences.put(
        {
            "matchers": [{"name": "agent", "value": "a2", "isRegex": False}],
            "startsAt": rfc3339(start),
            "endsAt": rfc3339(start + timedelta(hours=1)),
            "createdBy": "test",
            "comment": "maintenance of a2",
        }
    )
    notifier = notifiers(config, silences=silences)
    notifier.submit(alert("Down", "critical", agent="a1"))
    notifier.submit(alert("Slow", "warning", agent="a1"))  # inhibited by Down on a1
    notifier.submit(alert("Slow", "warning", agent="a3"))
    notifier.submit(alert("Down", "critical", agent="a2"))  # silenced
    posts = eventually(lambda: http.bodies("/hook") if len(http.bodies("/hook")) == 2 else [])
    shown = {p["groupLabels"]["alertname"]: [a["labels"]["agent"] for a in p["alerts"]] for p in posts}
    assert shown == {"Down": ["a1"], "Slow": ["a3"]}
    suppressed = notifier.metrics.registry.get_sample_value
    assert suppressed("talonflow_notify_suppressed_total", {"reason": "silenced"})
    assert suppressed("talonflow_notify_suppressed_total", {"reason": "inhibited"})


def test_mute_and_active_time_intervals(http: HttpSink, notifiers: Callable[..., Notifier]) -> None:
    config = NotifyConfig.model_validate(
        {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                **TIMING,
                "routes": [
                    {"match": {"severity": "warning"}, "mute_time_intervals": ["office"]},
                    {"match": {"severity": "info"}, "active_time_intervals": ["weekend"]},
                ],
            },
            "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{http.url}/hook"}]}],
            "time_intervals": [
                {
                    "name": "office",
                    "time_intervals": [{"times": [{"start_time": "09:00", "end_time": "17:00"}]}],
                },
                {"name": "weekend", "time_intervals": [{"weekdays": ["saturday", "sunday"]}]},
            ],
        }
    )
    monday_morning = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    notifier = notifiers(config, clock=lambda: monday_morning)
    notifier.submit(alert("Batch", "warning"))  # muted in office hours (seed 001: batch non-critical)
    notifier.submit(alert("Digest", "info"))  # only at weekends
    notifier.submit(alert("Down", "critical"))
    [post] = eventually(lambda: http.bodies("/hook"))
    assert post["groupLabels"] == {"alertname": "Down"}
    stays(lambda: len(http.bodies("/hook")) == 1, 1.5)  # a group_interval tick later: still held back
    reason = {"reason": "time_interval"}
    assert notifier.metrics.registry.get_sample_value("talonflow_notify_suppressed_total", reason)

"""The four integrations: generic webhook, Slack incoming webhook, email (SMTP) and PagerDuty Events v2.

Written here rather than with apprise: its Slack and PagerDuty plugins post only to the vendors' own
hosts and its JSON plugin has its own body, while these must post Alertmanager's payloads to any URL.
Each `send` raises DeliveryError; `retry` says whether trying again can help (5xx, 429, network).
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from abc import ABC, abstractmethod
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, ClassVar

import aiohttp
from jinja2 import Template, TemplateError

from schemas.notify import TEMPLATES, EmailConfig, PagerDutyConfig, Receiver, SlackConfig, WebhookConfig
from sinks.notify.alerts import Alert, Notification

# PagerDuty's severities, from the `severity` label values the alert rules use (high → error).
_PD_SEVERITY = {
    "critical": "critical",
    "high": "error",
    "error": "error",
    "warning": "warning",
    "info": "info",
}
_PD_RANK = ["info", "warning", "error", "critical"]


class DeliveryError(Exception):
    """A notification that did not arrive; the message never holds a secret (URL path, key, password)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def _render(template: Template, note: Notification) -> str:
    try:
        return template.render(note.template_data()).strip()
    except TemplateError as err:
        raise DeliveryError(f"template: {err}", retry=False) from err


def _describe(err: BaseException) -> str:
    """A network error without its URL, which may carry a token."""
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"cannot connect to {err.host}:{err.port}: {err.os_error.strerror or err.os_error}"
    if isinstance(err, TimeoutError):
        return "timed out"
    return type(err).__name__


def _headline(alert: Alert) -> str:
    return alert.annotations.get("summary") or alert.labels.get("alertname", "")


async def _post_json(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
    try:
        async with http.post(url, json=body) as response:
            if response.status < 300:
                return
            status, detail = response.status, (await response.text())[:200]
    except (aiohttp.ClientError, TimeoutError) as err:
        raise DeliveryError(_describe(err), retry=True) from err
    raise DeliveryError(f"HTTP {status}: {detail}", retry=status >= 500 or status == 429)


class Channel(ABC):
    """One configured integration of a receiver."""

    kind: ClassVar[str]

    def __init__(self, name: str, send_resolved: bool) -> None:
        self.name = name  # e.g. "slack[0]": its notification log entry within a group
        self.send_resolved = send_resolved

    @abstractmethod
    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None: ...


class WebhookChannel(Channel):
    kind = "webhook"

    def __init__(self, name: str, config: WebhookConfig) -> None:
        super().__init__(name, config.send_resolved)
        self._config = config

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        await _post_json(http, self._config.url, note.webhook_payload(self._config.max_alerts))


class SlackChannel(Channel):
    kind = "slack"

    def __init__(self, name: str, config: SlackConfig) -> None:
        super().__init__(name, config.send_resolved)
        self._config = config
        self._title = TEMPLATES.from_string(config.title)
        self._text = TEMPLATES.from_string(config.text)

    def body(self, note: Notification) -> dict[str, Any]:
        title = _render(self._title, note)
        attachment = {
            "color": "danger" if note.status == "firing" else "good",
            "fallback": title,
            "text": _render(self._text, note),
            "mrkdwn_in": ["text"],
        }
        channel = {"channel": self._config.channel} if self._config.channel else {}
        return {**channel, "text": title, "attachments": [attachment]}

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        await _post_json(http, self._config.api_url.get_secret_value(), self.body(note))


class EmailChannel(Channel):
    """Plain-text mail through a smarthost: STARTTLS when required, implicit TLS on port 465."""

    kind = "email"

    def __init__(self, name: str, config: EmailConfig, timeout: float) -> None:
        super().__init__(name, config.send_resolved)
        self._config, self._timeout = config, timeout
        self._subject = TEMPLATES.from_string(config.subject)
        self._text = TEMPLATES.from_string(config.text)

    def message(self, note: Notification) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = " ".join(_render(self._subject, note).split())  # one header line
        message["From"] = self._config.from_
        message["To"] = self._config.to
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid()
        message.set_content(_render(self._text, note) + "\n")
        return message

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        await asyncio.to_thread(self._deliver, self.message(note))  # smtplib blocks: keep it off the loop

    def _deliver(self, message: EmailMessage) -> None:
        config = self._config
        implicit_tls = config.port == 465
        connect = smtplib.SMTP_SSL if implicit_tls else smtplib.SMTP
        try:
            with connect(config.host, config.port, timeout=self._timeout) as smtp:
                if config.require_tls and not implicit_tls:
                    smtp.starttls(context=ssl.create_default_context())
                if config.auth_username:
                    password = config.auth_password.get_secret_value() if config.auth_password else ""
                    smtp.login(config.auth_username, password)
                smtp.send_message(message)
        except smtplib.SMTPResponseException as err:
            raise DeliveryError(
                f"SMTP {err.smtp_code}: {err.smtp_error!r}", retry=err.smtp_code < 500
            ) from err
        except smtplib.SMTPServerDisconnected as err:
            raise DeliveryError(f"SMTP: {err}", retry=True) from err
        except smtplib.SMTPException as err:  # STARTTLS not offered, recipients refused: not transient
            raise DeliveryError(f"SMTP: {type(err).__name__}: {err}", retry=False) from err
        except OSError as err:
            raise DeliveryError(f"SMTP {config.smarthost}: {err.strerror or err}", retry=True) from err


class PagerDutyChannel(Channel):
    """Events API v2: one incident per group, keyed by a hash of the group key, resolved with it."""

    kind = "pagerduty"

    def __init__(self, name: str, config: PagerDutyConfig) -> None:
        super().__init__(name, config.send_resolved)
        self._config = config
        self._summary = TEMPLATES.from_string(config.summary)

    def severity(self, note: Notification) -> str:
        if self._config.severity:
            return self._config.severity
        known = [_PD_SEVERITY[s] for a in note.alerts if (s := a.labels.get("severity")) in _PD_SEVERITY]
        return max(known, key=_PD_RANK.index, default="error")  # Alertmanager's default is error

    def body(self, note: Notification) -> dict[str, Any]:
        firing = [a for a in note.alerts if a.firing]
        resolved = [a for a in note.alerts if not a.firing]
        return {
            "routing_key": self._config.routing_key.get_secret_value(),
            "event_action": "trigger" if note.status == "firing" else "resolve",
            "dedup_key": hashlib.sha256(note.group_key.encode()).hexdigest(),
            "client": "talonflow",
            **({"client_url": note.external_url} if note.external_url else {}),
            "payload": {
                "summary": _render(self._summary, note)[:1024],  # PagerDuty's limit
                "source": self._config.source,
                "severity": self.severity(note),
                "custom_details": {
                    "num_firing": len(firing),
                    "num_resolved": len(resolved),
                    "firing": [a.annotations.get("summary", a.labels.get("alertname", "")) for a in firing],
                    "resolved": [
                        a.annotations.get("summary", a.labels.get("alertname", "")) for a in resolved
                    ],
                    "group_labels": note.group_labels,
                },
            },
        }

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        await _post_json(http, self._config.url, self.body(note))


def channels(receiver: Receiver, timeout: float) -> list[Channel]:
    """A receiver's integrations, in config order."""
    found: list[Channel] = []
    found += [WebhookChannel(f"webhook[{i}]", c) for i, c in enumerate(receiver.webhook_configs)]
    found += [SlackChannel(f"slack[{i}]", c) for i, c in enumerate(receiver.slack_configs)]
    found += [EmailChannel(f"email[{i}]", c, timeout) for i, c in enumerate(receiver.email_configs)]
    found += [PagerDutyChannel(f"pagerduty[{i}]", c) for i, c in enumerate(receiver.pagerduty_configs)]
    return found

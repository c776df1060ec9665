"""The four integrations: generic webhook, Slack incoming webhook, email (SMTP), PagerDuty (Events v2, v1).

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

from schemas.gotemplate import GoTemplateError, GoTemplateExecError
from schemas.notify import EmailConfig, PagerDutyConfig, Receiver, SlackConfig, WebhookConfig
from sinks.notify.alerts import Notification
from sinks.notify.templating import Data, TemplateSet

_PD_LIMIT = 1024  # PagerDuty's summary/description limit, which Alertmanager truncates to


class DeliveryError(Exception):
    """A notification that did not arrive; the message never holds a secret (URL path, key, password)."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class _Renderer:
    """One notification's templates, rendered in the config's template set; a template that fails
    fails the notification (not retried), as in Alertmanager."""

    def __init__(self, templates: TemplateSet, note: Notification) -> None:
        self._templates, self._data = templates, note.template_data()

    @property
    def data(self) -> Data:
        return self._data

    def __call__(self, source: str, html: bool = False) -> str:
        try:
            return self._templates.render(source, self._data, html)
        except (GoTemplateError, GoTemplateExecError) as err:
            raise DeliveryError(f"template: {err}", retry=False) from err


def _describe(err: BaseException) -> str:
    """A network error without its URL, which may carry a token."""
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"cannot connect to {err.host}:{err.port}: {err.os_error.strerror or err.os_error}"
    if isinstance(err, TimeoutError):
        return "timed out"
    return type(err).__name__


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

    def __init__(self, name: str, send_resolved: bool, templates: TemplateSet) -> None:
        self.name = name  # e.g. "slack[0]": its notification log entry within a group
        self.send_resolved = send_resolved
        self.templates = templates

    def renderer(self, note: Notification) -> _Renderer:
        return _Renderer(self.templates, note)

    @abstractmethod
    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None: ...


class WebhookChannel(Channel):
    kind = "webhook"

    def __init__(self, name: str, config: WebhookConfig, templates: TemplateSet) -> None:
        super().__init__(name, config.send_resolved, templates)
        self._config = config

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        await _post_json(http, self._config.url, note.webhook_payload(self._config.max_alerts))


def _present(body: dict[str, Any]) -> dict[str, Any]:
    """Go's `omitempty`: no empty strings, lists or false flags in the JSON."""
    return {k: v for k, v in body.items() if v not in ("", None, [], False)}


class SlackChannel(Channel):
    """Alertmanager's Slack message: one attachment, every text field a template."""

    kind = "slack"

    def __init__(self, name: str, config: SlackConfig, templates: TemplateSet) -> None:
        super().__init__(name, config.send_resolved, templates)
        self._config = config

    def body(self, note: Notification) -> dict[str, Any]:
        c, render = self._config, self.renderer(note)
        fields = [
            {
                "title": render(f.title),
                "value": render(f.value),
                "short": c.short_fields if f.short is None else f.short,
            }
            for f in c.fields
        ]
        attachment = _present(
            {
                "title": render(c.title)[:1024],
                "title_link": render(c.title_link),
                "pretext": render(c.pretext),
                "text": render(c.text),
                "fields": fields,
                "image_url": render(c.image_url),
                "thumb_url": render(c.thumb_url),
                "footer": render(c.footer),
                "fallback": render(c.fallback),
                "callback_id": render(c.callback_id),
                "color": render(c.color),
                "mrkdwn_in": c.mrkdwn_in,
            }
        )
        top = {
            "channel": render(c.channel),
            "username": render(c.username),
            "icon_emoji": render(c.icon_emoji),
            "icon_url": render(c.icon_url),
            "link_names": c.link_names,
        }
        return {**_present(top), "attachments": [attachment]}

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        assert self._config.api_url is not None  # filled from global at load
        await _post_json(http, self._config.api_url.get_secret_value(), self.body(note))


class EmailChannel(Channel):
    """Alertmanager's mail through a smarthost: STARTTLS when required, implicit TLS on port 465;
    text and/or HTML parts from the `text` and `html` templates."""

    kind = "email"

    def __init__(self, name: str, config: EmailConfig, timeout: float, templates: TemplateSet) -> None:
        super().__init__(name, config.send_resolved, templates)
        self._config, self._timeout = config, timeout

    def message(self, note: Notification) -> EmailMessage:
        render = self.renderer(note)
        message = EmailMessage()
        for header, source in self._config.all_headers().items():
            message[header] = " ".join(render(source).split())  # one header line
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid()
        text, html = render(self._config.text), render(self._config.html, html=True)
        if text:
            message.set_content(text + "\n")
            if html:
                message.add_alternative(html, subtype="html")
        else:
            message.set_content(html, subtype="html")
        return message

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        await asyncio.to_thread(self._deliver, self.message(note))  # smtplib blocks: keep it off the loop

    def _deliver(self, message: EmailMessage) -> None:
        config = self._config
        implicit_tls = config.port == 465
        connect = smtplib.SMTP_SSL if implicit_tls else smtplib.SMTP
        try:
            with connect(
                config.host, config.port, local_hostname=config.hello, timeout=self._timeout
            ) as smtp:
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
    """Events API v2 (`routing_key`) or v1 (`service_key`), as Alertmanager sends them: one incident
    per group, keyed by the SHA-256 of the group key, resolved with it."""

    kind = "pagerduty"

    def __init__(self, name: str, config: PagerDutyConfig, templates: TemplateSet) -> None:
        super().__init__(name, config.send_resolved, templates)
        self._config = config

    def body(self, note: Notification) -> dict[str, Any]:
        c, render = self._config, self.renderer(note)
        trigger = note.status == "firing"
        key = hashlib.sha256(note.group_key.encode()).hexdigest()
        details = {name: render(source) for name, source in c.details.items()}
        summary = render(c.description)[:_PD_LIMIT]
        if c.events_v1:
            assert c.service_key is not None
            body: dict[str, Any] = {
                "service_key": render(c.service_key.get_secret_value()),
                "event_type": "trigger" if trigger else "resolve",
                "incident_key": key,
                "description": summary,
                "details": details,
            }
            if trigger:
                body.update(_present({"client": render(c.client), "client_url": render(c.client_url)}))
            return body
        assert c.routing_key is not None
        client = render(c.client)
        body = {
            "routing_key": render(c.routing_key.get_secret_value()),
            "event_action": "trigger" if trigger else "resolve",
            "dedup_key": key,
            **_present({"client": client, "client_url": render(c.client_url)}),
        }
        if trigger:
            body["payload"] = {
                "summary": summary,
                "source": render(c.source) if c.source is not None else client,
                "severity": render(c.severity),
                "custom_details": details,
                **_present(
                    {"class": render(c.class_), "component": render(c.component), "group": render(c.group)}
                ),
            }
        return body

    async def send(self, note: Notification, http: aiohttp.ClientSession) -> None:
        assert self._config.url is not None  # filled from global at load
        await _post_json(http, self._config.url, self.body(note))


def channels(receiver: Receiver, timeout: float, templates: TemplateSet) -> list[Channel]:
    """A receiver's integrations, in config order."""
    found: list[Channel] = []
    found += [WebhookChannel(f"webhook[{i}]", c, templates) for i, c in enumerate(receiver.webhook_configs)]
    found += [SlackChannel(f"slack[{i}]", c, templates) for i, c in enumerate(receiver.slack_configs)]
    found += [
        EmailChannel(f"email[{i}]", c, timeout, templates) for i, c in enumerate(receiver.email_configs)
    ]
    found += [
        PagerDutyChannel(f"pagerduty[{i}]", c, templates) for i, c in enumerate(receiver.pagerduty_configs)
    ]
    return found

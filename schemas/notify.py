"""The `notifications:` model: Alertmanager's `route` tree and `receivers`, checked before anything runs.

Keys, meanings and defaults follow Alertmanager, so its documentation applies:
group_wait 30s, group_interval 5m, repeat_interval 4h, group_by none (one group per route);
send_resolved is true for webhook and PagerDuty and false for Slack and email; email requires
STARTTLS unless `require_tls: false`. A child route inherits receiver, group_by and the three
intervals from its parent. `NotifyConfig()` (no receivers) means "no notifications".

Matchers are strings: `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`; regexes
match the whole value, and a missing label matches as "". Templates are Jinja2 (see sinks/notify).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from schemas.types import Seconds
from schemas.types import Strict as _Strict

GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = 30.0, 300.0, 4 * 3600.0  # Alertmanager's defaults
ALL_LABELS = "..."  # group_by: ['...'] groups by every label, i.e. one group per alert

# Shared with sinks/notify so a template that validates here is the one that renders there.
TEMPLATES = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
_GO_SYNTAX = re.compile(r"\{\{-?\s*(?:\.|(?:range|end|template|with|define|if|else)\b)")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER = re.compile(
    r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s=~!{},]*))\s*'
)


def _check_template(source: str) -> str:
    if _GO_SYNTAX.search(source):
        raise ValueError(
            "Go-template syntax is not supported; write Jinja2, e.g. {{ GroupLabels.alertname }} for "
            "{{ .GroupLabels.alertname }} and {% for a in Alerts %}...{% endfor %} for {{ range .Alerts }}"
        )
    try:
        TEMPLATES.from_string(source)
    except TemplateSyntaxError as err:
        raise ValueError(f"template error on line {err.lineno}: {err.message}") from err
    return source


def _check_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+\S*", value):
        raise ValueError("expected an http:// or https:// URL")
    return value


def _check_secret_url(value: SecretStr) -> SecretStr:
    try:
        _check_url(value.get_secret_value())
    except ValueError:
        raise ValueError("expected an http:// or https:// URL") from None  # the value stays unprinted
    return value


Template = Annotated[str, AfterValidator(_check_template)]
Url = Annotated[str, AfterValidator(_check_url)]
SecretUrl = Annotated[SecretStr, AfterValidator(_check_secret_url)]
Interval = Annotated[Seconds, Field(gt=0)]

# Defaults in the spirit of Alertmanager's own, as Jinja2.
DEFAULT_TITLE = (
    "[{{ Status | upper }}{% if Status == 'firing' %}:{{ Alerts.Firing | length }}{% endif %}] "
    "{{ GroupLabels.values() | join(' ') }}"
)
DEFAULT_TEXT = """\
{% for a in Alerts %}
*{{ a.Status | upper }}* {{ a.Annotations.summary or a.Labels.alertname }}
{% if a.Annotations.description %}{{ a.Annotations.description }}
{% endif %}
{% if a.Annotations.runbook_url %}Runbook: {{ a.Annotations.runbook_url }}
{% endif %}
{% endfor %}"""
DEFAULT_EMAIL_TEXT = """\
{{ Alerts.Firing | length }} firing, {{ Alerts.Resolved | length }} resolved:\
{% for name, value in GroupLabels.items() %} {{ name }}={{ value }}{% endfor %}

{% for a in Alerts %}

[{{ a.Status | upper }}] {{ a.Annotations.summary or a.Labels.alertname }}
{% if a.Annotations.description %}{{ a.Annotations.description }}
{% endif %}
Started: {{ a.StartsAt }}{% if a.Status == 'resolved' %}, ended: {{ a.EndsAt }}{% endif %}

{% for name, value in a.Labels | dictsort %}  {{ name }} = {{ value }}
{% endfor %}
{% if a.Annotations.runbook_url %}Runbook: {{ a.Annotations.runbook_url }}
{% endif %}
{% endfor %}"""


class Matcher(_Strict):
    """One label condition of a route, written in the config as a string: `severity=~"high|critical"`."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _MATCHER.fullmatch(value)
        if not match:
            raise ValueError(
                f'invalid matcher {value!r}: expected name="value", name!="value", '
                'name=~"regex" or name!~"regex"'
            )
        quoted, bare = match.group(3), match.group(4)
        text = re.sub(r'\\(["\\])', r"\1", quoted) if quoted is not None else bare
        return {"name": match.group(1), "op": match.group(2), "value": text}

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as err:
                raise ValueError(f"invalid regex in matcher {self}: {err}") from err
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, actual) is not None) == (self.op == "=~")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


class Route(_Strict):
    """A node of the routing tree; unset fields are inherited from the parent route."""

    model_config = ConfigDict(validate_by_name=True)

    receiver: str | None = None
    matchers: list[Matcher] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")  # keep matching siblings after this one matched
    group_by: list[str] | None = None
    group_wait: Seconds | None = None
    group_interval: Interval | None = None
    repeat_interval: Interval | None = None
    routes: list[Route] = Field(default_factory=list)

    @field_validator("group_by")
    @classmethod
    def _label_names(cls, value: list[str] | None) -> list[str] | None:
        if value and ALL_LABELS in value and len(value) > 1:
            raise ValueError(f"'{ALL_LABELS}' means every label and must be the only entry")
        bad = [name for name in value or [] if name != ALL_LABELS and not _LABEL.fullmatch(name)]
        if bad:
            raise ValueError(f"invalid label names {bad}")
        return value

    def walk(self, where: str = "route") -> Iterator[tuple[str, Route]]:
        """Every route of the tree with its config path, e.g. ("route.routes[1]", route)."""
        yield where, self
        for index, child in enumerate(self.routes):
            yield from child.walk(f"{where}.routes[{index}]")


class WebhookConfig(_Strict):
    url: Url
    send_resolved: bool = True
    max_alerts: int = Field(0, ge=0)  # alerts per message, the rest counted in truncatedAlerts; 0: all


class SlackConfig(_Strict):
    api_url: SecretUrl  # the incoming-webhook URL holds the token, so it is a secret
    channel: str | None = None  # None: the webhook's own channel
    title: Template = DEFAULT_TITLE
    text: Template = DEFAULT_TEXT
    send_resolved: bool = False


class EmailConfig(_Strict):
    model_config = ConfigDict(validate_by_name=True)

    to: str = Field(min_length=3)  # comma-separated addresses
    from_: str = Field(alias="from", min_length=3)
    smarthost: str = Field(pattern=r"^[^\s:]+:\d{1,5}$")  # host:port; port 465 means implicit TLS
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    require_tls: bool = True  # STARTTLS, as Alertmanager's smtp_require_tls
    subject: Template = DEFAULT_TITLE
    text: Template = DEFAULT_EMAIL_TEXT
    send_resolved: bool = False

    @property
    def host(self) -> str:
        return self.smarthost.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.smarthost.rsplit(":", 1)[1])


class PagerDutyConfig(_Strict):
    routing_key: SecretStr
    url: Url = "https://events.pagerduty.com/v2/enqueue"
    # None: the highest among the alerts' `severity` labels, mapped to PagerDuty's (high → error)
    severity: Literal["critical", "error", "warning", "info"] | None = None
    source: str = "talonflow"
    summary: Template = DEFAULT_TITLE
    send_resolved: bool = True


class Receiver(_Strict):
    name: str = Field(min_length=1)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    email_configs: list[EmailConfig] = Field(default_factory=list)
    pagerduty_configs: list[PagerDutyConfig] = Field(default_factory=list)


class NotifyConfig(_Strict):
    """Where alerts go (route) and how they get there (receivers); empty means no notifications."""

    model_config = ConfigDict(hide_input_in_errors=True)  # errors never echo a secret URL or key

    route: Route = Route()
    receivers: list[Receiver] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> NotifyConfig:
        names = [r.name for r in self.receivers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"receivers: names must be unique, repeated: {twice}")
        if self.route.matchers or self.route.continue_:
            raise ValueError("route: the root route matches every alert; it takes no matchers or continue")
        if self.receivers and self.route.receiver is None:
            raise ValueError("route.receiver: the root route needs a receiver (the fallback for all alerts)")
        for where, route in self.route.walk():
            if route.receiver is not None and route.receiver not in names:
                raise ValueError(f"{where}.receiver: unknown receiver {route.receiver!r}; defined: {names}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.receivers)

"""The `notifications:` section: Alertmanager's `alertmanager.yml`, as written, checked before anything runs.

Either inline (the file's keys under `notifications:`) or by path, `notifications: {file:
alertmanager.yml}` (relative to talonflow.yaml's folder). Keys, meanings, defaults and errors
follow Alertmanager's (`amtool check-config` agrees on what is valid, tests/test_alertmanager_config.py):
`global` (smtp_*, slack_api_url, pagerduty_url, resolve_timeout), `route` with `match`,
`match_re`, `matchers`, `continue`, `group_by` (`...` for every label), the three intervals and
`mute_time_intervals` / `active_time_intervals`, `inhibit_rules`, `time_intervals` (and the
older top-level `mute_time_intervals`), `templates` (globs, relative to the file) and receivers
with `webhook_configs`, `slack_configs`, `email_configs` and `pagerduty_configs` (`routing_key`
for Events v2, `service_key` for v1). Text fields are Go templates (schemas/gotemplate.py) with
Alertmanager's functions, data and default.tmpl (sinks/notify/templating.py).

Two additions for configs written for a deployment pipeline: `${NAME}` is read from the
environment (as envsubst would before Alertmanager starts; unset is an error naming the key),
and an email config may say `subject:` for `headers: {Subject: ...}`. Integrations Alertmanager
has and talonflow does not (opsgenie, wechat, ...) and `http_config` are refused by name.
`NotifyConfig()` (no receivers) means "no notifications".
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.timeintervals import NamedTimeInterval
from schemas.types import Strict as _Strict

GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = 30.0, 300.0, 4 * 3600.0  # Alertmanager's defaults
RESOLVE_TIMEOUT = 300.0
ALL_LABELS = "..."  # group_by: ['...'] groups by every label, i.e. one group per alert
PAGERDUTY_V2_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_V1_URL = "https://events.pagerduty.com/generic/2010-04-15/create_event.json"
BASE_DIR = "base_dir"  # validation context key: the folder relative paths are read from

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Alertmanager's matcher: name, operator, a value quoted or not
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(.*?))\s*')
_ENV = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_UNSUPPORTED_RECEIVERS = [  # Alertmanager's other integrations: refused by name
    *("discord_configs", "opsgenie_configs", "pushover_configs", "sns_configs", "telegram_configs"),
    *("victorops_configs", "webex_configs", "wechat_configs", "msteams_configs", "msteamsv2_configs"),
    *("jira_configs", "rocketchat_configs"),
]


def _duration(value: Any) -> float:
    """Prometheus' duration syntax, as Alertmanager reads it: 30s, 5m, 1h30m, 4h, 1d, 100ms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    match = _DURATION.fullmatch(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"not a valid duration string: {value!r}")
    y, w, d, h, m, s, ms = (int(g or 0) for g in match.groups())
    return (((y * 365 + w * 7 + d) * 24 + h) * 60 + m) * 60 + s + ms / 1000


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
Interval = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


def _check_template(source: str) -> str:
    # Imported here: sinks/notify imports this module, and the functions and default templates
    # that decide what parses live there. By the time a config validates, both are loaded.
    from sinks.notify.templating import check_template

    check_template(source)
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
SmartHost = Annotated[str, Field(pattern=r"^[^\s:]+:\d{1,5}$")]  # host:port; 465 means implicit TLS


class Matcher(_Strict):
    """One label condition, written as Alertmanager does: `severity=~"high|critical"`, `team!=ops`."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _MATCHER.fullmatch(value)
        if not match or (match.group(4) is not None and '"' in match.group(4)):
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


def _legacy_matchers(match: Mapping[str, str], match_re: Mapping[str, str], where: str) -> list[Matcher]:
    """`match` / `match_re` maps (Alertmanager's older form) as matchers."""
    for name in (*match, *match_re):
        if not _LABEL.fullmatch(name):
            raise ValueError(f"{where}: {name!r} is not a valid label name")
    out = [Matcher(name=k, op="=", value=str(v)) for k, v in sorted(match.items())]
    return out + [Matcher(name=k, op="=~", value=str(v)) for k, v in sorted(match_re.items())]


class Route(_Strict):
    """A node of the routing tree; unset fields are inherited from the parent route."""

    model_config = ConfigDict(validate_by_name=True)

    receiver: str | None = None
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    matchers: list[Matcher] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")  # keep matching siblings after this one matched
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Interval | None = None
    repeat_interval: Interval | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, regex in value.items():
            try:
                re.compile(regex)
            except re.error as err:
                raise ValueError(f"{name}: invalid regex {regex!r}: {err}") from err
        return value

    @field_validator("group_by")
    @classmethod
    def _label_names(cls, value: list[str] | None) -> list[str] | None:
        if value and ALL_LABELS in value and len(value) > 1:
            raise ValueError(f"'{ALL_LABELS}' means every label and must be the only entry")
        bad = [name for name in value or [] if name != ALL_LABELS and not _LABEL.fullmatch(name)]
        if bad:
            raise ValueError(f"invalid label names {bad}")
        twice = sorted({n for n in value or [] if (value or []).count(n) > 1})
        if twice:
            raise ValueError(f"duplicated labels {twice} in group_by")
        return value

    @property
    def all_matchers(self) -> list[Matcher]:
        """`match`, `match_re` and `matchers` together: an alert must satisfy all of them."""
        return _legacy_matchers(self.match, self.match_re, "route") + self.matchers

    def walk(self, where: str = "route") -> Iterator[tuple[str, Route]]:
        """Every route of the tree with its config path, e.g. ("route.routes[1]", route)."""
        yield where, self
        for index, child in enumerate(self.routes):
            yield from child.walk(f"{where}.routes[{index}]")


class InhibitRule(_Strict):
    """Alerts matching the target are not notified while an alert matching the source fires with
    the same values of the `equal` labels."""

    source_match: dict[str, str] = Field(default_factory=dict)
    source_match_re: dict[str, str] = Field(default_factory=dict)
    source_matchers: list[Matcher] = Field(default_factory=list)
    target_match: dict[str, str] = Field(default_factory=dict)
    target_match_re: dict[str, str] = Field(default_factory=dict)
    target_matchers: list[Matcher] = Field(default_factory=list)
    equal: list[str] = Field(default_factory=list)

    @property
    def sources(self) -> list[Matcher]:
        return _legacy_matchers(self.source_match, self.source_match_re, "source") + self.source_matchers

    @property
    def targets(self) -> list[Matcher]:
        return _legacy_matchers(self.target_match, self.target_match_re, "target") + self.target_matchers


class GlobalConfig(_Strict):
    """Defaults that receivers inherit, as in Alertmanager's `global:`."""

    resolve_timeout: Duration = RESOLVE_TIMEOUT
    smtp_from: str | None = None
    smtp_hello: str = "localhost"
    smtp_smarthost: SmartHost | None = None
    smtp_auth_username: str | None = None
    smtp_auth_password: SecretStr | None = None
    smtp_auth_identity: str | None = None
    smtp_auth_secret: SecretStr | None = None
    smtp_require_tls: bool = True
    slack_api_url: SecretUrl | None = None
    pagerduty_url: Url = PAGERDUTY_V2_URL


class WebhookConfig(_Strict):
    url: Url
    send_resolved: bool = True
    max_alerts: int = Field(0, ge=0)  # alerts per message, the rest counted in truncatedAlerts; 0: all


class SlackField(_Strict):
    title: Template
    value: Template
    short: bool | None = None


class SlackConfig(_Strict):
    """Alertmanager's Slack attachment, field for field, with its default templates."""

    api_url: SecretUrl | None = None  # None: global.slack_api_url; the URL holds the token: a secret
    channel: Template = ""  # "": the webhook's own channel
    username: Template = '{{ template "slack.default.username" . }}'
    color: Template = '{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}'
    title: Template = '{{ template "slack.default.title" . }}'
    title_link: Template = '{{ template "slack.default.titlelink" . }}'
    pretext: Template = '{{ template "slack.default.pretext" . }}'
    text: Template = '{{ template "slack.default.text" . }}'
    fallback: Template = '{{ template "slack.default.fallback" . }}'
    callback_id: Template = '{{ template "slack.default.callbackid" . }}'
    icon_emoji: Template = '{{ template "slack.default.iconemoji" . }}'
    icon_url: Template = '{{ template "slack.default.iconurl" . }}'
    footer: Template = '{{ template "slack.default.footer" . }}'
    image_url: Template = ""
    thumb_url: Template = ""
    short_fields: bool = False
    link_names: bool = False
    mrkdwn_in: list[str] = Field(default_factory=lambda: ["fallback", "pretext", "text"])
    fields: list[SlackField] = Field(default_factory=list)
    send_resolved: bool = False


class EmailConfig(_Strict):
    """Unset smarthost, from, auth and require_tls come from `global`; `subject` is talonflow's
    shorthand for `headers: {Subject: ...}` (seed configs write it)."""

    model_config = ConfigDict(validate_by_name=True)

    to: Template = Field(min_length=1)
    from_: Template | None = Field(None, alias="from")
    hello: str | None = None
    smarthost: SmartHost | None = None
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_identity: str | None = None
    auth_secret: SecretStr | None = None
    require_tls: bool | None = None
    headers: dict[str, Template] = Field(default_factory=dict)
    subject: Template | None = None
    html: Template = '{{ template "email.default.html" . }}'
    text: Template = ""
    send_resolved: bool = False

    @property
    def host(self) -> str:
        return (self.smarthost or "").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int((self.smarthost or ":0").rsplit(":", 1)[1])

    def all_headers(self) -> dict[str, str]:
        """Alertmanager's headers: Subject, To and From unless set, names case-insensitive."""
        headers = {k.title(): v for k, v in self.headers.items()}
        if self.subject is not None:
            headers["Subject"] = self.subject
        headers.setdefault("Subject", '{{ template "email.default.subject" . }}')
        headers.setdefault("To", self.to)
        headers.setdefault("From", self.from_ or "")
        return headers


class PagerDutyConfig(_Strict):
    """Events v2 with `routing_key`, v1 with `service_key` (Alertmanager's defaults for both)."""

    model_config = ConfigDict(validate_by_name=True)

    routing_key: SecretStr | None = None
    service_key: SecretStr | None = None
    url: Url | None = None  # v2: global.pagerduty_url; v1: PagerDuty's v1 endpoint
    client: Template = '{{ template "pagerduty.default.client" . }}'
    client_url: Template = '{{ template "pagerduty.default.clientURL" . }}'
    description: Template = '{{ template "pagerduty.default.description" .}}'
    details: dict[str, Template] = Field(
        default_factory=lambda: {
            "firing": '{{ template "pagerduty.default.instances" .Alerts.Firing }}',
            "resolved": '{{ template "pagerduty.default.instances" .Alerts.Resolved }}',
            "num_firing": "{{ .Alerts.Firing | len }}",
            "num_resolved": "{{ .Alerts.Resolved | len }}",
        }
    )
    severity: Template = "error"
    class_: Template = Field("", alias="class")
    component: Template = ""
    group: Template = ""
    source: Template | None = None  # None: the rendered client
    send_resolved: bool = True

    @model_validator(mode="after")
    def _a_key(self) -> PagerDutyConfig:
        if self.routing_key is None and self.service_key is None:
            raise ValueError("missing service or routing key in PagerDuty config")
        return self

    @property
    def events_v1(self) -> bool:
        return self.routing_key is None


class Receiver(_Strict):
    name: str = Field(min_length=1)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    email_configs: list[EmailConfig] = Field(default_factory=list)
    pagerduty_configs: list[PagerDutyConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _supported(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            refused = sorted(set(value) & set(_UNSUPPORTED_RECEIVERS))
            if refused:
                raise ValueError(
                    f"{', '.join(refused)}: not supported by talonflow (webhook_configs, slack_configs, "
                    "email_configs and pagerduty_configs are)"
                )
        return value


def _expand(node: Any, where: str) -> Any:
    """`${NAME}` / `${env:NAME}` from the environment, as a deployment's envsubst would."""
    if isinstance(node, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise ValueError(f"{where}: environment variable {match.group(1)} is not set")
        return value

    return _ENV.sub(substitute, node)


class NotifyConfig(_Strict):
    """Where alerts go (route), what holds them back (inhibit_rules, time intervals) and how they
    get there (receivers). Empty means no notifications."""

    model_config = ConfigDict(hide_input_in_errors=True, validate_by_name=True)  # never echo a secret

    global_: GlobalConfig = Field(GlobalConfig(), alias="global")
    route: Route | None = None
    receivers: list[Receiver] = Field(default_factory=list)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)  # globs, resolved against `base_dir`
    time_intervals: list[NamedTimeInterval] = Field(default_factory=list)
    mute_time_intervals: list[NamedTimeInterval] = Field(default_factory=list)  # the older name
    # where `templates` globs are read from: the file's (or talonflow.yaml's) folder; set by _read
    base_dir: Path = Field(Path(), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _read(cls, value: Any, info: ValidationInfo) -> Any:
        """`{file: path}` reads alertmanager.yml; `${NAME}` is expanded either way."""
        if not isinstance(value, Mapping):
            return value
        base = Path((info.context or {}).get(BASE_DIR, "."))
        if "file" in value:
            if set(value) != {"file"}:
                raise ValueError("file: with a file, the notifications section has no other keys")
            path = base / str(value["file"])
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except OSError as err:
                raise ValueError(f"file: cannot read {path}: {err.strerror}") from None
            except yaml.YAMLError as err:
                raise ValueError(f"file: {path} is not valid YAML: {err}") from None
            if not isinstance(loaded, Mapping):
                raise ValueError(f"file: {path} must hold a mapping of keys")
            value, base = loaded, path.parent
        if "base_dir" in value:
            raise ValueError("base_dir: not a key of the notifications section")
        expanded = _expand(dict(value), "notifications")
        return {**expanded, "base_dir": base} if value else expanded

    @model_validator(mode="after")
    def _consistent(self) -> NotifyConfig:
        """Alertmanager's own checks, in its words where it has them."""
        names = [r.name for r in self.receivers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"receivers: notification config names must be unique, repeated: {twice}")
        if self.route is None:
            if self.receivers:
                raise ValueError("route: no route provided in config")
            return self
        root = self.route
        if root.receiver is None:
            raise ValueError("route.receiver: root route must specify a default receiver")
        if root.all_matchers:
            raise ValueError("route: root route must not have any matchers")
        if root.continue_:
            raise ValueError("route: cannot have continue in root route")
        if root.mute_time_intervals or root.active_time_intervals:
            raise ValueError("route: root route must not have any mute or active time intervals")
        intervals = [i.name for i in (*self.time_intervals, *self.mute_time_intervals)]
        repeated = sorted({n for n in intervals if intervals.count(n) > 1})
        if repeated:
            raise ValueError(f"time_intervals: names must be unique, repeated: {repeated}")
        for where, route in root.walk():
            if route.receiver is not None and route.receiver not in names:
                raise ValueError(f"{where}.receiver: undefined receiver {route.receiver!r} used in route")
            for name in (*route.mute_time_intervals, *route.active_time_intervals):
                if name not in intervals:
                    raise ValueError(f"{where}: undefined time interval {name!r} used in route")
        self._inherit_globals()
        from sinks.notify.templating import check_template_files  # see _check_template

        check_template_files(self.template_files())
        return self

    def _inherit_globals(self) -> None:
        """Fill what receivers leave unset from `global`, failing as Alertmanager does."""
        g = self.global_
        for receiver in self.receivers:
            where = f"receivers[{receiver.name}]"
            for index, email in enumerate(receiver.email_configs):
                updates = {
                    "smarthost": email.smarthost or g.smtp_smarthost,
                    "from_": email.from_ or g.smtp_from,
                    "hello": email.hello or g.smtp_hello,
                    "auth_username": email.auth_username or g.smtp_auth_username,
                    "auth_password": email.auth_password or g.smtp_auth_password,
                    "auth_identity": email.auth_identity or g.smtp_auth_identity,
                    "auth_secret": email.auth_secret or g.smtp_auth_secret,
                    "require_tls": g.smtp_require_tls if email.require_tls is None else email.require_tls,
                }
                if not updates["smarthost"]:
                    raise ValueError(f"{where}.email_configs[{index}]: no global SMTP smarthost set")
                if not updates["from_"]:
                    raise ValueError(f"{where}.email_configs[{index}]: no global SMTP from set")
                receiver.email_configs[index] = email.model_copy(update=updates)
            for index, slack in enumerate(receiver.slack_configs):
                if slack.api_url is None:
                    if g.slack_api_url is None:
                        raise ValueError(f"{where}.slack_configs[{index}]: no global Slack API URL set")
                    receiver.slack_configs[index] = slack.model_copy(update={"api_url": g.slack_api_url})
            for index, pager in enumerate(receiver.pagerduty_configs):
                if pager.url is None:
                    url = PAGERDUTY_V1_URL if pager.events_v1 else g.pagerduty_url
                    receiver.pagerduty_configs[index] = pager.model_copy(update={"url": url})

    def template_files(self) -> list[Path]:
        """The files the `templates` globs name, in Alertmanager's order (sorted per glob)."""
        found: list[Path] = []
        for pattern in self.templates:
            found += sorted(Path(p) for p in glob.glob(str(self.base_dir / pattern)))
        return found

    @property
    def enabled(self) -> bool:
        return bool(self.receivers)

    @property
    def all_time_intervals(self) -> dict[str, NamedTimeInterval]:
        return {i.name: i for i in (*self.time_intervals, *self.mute_time_intervals)}

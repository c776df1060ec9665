"""Alertmanager configs as written: the seed specs' load unchanged, and talonflow and the real
`amtool check-config` (Debian's prometheus-alertmanager) agree on what is valid."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from schemas.config import TalonflowConfig
from schemas.notify import PAGERDUTY_V1_URL, NotifyConfig
from sinks.notify.routing import RouteNode

SEEDS = Path("/work/shared/seeds")
SEED_ENV = {  # what the seeds' deployments would export (their ${...} placeholders)
    "SMTP_USER": "alerts",
    "SMTP_PASSWORD": "smtp-secret",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
    "PAGERDUTY_SERVICE_KEY": "pd-service-key",
}


def seed_configs() -> list[tuple[str, str]]:
    """Every YAML block of the seed specs that is an Alertmanager config (a route and receivers)."""
    found = []
    for path in sorted(SEEDS.glob("*.txt")):
        for index, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", path.read_text(), re.S)):
            try:
                document = yaml.safe_load(block)
            except yaml.YAMLError:
                continue
            if isinstance(document, dict) and {"route", "receivers"} <= set(document):
                found.append((f"{path.name[:3]}#{index}", block))
    return found


@pytest.fixture
def seed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SEED_ENV.items():
        monkeypatch.setenv(name, value)


def test_the_seeds_hold_alertmanager_configs() -> None:
    assert [name[:3] for name, _ in seed_configs()] == ["000", "002"]


@pytest.mark.parametrize(("name", "block"), seed_configs(), ids=[n for n, _ in seed_configs()])
def test_seed_config_loads_unchanged(name: str, block: str, seed_env: None, tmp_path: Path) -> None:
    inline = TalonflowConfig.model_validate({"notifications": yaml.safe_load(block)}).notifications
    (tmp_path / "alertmanager.yml").write_text(block)
    by_file = TalonflowConfig.model_validate(
        {"notifications": {"file": "alertmanager.yml"}}, context={"base_dir": tmp_path}
    ).notifications
    assert inline.receivers == by_file.receivers and inline.route == by_file.route
    assert inline.enabled and inline.route is not None


def test_seed_000_means_what_alertmanager_means(seed_env: None) -> None:
    [(_, block)] = [c for c in seed_configs() if c[0].startswith("000")]
    config = NotifyConfig.model_validate(yaml.safe_load(block))
    receivers = {r.name: r for r in config.receivers}
    default = receivers["default"].email_configs[0]
    assert (default.smarthost, default.from_, default.auth_username) == (
        "smtp.gmail.com:587",
        "alerts@openclaw.local",
        "alerts",
    )
    pager = receivers["pagerduty-critical"]
    assert pager.pagerduty_configs[0].events_v1 and pager.pagerduty_configs[0].url == PAGERDUTY_V1_URL
    slack_url = pager.slack_configs[0].api_url
    assert slack_url is not None and slack_url.get_secret_value() == SEED_ENV["SLACK_WEBHOOK_URL"]
    assert receivers["email-warning"].email_configs[0].all_headers()["Subject"] == (
        "Warning: {{ .GroupLabels.alertname }}"
    )
    tree = RouteNode.root(config.route)
    routed = {
        severity: [r.receiver for r in tree.match({"alertname": "X", "severity": severity})]
        for severity in ("critical", "high", "warning", "info")
    }
    assert routed == {
        "critical": ["pagerduty-critical"],  # continue: true, but no later sibling matches
        "high": ["slack-high"],
        "warning": ["email-warning"],
        "info": ["default"],
    }
    assert config.template_files() == []  # /etc/alertmanager/templates/*.tmpl matches nothing here


VALID: dict[str, dict[str, Any]] = {
    "minimal": {"route": {"receiver": "r"}, "receivers": [{"name": "r"}]},
    "everything": {
        "global": {
            "resolve_timeout": "5m",
            "smtp_smarthost": "mail:587",
            "smtp_from": "am@example.com",
            "smtp_require_tls": False,
            "slack_api_url": "https://hooks.slack.com/x",
        },
        "route": {
            "receiver": "team",
            "group_by": ["alertname", "cluster"],
            "group_wait": "10s",
            "group_interval": "1m",
            "repeat_interval": "1h30m",
            "routes": [
                {"match": {"severity": "critical"}, "receiver": "pager", "continue": True},
                {
                    "match_re": {"service": "^(api|web)$"},
                    "receiver": "team",
                    "mute_time_intervals": ["nights"],
                },
                {
                    "matchers": ['team="ops"', "env=~prod.*"],
                    "receiver": "team",
                    "active_time_intervals": ["days"],
                },
            ],
        },
        "inhibit_rules": [
            {
                "source_match": {"severity": "critical"},
                "target_match": {"severity": "warning"},
                "equal": ["alertname"],
            },
            {"source_matchers": ['severity="critical"'], "target_matchers": ["severity=~info|warning"]},
        ],
        "time_intervals": [
            {
                "name": "nights",
                "time_intervals": [
                    {"times": [{"start_time": "00:00", "end_time": "08:00"}], "weekdays": ["monday:friday"]}
                ],
            },
            {
                "name": "days",
                "time_intervals": [
                    {
                        "days_of_month": ["1:10", "-3:-1"],
                        "months": ["january:march", "12"],
                        "years": ["2026:2030"],
                        "location": "Europe/Berlin",
                    }
                ],
            },
        ],
        "receivers": [
            {
                "name": "team",
                "slack_configs": [{"channel": "#ops", "title": '{{ template "slack.default.title" . }}'}],
                "email_configs": [{"to": "team@example.com", "headers": {"Subject": "{{ .Status }}"}}],
                "webhook_configs": [{"url": "http://127.0.0.1:22001/hook", "max_alerts": 5}],
            },
            {
                "name": "pager",
                "pagerduty_configs": [
                    {"routing_key": "k", "severity": "critical", "details": {"n": "{{ .Alerts | len }}"}},
                    {"service_key": "v1"},
                ],
            },
        ],
    },
}
INVALID: dict[str, dict[str, Any]] = {
    "undefined receiver": {"route": {"receiver": "nope"}, "receivers": [{"name": "r"}]},
    "no default receiver": {"route": {"group_by": ["a"]}, "receivers": [{"name": "r"}]},
    "root matchers": {"route": {"receiver": "r", "matchers": ["a=b"]}, "receivers": [{"name": "r"}]},
    "root continue": {"route": {"receiver": "r", "continue": True}, "receivers": [{"name": "r"}]},
    "no route": {"receivers": [{"name": "r"}]},
    "duplicate receiver": {"route": {"receiver": "r"}, "receivers": [{"name": "r"}, {"name": "r"}]},
    "unknown key": {"route": {"receiver": "r", "group_wiat": "1s"}, "receivers": [{"name": "r"}]},
    "bad duration": {"route": {"receiver": "r", "group_wait": "soon"}, "receivers": [{"name": "r"}]},
    "zero group_interval": {"route": {"receiver": "r", "group_interval": "0s"}, "receivers": [{"name": "r"}]},
    "wildcard and labels": {
        "route": {"receiver": "r", "group_by": ["...", "a"]},
        "receivers": [{"name": "r"}],
    },
    "bad regex": {
        "route": {"receiver": "r", "routes": [{"match_re": {"a": "("}}]},
        "receivers": [{"name": "r"}],
    },
    "undefined interval": {
        "route": {"receiver": "r", "routes": [{"receiver": "r", "mute_time_intervals": ["x"]}]},
        "receivers": [{"name": "r"}],
    },
    "bad weekday": {
        "route": {"receiver": "r"},
        "receivers": [{"name": "r"}],
        "time_intervals": [{"name": "x", "time_intervals": [{"weekdays": ["funday"]}]}],
    },
    "times reversed": {
        "route": {"receiver": "r"},
        "receivers": [{"name": "r"}],
        "time_intervals": [
            {"name": "x", "time_intervals": [{"times": [{"start_time": "10:00", "end_time": "09:00"}]}]}
        ],
    },
    "no pagerduty key": {"route": {"receiver": "r"}, "receivers": [{"name": "r", "pagerduty_configs": [{}]}]},
    "slack without url": {"route": {"receiver": "r"}, "receivers": [{"name": "r", "slack_configs": [{}]}]},
    "email without smarthost": {
        "route": {"receiver": "r"},
        "receivers": [{"name": "r", "email_configs": [{"to": "a@example.com", "from": "b@example.com"}]}],
    },
    "webhook without url": {
        "route": {"receiver": "r"},
        "receivers": [{"name": "r", "webhook_configs": [{}]}],
    },
    "webhook bad scheme": {
        "route": {"receiver": "r"},
        "receivers": [{"name": "r", "webhook_configs": [{"url": "ftp://x/y"}]}],
    },
}


def _amtool(path: Path) -> bool:
    amtool = shutil.which("amtool")
    assert amtool, "amtool (Debian prometheus-alertmanager, compose/native/install-peers.sh) is not installed"
    return (
        subprocess.run([amtool, "check-config", str(path)], capture_output=True, check=False).returncode == 0
    )


def _talonflow(document: dict[str, Any], base: Path) -> bool:
    try:
        NotifyConfig.model_validate(document, context={"base_dir": base})
    except ValidationError:
        return False
    return True


def _corpus() -> list[tuple[str, dict[str, Any], bool]]:
    cases: list[tuple[str, dict[str, Any], bool]] = [(name, doc, True) for name, doc in VALID.items()]
    cases += [(name, doc, False) for name, doc in INVALID.items()]
    for name, block in seed_configs():
        text = block
        for variable, value in SEED_ENV.items():
            text = text.replace("${" + variable + "}", value)  # as the seed's deployment would
        text = re.sub(r"^\s*subject:.*$", "", text, flags=re.M)  # Alertmanager has no email `subject`
        cases.append((f"seed {name}", yaml.safe_load(text), True))
    return cases


@pytest.mark.parametrize(("name", "document", "valid"), _corpus(), ids=[c[0] for c in _corpus()])
def test_talonflow_and_amtool_agree(name: str, document: dict[str, Any], valid: bool, tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(document))
    assert (_amtool(path), _talonflow(document, tmp_path)) == (valid, valid)


def test_where_talonflow_accepts_what_amtool_refuses(seed_env: None, tmp_path: Path) -> None:
    """Seed 000 as written: Alertmanager reads `${SLACK_WEBHOOK_URL}` literally (not a URL) and has
    no email `subject`; talonflow expands the environment and takes `subject` as the header."""
    [(_, block)] = [c for c in seed_configs() if c[0].startswith("000")]
    path = tmp_path / "alertmanager.yml"
    path.write_text(block)
    assert not _amtool(path)
    assert _talonflow(yaml.safe_load(block), tmp_path)


BROKEN_TEMPLATES = {
    "unclosed action": "{{ .Status ",
    "unknown function": "{{ .Status | shout }}",
}


@pytest.mark.parametrize("title", BROKEN_TEMPLATES.values(), ids=list(BROKEN_TEMPLATES))
def test_where_talonflow_refuses_what_amtool_accepts(title: str, tmp_path: Path) -> None:
    """Alertmanager parses a config's template strings only when it notifies (and then fails that
    notification); talonflow parses them at load."""
    document = {
        "route": {"receiver": "r"},
        "global": {"slack_api_url": "https://h/x"},
        "receivers": [{"name": "r", "slack_configs": [{"title": title}]}],
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(document))
    assert _amtool(path)
    assert not _talonflow(document, tmp_path)


def test_templates_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "tmpl").mkdir()
    (tmp_path / "tmpl" / "team.tmpl").write_text('{{ define "team.title" }}[{{ .Status }}] team{{ end }}')
    document = {
        "templates": ["tmpl/*.tmpl"],
        "route": {"receiver": "r"},
        "receivers": [
            {
                "name": "r",
                "slack_configs": [{"api_url": "https://h/x", "title": '{{ template "team.title" . }}'}],
            }
        ],
    }
    config = NotifyConfig.model_validate(document, context={"base_dir": tmp_path})
    assert config.template_files() == [tmp_path / "tmpl" / "team.tmpl"]
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(document))
    assert _amtool(tmp_path / "alertmanager.yml")
    (tmp_path / "tmpl" / "broken.tmpl").write_text('{{ define "x" }}{{ if }}{{ end }}')
    with pytest.raises(ValidationError, match=r"broken\.tmpl:1: missing value for if"):
        NotifyConfig.model_validate(document, context={"base_dir": tmp_path})

"""Prometheus rule files (rulefmt) as Prometheus 2.42 reads them: groups of alerting and recording rules.

    groups:
      - name: agents            # unique in the file
        interval: 15s           # default: the evaluator's global interval
        limit: 0                # alerts (or series) a rule may produce; 0 = no limit
        rules:
          - record: job:errors:rate5m
            expr: sum by (job) (rate(errors_total[5m]))
          - alert: HighErrorRate
            expr: job:errors:rate5m > 0.1
            for: 30s
            keep_firing_for: 1m
            labels: {severity: critical}
            annotations: {summary: "{{ $labels.job }} fails {{ $value | humanizePercentage }}"}

The one rule language: the alerts flow, `talonflow rules check` and `talonflow rules test` read
it. Every expression is parsed by the promql engine and
every template by schemas/gotemplate.py at load, so a rule that loads can be evaluated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from promql import PromQLError, parse
from promql.ast import Expr
from promql.lexer import parse_duration
from promql.values import LABEL_NAME
from schemas.gotemplate import GoTemplate, GoTemplateError

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
TEMPLATE_PREAMBLE = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}"
    "{{$value := .Value}}"
)


def duration_ms(text: str | int) -> int:
    """Prometheus' model.Duration: `0`, `90s`, `1h30m` (no fractions) in milliseconds."""
    if text in ("0", 0):
        return 0
    try:
        return parse_duration(str(text))
    except PromQLError:
        raise ValueError(f'not a valid duration string: "{text}"') from None


def drop_nulls(value: Any) -> Any:
    """`labels:` with nothing after it is YAML null; Go reads it as the field's zero value."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


def yaml_string_map(value: Any) -> Any:
    """YAML reads `severity: 1` as an int; Go's YAML reads any scalar into a map[string]string."""
    if isinstance(value, dict):
        return {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items() if v is not None
        }
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, value: Any) -> Any:
        return drop_nulls(value)


class RuleNode(_Strict):
    """One rule, alerting (`alert`) or recording (`record`)."""

    record: str | None = None
    alert: str | None = None
    expr: str = ""
    for_: int = Field(0, alias="for")
    keep_firing_for: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("expr", mode="before")
    @classmethod
    def _scalar_expr(cls, value: Any) -> Any:
        """`expr: 1` is YAML's int; Go's YAML reads it into the string field as written."""
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("for_", "keep_firing_for", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return duration_ms(value)

    @field_validator("labels", "annotations", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        return yaml_string_map(value)

    @model_validator(mode="after")
    def _check(self) -> RuleNode:
        if self.record is None and self.alert is None:
            raise ValueError("one of 'record' or 'alert' must be set")
        if self.record is not None and self.alert is not None:
            raise ValueError("only one of 'record' and 'alert' must be set")
        if not self.expr.strip():
            raise ValueError("expr: field 'expr' must be set in rule")
        if self.record is not None:
            if not _METRIC_NAME.fullmatch(self.record):
                raise ValueError(f"record: invalid recording rule name: {self.record}")
            if self.annotations:
                raise ValueError("annotations: invalid field 'annotations' in recording rule")
            if self.for_:
                raise ValueError("for: invalid field 'for' in recording rule")
            if self.keep_firing_for:
                raise ValueError("keep_firing_for: invalid field 'keep_firing_for' in recording rule")
        elif not self.alert:
            raise ValueError("alert: alert name must not be empty")
        for name in self.labels:
            if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"labels.{name}: invalid label name: {name}")
        for name in self.annotations:
            if not LABEL_NAME.fullmatch(name):
                raise ValueError(f"annotations.{name}: invalid annotation name: {name}")
        return self

    @property
    def name(self) -> str:
        return self.alert if self.alert is not None else str(self.record)


class RuleGroup(_Strict):
    name: str
    interval: int | None = None  # ms; None: the evaluator's global interval
    limit: int = Field(0, ge=0)
    rules: list[RuleNode] = Field(default_factory=list)

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int | None:
        return None if value is None else duration_ms(value)

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value:
            raise ValueError("groupname must not be empty")
        return value


class PromRuleFile(_Strict):
    groups: list[RuleGroup] = Field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    """A validated rule with its parsed expression and templates, ready for rules/ to evaluate."""

    node: RuleNode
    expr: Expr
    labels: dict[str, GoTemplate]
    annotations: dict[str, GoTemplate]

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def is_alert(self) -> bool:
        return self.node.alert is not None


@dataclass(frozen=True)
class Group:
    file: str
    name: str
    interval_ms: int | None
    limit: int
    rules: tuple[Rule, ...]


class PromRuleFileError(Exception):
    """A rule file that cannot be used; each line names the file, group, rule and key."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


def load_prometheus_rules(path: str | os.PathLike[str], funcs: dict[str, Any]) -> list[Group]:
    """Read and validate one rule file; raise PromRuleFileError listing every problem."""
    path = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise PromRuleFileError(path, [f"not valid YAML: {err}"]) from None
    except OSError as err:
        raise PromRuleFileError(path, [f"cannot read: {err.strerror}"]) from None
    except UnicodeDecodeError as err:
        raise PromRuleFileError(path, [f"not valid UTF-8: {err}"]) from None
    return parse_prometheus_rules(raw if raw is not None else {}, path, funcs)


def parse_prometheus_rules(raw: Any, path: str, funcs: dict[str, Any]) -> list[Group]:
    """Validate a loaded YAML document; `funcs` are the template functions templates may call."""
    try:
        model = PromRuleFile.model_validate(raw)
    except ValidationError as err:
        raise PromRuleFileError(path, [_describe(raw, e) for e in err.errors()]) from None
    problems: list[str] = []
    groups: list[Group] = []
    seen: set[str] = set()
    for group in model.groups:
        if group.name in seen:
            problems.append(f'group "{group.name}": groupname: "{group.name}" is repeated in the same file')
        seen.add(group.name)
        rules = []
        for index, node in enumerate(group.rules):
            where = f'group "{group.name}", rule {index + 1} ("{node.name}")'
            rule = _compile(node, where, funcs, problems)
            if rule is not None:
                rules.append(rule)
        groups.append(Group(path, group.name, group.interval, group.limit, tuple(rules)))
    if problems:
        raise PromRuleFileError(path, problems)
    return groups


def _compile(node: RuleNode, where: str, funcs: dict[str, Any], problems: list[str]) -> Rule | None:
    try:
        expr = parse(node.expr)
    except PromQLError as err:
        problems.append(f"{where}: expr: could not parse expression: {err}")
        return None
    templates: dict[str, dict[str, GoTemplate]] = {"labels": {}, "annotations": {}}
    templated = (("labels", node.labels), ("annotations", node.annotations)) if node.alert is not None else ()
    for kind, mapping in templated:
        for key, text in mapping.items():
            try:
                templates[kind][key] = GoTemplate(
                    TEMPLATE_PREAMBLE + text, funcs, name=f"__alert_{node.name}"
                )
            except GoTemplateError as err:
                problems.append(f"{where}: {kind}.{key}: template: {err}")
    return Rule(node, expr, templates["labels"], templates["annotations"])


def _describe(raw: Any, error: Any) -> str:
    """A pydantic error as `group "g", rule 2 ("Name"): for: message`."""
    loc = list(error["loc"])
    parts: list[str] = []
    group_name = rule_name = None
    if len(loc) >= 2 and loc[0] == "groups" and isinstance(loc[1], int):
        group = _get(raw, "groups", loc[1])
        group_name = group.get("name") if isinstance(group, dict) else None
        parts.append(f'group "{group_name}"' if group_name else f"groups[{loc[1]}]")
        loc = loc[2:]
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rule = _get(group, "rules", loc[1])
            if isinstance(rule, dict):
                rule_name = rule.get("alert") or rule.get("record")
            parts.append(f"rule {loc[1] + 1}" + (f' ("{rule_name}")' if rule_name else ""))
            loc = loc[2:]
    key = ".".join(str(p) for p in loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"field {key} is not allowed"
    where = ", ".join(parts)
    return ": ".join(p for p in (where, key, message) if p)


def _get(raw: Any, key: str, index: int) -> Any:
    items = raw.get(key) if isinstance(raw, dict) else None
    return items[index] if isinstance(items, list) and index < len(items) else None

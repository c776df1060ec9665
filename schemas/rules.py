"""Alert rule files: Prometheus-like groups of rules over the 1m rollups (ROLLUPS_SCHEMA).

    groups:
      - name: agents
        rules:
          - alert: QueueBacklog
            expr: {value: {metric: agent.queue.depth, field: last, by: [service.name]}}
            op: ">"
            threshold: 50
            for: 2m               # the condition holds this long before the alert fires (0: at once)
            keep_firing_for: 0s   # a firing alert outlives its condition this long
            labels: {severity: warning}   # severity: critical, high, warning or info
            annotations: {summary: "{{ $labels.service.name }} has {{ $value }} queued tasks"}

Durations are multiples of the 60 s rollup resolution: rules see whole windows only.

Expressions, exactly one kind per `expr`, each giving one number per `by` group (a rule without
`by` has one group; a label a series lacks groups as ""):
- `value: {metric, match, field, over, by}`: the rollups of `metric` whose labels pass `match`,
  windows ending in the last `over` (default 1m, one window), every series of a group together:
  count, sum, increase add up; rate = total increase / over seconds; min and max are the
  smallest min and the largest max; avg = total sum / total count; last = each series' value in
  its latest window, the largest of the group's series (group finer to compare series one by
  one); p50..p99 are exact for one window of one series, otherwise the count-weighted mean of
  the windows' quantiles: an approximation, quantiles do not average.
- `ratio: {numerator, denominator, by}`: two `value` selections (without `by` of their own)
  grouped by the ratio's `by` and divided. A group the numerator lacks counts as 0 (no failures
  reported is no failures); a denominator that is missing or 0 gives no result.
- `absent: {metric, match, for, by}`: for each group seen before but without rows in the last
  `for`, the seconds since its latest window ended (at least `for`: `op: ">=", threshold: 0`
  alerts on any absence). A group that never reported yields nothing: the rule cannot know it
  should exist (the heartbeat series cover that case).

Matchers (the values of `match`), as in PromQL; a label a series lacks reads as "":
`"x"` equal, `"!=x"` not equal, `"=~re"` matches, `"!~re"` does not match; `"=x"` is an explicit
equal for values that begin with "!" or "=". Regexes match the whole value and use Polars' (Rust,
RE2-like) syntax: no look-around, no backreferences.

Annotation templates (not Jinja): `{{ $value }}` prints the value as Prometheus does (Go's
shortest %g: 0.85, 5, 1.234567e+06); `{{ $labels.NAME }}` (NAME may hold dots) and
`{{ index $labels "NAME" }}` print a label of the alert, "" when it has none.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import polars as pl
import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from schemas.rollups import RESOLUTIONS
from schemas.types import Seconds
from schemas.types import Strict as _Strict

RESOLUTION_S: Final = RESOLUTIONS["1m"]
SEVERITIES: Final = ("critical", "high", "warning", "info")
Op = Literal[">", ">=", "<", "<=", "==", "!="]
RollupField = Literal[
    "last", "sum", "count", "min", "max", "avg", "rate", "increase", "p50", "p90", "p95", "p99"
]

_MATCH_OPS: Final = ("=~", "!~", "!=", "=")  # longest first: "=~x" is a regex, "=x" an equal
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_VALUE_REF = re.compile(r"\s*\$value\s*")
_LABEL_REF = re.compile(r'\s*(?:\$labels\.([A-Za-z_][\w.]*)|index\s+\$labels\s+"([^"]*)")\s*')


class RuleFileError(Exception):
    """A rule file that cannot be used; each problem names the group, the rule and the key."""

    def __init__(self, path: str | os.PathLike[str], problems: list[RuleProblem]) -> None:
        self.path, self.problems = str(path), problems
        super().__init__("\n".join(f"{self.path}: {problem}" for problem in problems))


@dataclass(frozen=True)
class RuleProblem:
    group: str | None  # the group's name, or groups[i] when it has none
    rule: str | None  # the rule's alert name, or rules[j]
    key: str  # dotted path inside the rule (or group, or file)
    message: str

    def __str__(self) -> str:
        where = [f"{kind} {name!r}" for kind, name in (("group", self.group), ("rule", self.rule)) if name]
        return ", ".join([*where, f"{self.key}: {self.message}"])


def parse_matcher(text: str) -> tuple[str, str]:
    """("=", "x"), ("!=", "x"), ("=~", "re") or ("!~", "re") from a `match` value."""
    for op in _MATCH_OPS:
        if text.startswith(op):
            return op, text[len(op) :]
    return "=", text


def anchored(regex: str) -> str:
    """PromQL regex matchers match the whole label value."""
    return f"^(?:{regex})$"


def _check_matcher(text: str) -> str:
    op, operand = parse_matcher(text)
    if op in ("=~", "!~"):
        try:  # Polars runs the matchers, so its regex engine judges them
            pl.Series([""], dtype=pl.String).str.contains(anchored(operand))
        except pl.exceptions.ComputeError as err:
            reason = next((line for line in str(err).splitlines() if line.startswith("error: ")), str(err))
            raise ValueError(f"invalid regex {operand!r}: {reason.removeprefix('error: ')}") from None
    return text


def _whole_windows(seconds: float) -> float:
    if seconds % RESOLUTION_S:
        raise ValueError(f"{seconds:g}s is not a multiple of the {RESOLUTION_S}s rollup resolution")
    return seconds


def _distinct(labels: list[str]) -> list[str]:
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels repeat in {labels}")
    return labels


Matcher = Annotated[str, AfterValidator(_check_matcher)]
Window = Annotated[Seconds, AfterValidator(_whole_windows)]
By = Annotated[list[Annotated[str, Field(min_length=1)]], AfterValidator(_distinct)]


class Selector(_Strict):
    metric: str = Field(min_length=1)
    match: dict[str, Matcher] = Field(default_factory=dict)


class Selection(Selector):
    """A `value` without grouping: the sides of a `ratio`."""

    field: RollupField
    over: Window = Field(float(RESOLUTION_S), gt=0)


class ValueExpr(Selection):
    by: By = Field(default_factory=list)


class RatioExpr(_Strict):
    numerator: Selection
    denominator: Selection
    by: By = Field(default_factory=list)


class AbsentExpr(Selector):
    for_: Window = Field(alias="for", gt=0)
    by: By = Field(default_factory=list)


class Expr(_Strict):
    value: ValueExpr | None = None
    ratio: RatioExpr | None = None
    absent: AbsentExpr | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Expr:
        kinds = [kind for kind in ("value", "ratio", "absent") if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(f"needs exactly one of value, ratio, absent; got {kinds or 'none'}")
        return self

    @property
    def kind(self) -> ValueExpr | RatioExpr | AbsentExpr:
        kind = self.value or self.ratio or self.absent
        assert kind is not None  # _one_kind
        return kind


def _placeholder(inner: str) -> str | None:
    """The label a `{{ ... }}` prints, None for `$value`; anything else is refused at load."""
    if _VALUE_REF.fullmatch(inner):
        return None
    label = _LABEL_REF.fullmatch(inner)
    if label is None:
        raise ValueError(
            f"unsupported template {{{{{inner}}}}}: use {{{{ $value }}}}, {{{{ $labels.NAME }}}} "
            f'or {{{{ index $labels "NAME" }}}}'
        )
    return label.group(1) or label.group(2)


def format_value(value: float) -> str:
    """`{{ $value }}` as Prometheus prints it: Go's %v, the shortest %g (exponent from 1e+06)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "0"
    shortest = Decimal(repr(value)).normalize()  # repr: the shortest digits that read back, as in Go
    sign, digits, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)  # finite
    text, point = "".join(map(str, digits)), len(digits) + exponent  # value = 0.<text> * 10**point
    if -4 <= point - 1 < 6:
        return format(shortest, "f")
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{point - 1:+03d}"


def _check_template(text: str) -> str:
    for match in _TEMPLATE.finditer(text):
        _placeholder(match.group(1))
    if "{{" in _TEMPLATE.sub("", text):
        raise ValueError("unclosed {{")
    return text


Template = Annotated[str, AfterValidator(_check_template)]


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    def substitute(match: re.Match[str]) -> str:
        label = _placeholder(match.group(1))
        return format_value(value) if label is None else labels.get(label, "")

    return _TEMPLATE.sub(substitute, template)


class Rule(_Strict):
    alert: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    expr: Expr
    op: Op
    threshold: float
    for_: Window = Field(0.0, alias="for")
    keep_firing_for: Window = 0.0
    labels: dict[str, str]
    annotations: dict[str, Template] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _severity(cls, labels: dict[str, str]) -> dict[str, str]:
        choices = ", ".join(SEVERITIES)
        if "severity" not in labels:
            raise ValueError(f"severity is required: one of {choices}")
        if labels["severity"] not in SEVERITIES:
            raise ValueError(f"severity must be one of {choices}; got {labels['severity']!r}")
        if "alertname" in labels:
            raise ValueError("alertname comes from `alert`; it cannot be a label")
        return labels

    def annotate(self, labels: Mapping[str, str], value: float) -> dict[str, str]:
        return {name: render(text, labels, value) for name, text in self.annotations.items()}


class RuleGroup(_Strict):
    name: str = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)


class RuleFile(_Strict):
    groups: list[RuleGroup]

    @field_validator("groups")
    @classmethod
    def _unique_names(cls, groups: list[RuleGroup]) -> list[RuleGroup]:
        names = [group.name for group in groups]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"group names must be unique; repeated: {repeated}")
        return groups


def _named(items: Any, index: int, key: str, kind: str) -> tuple[Any, str]:
    """The raw item at `index` and its name for messages: its `key`, else its position."""
    item = items[index] if isinstance(items, list) and index < len(items) else None
    name = item.get(key) if isinstance(item, dict) else None
    return (item if isinstance(item, dict) else {}), (name if isinstance(name, str) else f"{kind}[{index}]")


def _problem(raw: Any, error: Mapping[str, Any]) -> RuleProblem:
    loc, group, rule = list(error["loc"]), None, None
    if loc[:1] == ["groups"] and len(loc) > 1 and isinstance(loc[1], int):
        raw_group, group = _named(raw.get("groups"), loc[1], "name", "groups")
        loc = loc[2:]
        if loc[:1] == ["rules"] and len(loc) > 1 and isinstance(loc[1], int):
            _, rule = _named(raw_group.get("rules"), loc[1], "alert", "rules")
            loc = loc[2:]
    key = ".".join(str(part) for part in loc) or "<top>"
    return RuleProblem(group, rule, key, str(error["msg"]).removeprefix("Value error, "))


def parse_rules(raw: Any, source: str | os.PathLike[str] = "<rules>") -> RuleFile:
    """Validate a loaded document; every problem is reported at once, named by group and rule."""
    try:
        return RuleFile.model_validate(raw)
    except ValidationError as err:
        raise RuleFileError(source, [_problem(raw, error) for error in err.errors()]) from None


def load_rules(path: str | os.PathLike[str]) -> RuleFile:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise RuleFileError(path, [RuleProblem(None, None, "<top>", f"not valid YAML: {err}")]) from None
    except OSError as err:
        raise RuleFileError(
            path, [RuleProblem(None, None, "<top>", f"cannot read: {err.strerror}")]
        ) from None
    return parse_rules(raw, path)

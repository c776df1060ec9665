"""`talonflow rules test`: promtool's rule unit-test files, run through talonflow's rule engine.

Follows cmd/promtool/unittest.go (Prometheus 2.42): per test group, the input series are
loaded lazily up to each evaluation time, and every group is evaluated at 0, evaluation_interval,
... up to the latest eval_time; alert_rule_test compares the firing alerts after the evaluation at
or just before each eval_time, promql_expr_test queries the storage (inputs plus rule outputs) afterwards.
Verdicts, output and exit codes are promtool's; failures also print a line-by-line diff.
"""

from __future__ import annotations

import difflib
import glob
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from promql import Labels, MemoryStorage, PromQLError, Scalar, Vector, instant_query
from rules.evaluation import GroupEvaluator
from rules.loader import load_groups
from rules.series_notation import expand_values, parse_series_labels
from rules.templates import TemplateContext
from schemas.prometheus_rules import PromRuleFileError, drop_nulls, duration_ms, yaml_string_map

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: large input_series


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, value: Any) -> Any:
        return drop_nulls(value)


class _Duration(_Strict):
    @field_validator("*", mode="before")
    @classmethod
    def _durations(cls, value: Any, info: Any) -> Any:
        if info.field_name in ("eval_time", "interval", "evaluation_interval") and value is not None:
            return duration_ms(value)
        return value


class InputSeries(_Strict):
    series: str
    values: str = ""

    @field_validator("values", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return str(value)


class ExpAlert(_Strict):
    exp_labels: dict[str, str] = Field(default_factory=dict)
    exp_annotations: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("exp_labels", "exp_annotations", mode="before")(yaml_string_map)


class AlertTest(_Duration):
    eval_time: int = 0
    alertname: str = ""
    exp_alerts: list[ExpAlert] = Field(default_factory=list)


class ExpSample(_Strict):
    labels: str = ""
    value: float = 0.0


class ExprTest(_Duration):
    expr: str
    eval_time: int = 0
    exp_samples: list[ExpSample] = Field(default_factory=list)


class TestGroup(_Duration):
    __test__ = False  # not a pytest class
    interval: int = 0  # as promtool: without it every input sample is at time 0 (the first one kept)
    input_series: list[InputSeries] = Field(default_factory=list)
    alert_rule_test: list[AlertTest] = Field(default_factory=list)
    promql_expr_test: list[ExprTest] = Field(default_factory=list)
    external_labels: dict[str, str] = Field(default_factory=dict)
    external_url: str = ""
    name: str = ""

    _strings = field_validator("external_labels", mode="before")(yaml_string_map)


class UnitTestFile(_Duration):
    rule_files: list[str] = Field(default_factory=list)
    evaluation_interval: int = 60_000
    group_eval_order: list[str] = Field(default_factory=list)
    tests: list[TestGroup] = Field(default_factory=list)


def go_duration(ms: int) -> str:
    """Go's time.Duration.String for whole milliseconds: 0s, 1m30s, 1h0m0s, 1.5s."""
    if ms == 0:
        return "0s"
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if ms < 1000:
        return f"{sign}{ms}ms"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    return f"{sign}{minutes}m{seconds}" if minutes else sign + seconds


def model_duration(ms: int) -> str:
    """Prometheus' model.Duration.String: the largest units that divide evenly (1m, 1h30m, 0s)."""
    if ms == 0:
        return "0s"
    out = ""
    for unit, size in (
        ("y", 31_536_000_000),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ):
        count, ms = divmod(ms, size)
        if count:
            out += f"{count}{unit}"
    return out


def go_labels(labels: Labels | dict[str, str]) -> str:
    """labels.Labels.String(): `{a="b", c="d"}`."""
    pairs = sorted(labels.items()) if isinstance(labels, dict) else labels
    return "{" + ", ".join(f'{k}="{_go_escape(v)}"' for k, v in pairs) + "}"


def _go_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")


def go_float_e(value: float) -> str:
    """strconv.FormatFloat(v, 'E', -1, 64): the shortest digits that read back, as 2.5E-01."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = f"{value:.16e}"
    for precision in range(17):
        text = f"{value:.{precision}e}"
        if float(text) == value:
            break
    return text.replace("e", "E")


@dataclass
class FileResult:
    path: str
    errors: list[str] = field(default_factory=list)


def run_files(paths: list[str], out: TextIO, err: TextIO) -> int:
    """Run each test file as `promtool test rules` does; 0 when every file passed, else 1."""
    failed = False
    for path in paths:
        print("Unit Testing: ", path, file=out)
        result = run_file(path)
        if result.errors:
            print("  FAILED:", file=err)
            for message in result.errors:
                print(message, file=err)
                print(file=out)
            failed = True
        else:
            print("  SUCCESS", file=out)
        print(file=out)
    return 1 if failed else 0


def run_file(path: str) -> FileResult:
    result = FileResult(path)
    try:
        with open(path) as fh:
            raw = yaml.load(fh, Loader=_YAML_LOADER)
        spec = UnitTestFile.model_validate(raw if raw is not None else {})
    except (OSError, yaml.YAMLError) as exc:
        result.errors.append(str(exc))
        return result
    except ValidationError as exc:
        result.errors.extend(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return result
    base = os.path.dirname(path)
    rule_files: list[str] = []
    for pattern in spec.rule_files:
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        matches = sorted(glob.glob(full))
        if not matches:
            print("  WARNING: no file match pattern", full, file=sys.stderr)
        rule_files.extend(matches)
    if len(set(spec.group_eval_order)) != len(spec.group_eval_order):
        dup = next(g for g in spec.group_eval_order if spec.group_eval_order.count(g) > 1)
        result.errors.append(f"group name repeated in evaluation order: {dup}")
        return result
    for group in spec.tests:
        result.errors.extend(_run_group(group, spec, rule_files))
    return result


def _run_group(tg: TestGroup, spec: UnitTestFile, rule_files: list[str]) -> list[str]:
    storage = MemoryStorage()
    try:
        inputs = sorted(
            (i * tg.interval, labels, value)
            for item in tg.input_series
            for labels in [parse_series_labels(item.series)]
            for i, value in enumerate(expand_values(item.values))
            if value is not None
        )
    except ValueError as exc:
        return [str(exc)]
    loaded = 0

    def load_till(t_ms: int) -> None:
        """promtool loads input samples lazily, up to each evaluation time: a sample after the last
        evaluation is never seen, not even by a promql_expr_test at a later eval_time."""
        nonlocal loaded
        while loaded < len(inputs) and inputs[loaded][0] <= t_ms:
            t, labels, value = inputs[loaded]
            storage.append(labels, t, value)
            loaded += 1

    context = TemplateContext(storage, subquery_step_ms=spec.evaluation_interval)
    try:
        groups = load_groups(list(rule_files), context)
    except PromRuleFileError as exc:
        return [str(exc)]
    order = {name: i for i, name in enumerate(spec.group_eval_order)}
    groups.sort(key=lambda g: order.get(g.name, 0))
    evaluators = [GroupEvaluator(g, storage, context, tg.external_labels, tg.external_url) for g in groups]
    errors: list[str] = []
    for alert_test in tg.alert_rule_test:
        if not alert_test.alertname:
            suffix = f" (in TestGroup {tg.name})" if tg.name else ""
            return [
                f"an item under alert_rule_test misses required attribute alertname at eval_time "
                f"{model_duration(alert_test.eval_time)}{suffix}"
            ]
    alert_times = sorted({a.eval_time for a in tg.alert_rule_test})
    max_t = max([a.eval_time for a in tg.alert_rule_test] + [p.eval_time for p in tg.promql_expr_test] + [0])
    step = spec.evaluation_interval
    current = 0
    for ts in range(0, max_t + 1, step):
        load_till(ts)
        eval_errors = []
        for evaluator in evaluators:
            outcome = evaluator.evaluate(ts)
            eval_errors += [
                f"    rule: {rule}, time: {go_duration(ts)}, err: {msg}" for rule, msg in outcome.errors
            ]
        if eval_errors:
            return errors + eval_errors
        while current < len(alert_times) and ts <= alert_times[current] < ts + step:
            errors += _check_alerts(tg, alert_times[current], evaluators)
            current += 1
    for expr_test in tg.promql_expr_test:
        errors += _check_expr(tg, expr_test, storage, step)
    return errors


def _check_alerts(tg: TestGroup, t: int, evaluators: list[GroupEvaluator]) -> list[str]:
    errors = []
    for case in (a for a in tg.alert_rule_test if a.eval_time == t):
        got = sorted(
            (alert.labels, tuple(sorted(alert.annotations.items())))
            for ev in evaluators
            for alert in ev.alerts(case.alertname)
            if alert.state == "firing"
        )
        expected = sorted(
            (
                tuple(sorted({**a.exp_labels, "alertname": case.alertname}.items())),
                tuple(sorted(a.exp_annotations.items())),
            )
            for a in case.exp_alerts
        )
        if got != expected:
            name = f"    name: {tg.name},\n" if tg.name else ""
            exp_text, got_text = _alerts_text(expected), _alerts_text(got)
            errors.append(
                f"{name}    alertname: {case.alertname}, time: {model_duration(t)}, \n"
                f"        exp:{_indent(exp_text)}, \n        got:{_indent(got_text)}"
                + _diff(exp_text, got_text)
            )
    return errors


def _alerts_text(alerts: list[tuple[Labels, tuple[tuple[str, str], ...]]]) -> str:
    if not alerts:
        return "[]"
    items = [
        f"{i}:" + _indent(f"\nLabels:{go_labels(ls)}\nAnnotations:{go_labels(an)}", "  ")
        for i, (ls, an) in enumerate(alerts)
    ]
    return "[\n" + ",\n".join(items) + "\n]"


def _indent(text: str, prefix: str = "            ") -> str:
    return text.replace("\n", "\n" + prefix)


def _diff(expected: str, got: str) -> str:
    """A unified diff of expected vs got, after promtool's own text, so a failure is quick to read."""
    lines = list(
        difflib.unified_diff(expected.splitlines(), got.splitlines(), "exp", "got", lineterm="", n=1)
    )
    return ("\n        diff:\n" + "\n".join("          " + line for line in lines)) if lines else ""


def _check_expr(tg: TestGroup, case: ExprTest, storage: MemoryStorage, step: int) -> list[str]:
    where = f"    expr: {_go_quote(case.expr)}, time: {model_duration(case.eval_time)}"
    try:  # promtool's engine steps `x[5m:]` subqueries by the file's evaluation_interval
        value = instant_query(case.expr, case.eval_time, storage, subquery_step_ms=step)
    except PromQLError as exc:
        return [f"{where}, err: {exc}"]
    got: list[tuple[Labels, float]]
    if isinstance(value, Scalar):
        got = [((), value.value)]
    elif isinstance(value, Vector):
        got = [(ls, float(v)) for ls, v in zip(value.labels, value.values, strict=True)]
    else:
        return [f"{where}, err: rule result is not a vector or scalar"]
    expected = []
    for sample in case.exp_samples:
        try:
            labels = parse_series_labels(sample.labels) if sample.labels.strip() else ()
        except ValueError as exc:
            return [f'{where}, err: labels "{sample.labels}": {exc}']
        expected.append((labels, sample.value))
    got.sort(key=lambda s: s[0])
    expected.sort(key=lambda s: s[0])
    if _same_samples(expected, got):
        return []
    exp_text, got_text = _samples_text(expected), _samples_text(got)
    return [
        f"{where},\n        exp: {exp_text}\n        got: {got_text}"
        + _diff(exp_text.replace(", {", "\n{"), got_text.replace(", {", "\n{"))
    ]


def _same_samples(expected: list[tuple[Labels, float]], got: list[tuple[Labels, float]]) -> bool:
    """reflect.DeepEqual, as promtool compares: exact values, and NaN never equals NaN."""
    return len(expected) == len(got) and all(e == g for e, g in zip(expected, got, strict=True))


def _samples_text(samples: list[tuple[Labels, float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(f"{go_labels(ls)} {go_float_e(v)}" for ls, v in samples)


def _go_quote(text: str) -> str:
    return '"' + _go_escape(text) + '"'

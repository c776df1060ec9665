"""Rule group evaluation as Prometheus 2.42's rules/ package does it, pure and clock-free.

At each evaluation time a group runs its rules in order against one storage: recording rules
write their output there (so later rules, and later evaluations, read it) and mark series that
disappeared stale; alerting rules move each alert inactive -> pending -> firing -> resolved
with `for` and `keep_firing_for` exactly as rules/alerting.go (AlertingRule.Eval) does.
The alerts flow and `talonflow rules test` both drive this module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from promql import STALE_NAN, Labels, PromQLError, Scalar, Storage, Vector, instant_query
from rules.templates import TemplateContext
from schemas.gotemplate import GoTemplate, GoTemplateExecError, StringMap
from schemas.prometheus_rules import Group, Rule

RESOLVED_RETENTION_MS = 15 * 60_000  # how long a resolved alert is kept (and re-sent) in Prometheus


class WritableStorage(Storage, Protocol):
    """A storage rules can write their output series to."""

    def append(self, labels: Labels, t_ms: int, value: float) -> bool: ...


@dataclass
class Alert:
    """One alert of an alerting rule, keyed by its label set (alertname included)."""

    labels: Labels
    annotations: dict[str, str]
    state: str  # inactive, pending or firing
    active_at: int
    value: float
    fired_at: int | None = None
    resolved_at: int | None = None
    keep_firing_since: int | None = None


@dataclass(frozen=True)
class Transition:
    rule: str
    labels: Labels
    old: str
    new: str
    t_ms: int


@dataclass
class EvalResult:
    errors: list[tuple[str, str]] = field(default_factory=list)  # (rule name, message)
    transitions: list[Transition] = field(default_factory=list)


@dataclass(frozen=True)
class RuleSnapshot:
    active: dict[Labels, Alert]
    previous_series: set[Labels]


@dataclass
class _RuleState:
    rule: Rule
    active: dict[Labels, Alert] = field(default_factory=dict)
    previous_series: set[Labels] = field(default_factory=set)


class GroupEvaluator:
    """Holds one group's alert state and evaluates it at the times it is given."""

    def __init__(
        self,
        group: Group,
        storage: WritableStorage,
        templates: TemplateContext,
        external_labels: dict[str, str] | None = None,
        external_url: str = "",
        alerts_series: bool = True,
    ) -> None:
        self.group, self.storage, self.templates = group, storage, templates
        self.external_labels = dict(external_labels or {})
        self.external_url = external_url
        self.alerts_series = alerts_series  # write ALERTS / ALERTS_FOR_STATE as Prometheus does
        self.states = [_RuleState(rule) for rule in group.rules]

    def evaluate(self, t_ms: int) -> EvalResult:
        """Evaluate every rule in order at t_ms; a failing rule is reported and the others go on."""
        result = EvalResult()
        for state in self.states:
            try:
                if state.rule.is_alert:
                    samples = self._alerting(state, t_ms, result.transitions)
                else:
                    samples = self._recording(state.rule, t_ms)
            except (PromQLError, RuleError) as err:
                result.errors.append((state.rule.name, str(err)))
                continue
            self._write(state, samples, t_ms)
        return result

    def snapshot(self) -> list[RuleSnapshot]:
        """Every rule's alerts and last written series, in rule order: what a recovery snapshot keeps
        so that a restart neither loses nor repeats a transition."""
        return [RuleSnapshot(copy.deepcopy(s.active), set(s.previous_series)) for s in self.states]

    def restore(self, snapshot: list[RuleSnapshot]) -> None:
        if len(snapshot) != len(self.states):
            raise ValueError(f"snapshot of {len(snapshot)} rules for a group of {len(self.states)}")
        for state, saved in zip(self.states, snapshot, strict=True):
            state.active, state.previous_series = copy.deepcopy(saved.active), set(saved.previous_series)

    def alerts(self, rule_name: str) -> list[Alert]:
        return [a for s in self.states if s.rule.name == rule_name for a in s.active.values()]

    def _query(self, rule: Rule, t_ms: int) -> Vector:
        step = self.templates.subquery_step_ms  # `x[5m:]` steps by the global evaluation_interval
        value = instant_query(rule.expr, t_ms, self.storage, subquery_step_ms=step)
        if isinstance(value, Scalar):
            return Vector(t_ms, [()], np.array([value.value]))
        if not isinstance(value, Vector):
            raise RuleError("rule result is not a vector or scalar")
        return value

    def _recording(self, rule: Rule, t_ms: int) -> list[tuple[Labels, float]]:
        vec = self._query(rule, t_ms)
        extra = {**rule.node.labels, "__name__": str(rule.node.record)}  # recording labels are not templates
        out = [(_with(ls, extra), float(v)) for ls, v in zip(vec.labels, vec.values, strict=True)]
        if len({ls for ls, _ in out}) != len(out):
            raise RuleError("vector contains metrics with the same labelset after applying rule labels")
        if self.group.limit and len(out) > self.group.limit:
            raise RuleError(f"exceeded limit of {self.group.limit} with {len(out)} series")
        return out

    def _alerting(
        self, state: _RuleState, t_ms: int, transitions: list[Transition]
    ) -> list[tuple[Labels, float]]:
        rule = state.rule
        vec = self._query(rule, t_ms)
        self.templates.storage, self.templates.t_ms = self.storage, t_ms
        current: dict[Labels, Alert] = {}
        for ls, value in zip(vec.labels, vec.values.tolist(), strict=True):
            data = {
                "Labels": StringMap(ls),
                "ExternalLabels": StringMap(self.external_labels),
                "ExternalURL": self.external_url,
                "Value": value,
            }
            labels = {k: v for k, v in ls if k != "__name__"}
            labels.update({k: _expand(t, data) for k, t in rule.labels.items()})
            labels["alertname"] = rule.name
            key = tuple(sorted((k, v) for k, v in labels.items() if v != ""))
            if key in current:
                raise RuleError("vector contains metrics with the same labelset after applying alert labels")
            annotations = {k: _expand(t, data) for k, t in rule.annotations.items()}
            current[key] = Alert(key, annotations, "pending", t_ms, value)
        for key, alert in current.items():
            known = state.active.get(key)
            if known is not None and known.state != "inactive":
                known.value, known.annotations = alert.value, alert.annotations
                continue
            state.active[key] = alert
            transitions.append(Transition(rule.name, key, "inactive", "pending", t_ms))
        return self._advance(state, current, t_ms, transitions)

    def _advance(
        self, state: _RuleState, current: dict[Labels, Alert], t_ms: int, transitions: list[Transition]
    ) -> list[tuple[Labels, float]]:
        rule, node = state.rule, state.rule.node
        samples: list[tuple[Labels, float]] = []
        active_pending = 0
        for key, alert in list(state.active.items()):
            if key not in current:
                keep_firing = False
                if alert.state == "firing" and node.keep_firing_for > 0:
                    if alert.keep_firing_since is None:
                        alert.keep_firing_since = t_ms
                    keep_firing = t_ms - alert.keep_firing_since < node.keep_firing_for
                resolved_long_ago = (
                    alert.resolved_at is not None and t_ms - alert.resolved_at > RESOLVED_RETENTION_MS
                )
                if alert.state == "pending" or resolved_long_ago:
                    del state.active[key]
                if alert.state != "inactive" and not keep_firing:
                    transitions.append(Transition(rule.name, key, alert.state, "inactive", t_ms))
                    alert.state, alert.resolved_at = "inactive", t_ms
                if not keep_firing:
                    continue
            else:
                alert.keep_firing_since = None
            active_pending += 1
            if alert.state == "pending" and t_ms - alert.active_at >= node.for_:
                alert.state, alert.fired_at = "firing", t_ms
                transitions.append(Transition(rule.name, key, "pending", "firing", t_ms))
            if self.alerts_series:
                # as AlertingRule.sample: the rule's labels as written, then the alert's over them
                base = tuple(sorted(node.labels.items()))
                alert_labels = _with(base, dict(key))
                samples.append((_with(alert_labels, {"__name__": "ALERTS", "alertstate": alert.state}), 1.0))
                samples.append(
                    (_with(alert_labels, {"__name__": "ALERTS_FOR_STATE"}), float(alert.active_at // 1000))
                )
        if self.group.limit and active_pending > self.group.limit:
            state.active.clear()
            raise RuleError(f"exceeded limit of {self.group.limit} with {active_pending} alerts")
        return samples

    def _write(self, state: _RuleState, samples: list[tuple[Labels, float]], t_ms: int) -> None:
        returned = set()
        for labels, value in samples:
            self.storage.append(labels, t_ms, value)
            returned.add(labels)
        for labels in state.previous_series - returned:
            self.storage.append(labels, t_ms, STALE_NAN)  # the series is gone: mark it stale
        state.previous_series = returned


class RuleError(Exception):
    """A rule whose result cannot be used at this evaluation (duplicates, limit exceeded)."""


def _with(labels: Labels, extra: dict[str, str]) -> Labels:
    merged = {**dict(labels), **extra}
    return tuple(sorted((k, v) for k, v in merged.items() if v != ""))


def _expand(template: GoTemplate, data: dict[str, object]) -> str:
    """Render a label or annotation; a failing template renders Prometheus' error text instead."""
    try:
        return template.render(data)
    except (GoTemplateExecError, ValueError) as err:
        return f"<error expanding template: {err}>"

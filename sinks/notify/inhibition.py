"""Alertmanager's inhibit rules: a firing source alert holds back the notifications of target alerts
that carry the same values of the rule's `equal` labels (a missing label equals a missing label).

As in Alertmanager, an alert that matches both sides of a rule is not inhibited by another alert
that also matches both sides (a rule cannot make alerts of one kind silence each other).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from schemas.notify import InhibitRule, Matcher
from sinks.notify.alerts import Alert


def _all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


class Inhibitor:
    """Knows every firing alert the notifier has seen; answers whether one is inhibited now."""

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self._rules = [(rule.sources, rule.targets, tuple(rule.equal)) for rule in rules]
        self._firing: dict[str, Alert] = {}

    def observe(self, alert: Alert) -> None:
        if alert.firing:
            self._firing[alert.fingerprint] = alert
        else:
            self._firing.pop(alert.fingerprint, None)

    def inhibited(self, alert: Alert) -> bool:
        labels = alert.labels
        for sources, targets, equal in self._rules:
            if not _all(targets, labels):
                continue
            two_sided = _all(sources, labels)
            for source in self._firing.values():
                if source.fingerprint == alert.fingerprint or not _all(sources, source.labels):
                    continue
                if two_sided and _all(targets, source.labels):
                    continue
                if all(source.labels.get(name, "") == labels.get(name, "") for name in equal):
                    return True
        return False

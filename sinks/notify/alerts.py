"""Alerts in Alertmanager's webhook shape, and the message one receiver gets for one group."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any

from sinks.notify.templating import AlertData, Data

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert that has not resolved


def _strings(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a mapping, not {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map has with the same value, as Alertmanager's CommonLabels."""
    if not maps:
        return {}
    return {k: v for k, v in sorted(maps[0].items()) if all(m.get(k) == v for m in maps[1:])}


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str
    fingerprint: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Alert:
        """Read one submitted alert; ValueError names what is wrong with it."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"expected a mapping, not {type(raw).__name__}")
        status = raw.get("status")
        if status not in ("firing", "resolved"):
            raise ValueError(f"status: expected 'firing' or 'resolved', not {status!r}")
        labels = _strings(raw.get("labels"), "labels")
        if not labels:
            raise ValueError("labels: an alert needs at least one label")
        digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        return cls(
            status=status,
            labels=labels,
            annotations=_strings(raw.get("annotations") or {}, "annotations"),
            starts_at=str(raw.get("startsAt") or ""),
            ends_at=str(raw.get("endsAt") or ZERO_TIME),
            generator_url=str(raw.get("generatorURL") or ""),
            fingerprint=str(raw.get("fingerprint") or digest),
        )

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def as_of(self, now: datetime) -> Alert:
        """Resolved once its endsAt has passed, whatever it was submitted as: Alertmanager's
        `Resolved()`, so a POSTed alert that is not re-posted resolves at its endsAt."""
        if not self.firing or self.ends_at == ZERO_TIME:
            return self
        try:
            ends = datetime.fromisoformat(self.ends_at.replace("Z", "+00:00"))
        except ValueError:
            return self  # not a time Alertmanager would have accepted: it never ends on its own
        return replace(self, status="resolved") if ends.tzinfo is not None and ends <= now else self

    def payload(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }

    def template_data(self) -> AlertData:
        return AlertData(
            self.status,
            self.labels,
            self.annotations,
            self.starts_at,
            self.ends_at,
            self.generator_url,
            self.fingerprint,
        )


@dataclass(frozen=True)
class Notification:
    """What one receiver is sent for one aggregation group at one flush."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    alerts: list[Alert]
    external_url: str

    @property
    def status(self) -> str:
        return "firing" if any(a.firing for a in self.alerts) else "resolved"

    @cached_property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @cached_property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    def webhook_payload(self, max_alerts: int = 0) -> dict[str, Any]:
        """Alertmanager's webhook body (version 4); `max_alerts` > 0 truncates the alert list."""
        shown = self.alerts[:max_alerts] if max_alerts else self.alerts
        return {
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": len(self.alerts) - len(shown),
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "alerts": [a.payload() for a in shown],
        }

    def template_data(self) -> Data:
        """Alertmanager's template data model, under its names."""
        return Data(
            self.receiver,
            self.status,
            [a.template_data() for a in self.alerts],
            self.group_labels,
            self.common_labels,
            self.common_annotations,
            self.external_url,
        )

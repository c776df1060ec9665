"""A restarted alerts flow tells its notifier again which alerts fire.

The notifier lives in the flow's process and starts empty after a kill -9, while the alert states
resume from the snapshot. Without a resend, the resolution of an alert that fired before the kill
found no group and was never notified (sinks/notify drops a resolved alert it holds no group for),
and a firing alert still in group_wait when the process died was never notified at all: the chaos
harness (bench/chaos.py) found both. Prometheus re-sends its active alerts to Alertmanager for the
same reason."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import yaml

from flows.alerts import Event, KeyedState, Poll, StreamLogic, stream_key
from rules.loader import load_groups
from rules.stream import components
from rules.templates import TemplateContext
from schemas.config import TalonflowConfig
from schemas.prometheus_names import prometheus_series
from schemas.topics import METRICS_TOPIC
from tests.unit.test_rules import metrics_table

PART = f"{METRICS_TOPIC}:0"


def test_a_restored_stream_resends_its_firing_alerts_and_only_those(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    high = {"alert": "DepthHigh", "expr": "depth > 5", "labels": {"severity": "page"}}
    pending = {"alert": "DepthWaits", "expr": "depth > 5", "for": "1h"}
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "interval": "1s", "rules": [high, pending]}]}))
    config = TalonflowConfig.model_validate({"alerts": {"rule_files": [str(rules)], "allowed_lateness": 0}})
    groups = load_groups([rules], TemplateContext())
    streams = {stream_key(c): c for c in components(groups)}
    (key,) = streams
    parts: dict[str, tuple[str, ...]] = {key: (PART,)}
    sent: list[Event] = []
    first = StreamLogic(config, streams, parts, None, sent.extend)
    frame = prometheus_series(metrics_table([("depth", "a", 9.0, 10_000), ("depth", "b", 1.0, 10_000)]))
    out, _ = first.on_item((key, Poll(frame, None, PART, 12_000)))
    fired = [e for _sequence, events in out for e in events if e["status"] == "firing"]
    assert [e["labels"]["instance"] for e in fired] == ["a"] and sent == []  # a first start resends nothing
    saved: KeyedState = pickle.loads(pickle.dumps(first.snapshot()))

    StreamLogic(config, streams, parts, saved, sent.extend)

    assert [(e["status"], e["labels"]["alertname"], e["labels"]["instance"]) for e in sent] == [
        ("firing", "DepthHigh", "a")  # not the pending DepthWaits, not instance b
    ]
    again: dict[str, Any] = sent[0]
    assert again["fingerprint"] == fired[0]["fingerprint"] and again["startsAt"] == fired[0]["startsAt"]

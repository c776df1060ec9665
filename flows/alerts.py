"""Kafka `talon_rollups` → alert rules → `talon_alerts`, Parquet `alerts` and notifications.

    TALONFLOW_CONFIG=talonflow.yaml python -m bytewax.run flows.alerts:flow \\
        -r .talonflow/recovery/alerts -s 5 -b 0

Every poll of rollups goes to every rule (one keyed state per rule, so rules spread over
workers). A rule evaluates a 1-minute window in event time once the rollup stream has moved
past it (a rollup of a later window arrived: replays, backfills, busy streams) or, on the clock,
`settle` seconds after the rollups flow closes it (its end + `rollups.allowed_lateness`) and
after its first rollup: rollup shards, and the heartbeats flow's minute rollups, deliver the
same window at slightly different moments. A rollup arriving after its window was evaluated is
ignored by the rule (rule_engine: event time only moves forward). Each
transition (schemas/rollups.py ALERTS_SCHEMA) is written to Parquet exactly once (sequence-named
files, as in flows/rollups.py), produced to the topic at least once (deduplicate on fingerprint,
state and time), and firing/resolved ones are handed to the notifier (sinks/notify), which
groups, deduplicates and delivers them off the dataflow's thread.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import polars as pl
import pyarrow as pa
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic

from flows.kafka_batches import Batch, KafkaBatchSource
from flows.lazy import lazy_flow, sequenced_sink
from flows.rollups import NOTIFY_EVERY_S as ROLLUPS_TICK_S
from flows.rule_engine import RuleRunner, alert_rows
from schemas.config import TalonflowConfig
from schemas.rollups import ROLLUPS_SCHEMA
from schemas.rules import Rule, load_rules
from schemas.topics import ALERTS_TOPIC, ROLLUPS_TOPIC
from sinks.notify import Notifier
from sinks.parquet import Chunk

CONSUMER_GROUP = "talonflow-alerts"
log = logging.getLogger(__name__)
Event = dict[str, Any]
_NOTIFIED = ("firing", "resolved")


def rollup_frame(batch: Batch) -> pl.DataFrame:
    """The rollup rows of one poll of `talon_rollups` (JSON documents), as ROLLUPS_SCHEMA."""
    _part, records = batch
    rows = []
    for record in records:
        try:
            row = json.loads(record.value)
            row["attributes"] = list(row["attributes"].items())
            rows.append(row)
        except (ValueError, KeyError, AttributeError):
            continue  # not a rollup document: nothing to evaluate
    if not rows:
        return pl.DataFrame(ROLLUPS_SCHEMA.empty_table())
    columns = {name: [row.get(name) for row in rows] for name in ROLLUPS_SCHEMA.names}
    for name in ("window_start", "window_end"):
        columns[name] = [datetime.fromisoformat(text) for text in columns[name]]
    frame = pl.from_arrow(pa.Table.from_pydict(columns, schema=ROLLUPS_SCHEMA))
    assert isinstance(frame, pl.DataFrame)
    return frame


@dataclass
class RuleState:
    runner: RuleRunner
    waiting: dict[datetime, float] = field(default_factory=dict)  # window end -> when it may be evaluated
    evaluated: datetime | None = None  # the latest window evaluated
    sequence: int = 0


class RuleLogic(StatefulLogic[tuple[str, pl.DataFrame], tuple[int, list[Event]], RuleState]):
    """One rule: buffer rollups, evaluate each window once it is complete, in event-time order."""

    def __init__(
        self, rules: dict[str, Rule], settle: float, lateness: float, state: RuleState | None
    ) -> None:
        self._rules, self._settle, self._lateness = rules, settle, lateness
        self.state = state
        if state is not None:
            name = state.runner.rule.alert
            if name in rules:
                state.runner.rule = rules[name]  # an edited rule applies on restart
            restart = time.time() + settle
            state.waiting = {end: max(due, restart) for end, due in state.waiting.items()}

    def on_item(self, value: tuple[str, pl.DataFrame]) -> tuple[Iterable[tuple[int, list[Event]]], bool]:
        name, frame = value
        if self.state is None:  # bytewax builds the logic before it names the key: the item does
            self.state = RuleState(RuleRunner(self._rules[name]))
        if frame.is_empty():
            return [], StatefulLogic.RETAIN
        evaluated = self.state.evaluated
        if evaluated is not None and (late := frame.filter(pl.col("window_end") <= evaluated)).height:
            log.warning("%s: %d rollups arrived after their window was evaluated", name, late.height)
        self.state.runner.add(frame)
        now = time.time()
        for end in frame["window_end"].unique().to_list():
            # when the rollups flow closes it on the clock: its end, the lateness, one tick of its clock
            closes = end.timestamp() + self._lateness + ROLLUPS_TICK_S
            self.state.waiting.setdefault(end, max(now, closes) + self._settle)
        newest = max(self.state.waiting)
        return self._evaluate(lambda end, due: end < newest or now >= due)

    def on_notify(self) -> tuple[Iterable[tuple[int, list[Event]]], bool]:
        if self.state is None:
            return [], StatefulLogic.RETAIN
        now = time.time()
        return self._evaluate(lambda _end, due: now >= due)

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(seconds=0.5) if self.state and self.state.waiting else None

    def snapshot(self) -> RuleState:
        assert self.state is not None  # bytewax snapshots only logics that have seen an item
        return self.state

    def _evaluate(self, ready: Any) -> tuple[list[tuple[int, list[Event]]], bool]:
        """Evaluate ready windows oldest first: never a later window before an earlier one."""
        assert self.state is not None
        events: list[Event] = []
        for end in sorted(self.state.waiting):
            if not ready(end, self.state.waiting[end]):
                break
            del self.state.waiting[end]
            events.extend(self.state.runner.evaluate(end))
            self.state.evaluated = end
        if not events:
            return [], StatefulLogic.RETAIN
        self.state.sequence += 1
        return [(self.state.sequence - 1, events)], StatefulLogic.RETAIN


def part_of(rule: str) -> str:
    """A rule's Parquet writer: stable across rule files that add or reorder rules."""
    return f"alerts:{zlib.crc32(rule.encode())}"


def notify(notifier: Notifier, events: list[Event]) -> None:
    """Hand firing and resolved transitions to the notifier; it never blocks the flow."""
    for event in events:
        if event["status"] in _NOTIFIED:
            notifier.submit(event)


def load_all_rules(config: TalonflowConfig) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for path in config.alerts.rule_files:
        for group in load_rules(path).groups:
            for rule in group.rules:
                if rule.alert in rules:
                    raise ValueError(f"{path}: rule {rule.alert} is defined twice")
                rules[rule.alert] = rule
    return rules


def build(config: TalonflowConfig) -> Dataflow:
    rules = load_all_rules(config)
    settle = config.alerts.settle
    notifier = Notifier(config.notifications)
    notifier.start()

    flow = Dataflow("alerts")
    source = KafkaBatchSource(config.kafka, (ROLLUPS_TOPIC,), CONSUMER_GROUP, 500)
    frames = op.map("parse", op.input("kafka", flow, source), rollup_frame)
    keyed = op.flat_map("to-rules", frames, lambda frame: [(name, (name, frame)) for name in rules])
    lateness = config.rollups.allowed_lateness
    transitions = op.stateful("rules", keyed, lambda state: RuleLogic(rules, settle, lateness, state))

    def to_chunk(item: tuple[str, tuple[int, list[Event]]]) -> tuple[str, Chunk]:
        rule, (sequence, events) = item
        notify(notifier, events)
        return part_of(rule), ("alerts", alert_rows(events), sequence, sequence)

    sink = sequenced_sink(config, [part_of(rule) for rule in rules])
    op.output("parquet", op.map("chunk", transitions, to_chunk), sink)

    def messages(item: tuple[str, tuple[int, list[Event]]]) -> list[KafkaSinkMessage[bytes, bytes]]:
        return [
            KafkaSinkMessage(event["fingerprint"].encode(), json.dumps(event, separators=(",", ":")).encode())
            for event in item[1][1]
        ]

    brokers = config.kafka.bootstrap_servers.split(",")
    out = op.flat_map("json", transitions, messages)
    op.output("kafka-out", out, KafkaSink(brokers, ALERTS_TOPIC))
    return flow


__getattr__ = lazy_flow(build)

"""Kafka `otlp_metrics` → Prometheus rule groups (PromQL) → `talon_alerts`, Parquet `alerts`, notifications.

    TALONFLOW_CONFIG=talonflow.yaml python -m bytewax.run flows.alerts:flow \\
        -r .talonflow/recovery/alerts -s 5 -b 0

Each poll is flattened (schemas/flatten.py) and converted once into Prometheus series, named as
Prometheus' OTLP receiver names them (schemas/prometheus_names.py). The rule groups of
`alerts.rule_files` are keyed streams: groups that read each other's recording rules share one
(rules/stream.py `components`), and a poll's samples go only to the streams whose selectors can
match their metric names, so groups spread over workers and a group sees only what it reads. A
stream keeps its raw samples for the longest range or lookback its rules read and evaluates each
group at its own `interval`, in event time: at the aligned times its watermark has passed.

The watermark follows the pipeline's event time, not the stream's samples only, so a group whose
metrics never arrive is evaluated too and `absent()` fires, as in Prometheus. Every poll brings
each stream reading its topic the newest sample time of its last record (alone, when none of its
samples are for that stream); the stream's clock is the oldest of those over the input
partitions still sending (rules/stream.py `observe`). A partition read to the end of its log and
quiet for `allowed_lateness` (at least IDLE_AFTER_MIN_S) says so once (flows/kafka_batches.py
`idle_after`) and stops holding the clock back. The watermark is the clock minus
`allowed_lateness`, plus, once every partition is idle, the wall time since the last poll, so a
quiet pipeline still evaluates (as flows/rollups.py closes windows). Evaluation times thus depend
on what Kafka holds, never on which worker polled first: a stream waits for every partition that
may still hold earlier samples, after a restart too. A sample older than an evaluation already
made is counted and logged, and read by later evaluations only.

Samples, alert states and the output sequence are the stream's bytewax state, so a kill -9
resumes from the snapshot and replays the same samples through the same evaluations. Each
transition (schemas/alert_events.py) is written to Parquet exactly once (sequence-named files,
as in flows/rollups.py), produced to the topic at least once (deduplicate on fingerprint, state
and time), and firing/resolved ones are handed to the notifier (sinks/notify), which groups,
silences, deduplicates and delivers them off the dataflow's thread. The notifier lives in the
process and starts empty: a resumed stream hands it its firing alerts again (as Prometheus re-sends
active alerts to Alertmanager), so their resolution is notified, and so is a firing alert that was
still in group_wait when the process died; its notifications are at least once.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import quote

import bytewax.operators as op
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic

from flows.kafka_batches import Batch, KafkaBatchSource
from flows.lazy import lazy_flow, sequenced_sink
from promql import Labels
from rules.evaluation import Transition
from rules.loader import load_groups
from rules.stream import GroupStream, GroupTransition, StreamState, components, group_id, metric_names
from rules.templates import TemplateContext
from schemas.alert_events import ACTIVE_ENDS_AT, alert_rows, fingerprint, rfc3339
from schemas.config import AlertsConfig, TalonflowConfig
from schemas.datasets import METRICS, SPANS
from schemas.flatten import KafkaRecord, TimeBounds, flatten
from schemas.prometheus_names import (
    GAUGE,
    LABELS,
    NAME,
    SERIES,
    TIMESTAMP_MS,
    VALUE,
    metric_name,
    prometheus_series,
)
from schemas.prometheus_rules import Group
from schemas.rollup_series import FIELD as ROLLUP_FIELDS
from schemas.rollup_series import rollup_points
from schemas.spanmetrics import PREFIX as SPANMETRICS
from schemas.spanmetrics import SpanTotals, span_deltas
from schemas.topics import ALERTS_TOPIC, METRICS_TOPIC, ROLLUPS_TOPIC, SPANS_TOPIC
from sinks.notify import Notifier, pipeline_notifier
from sinks.parquet import Chunk

CONSUMER_GROUP = "talonflow-alerts"
TICK_S = 0.25  # how often an idle stream checks its watermark against the clock
IDLE_AFTER_MIN_S = 1.0  # a partition quiet this long, or allowed_lateness if longer, is idle
log = logging.getLogger(__name__)
Event = dict[str, Any]
_NOTIFIED = ("firing", "resolved")


@dataclass(frozen=True)
class Poll:
    """One poll of one input partition: its Prometheus samples of metrics, its spans counted as
    spanmetrics deltas, and the newest sample time of its last record (or word that the
    partition is idle), which moves the clock of every stream reading its topic."""

    series: pl.DataFrame | None = None
    spans: pl.DataFrame | None = None
    part: str = ""  # "topic:partition"
    newest_ms: int = 0
    idle: bool = False


def read_poll(batch: Batch, bounds: TimeBounds) -> Poll:
    """Flatten (or parse) once, name once: every stream reads the same frames. A poll is of one topic."""
    part, records = batch
    if not records:
        return Poll(part=part, idle=True)
    if records[0].topic == ROLLUPS_TOPIC:
        newest = last_rollup_ms(records[-1])
        return Poll(prometheus_series(rollup_points(r.value for r in records)), None, part, newest)
    flattened = flatten(records, bounds)
    # A poll's last record, not its newest sample, says how far a partition has come: newer samples
    # written before older ones (another run's backlog) would otherwise pull the clock past samples
    # still to come. Its rows are picked out of the tables already built, not flattened again.
    newest_ns = flattened.newest_of_record(len(records) - 1, (METRICS, SPANS))
    metrics, spans = flattened.tables.get(METRICS.name), flattened.tables.get(SPANS.name)
    return Poll(
        prometheus_series(metrics) if metrics is not None else None,
        span_deltas(spans) if spans is not None else None,
        part,
        0 if newest_ns is None else newest_ns // 1_000_000,
    )


def last_rollup_ms(record: KafkaRecord) -> int:
    """The newest point time (ms) of one `talon_rollups` record; 0 for none."""
    points = rollup_points([record.value])
    latest = pc.max(points[METRICS.time_column].cast(pa.int64())).as_py() if points.num_rows else None
    return 0 if latest is None else int(latest) // 1_000_000


@cache
def read_topics(wanted: frozenset[str] | None) -> frozenset[str]:
    """The topics a stream's series come from (None: any name), hence those whose partitions move
    its clock: a stream of rollups only keeps rollup time, so a rollup is not late on arrival. A
    stream that reads no series (`vector(1)`) runs on `otlp_metrics` time."""
    if wanted is None:
        return frozenset({METRICS_TOPIC, SPANS_TOPIC, ROLLUPS_TOPIC})
    derived = {metric_name(name, "", GAUGE) for name in ROLLUP_FIELDS}
    return frozenset(
        SPANS_TOPIC if n.startswith(SPANMETRICS) else ROLLUPS_TOPIC if n in derived else METRICS_TOPIC
        for n in wanted
    ) or frozenset({METRICS_TOPIC})


def topic_of(part: str) -> str:
    return part.rsplit(":", 1)[0]


def topics(names: Iterable[frozenset[str] | None]) -> tuple[str, ...]:
    """`otlp_metrics`, and the topics of spans and rollups when a rule reads series made of them."""
    read = frozenset().union(*(read_topics(w) for w in names))
    return (METRICS_TOPIC, *(t for t in (SPANS_TOPIC, ROLLUPS_TOPIC) if t in read))


def samples(
    frame: pl.DataFrame, known: dict[str, Labels] | None = None
) -> Iterator[tuple[Labels, list[int], list[float]]]:
    """(labels, times, values) per series of a `prometheus_series` frame (sorted by series, then time).

    `known` caches each series' labels by its printed form: building them is most of the cost."""
    known = {} if known is None else known
    runs = frame[SERIES].rle()
    counts, series = runs.struct.field("len").to_list(), runs.struct.field("value").to_list()
    starts = list(itertools.accumulate(counts, initial=0))
    new = [i for i, text in enumerate(series) if text not in known]
    if new:
        rows = [starts[i] for i in new]
        heads = zip(frame[NAME].gather(rows).to_list(), frame[LABELS].gather(rows).to_list(), strict=True)
        for i, (name, pairs) in zip(new, heads, strict=True):
            known[series[i]] = tuple(sorted([("__name__", name), *((p["name"], p["value"]) for p in pairs)]))
    times, values = frame[TIMESTAMP_MS].to_list(), frame[VALUE].to_list()
    for text, start, end in zip(series, starts, starts[1:], strict=False):
        yield known[text], times[start:end], values[start:end]


def stream_key(groups: list[Group]) -> str:
    """A stream's name: its groups, stable across rule files that add or reorder other groups."""
    return "|".join(sorted(group_id(g) for g in groups))


def part_of(key: str) -> str:
    """A stream's Parquet writer."""
    return f"alerts:{zlib.crc32(key.encode())}"


@dataclass
class KeyedState:
    key: str
    stream: StreamState
    spans: SpanTotals = field(default_factory=SpanTotals)


class StreamLogic(StatefulLogic[tuple[str, Poll], tuple[int, list[Event]], KeyedState]):
    """One stream of groups: store samples, evaluate what the watermark has passed, emit transitions."""

    def __init__(
        self,
        config: TalonflowConfig,
        streams: dict[str, list[Group]],
        parts: dict[str, tuple[str, ...]],
        state: KeyedState | None,
        resend: Callable[[list[Event]], None] = lambda _events: None,
    ) -> None:
        self._config, self._streams, self._parts = config, streams, parts
        self._settings: AlertsConfig = config.alerts
        self._lateness_ms = int(self._settings.allowed_lateness * 1000)
        self._stream: GroupStream | None = None
        self._state = state
        self._last_item = time.monotonic()  # wall time is not state: a restart does not age the stream
        self._labels: dict[str, Labels] = {}  # a cache, not state: series -> labels
        if state is not None and state.key in streams:
            self._stream = self._open(state)
            # The notifier is the process's and starts empty: tell it again what fires, as Prometheus
            # re-sends its active alerts to Alertmanager, or their resolution (and a firing alert
            # still in group_wait when the process died) would never be notified.
            resend(firing_events(self._stream, config.console.url))

    def _open(self, state: KeyedState) -> GroupStream:
        """The stream's groups, loaded with a template context of their own (workers are threads)."""
        interval_ms = int(self._settings.evaluation_interval * 1000)
        context = TemplateContext(state.stream.storage, subquery_step_ms=interval_ms)
        wanted = {group_id(g) for g in self._streams[state.key]}
        files = sorted({g.file for g in self._streams[state.key]})
        groups = [g for g in load_groups(list(files), context) if group_id(g) in wanted]
        return GroupStream(
            groups,
            state.stream,
            interval_ms,
            context,
            self._settings.external_labels,
            self._config.console.url,
            self._parts[state.key],
        )

    def on_item(self, value: tuple[str, Poll]) -> tuple[Iterable[tuple[int, list[Event]]], bool]:
        key, poll = value
        if self._stream is None or self._state is None:  # bytewax builds the logic before it names the key
            self._state = KeyedState(key, StreamState())
            self._stream = self._open(self._state)
        if not poll.idle:
            self._last_item = time.monotonic()
        if len(self._labels) > 2 * len(self._state.stream.storage.series) + 10_000:
            self._labels.clear()  # series come and go: the cache holds about what the storage does
        late = 0
        if poll.spans is not None:
            expire_ms = int(self._config.alerts.spanmetrics_expiration * 1000)
            spans = prometheus_series(self._state.spans.add(poll.spans, expire_ms))
            late += self._stream.add(samples(spans, self._labels))
        if poll.series is not None:
            late += self._stream.add(samples(poll.series, self._labels))
        if late:
            log.warning("%s: %d samples arrived after an evaluation at or past their time", key, late)
        self._stream.observe(poll.part, poll.newest_ms, poll.idle)  # after its samples: they start groups
        return self._advance(), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[tuple[int, list[Event]]], bool]:
        return self._advance(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(seconds=TICK_S) if self._stream is not None else None

    def snapshot(self) -> KeyedState:
        assert self._state is not None  # bytewax snapshots only logics that have seen an item
        if self._stream is not None:  # else a stream whose groups left the rule files: kept as it was
            self._stream.snapshot()
        return self._state

    def _advance(self) -> list[tuple[int, list[Event]]]:
        if self._stream is None or not self._stream.state.clock_ms:
            return []
        idle_ms = int((time.monotonic() - self._last_item) * 1000) if self._stream.quiet else 0
        watermark = self._stream.state.clock_ms - self._lateness_ms + idle_ms
        events = [transition_event(t, self._config.console.url) for t in self._stream.advance(watermark)]
        if not events:
            return []
        self._stream.state.sequence += 1
        return [(self._stream.state.sequence - 1, events)]


def transition_event(change: GroupTransition, external_url: str) -> Event:
    """One transition as an Alertmanager webhook alert plus state, previous_state, value and evaluatedAt."""
    new, alert = change.transition.new, change.alert
    state = new if new != "inactive" else "resolved" if change.previous == "firing" else "inactive"
    labels = dict(alert.labels)
    at = datetime.fromtimestamp(change.transition.t_ms / 1000, UTC)
    started = alert.fired_at if alert.fired_at is not None else alert.active_at
    expr = next(r.node.expr for r in change.group.rules if r.name == change.transition.rule)
    return {
        "status": state,
        "labels": labels,
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(datetime.fromtimestamp(started / 1000, UTC)),
        "endsAt": rfc3339(at) if new == "inactive" else ACTIVE_ENDS_AT,
        "generatorURL": f"{external_url}/graph?g0.expr={quote(expr)}&g0.tab=1" if external_url else "",
        "fingerprint": fingerprint(labels),
        "state": state,
        "previous_state": change.previous,
        "value": alert.value,
        "evaluatedAt": rfc3339(at),
    }


def firing_events(stream: GroupStream, external_url: str) -> list[Event]:
    """The stream's firing alerts as events (evaluated at the time they fired): for the notifier only."""
    events = []
    for group in stream.groups:
        for rule in stream.evaluators[group_id(group)].states:
            for labels, alert in rule.active.items():
                if alert.state == "firing":
                    fired = alert.fired_at if alert.fired_at is not None else alert.active_at
                    transition = Transition(rule.rule.name, labels, "firing", "firing", fired)
                    events.append(
                        transition_event(GroupTransition(group, transition, alert, "firing"), external_url)
                    )
    return events


def notify(notifier: Notifier, events: list[Event]) -> None:
    """Hand firing and resolved transitions to the notifier; it never blocks the flow."""
    for event in events:
        if event["status"] in _NOTIFIED:
            notifier.submit(event)


def route(poll: Poll, names: Mapping[str, frozenset[str] | None]) -> list[tuple[str, tuple[str, Poll]]]:
    """A poll to each stream reading its topic: the samples its selectors can match (None: any
    name), its spans if it reads spanmetrics series, and the poll's time in any case (one small
    item per stream and poll when none of the samples are for it)."""
    out = []
    for key, wanted in names.items():
        if topic_of(poll.part) not in read_topics(wanted):
            continue
        series = poll.series
        if series is not None and wanted is not None:
            series = series.filter(pl.col(NAME).is_in(list(wanted)))
        spans = poll.spans if wanted is None or any(n.startswith(SPANMETRICS) for n in wanted) else None
        part = Poll(
            series if series is not None and not series.is_empty() else None,
            spans if spans is not None and not spans.is_empty() else None,
            poll.part,
            poll.newest_ms,
            poll.idle,
        )
        out.append((key, (key, part)))
    return out


def build(config: TalonflowConfig) -> Dataflow:
    settings = config.alerts
    groups = load_groups(list(settings.rule_files), TemplateContext())
    streams = {stream_key(c): c for c in components(groups)}
    names = {key: metric_names(c) for key, c in streams.items()}
    bounds = TimeBounds(max_past_s=config.ingest.max_past, max_future_s=config.ingest.max_future)
    notifier = pipeline_notifier(config)
    notifier.start()

    flow = Dataflow("alerts")
    idle_after = timedelta(seconds=max(settings.allowed_lateness, IDLE_AFTER_MIN_S))
    source = KafkaBatchSource(
        config.kafka, topics(names.values()), CONSUMER_GROUP, settings.poll_records, idle_after=idle_after
    )
    every = source.list_parts()
    parts = {key: tuple(p for p in every if topic_of(p) in read_topics(w)) for key, w in names.items()}
    polls = op.map("series", op.input("kafka", flow, source), lambda batch: read_poll(batch, bounds))
    keyed = op.flat_map("to-groups", polls, lambda poll: route(poll, names))
    transitions = op.stateful(
        "groups",
        keyed,
        lambda state: StreamLogic(config, streams, parts, state, lambda e: notify(notifier, e)),
    )

    def to_chunk(item: tuple[str, tuple[int, list[Event]]]) -> tuple[str, Chunk]:
        key, (sequence, events) = item
        notify(notifier, events)
        return part_of(key), ("alerts", alert_rows(events), sequence, sequence)

    sink = sequenced_sink(config, [part_of(key) for key in streams])
    op.output("parquet", op.map("chunk", transitions, to_chunk), sink)

    def messages(item: tuple[str, tuple[int, list[Event]]]) -> list[KafkaSinkMessage[bytes, bytes]]:
        return [
            KafkaSinkMessage(event["fingerprint"].encode(), json.dumps(event, separators=(",", ":")).encode())
            for event in item[1][1]
        ]

    brokers = config.kafka.bootstrap_servers.split(",")
    op.output("kafka-out", op.flat_map("json", transitions, messages), KafkaSink(brokers, ALERTS_TOPIC))
    return flow


__getattr__ = lazy_flow(build)

"""Kafka `otlp_*` + a clock → heartbeat verdicts on `talon_heartbeats`, `heartbeats` and alerts.

    TALONFLOW_CONFIG=talonflow.yaml python -m bytewax.run flows.heartbeats:flow \\
        -r .talonflow/recovery/heartbeats -s 5 -b 0

Like healthchecks.io, each component is up while it reports within `expected_interval`, late
past it, and down past interval + `grace_period`. A configured component that has never reported
is `new`, not down: nothing is judged about what never existed (a fleet not deployed yet, a
stack's first start), unless it says `required: true`, which counts the flow's start as its
last beat. A component is matched by its resource attributes (`heartbeats.components`), or is
any other resource that has reported, with the default interval and grace. A beat is any
signal, or only a named metric or log event when the component says so; its time is the
record's Kafka timestamp (when the receiver took it), so a replay sees the same beats. Verdicts
run on ticks of the system clock, so a silent pipeline is still judged; components spread over
`shards` keyed states, and every tick reaches every shard. A flow that falls behind its topics
(a poll comes back full) judges no later than the Kafka time it has read up to on its slowest
partition, so beats still waiting in Kafka do not make their components look late; its judging
clock never goes back.

A restart must not page anyone: for `startup_grace` after a (re)start, while the source replays
the records since the last snapshot, no component gets worse; verdicts catch up after that.
Each transition is a `heartbeats` row and a `talon_heartbeats` JSON document; down fires a
`HeartbeatDown` alert (Parquet `alerts`, `talon_alerts`, notifications) and the return resolves
it; a restarted flow hands the notifier (which starts empty) every HeartbeatDown still firing, so
that the return is notified too. Every minute each component also gets `heartbeat.active`,
`heartbeat.stale` and `heartbeat.age_seconds` rollups, so alert rules and queries see them like
any other series.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import bytewax.operators as op
import pyarrow as pa
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from google.protobuf.message import DecodeError

from flows.clock_watch import wall_step
from flows.kafka_batches import CLOCK_PART, Batch, KafkaBatchSource
from flows.lazy import lazy_flow, sequenced_sink
from receiver.signals import SIGNALS
from schemas.alert_events import ACTIVE_ENDS_AT, alert_rows, fingerprint, rfc3339
from schemas.config import HeartbeatComponent, HeartbeatsConfig, TalonflowConfig
from schemas.datasets import DATASETS
from schemas.flatten import KafkaRecord
from schemas.prometheus import failed_scrape
from schemas.rollups import COMPONENT_LABEL, HEARTBEAT_ACTIVE, HEARTBEAT_AGE, HEARTBEAT_STALE
from schemas.topics import (
    ALERTS_TOPIC,
    HEARTBEATS_TOPIC,
    METRICS_TOPIC,
    OTLP_TOPICS,
    ROLLUPS_TOPIC,
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
)
from sinks.notify import pipeline_notifier
from sinks.parquet import Chunk

log = logging.getLogger(__name__)
CONSUMER_GROUP = "talonflow-heartbeats"
# The wall clock moved this much more (or less) than the monotonic one between two ticks: a step
# (NTP's, a VM resumed, `date -s`), not a tick late under load (both clocks run on then).
CLOCK_STEP_NS: Final = 5_000_000_000
ALERT_NAME: Final = "HeartbeatDown"
_RANK: Final = {"up": 0, "late": 1, "down": 2, "new": 3}  # any first beat of a new component is better
_MINUTE_NS: Final = 60_000_000_000
Message = tuple[str, bytes, bytes]  # (topic, key, JSON value)
Output = tuple[str, pa.Table, list[Message]]  # (dataset, rows, the same as topic messages)


@dataclass(frozen=True)
class Beat:
    component: str
    service_name: str
    instance: str
    seen_ms: int  # the newest Kafka timestamp of the component's records in a poll
    interval: float
    grace: float


def _attributes(resource: Any) -> dict[str, str]:
    out = {}
    for pair in resource.attributes:
        kind = pair.value.WhichOneof("value")
        if kind is not None:
            out[pair.key] = str(getattr(pair.value, kind))
    return out


def _is_beat(topic: str, scope_items: Any, wanted: HeartbeatComponent | None) -> bool:
    """Any record counts, unless the component names the metric or log event that is its beat."""
    if topic == METRICS_TOPIC and failed_scrape(scope_items):
        return False  # a scraped target that stopped answering: only its scraper spoke (`up` = 0)
    if wanted is None or (wanted.metric is None and wanted.log_event is None):
        return True
    if topic == METRICS_TOPIC and wanted.metric is not None:
        return any(m.name == wanted.metric for scope in scope_items for m in scope.metrics)
    if wanted.log_event is not None and topic != METRICS_TOPIC:
        return any(
            r.event_name == wanted.log_event
            for scope in scope_items
            for r in getattr(scope, "log_records", [])
        )
    return False


class Matcher:
    """Which component a resource is: the first configured match, else its own service/instance."""

    def __init__(self, config: HeartbeatsConfig) -> None:
        self._config = config

    def component(self, attributes: dict[str, str]) -> tuple[str, HeartbeatComponent | None]:
        for name, component in self._config.components.items():
            if all(attributes.get(k) == v for k, v in component.match.items()):
                return name, component
        return f"{attributes.get(SERVICE_NAME, '')}/{attributes.get(SERVICE_INSTANCE_ID, '')}", None

    def beats(self, records: list[KafkaRecord]) -> dict[str, Beat]:
        """The newest beat of every component in a poll; resources only, items are not read."""
        found: dict[str, Beat] = {}
        for record in records:
            signal = next(s for s in SIGNALS.values() if s.topic == record.topic)
            try:
                request = signal.request.FromString(record.value)
            except DecodeError:
                continue  # the ingest flow dead-letters it; it is no beat
            for resource_items in getattr(request, signal.resources_field):
                attributes = _attributes(resource_items.resource)
                name, component = self.component(attributes)
                scopes = getattr(resource_items, signal.scopes_field)
                if not _is_beat(record.topic, scopes, component):
                    continue
                previous = found.get(name)
                if previous is None or previous.seen_ms < record.timestamp_ms:
                    interval = component.expected_interval if component else self._config.default_interval
                    grace = component.grace_period if component else self._config.default_grace
                    found[name] = Beat(
                        name,
                        attributes.get(SERVICE_NAME, ""),
                        attributes.get(SERVICE_INSTANCE_ID, ""),
                        record.timestamp_ms,
                        interval,
                        grace,
                    )
        return found


@dataclass
class Watch:
    """One component's liveness: its last beat, its verdict, and since when."""

    beat: Beat
    state: str = "up"
    since_ns: int = 0
    down_since_ns: int | None = None
    seeded: bool = False  # configured, never reported: its `beat` is the flow's start, any real one wins

    def age_s(self, now_ns: int) -> float:
        return max(0.0, (now_ns - self.beat.seen_ms * 1_000_000) / 1e9)

    def verdict(self, now_ns: int) -> str:
        age = self.age_s(now_ns)
        if age <= self.beat.interval:
            return "up"
        return "late" if age <= self.beat.interval + self.beat.grace else "down"


@dataclass
class ShardState:
    watches: dict[str, Watch] = field(default_factory=dict)
    minute_ns: int = 0  # the last minute whose heartbeat rollups were written
    sequence: int = 0


# ("beats", {component: Beat}), ("tick", (wall ns, monotonic ns, shard): both clocks read at once,
# where the tick is made), or ("reading", (part, Kafka ms read up to while the part is behind, None
# once it caught up)).
Item = tuple[str, Any]
POLL_RECORDS: Final = 500
# A partition quiet this long is asked whether it is read to its end (one watermark request, on the
# source's thread): for a partition whose last poll came back full and then nothing came. Not the
# tick: agents beat every second or so, and every pause of a partition cost a broker round trip.
CAUGHT_UP_AFTER: Final = timedelta(seconds=10)


class SourceLag:
    """Which of a worker's source partitions are behind: a poll that came back full has more to
    read after its last record; one that came back short, or the source's mark that the partition
    is read to its end (`idle_after`), has caught up. Reports changes only."""

    def __init__(self, poll_records: int) -> None:
        self._poll = poll_records
        self._behind: dict[str, int] = {}

    def observe(self, part: str, records: list[KafkaRecord]) -> tuple[str, int | None] | None:
        if len(records) >= self._poll:
            self._behind[part] = max(record.timestamp_ms for record in records)
            return part, self._behind[part]
        if self._behind.pop(part, None) is not None:
            return part, None
        return None


class ShardWatch(StatefulLogic[Item, tuple[int, Output], ShardState]):
    def __init__(
        self,
        config: HeartbeatsConfig,
        seeds: dict[str, Beat],
        state: ShardState | None,
        resend: Callable[[dict[str, Any]], None] = lambda _alert: None,
    ) -> None:
        self._config, self._seeds = config, seeds
        self.state = state or ShardState()
        self._last_tick: tuple[int, int] | None = None  # (wall, monotonic) ns: to see the clock step
        # Not state: after a restart the source says again what is behind, and `startup_grace`
        # covers the replay.
        self._reading: dict[str, int] = {}  # partitions behind -> Kafka time read up to, ms
        self._clock = 0  # the judging time, ns: never goes back
        self._guard_until = time.time_ns() + int(config.startup_grace * 1e9)  # not state: each start
        # The notifier is the process's and starts empty: tell it again what is down, as Prometheus
        # re-sends its active alerts to Alertmanager, or the resolution (and a firing alert still
        # in group_wait when the process died) would never be notified.
        now = time.time_ns()
        for watch in self.state.watches.values():
            if watch.state == "down":
                resend(self._alert_event(watch, "down", now))

    def on_item(self, value: Item) -> tuple[Iterable[tuple[int, Output]], bool]:
        kind, payload = value
        changes: list[tuple[Watch, str]] = []
        if kind == "beats":
            wall = time.time_ns()
            now = self._judging_time(wall)
            for name, beat in payload.items():
                watch = self.state.watches.get(name)
                if watch is None:
                    self.state.watches[name] = Watch(beat, "up", now)
                # A newer beat wins, and any beat wins over one "from the future" (the clock stepped back).
                elif (
                    beat.seen_ms > watch.beat.seen_ms
                    or watch.seeded
                    or watch.beat.seen_ms > wall // 1_000_000
                ):
                    watch.beat, watch.seeded = beat, False
            changes = self._judge(now, better_only=True)
            return self._emit(self._transitions(changes, now)), StatefulLogic.RETAIN
        if kind == "reading":
            part, read_to = payload
            if read_to is None:
                self._reading.pop(part, None)
            else:
                self._reading[part] = read_to
            return [], StatefulLogic.RETAIN
        wall, monotonic, shard = payload
        self._notice_step(wall, monotonic)
        now = self._judging_time(wall)
        for name, seed in self._seeds.items():  # configured components are watched from the first tick
            if shard_of(name, self._config.shards) == shard and name not in self.state.watches:
                first = "up" if self._config.components[name].required else "new"
                self.state.watches[name] = Watch(seed, first, now, seeded=True)
        changes = self._judge(now, better_only=wall < self._guard_until)
        outputs = self._transitions(changes, now) + self._rollups(now)
        return self._emit(outputs), StatefulLogic.RETAIN

    def _notice_step(self, wall: int, monotonic: int) -> None:
        """A step of the system clock: beats stamped before and after it do not compare, so, as
        after a start, no verdict gets worse for `startup_grace`, and the judging clock may follow
        the wall clock back (a forward step would otherwise make every component down at once, a
        backward one freeze every verdict for as long as the step)."""
        last, self._last_tick = self._last_tick, (wall, monotonic)
        if last is None:
            return
        step = wall_step(last, (wall, monotonic))
        if abs(step) < CLOCK_STEP_NS:
            return
        grace = self._config.startup_grace
        log.warning(
            "heartbeats: the system clock stepped %+.1fs; no verdict gets worse for %gs", step / 1e9, grace
        )
        self._guard_until = wall + int(grace * 1e9)
        self._clock = 0

    def _judging_time(self, wall: int) -> int:
        """The wall clock, or the Kafka time the slowest lagging partition has been read up to."""
        read_to = min(self._reading.values(), default=None)
        at = wall if read_to is None else min(wall, read_to * 1_000_000)
        self._clock = max(self._clock, at)
        return self._clock

    def snapshot(self) -> ShardState:
        return self.state

    def _judge(self, now: int, better_only: bool) -> list[tuple[Watch, str]]:
        changes = []
        for watch in self.state.watches.values():
            if watch.state == "new" and watch.seeded:
                continue  # only a first beat ends `new`
            verdict = watch.verdict(now)
            if verdict == watch.state or (better_only and _RANK[verdict] > _RANK[watch.state]):
                continue
            changes.append((watch, watch.state))
            watch.state, watch.since_ns = verdict, now
        return changes

    def _transitions(self, changes: list[tuple[Watch, str]], now: int) -> list[Output]:
        if not changes:
            return []
        rows, messages, alerts = [], [], []
        for watch, previous in changes:
            beat = watch.beat
            row: dict[str, Any] = {
                "time": now,
                "component": beat.component,
                "service_name": beat.service_name,
                "service_instance_id": beat.instance,
                "state": watch.state,
                "previous_state": previous,
                "last_seen": beat.seen_ms * 1_000_000,
                "age_seconds": watch.age_s(now),
                "expected_interval_seconds": beat.interval,
                "grace_period_seconds": beat.grace,
            }
            rows.append(row)
            document = {**row, "time": _iso(now), "last_seen": _iso(beat.seen_ms * 1_000_000)}
            messages.append((HEARTBEATS_TOPIC, beat.component.encode(), _json(document)))
            if watch.state == "down" or previous == "down":
                alerts.append(self._alert(watch, previous, now))
        outputs: list[Output] = [
            ("heartbeats", pa.Table.from_pylist(rows, DATASETS["heartbeats"].schema), messages)
        ]
        if alerts:
            alert_messages = [(ALERTS_TOPIC, a["fingerprint"].encode(), _json(a)) for a in alerts]
            outputs.append(("alerts", alert_rows(alerts), alert_messages))
        return outputs

    def _alert(self, watch: Watch, previous: str, now: int) -> dict[str, Any]:
        if watch.state == "down":
            watch.down_since_ns = now
        return self._alert_event(watch, previous, now)

    def _alert_event(self, watch: Watch, previous: str, now: int) -> dict[str, Any]:
        """HeartbeatDown for a watch: firing while it is down (since `down_since_ns`), else resolved."""
        beat = watch.beat
        firing = watch.state == "down"
        labels = {
            "alertname": ALERT_NAME,
            "severity": "critical",
            COMPONENT_LABEL: beat.component,
            SERVICE_NAME: beat.service_name,
            SERVICE_INSTANCE_ID: beat.instance,
        }
        labels = {k: v for k, v in labels.items() if v}
        age = watch.age_s(now)
        state = "firing" if firing else "resolved"
        return {
            "status": state,
            "labels": labels,
            "annotations": {
                "summary": f"{beat.component} has not reported for {age:.0f}s",
                "description": f"expected every {beat.interval:g}s, grace {beat.grace:g}s; "
                f"last seen {_iso(beat.seen_ms * 1_000_000)}",
            },
            "startsAt": _iso(watch.down_since_ns or now),
            "endsAt": ACTIVE_ENDS_AT if firing else _iso(now),
            "generatorURL": "",
            "fingerprint": fingerprint(labels),
            "state": state,
            "previous_state": "firing" if not firing else ("pending" if previous == "late" else "inactive"),
            "value": age,
            "evaluatedAt": _iso(now),
        }

    def _rollups(self, now: int) -> list[Output]:
        """At each minute boundary: the three heartbeat series of every watched component."""
        minute = now - now % _MINUTE_NS
        if minute <= self.state.minute_ns or not self.state.watches:
            self.state.minute_ns = max(self.state.minute_ns, minute)
            return []
        self.state.minute_ns = minute
        start = minute - _MINUTE_NS
        rows, messages = [], []
        for watch in self.state.watches.values():
            if watch.state == "new":
                continue  # no series for what has never reported
            beat = watch.beat
            labels = {
                COMPONENT_LABEL: beat.component,
                SERVICE_NAME: beat.service_name,
                SERVICE_INSTANCE_ID: beat.instance,
            }
            labels = {k: v for k, v in labels.items() if v}
            for name, value in (
                (HEARTBEAT_ACTIVE, float(watch.state != "down")),
                (HEARTBEAT_STALE, float(watch.state != "up")),
                (HEARTBEAT_AGE, watch.age_s(minute)),
            ):
                row = _rollup_row(name, labels, beat.service_name, start, minute, value)
                rows.append(row)
                document = {
                    **row,
                    "window_start": _iso(start),
                    "window_end": _iso(minute),
                    "attributes": labels,
                }
                messages.append((ROLLUPS_TOPIC, row["series_id"].encode(), _json(document)))
        table = pa.Table.from_pylist(rows, DATASETS["rollups_1m"].schema)
        return [("rollups_1m", table, messages)]

    def _emit(self, outputs: list[Output]) -> list[tuple[int, Output]]:
        numbered = []
        for output in outputs:
            numbered.append((self.state.sequence, output))
            self.state.sequence += 1
        return numbered


def _rollup_row(
    name: str, labels: dict[str, str], service: str, start: int, end: int, value: float
) -> dict[str, Any]:
    identity = name + "\x1d" + "\x1e".join(f"{k}\x1f{v}" for k, v in sorted(labels.items()))
    return {
        "window_start": start,
        "window_end": end,
        "resolution": "1m",
        "series_id": f"{zlib.crc32(identity.encode()):08x}{zlib.adler32(identity.encode()):08x}",
        "metric_name": name,
        "unit": "s" if name == HEARTBEAT_AGE else "1",
        "type": "gauge",
        "is_monotonic": False,
        "service_name": service,
        "attributes": list(labels.items()),
        "points": 1,
        "count": 1.0,
        "sum": value,
        "min": value,
        "max": value,
        "last": value,
    }


def _iso(ns: int) -> str:
    return rfc3339(datetime.fromtimestamp(ns / 1e9, UTC))


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()


def shard_of(component: str, shards: int) -> int:
    return zlib.crc32(component.encode()) % shards


def seeds(config: HeartbeatsConfig) -> dict[str, Beat]:
    """Configured components, watched from the flow's start (`new` until they report, unless required)."""
    now_ms = time.time_ns() // 1_000_000
    return {
        name: Beat(
            name,
            component.match.get(SERVICE_NAME, ""),
            component.match.get(SERVICE_INSTANCE_ID, ""),
            now_ms,
            component.expected_interval,
            component.grace_period,
        )
        for name, component in config.components.items()
    }


def build(config: TalonflowConfig) -> Dataflow:
    settings = config.heartbeats
    shards = settings.shards
    matcher = Matcher(settings)
    seeded = seeds(settings)
    notifier = pipeline_notifier(config)  # holds back what talon_silences silences
    notifier.start()

    flow = Dataflow("heartbeats")
    tick = timedelta(seconds=settings.tick)
    source = KafkaBatchSource(config.kafka, OTLP_TOPICS, CONSUMER_GROUP, POLL_RECORDS, tick, CAUGHT_UP_AFTER)
    polls = op.input("kafka", flow, source)
    lag = SourceLag(POLL_RECORDS)  # of this worker's partitions: a partition is read by one worker

    def by_shard(batch: Batch) -> list[tuple[str, Item]]:
        """A tick reaches every shard, and so does a partition falling behind or catching up; a
        poll's beats go to the shards of their components."""
        part, records = batch
        if part == CLOCK_PART:
            now, monotonic = time.time_ns(), time.monotonic_ns()  # one host clock: any process compares
            return [(str(s), ("tick", (now, monotonic, s))) for s in range(shards)]
        change = lag.observe(part, records)
        items = [] if change is None else [(str(s), ("reading", change)) for s in range(shards)]
        found: dict[int, dict[str, Beat]] = {}
        for name, beat in matcher.beats(records).items():
            found.setdefault(shard_of(name, shards), {})[name] = beat
        return items + [(str(shard), ("beats", beats)) for shard, beats in found.items()]

    items = op.flat_map("by-shard", polls, by_shard)

    def build_logic(key_state: ShardState | None) -> ShardWatch:
        return ShardWatch(settings, seeded, key_state, notifier.submit)

    watched = op.stateful("watch", items, build_logic)

    def to_chunk(item: tuple[str, tuple[int, Output]]) -> tuple[str, Chunk]:
        shard, (sequence, (dataset, table, messages)) = item
        for topic, _key, value in messages:
            if topic == ALERTS_TOPIC:
                notifier.submit(json.loads(value))
        return f"heartbeats:{shard}", (dataset, table, sequence, sequence)

    sink = sequenced_sink(config, [f"heartbeats:{shard}" for shard in range(shards)])
    op.output("parquet", op.map("chunk", watched, to_chunk), sink)

    def to_messages(item: tuple[str, tuple[int, Output]]) -> list[KafkaSinkMessage[bytes, bytes]]:
        return [KafkaSinkMessage(key, value, topic=topic) for topic, key, value in item[1][1][2]]

    brokers = config.kafka.bootstrap_servers.split(",")
    op.output(
        "kafka-out",
        op.flat_map("json", watched, to_messages),
        KafkaSink(brokers, None),
    )
    return flow


__getattr__ = lazy_flow(build)

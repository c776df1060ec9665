"""The chaos harness's alert, heartbeat and notification load, and its count by unique id at the end.

Load, on a schedule known in advance (`Schedule`):
- `Flipper`: an observable gauge `chaos.level{agent, episode}` per agent, through the OTel SDK
  (OTLP/HTTP). Episode k of agent a is a series of its own that reads 1 for `high` seconds and 0
  for `low` seconds, then is no longer reported. The rule `chaos_level > 0.5` (`for: 2s`, group
  interval 1 s) fires and resolves it once: its alert is unique by (agent, episode), so each of
  its transitions (pending, firing, resolved) is a unique id in the `alerts` dataset.
- `Beaters`: agents (`beat-<a>`, heartbeat components with a 4 s interval and 4 s grace) that send
  a log line every 0.5 s, except for `silent` seconds in each period: window k of agent a should
  give exactly one up → late, late → down and down → up verdict in `heartbeats`, and one
  HeartbeatDown firing and resolved transition in `alerts`.
- A route with group_by `...` (one group per alert), group_wait 1 s, group_interval 2 s and
  repeat_interval 6 s to bench/webhook.py: every firing and resolved episode should be notified at
  least once, a firing one again only after repeat_interval, a resolved one once.

An episode whose span overlaps the outage of a part that owns its timing is excused, and listed
with the part: the receiver or Kafka (the SDK's samples and beats arrive late or are dropped after
its 30 s timeout, so evaluations in event time pass without them and beats stop), and for
verdicts the heartbeats flow (it judges on the wall clock, and for `startup_grace` after a start
no verdict gets worse, by design). A kill of the alerts flow excuses nothing: it resumes from its
snapshot and replays the same samples through the same evaluations.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from bench.webhook import Arrival, Webhook
from flows.heartbeats import ALERT_NAME as HEARTBEAT_ALERT
from schemas.config import TalonflowConfig
from schemas.rollups import COMPONENT_LABEL

ALERT = "ChaosLevelHigh"
HOOK_PATH = "/chaos"
# A beat reached Kafka up to 3.4 s after the one before (sent every 0.5 s) at a load average of 50:
# a 3 s interval then made correct but unscheduled late verdicts.
BEAT_INTERVAL_S, BEAT_GRACE_S, STARTUP_GRACE_S = 4.0, 4.0, 10.0
GROUP_WAIT_S, GROUP_INTERVAL_S, REPEAT_INTERVAL_S = 1.0, 2.0, 6.0
# After the receiver or Kafka is back the SDK retries only after the delay the receiver advised (up to
# receiver.retry_after_max, 30 s), so samples and beats may come that late; after the heartbeats
# flow's own restart, its startup_grace (no verdict gets worse) and a few seconds of catch-up.
SLACK_S = {"receiver": 30.0, "kafka": 30.0, "heartbeats": STARTUP_GRACE_S + 5.0}
REPEAT_SLACK_S = 0.5  # a repeat this much early is still the repeat_interval's (timer granularity)
OWNERS = {"alert": ("receiver", "kafka"), "heartbeat": ("receiver", "kafka", "heartbeats")}
TRANSITIONS = {  # the states each episode should reach once
    "alert": ("pending", "firing", "resolved"),
    "heartbeat": ("late", "down", "up"),
    "HeartbeatDown": ("firing", "resolved"),
}
AGENTS = 2  # gauge agents, and heartbeat agents
KINDS = ("alert", "heartbeat", "HeartbeatDown")  # HeartbeatDown: the heartbeat windows' alerts


def rules_document() -> dict[str, Any]:
    """The rule file the harness adds to the stack's: one alert per gauge series above 0.5."""
    rule = {"alert": ALERT, "expr": "chaos_level > 0.5", "for": "2s", "labels": {"severity": "page"}}
    return {"groups": [{"name": "chaos", "interval": "1s", "rules": [rule]}]}


def settings(folder: Path, hook_port: int, agents: int) -> dict[str, Any]:
    """The config sections for this load: the rule files, the beat agents, the webhook route."""
    rules = folder / "chaos-rules.yaml"
    rules.write_text(yaml.safe_dump(rules_document()))
    components = {
        f"beat-{a}": {
            "match": {"service.name": "chaos-beat", "service.instance.id": f"beat-{a}"},
            "expected_interval": f"{BEAT_INTERVAL_S:g}s",
            "grace_period": f"{BEAT_GRACE_S:g}s",
        }
        for a in range(agents)
    }
    route = {
        "receiver": "chaos",
        "group_by": ["..."],
        "group_wait": f"{GROUP_WAIT_S:g}s",
        "group_interval": f"{GROUP_INTERVAL_S:g}s",
        "repeat_interval": f"{REPEAT_INTERVAL_S:g}s",
    }
    hook = {"url": f"http://127.0.0.1:{hook_port}{HOOK_PATH}", "send_resolved": True}
    return {
        "alerts": {"rule_files": [str(rules)], "commit_interval": "2s"},
        "heartbeats": {
            "components": components,
            "startup_grace": f"{STARTUP_GRACE_S:g}s",
            "commit_interval": "2s",
        },
        "notifications": {"route": route, "receivers": [{"name": "chaos", "webhook_configs": [hook]}]},
    }


@dataclass(frozen=True)
class Episode:
    """One scheduled episode: `kind` alert (a gauge high then low) or heartbeat (a silence)."""

    kind: str
    agent: int
    k: int
    start: float  # wall time, s
    end: float  # the end of what it should cause, before the next episode of its agent

    @property
    def name(self) -> str:
        return f"{'a' if self.kind == 'alert' else 'beat-'}{self.agent}/{self.k}"


@dataclass(frozen=True)
class Schedule:
    """Episode k of agent a starts at t0 + k * period + a * period / agents, for both kinds."""

    t0: float
    agents: int = AGENTS
    period: float = 25.0
    high: float = 8.0  # the gauge above the threshold
    low: float = 6.0  # then below it, before its series is no longer reported
    silent: float = 15.0  # the beat agents' silence: late after 4 s, down after 8 s

    def start(self, agent: int, k: int) -> float:
        return self.t0 + k * self.period + agent * self.period / self.agents

    def current(self, agent: int, now: float) -> tuple[int, float]:
        """The agent's latest episode started by `now` (k < 0: none yet) and seconds into it."""
        k = math.floor((now - self.start(agent, 0)) / self.period)
        return k, now - self.start(agent, k)

    def episodes(self, kind: str, until: float) -> list[Episode]:
        """The episodes that started and ended (their effects included) before `until`. A silence's
        verdicts are counted by the window they fall in (`window`), so its span is the whole
        period: an outage in the beating part of it also makes verdicts there."""
        span = self.high + self.low if kind == "alert" else self.period
        found = []
        for agent in range(self.agents):
            k = 0
            while self.start(agent, k) + span <= until:
                start = self.start(agent, k)
                found.append(Episode(kind, agent, k, start, start + span))
                k += 1
        return found

    def window(self, agent: int, at: float) -> int:
        """The heartbeat window of `agent` that a verdict at `at` belongs to."""
        return self.current(agent, at)[0]


class Flipper:
    """The gauge agents: one OTel SDK MeterProvider whose observable gauge follows the schedule."""

    def __init__(self, config: TalonflowConfig, schedule: Schedule, timeout: float) -> None:
        self._schedule, self._config, self._timeout = schedule, config, timeout
        self.provider: MeterProvider | None = None

    def start(self) -> None:
        """Collect and export every 0.5 s from now on."""
        config, timeout = self._config, self._timeout
        exporter = OTLPMetricExporter(
            endpoint=f"http://{config.receiver.http.address}/v1/metrics", timeout=timeout
        )
        reader = PeriodicExportingMetricReader(
            exporter, export_interval_millis=500, export_timeout_millis=timeout * 1000
        )
        resource = Resource.create({"service.name": "chaos-level", "service.instance.id": "chaos-level-1"})
        self.provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = self.provider.get_meter("talonflow.chaos")
        meter.create_observable_gauge("chaos.level", callbacks=[self._observe])

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        now, schedule = time.time(), self._schedule
        for agent in range(schedule.agents):
            k, into = schedule.current(agent, now)
            if k >= 0 and into < schedule.high + schedule.low:
                value = 1.0 if into < schedule.high else 0.0
                yield Observation(value, {"agent": f"a{agent}", "episode": str(k)})

    def finish(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


class Beaters:
    """The heartbeat agents: a LoggerProvider each (its own resource), a log line every 0.5 s
    outside their silences."""

    def __init__(self, config: TalonflowConfig, schedule: Schedule, timeout: float) -> None:
        self._schedule = schedule
        grpc = f"http://{config.receiver.grpc.address}"
        self.providers = []
        for agent in range(schedule.agents):
            resource = Resource.create({"service.name": "chaos-beat", "service.instance.id": f"beat-{agent}"})
            provider = LoggerProvider(resource=resource)
            exporter = OTLPLogExporter(endpoint=grpc, insecure=True, timeout=timeout)
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=200))
            self.providers.append(provider)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-beats")

    def _run(self) -> None:
        loggers = [p.get_logger("talonflow.chaos") for p in self.providers]
        while not self._stop.is_set():
            now = time.time()
            for agent, logger in enumerate(loggers):
                k, into = self._schedule.current(agent, now)
                if k < 0 or into >= self._schedule.silent:
                    logger.emit(body="beat")
            self._stop.wait(0.5)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self._stop.set()
        self._thread.join()
        for provider in self.providers:
            provider.shutdown()


# -- the count ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outage:
    part: str
    killed: float  # wall time, s
    back: float  # healthy again (or given up on)


@dataclass
class Row:
    """One kind of episode, counted: exact (every transition, or notification, once), lost (one
    missing), doubled (one twice or one of another state, or a notification beyond what
    repeat_interval allows), unsent (see `count_notifications`), excused (listed with why)."""

    expected: int = 0
    exact: int = 0
    lost: int = 0
    doubled: int = 0
    unsent: int = 0  # never notified, as Alertmanager: firing and resolved handed over at once
    excused: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # which episodes, for the report

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled)


def excuse(episode: Episode, outages: Sequence[Outage]) -> str | None:
    """Why an episode is not held to exactly once: the outage of a part owning its timing."""
    kind = "heartbeat" if episode.kind == "HeartbeatDown" else episode.kind
    for outage in outages:
        slack = SLACK_S.get(outage.part, 0.0)
        if (
            outage.part in OWNERS[kind]
            and outage.killed < episode.end
            and episode.start < outage.back + slack
        ):
            since, until = outage.killed - episode.start, outage.back - episode.start
            return f"{outage.part} down {since:+.0f}s..{until:+.0f}s from its start"
    return None


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) / 1e9


def _labels(row: dict[str, Any]) -> dict[str, str]:
    return dict(row["labels"] or {})  # Polars reads the map column as a dict


def _rows(data: Path, dataset: str) -> list[dict[str, Any]]:
    if not list((data / dataset).glob("date=*/hour=*/*.parquet")):
        return []
    files = data / dataset / "date=*" / "hour=*" / "*.parquet"
    return pl.read_parquet(files, hive_partitioning=True, include_file_paths="file").to_dicts()


Key = tuple[int, int]  # (agent, episode)


def _one_output(files: dict[str, str]) -> bool:
    """Whether the firing and resolved rows come from one output of a flow or two in a row (files
    are named `alerts-<writer>-<first>-<last output>`): handed to the notifier within a moment."""
    if "firing" not in files or "resolved" not in files:
        return False
    firing, resolved = (Path(files[s]).stem.rsplit("-", 2) for s in ("firing", "resolved"))
    return firing[0] == resolved[0] and int(resolved[1]) <= int(firing[2]) + 1


def transitions(
    data: Path, schedule: Schedule, stop: float
) -> tuple[dict[str, dict[Key, Counter[str]]], set[tuple[str, Key]]]:
    """Per kind, per (agent, episode): the states its rows in `alerts` and `heartbeats` reached.
    A heartbeat row belongs to the window it was decided in, a HeartbeatDown one to the window it
    fired in; rows after the load stopped are left out (every agent then falls silent). Also the
    alerts whose firing and resolved rows come from one output of the flow or two in a row."""
    found: dict[str, dict[Key, Counter[str]]] = {kind: {} for kind in KINDS}
    files: dict[tuple[str, Key], dict[str, str]] = {}
    for row in _rows(data, "alerts"):
        labels = _labels(row)
        if row["alertname"] == ALERT:
            kind, key = "alert", (int(labels["agent"][1:]), int(labels["episode"]))
        elif row["alertname"] == HEARTBEAT_ALERT and labels.get(COMPONENT_LABEL, "").startswith("beat-"):
            agent, at = int(labels[COMPONENT_LABEL].removeprefix("beat-")), _seconds(row["starts_at"])
            if not schedule.t0 <= at < stop:
                continue
            kind, key = "HeartbeatDown", (agent, schedule.window(agent, at))
        else:
            continue
        found[kind].setdefault(key, Counter())[row["state"]] += 1
        files.setdefault((kind, key), {})[row["state"]] = row["file"]
    for row in _rows(data, "heartbeats"):
        at = _seconds(row["time"])
        if (
            not row["component"].startswith("beat-")
            or row["previous_state"] == "new"
            or not schedule.t0 <= at < stop
        ):
            continue  # a first beat, or before the schedule or after the load
        agent = int(row["component"].removeprefix("beat-"))
        found["heartbeat"].setdefault((agent, schedule.window(agent, at)), Counter())[row["state"]] += 1
    together = {both for both, by_state in files.items() if _one_output(by_state)}
    return found, together


def count_transitions(
    kind: str, found: dict[Key, Counter[str]], episodes: list[Episode], outages: Sequence[Outage]
) -> Row:
    row = Row()
    states = TRANSITIONS[kind]
    for episode in episodes:
        key = (episode.agent, episode.k)
        why = excuse(episode, outages)
        if why is not None:
            row.excused.append(f"{episode.name}: {why}")
            continue
        row.expected += 1
        counts = found.get(key, Counter())
        if any(counts[s] == 0 for s in states):
            row.lost += 1
            row.problems.append(f"{episode.name} lost: {dict(counts)}")
        elif any(counts[s] > 1 for s in states) or set(counts) - set(states):
            row.doubled += 1
            row.problems.append(f"{episode.name} doubled: {dict(counts)}")
        else:
            row.exact += 1
    return row


def notification_key(schedule: Schedule, arrival: Arrival) -> tuple[str, tuple[int, int]] | None:
    labels, alert = arrival.alert["labels"], arrival.alert
    if labels.get("alertname") == ALERT:
        return "alert", (int(labels["agent"][1:]), int(labels["episode"]))
    component = labels.get(COMPONENT_LABEL, "")
    if labels.get("alertname") == HEARTBEAT_ALERT and component.startswith("beat-"):
        agent = int(component.removeprefix("beat-"))
        at = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")).timestamp()
        return "HeartbeatDown", (agent, schedule.window(agent, at))
    return None


def count_notifications(
    arrivals: list[Arrival],
    schedule: Schedule,
    episodes: dict[str, list[Episode]],
    excused: set[str],
    together: set[tuple[str, Key]],
) -> dict[str, Row]:
    """Per kind of alert: episodes notified firing and resolved at least once; deliveries beyond
    what repeat_interval allows (a firing one sooner than it after the last, a resolved one twice).
    An episode never notified whose firing and resolved transitions the flow output together or one
    right after the other (a catch-up after a restart, or a flow lagging more than the episode's
    length) is `unsent`, not lost: the notifier, as Alertmanager, sends nothing for an alert
    already resolved at its group's first flush. It is not notified all the same, and listed."""
    times: dict[tuple[str, tuple[int, int], str], list[float]] = {}
    for arrival in arrivals:
        key = notification_key(schedule, arrival)
        if key is not None:
            times.setdefault((*key, arrival.alert["status"]), []).append(arrival.at_ms / 1000)
    rows = {}
    for kind in ("alert", "HeartbeatDown"):
        row = rows[kind] = Row()
        for episode in episodes[kind]:
            if f"{kind}:{episode.name}" in excused:
                row.excused.append(episode.name)
                continue
            row.expected += 1
            firing = sorted(times.get((kind, (episode.agent, episode.k), "firing"), []))
            resolved = times.get((kind, (episode.agent, episode.k), "resolved"), [])
            early = sum(b - a < REPEAT_INTERVAL_S - REPEAT_SLACK_S for a, b in itertools.pairwise(firing))
            beyond = early + max(0, len(resolved) - 1)
            if not firing and not resolved and (kind, (episode.agent, episode.k)) in together:
                row.unsent += 1
                row.problems.append(
                    f"{episode.name}: unsent, fired and resolved in one or two outputs in a row"
                )
            elif not firing or not resolved:
                row.lost += 1
                row.problems.append(f"{episode.name}: {len(firing)} firing, {len(resolved)} resolved")
            elif beyond:
                row.doubled += beyond
                row.problems.append(f"{episode.name}: firing at {firing}, {len(resolved)} resolved")
            else:
                row.exact += 1
    return rows


@dataclass
class AlertingVerdict:
    transitions: dict[str, Row]  # alert, heartbeat, HeartbeatDown
    notifications: dict[str, Row]  # alert, HeartbeatDown

    @property
    def clean(self) -> bool:
        return all(r.clean for r in (*self.transitions.values(), *self.notifications.values()))


def alerting_verdict(
    data: Path, hook: Webhook, schedule: Schedule, stop: float, outages: Sequence[Outage]
) -> AlertingVerdict:
    found, together = transitions(data, schedule, stop)
    episodes = {
        "alert": schedule.episodes("alert", stop),
        "heartbeat": schedule.episodes("heartbeat", stop),
    }
    episodes["HeartbeatDown"] = [
        Episode("HeartbeatDown", e.agent, e.k, e.start, e.end) for e in episodes["heartbeat"]
    ]
    rows = {kind: count_transitions(kind, found[kind], episodes[kind], outages) for kind in KINDS}
    excused = {f"{kind}:{line.split(':')[0]}" for kind in KINDS for line in rows[kind].excused}
    notified = count_notifications(hook.received(), schedule, episodes, excused, together)
    return AlertingVerdict(rows, notified)


def render(result: AlertingVerdict) -> list[str]:
    lines = [
        "",
        f"{'episodes':<22}{'expected':>9}{'exact':>7}{'lost':>6}{'doubled':>9}{'unsent':>8}{'excused':>9}",
    ]
    labels = {
        ("transitions", "alert"): "alert_transitions",
        ("transitions", "heartbeat"): "heartbeat_verdicts",
        ("transitions", "HeartbeatDown"): "heartbeat_alerts",
        ("notifications", "alert"): "alert_notified",
        ("notifications", "HeartbeatDown"): "heartbeat_notified",
    }
    notes = []
    for (table, kind), label in labels.items():
        row = getattr(result, table)[kind]
        cells = f"{row.expected:>9}{row.exact:>7}{row.lost:>6}{row.doubled:>9}"
        cells += f"{row.unsent:>8}{len(row.excused):>9}"
        lines.append(f"{label:<22}{cells}")
        notes += [f"  {label}: {p}" for p in row.problems]
        if table == "transitions":
            notes += [f"  {label} excused {e}" for e in row.excused]
    return lines + (["", "episodes, in detail:", *notes] if notes else [])

"""Heartbeat verdicts in clock time: up → late → down → up, alerts, rollups, and a restart's guard."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from flows.heartbeats import ALERT_NAME, Beat, Matcher, ShardState, ShardWatch, SourceLag, seeds, shard_of
from schemas.alert_events import rfc3339
from schemas.config import HeartbeatsConfig, load_config
from schemas.flatten import KafkaRecord
from schemas.topics import LOGS_TOPIC, METRICS_TOPIC

S = 1_000_000_000
CONFIG = HeartbeatsConfig.model_validate(
    {
        "components": {
            "main_agent": {
                "match": {"service.name": "main_agent"},
                "expected_interval": 30,
                "grace_period": 60,
                "required": True,
            },
            "email_processor": {
                "match": {"service.name": "email"},
                "expected_interval": 300,
                "grace_period": 600,
            },
        },
        "startup_grace": 0,
        "shards": 1,
    }
)


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, times as integer nanoseconds (datetime has no nanoseconds)."""
    as_ints = [pa.field(f.name, pa.int64()) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(as_ints)).to_pylist()


def tick(watch: ShardWatch, at_ns: int, monotonic_ns: int | None = None) -> dict[str, list[Any]]:
    """A tick at wall time `at_ns`; the monotonic clock moves with it unless given."""
    outputs: dict[str, list[Any]] = {}
    monotonic = at_ns if monotonic_ns is None else monotonic_ns
    for _sequence, (dataset, table, _messages) in watch.on_item(("tick", (at_ns, monotonic, 0)))[0]:
        outputs.setdefault(dataset, []).extend(rows(table))
    return outputs


def test_seeded_component_goes_late_then_down_with_an_alert_and_comes_back() -> None:
    seeded = seeds(CONFIG)
    t0 = seeded["main_agent"].seen_ms * 1_000_000
    watch = ShardWatch(CONFIG, seeded, None)
    assert tick(watch, t0 + 10 * S).get("heartbeats") is None
    late = tick(watch, t0 + 31 * S)["heartbeats"]
    assert [(r["component"], r["previous_state"], r["state"]) for r in late] == [("main_agent", "up", "late")]
    down = tick(watch, t0 + 91 * S)
    assert [(r["state"], r["age_seconds"]) for r in down["heartbeats"]] == [("down", 91.0)]
    (alert,) = down["alerts"]
    assert alert["alertname"] == ALERT_NAME and alert["state"] == "firing" and alert["severity"] == "critical"
    assert dict(alert["labels"])["component"] == "main_agent"
    assert tick(watch, t0 + 92 * S).get("heartbeats") is None  # no repeat while it stays down

    back = Beat("main_agent", "main_agent", "", (t0 + 100 * S) // 1_000_000, 30, 60)
    outputs = {d: rows(t) for _s, (d, t, _m) in watch.on_item(("beats", {"main_agent": back}))[0]}
    assert [(r["previous_state"], r["state"]) for r in outputs["heartbeats"]] == [("down", "up")]
    assert outputs["alerts"][0]["state"] == "resolved"
    assert outputs["alerts"][0]["fingerprint"] == alert["fingerprint"]


def test_minute_rollups_expose_active_stale_and_age() -> None:
    seeded = seeds(CONFIG)
    t0 = seeded["main_agent"].seen_ms * 1_000_000
    watch = ShardWatch(CONFIG, seeded, None)
    minute = t0 - t0 % (60 * S) + 60 * S
    tick(watch, minute - S)
    rows = tick(watch, minute + 2 * S)["rollups_1m"]
    by = {(r["metric_name"], dict(r["attributes"])["component"]): r["last"] for r in rows}
    assert by["heartbeat.active", "main_agent"] == 1.0
    assert by["heartbeat.age_seconds", "main_agent"] == (minute - t0) / S
    assert not any(component == "email_processor" for _name, component in by)  # new: no series yet


def test_a_restart_does_not_page_while_it_catches_up() -> None:
    seeded = seeds(CONFIG)
    t0 = seeded["main_agent"].seen_ms * 1_000_000
    watch = ShardWatch(CONFIG, seeded, None)
    tick(watch, t0 + S)
    state: ShardState = pickle.loads(pickle.dumps(watch.snapshot()))
    guarded = CONFIG.model_copy(update={"startup_grace": 3600.0})
    restarted = ShardWatch(guarded, seeded, state)
    assert tick(restarted, t0 + 500 * S).get("heartbeats") is None  # within the guard: no worse verdicts
    after = ShardWatch(CONFIG, seeded, pickle.loads(pickle.dumps(restarted.snapshot())))
    verdicts = {r["component"]: r["state"] for r in tick(after, t0 + 500 * S)["heartbeats"]}
    assert verdicts == {"main_agent": "down"}  # email_processor never reported: still new


def test_a_restart_tells_the_notifier_again_what_is_down() -> None:
    """The notifier starts empty after a kill -9: without HeartbeatDown again, the return of a
    component that went down before the kill was never notified as resolved (bench/chaos.py)."""
    seeded = seeds(CONFIG)
    t0 = seeded["main_agent"].seen_ms * 1_000_000
    watch = ShardWatch(CONFIG, seeded, None)
    (fired,) = tick(watch, t0 + 91 * S)["alerts"]
    state: ShardState = pickle.loads(pickle.dumps(watch.snapshot()))
    resent: list[dict[str, Any]] = []
    ShardWatch(CONFIG, seeded, state, resent.append)
    assert [(a["status"], a["labels"]["component"]) for a in resent] == [("firing", "main_agent")]
    assert resent[0]["fingerprint"] == fired["fingerprint"]
    assert resent[0]["startsAt"] == rfc3339(datetime.fromtimestamp(fired["starts_at"] / S, UTC))
    ShardWatch(CONFIG, seeded, None, resent.append)
    assert len(resent) == 1  # a first start resends nothing


def test_a_component_that_never_reported_is_new_until_its_first_beat() -> None:
    seeded = seeds(CONFIG)
    t0 = seeded["email_processor"].seen_ms * 1_000_000
    watch = ShardWatch(CONFIG, seeded, None)
    for hours in (0, 1, 24):  # far past interval + grace: a required one would be down
        outputs = tick(watch, t0 + hours * 3600 * S)
        assert "email_processor" not in {r["component"] for r in outputs.get("heartbeats", [])}
        assert not [
            a for a in outputs.get("alerts", []) if dict(a["labels"])["component"] == "email_processor"
        ]
    assert watch.state.watches["email_processor"].state == "new"
    first = Beat("email_processor", "email", "", (t0 + 86_400 * S) // 1_000_000, 300, 600)
    outputs = {d: rows(t) for _s, (d, t, _m) in watch.on_item(("beats", {"email_processor": first}))[0]}
    mine = [r for r in outputs["heartbeats"] if r["component"] == "email_processor"]
    assert [(r["previous_state"], r["state"]) for r in mine] == [("new", "up")]
    late = tick(watch, t0 + (86_400 + 301) * S)["heartbeats"]
    assert ("email_processor", "late") in [(r["component"], r["state"]) for r in late]


def test_components_spread_over_shards_deterministically() -> None:
    assert shard_of("main_agent", 8) == shard_of("main_agent", 8)
    assert len({shard_of(f"agent-{i}", 8) for i in range(100)}) == 8


def _metrics_record(service: str, metric: str, at_ms: int) -> KafkaRecord:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    resource.scope_metrics.add().metrics.append(Metric(name=metric))
    return KafkaRecord(METRICS_TOPIC, 0, 0, at_ms, None, request.SerializeToString())


def _log_record(service: str, event: str, at_ms: int) -> KafkaRecord:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    resource.scope_logs.add().log_records.add(event_name=event)
    return KafkaRecord(LOGS_TOPIC, 0, 0, at_ms, None, request.SerializeToString())


def test_a_beat_is_any_signal_or_only_the_named_metric_or_log_event() -> None:
    config = HeartbeatsConfig.model_validate(
        {
            "components": {
                "cron": {"match": {"service.name": "cron"}, "expected_interval": 60, "grace_period": 60,
                         "metric": "cron.heartbeat"},
                "voice": {"match": {"service.name": "voice"}, "expected_interval": 30, "grace_period": 60,
                          "log_event": "voice.alive"},
            }
        }
    )  # fmt: skip
    matcher = Matcher(config)
    beats = matcher.beats(
        [
            _metrics_record("cron", "cron.jobs", 1000),  # another metric: no beat
            _log_record("voice", "voice.alive", 2000),
            _metrics_record("planner", "anything", 3000),  # unconfigured: any signal, default interval
        ]
    )
    assert set(beats) == {"voice", "planner/"}
    assert (beats["voice"].seen_ms, beats["voice"].interval) == (2000, 30)
    assert beats["planner/"].interval == config.default_interval
    assert matcher.beats([_metrics_record("cron", "cron.heartbeat", 4000)])["cron"].seen_ms == 4000


def test_the_default_config_ships_no_fleet_and_the_example_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    assert load_config(root / "talonflow.yaml").heartbeats.components == {}
    example = load_config(root / "rules" / "examples" / "talonflow.openclaw.yaml").heartbeats.components
    assert set(example) == {"main_agent", "email_processor", "browser_controller", "voice_handler"}
    assert (example["email_processor"].expected_interval, example["email_processor"].grace_period) == (
        300,
        600,
    )
    assert not any(c.required for c in example.values())


def test_a_flow_behind_its_topics_judges_no_later_than_it_has_read() -> None:
    """Beats still waiting in Kafka must not make their component look late: while a partition's
    polls come back full, verdicts wait for the Kafka time it has read up to; the clock never goes back."""
    seeded = seeds(CONFIG)
    t0 = seeded["main_agent"].seen_ms * 1_000_000
    watch = ShardWatch(CONFIG, seeded, None)
    assert watch.on_item(("reading", ("otlp_logs:3", (t0 + 10 * S) // 1_000_000)))[0] == []
    assert tick(watch, t0 + 91 * S).get("heartbeats") is None  # judged at t0 + 10 s: still up
    watch.on_item(("reading", ("otlp_logs:3", (t0 + 40 * S) // 1_000_000)))
    late = tick(watch, t0 + 92 * S)["heartbeats"]
    assert [(r["state"], r["age_seconds"]) for r in late] == [("late", 40.0)]
    watch.on_item(("reading", ("otlp_spans:0", (t0 + 5 * S) // 1_000_000)))  # another falls behind
    assert tick(watch, t0 + 93 * S).get("heartbeats") is None  # the clock stays, not back to "up"
    watch.on_item(("reading", ("otlp_logs:3", None)))
    watch.on_item(("reading", ("otlp_spans:0", None)))  # both caught up: the wall clock again
    down = tick(watch, t0 + 94 * S)["heartbeats"]
    assert [(r["state"], r["age_seconds"]) for r in down] == [("down", 94.0)]


def test_a_partition_is_behind_while_its_polls_come_back_full() -> None:
    lag = SourceLag(poll_records=3)

    def records(*stamps: int) -> list[KafkaRecord]:
        return [KafkaRecord(LOGS_TOPIC, 0, i, ms, b"k", b"") for i, ms in enumerate(stamps)]

    assert lag.observe("otlp_logs:0", records(1, 2)) is None  # short: caught up, as it was
    assert lag.observe("otlp_logs:0", records(5, 9, 7)) == ("otlp_logs:0", 9)  # full: more to read
    assert lag.observe("otlp_logs:0", records(10, 12, 11)) == ("otlp_logs:0", 12)
    assert lag.observe("otlp_logs:1", []) is None
    assert lag.observe("otlp_logs:0", []) == ("otlp_logs:0", None)  # the source's end-of-partition mark
    assert lag.observe("otlp_logs:0", records(13)) is None


def test_a_forward_step_of_the_clock_pages_no_one_and_a_backward_one_freezes_nothing() -> None:
    guarded = CONFIG.model_copy(update={"startup_grace": 30.0})
    seeded = seeds(guarded)
    t0 = seeded["main_agent"].seen_ms * 1_000_000
    watch = ShardWatch(guarded, seeded, None)
    assert tick(watch, t0 + S, 0).get("heartbeats") is None
    # One second later by the monotonic clock, the wall clock an hour ahead: a step, so nothing
    # gets worse for 30 s.
    assert tick(watch, t0 + 3600 * S, S).get("heartbeats") is None
    back = Beat("main_agent", "main_agent", "", (t0 + 3610 * S) // 1_000_000, 30, 60)
    watch.on_item(("beats", {"main_agent": back}))
    assert tick(watch, t0 + 3640 * S, 41 * S).get("heartbeats") is None  # beating since: up after the guard

    # The clock steps back an hour: the judging clock follows it, and the next beat, stamped before
    # the one "from the future", still counts.
    assert tick(watch, t0 + 41 * S, 42 * S).get("heartbeats") is None  # a step again: guarded
    earlier = Beat("main_agent", "main_agent", "", (t0 + 42 * S) // 1_000_000, 30, 60)
    watch.on_item(("beats", {"main_agent": earlier}))
    late = tick(watch, t0 + 118 * S, 119 * S)["heartbeats"]
    assert [(r["state"], r["age_seconds"]) for r in late] == [("late", 76.0)]  # judged after the step


def test_without_a_step_a_late_tick_is_no_step() -> None:
    seeded = seeds(CONFIG)
    t0 = seeded["main_agent"].seen_ms * 1_000_000
    watch = ShardWatch(CONFIG, seeded, None)
    tick(watch, t0 + S, 0)
    down = tick(watch, t0 + 91 * S, 90 * S)["heartbeats"]  # a tick 90 s late: both clocks moved as much
    assert [r["state"] for r in down] == ["down"]

"""Rule groups in event time over a sample stream (rules/stream.py); the alerts flow's transition events."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from flows.alerts import Poll, route, samples, stream_key, topics, transition_event
from promql import Labels
from rules.evaluation import EvalResult
from rules.loader import load_groups
from rules.stream import PRUNE_EVERY_MS, GroupStream, StreamState, components, horizon_ms, metric_names
from rules.templates import TemplateContext
from schemas.alert_events import ACTIVE_ENDS_AT, alert_rows, fingerprint
from schemas.datasets import METRICS_SCHEMA, SPANS_SCHEMA
from schemas.prometheus_names import prometheus_series
from schemas.prometheus_rules import Group, PromRuleFileError
from schemas.rollup_series import rollup_points
from schemas.rollups import ALERTS_SCHEMA
from schemas.spanmetrics import SpanTotals, span_deltas
from schemas.topics import METRICS_TOPIC, ROLLUPS_TOPIC, SPANS_TOPIC

S = 1000  # ms


def groups_of(tmp_path: Path, *groups: dict[str, Any]) -> list[Group]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": list(groups)}))
    return load_groups([path], TemplateContext())


def open_stream(groups: list[Group], state: StreamState | None = None) -> GroupStream:
    return GroupStream(groups, state or StreamState(), 60 * S, TemplateContext())


def depth(instance: str) -> Labels:
    return (("__name__", "depth"), ("instance", instance))


def run(
    stream: GroupStream, values: list[float], lateness_ms: int = 1 * S
) -> list[tuple[str, str, str, int]]:
    """Feed one sample 5 s past each 15 s step and advance to it: (rule, old, new, t) per transition."""
    out = []
    for k, value in enumerate(values):
        t = k * 15 * S + 5 * S
        stream.add([(depth("a"), [t], [value])])
        for change in stream.advance(t - lateness_ms):
            out.append(
                (change.transition.rule, change.previous, change.transition.new, change.transition.t_ms)
            )
    return out


def test_for_30s_every_15s_pending_firing_resolved(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path,
        {
            "name": "g",
            "interval": "15s",
            "rules": [
                {"alert": "Slow", "expr": "depth > 50", "for": "30s"},
                {"alert": "Fast", "expr": "depth > 80"},
            ],
        },
    )
    # evaluation k (at 15k s) sees the sample of step k - 1 (at 15(k-1) + 5 s)
    assert run(open_stream(groups), [90, 90, 90, 10, 60, 60, 10, 10]) == [
        ("Slow", "inactive", "pending", 15 * S),
        ("Fast", "inactive", "firing", 15 * S),  # for: 0s pends and fires in one evaluation: one event
        ("Slow", "pending", "firing", 45 * S),
        ("Slow", "firing", "inactive", 60 * S),
        ("Fast", "firing", "inactive", 60 * S),
        ("Slow", "inactive", "pending", 75 * S),
        ("Slow", "pending", "inactive", 105 * S),  # stopped before its 30 s
    ]


def test_each_group_at_its_own_interval_and_a_pickled_state_resumes(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path,
        {"name": "fast", "interval": "15s", "rules": [{"alert": "A", "expr": "depth > 50"}]},
        {"name": "slow", "rules": [{"alert": "B", "expr": "depth > 50"}]},  # the 60 s default
    )
    stream = open_stream(groups)
    stream.add([(depth("a"), [5 * S], [90.0])])
    assert [(c.transition.rule, c.transition.t_ms) for c in stream.advance(70 * S)] == [
        ("A", 15 * S),
        ("B", 60 * S),
    ]
    resumed = open_stream(groups, pickle.loads(pickle.dumps(stream.snapshot())))
    resumed.add([(depth("a"), [75 * S], [10.0])])
    assert [(c.transition.rule, c.previous, c.transition.t_ms) for c in resumed.advance(120 * S)] == [
        ("A", "firing", 75 * S),  # a sample at an evaluation's time is visible to it
        ("B", "firing", 120 * S),
    ]


def test_late_samples_are_counted_and_old_ones_pruned(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path, {"name": "g", "interval": "15s", "rules": [{"alert": "A", "expr": "depth > 50"}]}
    )
    stream = open_stream(groups)
    stream.add([(depth("a"), [5 * S], [1.0])])
    stream.advance(30 * S)
    assert stream.add([(depth("b"), [20 * S, 40 * S], [1.0, 1.0])]) == 1  # 20 s: evaluated at 30 s
    stream.add([(depth("b"), [45 * S, 50 * S], [2.0, 3.0]), (depth("b"), [42 * S], [9.0])])
    assert stream.state.storage.series[depth("b")].values == [1.0, 1.0, 2.0, 3.0]  # older than held: dropped
    stream.add([(depth("a"), [10 * 60 * S], [1.0])])
    stream.advance(10 * 60 * S)
    kept = stream.state.storage.series
    assert stream.horizon_ms == 5 * 60 * S and PRUNE_EVERY_MS <= 5 * 60 * S
    assert list(kept) == [depth("a")] and kept[depth("a")].timestamps == [10 * 60 * S]


def test_a_quiet_gap_is_evaluated_every_interval_only_while_a_timer_runs(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path,
        {"name": "g", "interval": "15s", "rules": [{"alert": "Gone", "expr": "absent(depth)", "for": "1m"}]},
    )
    stream = open_stream(groups)
    (evaluator,) = stream.evaluators.values()
    times: list[int] = []
    evaluate = evaluator.evaluate

    def counted(t_ms: int) -> EvalResult:
        times.append(t_ms)
        return evaluate(t_ms)

    evaluator.evaluate = counted  # type: ignore[method-assign]
    stream.add([(depth("a"), [5 * S], [1.0])])
    changes = stream.advance(24 * 3600 * S)  # a day without samples: not 5760 evaluations
    assert [(c.previous, c.transition.new, c.transition.t_ms) for c in changes] == [
        ("inactive", "pending", 315 * S),  # the lookback ran out: absent from 5 min 15 s
        ("pending", "firing", 375 * S),  # `for: 1m` later, as Prometheus (every interval while pending)
    ]
    assert times == [k * 15 * S for k in range(1, 26)] + [24 * 3600 * S]  # then firing: to the gap's end


def test_horizon_names_and_components(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path,
        {
            "name": "rec",
            "rules": [{"record": "job:errors:rate5m", "expr": "sum by (job) (rate(errors_total[5m]))"}],
        },
        {"name": "use", "rules": [{"alert": "E", "expr": "job:errors:rate5m offset 1m > 1"}]},
        {"name": "alone", "rules": [{"alert": "D", "expr": "max_over_time(depth[1h]) > 1"}]},
        {"name": "any", "rules": [{"alert": "U", "expr": 'up{job="x"} == 0 or {__name__=~"agent_.*"} > 1'}]},
    )
    rec, use, alone, anyname = groups
    assert (
        horizon_ms([rec]) == 5 * 60 * S
        and horizon_ms([use]) == 6 * 60 * S
        and horizon_ms([alone]) == 3600 * S
    )
    assert (
        metric_names([rec, use]) == {"errors_total", "job:errors:rate5m"} and metric_names([anyname]) is None
    )
    joined = {stream_key(c) for c in components(groups)}
    # `any` can read what every group writes (recorded series, ALERTS): all four evaluate together
    assert joined == {stream_key(groups)}
    assert {stream_key(c) for c in components([rec, use, alone])} == {
        stream_key([rec, use]),
        stream_key([alone]),
    }


def test_recorded_series_are_read_by_later_rules(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path,
        {
            "name": "g",
            "interval": "15s",
            "rules": [
                {"record": "depth:max", "expr": "max(depth)"},
                {"alert": "Deep", "expr": "depth:max > 50", "annotations": {"v": "{{ $value }}"}},
            ],
        },
    )
    stream = open_stream(groups)
    stream.add([(depth("a"), [5 * S], [60.0]), (depth("b"), [5 * S], [70.0])])
    (change,) = stream.advance(15 * S)
    assert change.alert.annotations == {"v": "70"}


def test_transition_events_carry_the_alertmanager_shape(tmp_path: Path) -> None:
    groups = groups_of(
        tmp_path,
        {
            "name": "g",
            "interval": "15s",
            "rules": [
                {
                    "alert": "Test",
                    "expr": "depth > 50",
                    "for": "30s",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "{{ $labels.instance }} queue at {{ $value }}"},
                }
            ],
        },
    )
    stream = open_stream(groups)
    events = []
    for k, value in enumerate([60.0, 70.0, 80.0, 10.0, 10.0]):
        stream.add([(depth("a"), [k * 15 * S + 5 * S], [value])])
        events += [transition_event(c, "http://tf") for c in stream.advance(k * 15 * S)]
    labels = {"alertname": "Test", "instance": "a", "severity": "warning"}

    def stamp(seconds: int) -> str:
        return f"1970-01-01T00:{seconds // 60:02d}:{seconds % 60:02d}Z"

    common = {
        "labels": labels,
        "fingerprint": fingerprint(labels),
        "generatorURL": "http://tf/graph?g0.expr=depth%20%3E%2050&g0.tab=1",
    }
    assert events == [
        common
        | {
            "status": "pending",
            "annotations": {"summary": "a queue at 60"},
            "startsAt": stamp(15),
            "endsAt": ACTIVE_ENDS_AT,
            "state": "pending",
            "previous_state": "inactive",
            "value": 60.0,
            "evaluatedAt": stamp(15),
        },
        common
        | {
            "status": "firing",
            "annotations": {"summary": "a queue at 80"},
            "startsAt": stamp(45),
            "endsAt": ACTIVE_ENDS_AT,
            "state": "firing",
            "previous_state": "pending",
            "value": 80.0,
            "evaluatedAt": stamp(45),
        },
        common
        | {
            "status": "resolved",
            "annotations": {"summary": "a queue at 80"},
            "startsAt": stamp(45),
            "endsAt": stamp(60),
            "state": "resolved",
            "previous_state": "firing",
            "value": 80.0,
            "evaluatedAt": stamp(60),
        },
    ]
    table = alert_rows(events)
    assert table.schema == ALERTS_SCHEMA
    assert table.column("ends_at").to_pylist() == [None, None, datetime(1970, 1, 1, 0, 1, tzinfo=UTC)]
    assert alert_rows([]).num_rows == 0


def test_fingerprint_is_alertmanagers() -> None:
    # prometheus/common model/signature_test.go: TestMetricToFingerprint and the benchmarks
    assert (
        fingerprint({"name": "garland, briggs", "fear": "love is not enough"})
        == f"{5799056148416392346:016x}"
    )
    assert fingerprint({"first-label": "first-label-value"}) == f"{5146282821936882169:016x}"
    assert fingerprint({}) == "cbf29ce484222325"


def metrics_table(rows: list[tuple[str, str, float, int]]) -> pa.Table:
    """Gauge points (metric, instance, value, t_ms) in the METRICS schema."""
    columns: dict[str, list[Any]] = {name: [None] * len(rows) for name in METRICS_SCHEMA.names}
    columns["time"] = [datetime.fromtimestamp(t / 1000, UTC) for *_, t in rows]
    columns["metric_name"] = [r[0] for r in rows]
    columns["unit"] = [""] * len(rows)
    columns["type"] = ["gauge"] * len(rows)
    columns["temporality"] = [""] * len(rows)
    columns["value"] = [r[2] for r in rows]
    columns["resource_attributes"] = [[("service.name", "svc"), ("service.instance.id", r[1])] for r in rows]
    columns["attributes"] = [[] for _ in rows]
    return pa.Table.from_pydict(columns, schema=METRICS_SCHEMA)


def test_a_poll_goes_to_the_streams_that_read_its_names() -> None:
    frame = prometheus_series(
        metrics_table(
            [("queue.depth", "a", 1.0, 1000), ("queue.depth", "a", 2.0, 2000), ("cpu", "b", 3.0, 1000)]
        )
    )
    deltas = span_deltas(spans_table([(1000, 3.0, "ERROR")]))
    names = {
        "q": frozenset({"queue_depth"}),
        "all": None,
        "none": frozenset({"x"}),
        "spans": frozenset({"traces_span_metrics_calls_total"}),
    }
    routed = {key: poll for key, (_key, poll) in route(Poll(frame, None, f"{METRICS_TOPIC}:0", 2000), names)}
    assert list(routed) == ["q", "all", "none"]  # "none": the poll's time only
    assert (routed["q"].series is not None and routed["q"].series.height, routed["q"].spans) == (2, None)
    assert (
        routed["all"].series is not None and routed["all"].series.height == 3
    )  # no target_info: no other attribute
    assert (routed["none"].series, routed["none"].spans, routed["none"].newest_ms) == (None, None, 2000)
    spans = {key: poll for key, (_key, poll) in route(Poll(None, deltas, f"{SPANS_TOPIC}:1", 1000), names)}
    assert list(spans) == ["all", "spans"]
    assert spans["spans"].series is None and spans["spans"].spans is deltas
    labels = (("__name__", "queue_depth"), ("instance", "a"), ("job", "svc"))
    assert routed["q"].series is not None
    assert list(samples(routed["q"].series)) == [(labels, [1000, 2000], [1.0, 2.0])]
    [(_key, (_, empty))] = route(Poll(frame.clear(), None, f"{METRICS_TOPIC}:0"), {"all": None})
    assert (empty.series, empty.newest_ms) == (None, 0)


def spans_table(rows: list[tuple[int, float, str]]) -> pa.Table:
    """Server spans (end t_ms, duration ms, status) of `invoke_agent` by svc/i1, in the SPANS schema."""
    columns: dict[str, list[Any]] = {name: [None] * len(rows) for name in SPANS_SCHEMA.names}
    columns["end_time"] = [datetime.fromtimestamp(r[0] / 1000, UTC) for r in rows]
    columns["duration_ns"] = [int(r[1] * 1e6) for r in rows]
    columns["name"] = ["invoke_agent"] * len(rows)
    columns["kind"] = ["SERVER"] * len(rows)
    columns["status_code"] = [r[2] for r in rows]
    columns["service_name"] = ["svc"] * len(rows)
    columns["resource_attributes"] = [[("service.name", "svc"), ("service.instance.id", "i1")]] * len(rows)
    return pa.Table.from_pydict(columns, schema=SPANS_SCHEMA)


def test_spans_count_as_the_spanmetrics_connectors_series() -> None:
    totals = SpanTotals()
    totals.add(span_deltas(spans_table([(100_000, 3.0, "ERROR"), (101_000, 30.0, "UNSET")])))
    later = prometheus_series(totals.add(span_deltas(spans_table([(110_000, 3000.0, "UNSET")]))))
    got = dict(zip(later["series"], zip(later["timestamp_ms"], later["value"], strict=True), strict=True))
    tail = 'service_name="svc", span_kind="SPAN_KIND_SERVER", span_name="invoke_agent", '
    tail += 'status_code="STATUS_CODE_UNSET"}'
    head = 'instance="i1", job="svc", '
    assert got[f"traces_span_metrics_calls_total{{{head}{tail}"] == (110_000, 2.0)  # cumulative, newest end
    assert got[f'traces_span_metrics_duration_milliseconds_bucket{{{head}le="50", {tail}'] == (110_000, 1.0)
    assert got[f'traces_span_metrics_duration_milliseconds_bucket{{{head}le="5000", {tail}'] == (110_000, 2.0)
    assert got[f"traces_span_metrics_duration_milliseconds_sum{{{head}{tail}"] == (110_000, 3030.0)
    assert not any("STATUS_CODE_ERROR" in series for series in got)  # only the series a poll touched


def test_a_span_series_quiet_past_the_expiration_is_forgotten_and_starts_again_from_zero() -> None:
    totals = SpanTotals()
    totals.add(span_deltas(spans_table([(100_000, 3.0, "ERROR"), (101_000, 30.0, "UNSET")])), expire_ms=5_000)
    totals.add(span_deltas(spans_table([(104_000, 30.0, "UNSET")])), expire_ms=5_000)
    assert len(totals.series) == 2  # the ERROR series ended 4 s before the newest span: kept
    totals.add(span_deltas(spans_table([(106_000, 30.0, "UNSET")])), expire_ms=5_000)
    assert len(totals.series) == 1  # 6 s quiet: forgotten
    back = prometheus_series(totals.add(span_deltas(spans_table([(107_000, 3.0, "ERROR")])), expire_ms=5_000))
    calls = [
        v
        for k, v in zip(back["series"], back["value"], strict=True)
        if k.startswith("traces_span_metrics_calls")
    ]
    assert calls == [1.0]  # from 0 again: a counter reset for rate()
    totals.add(span_deltas(spans_table([(500_000, 3.0, "UNSET")])))  # no expiration: every series kept
    assert len(totals.series) == 2


@pytest.mark.parametrize("bad", ["depth > ", "rate(depth)"])
def test_a_bad_rule_file_is_refused_at_load(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PromRuleFileError, match="could not parse expression"):
        groups_of(tmp_path, {"name": "g", "rules": [{"alert": "A", "expr": bad}]})


def test_the_default_rules_pass_their_promtool_tests_in_both() -> None:
    """alerts.yaml behaves in talonflow's engine as in Prometheus: the same test file passes in both."""
    tests = Path(__file__).resolve().parents[1] / "alerts_yaml.test.yml"
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run compose/native/install-peers.sh"
    theirs = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    ours = subprocess.run(
        [sys.executable, "-m", "talonflow.cli", "rules", "test", str(tests)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ours.returncode == 0 and "SUCCESS" in ours.stdout, ours.stdout + ours.stderr


def test_heartbeat_and_genai_rollups_are_series_and_their_topics_read_only_when_a_rule_needs_them() -> None:
    def rollup(
        metric: str, labels: dict[str, str], field: str, value: float, resolution: str = "1m"
    ) -> bytes:
        end = "2026-12-03T12:01:00Z"
        return json.dumps(
            {
                "window_end": end,
                "resolution": resolution,
                "metric_name": metric,
                "attributes": labels,
                field: value,
            }
        ).encode()

    documents = [
        rollup(
            "heartbeat.stale",
            {"component": "voice", "service.name": "voice", "service.instance.id": "v1"},
            "last",
            1,
        ),
        rollup("gen_ai.cost.usd", {"service.name": "gw", "gen_ai.request.model": "m"}, "sum", 0.25),
        rollup("gen_ai.cost.usd", {"service.name": "gw"}, "sum", 9.0, resolution="1h"),  # minutes only
        rollup("span.duration", {"service.name": "gw"}, "sum", 1.0),  # not a derived series
        b"not json",
    ]
    frame = prometheus_series(rollup_points(documents))
    assert frame.select("series", "value").rows() == [
        ('gen_ai_cost_usd{gen_ai_request_model="m", job="gw"}', 0.25),
        ('heartbeat_stale{component="voice", instance="v1", job="voice"}', 1.0),
    ]
    assert topics([frozenset({"up"})]) == (METRICS_TOPIC,)
    assert topics([frozenset({"heartbeat_stale"}), frozenset({"traces_span_metrics_calls_total"})]) == (
        METRICS_TOPIC,
        SPANS_TOPIC,
        ROLLUPS_TOPIC,
    )
    assert topics([None]) == (METRICS_TOPIC, SPANS_TOPIC, ROLLUPS_TOPIC)

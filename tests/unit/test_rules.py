"""Alert rules: file validation, expression values, the state machine, the seed rules, the CLI check."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import yaml

from flows.rule_engine import ACTIVE_ENDS_AT, RuleRunner, alert_rows, fingerprint
from schemas.rollups import ALERTS_SCHEMA, ROLLUPS_SCHEMA
from schemas.rules import Rule, RuleFileError, format_value, load_rules, parse_rules

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
Row = dict[str, Any]


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def stamp(minute: int) -> str:
    return at(minute).isoformat().replace("+00:00", "Z")


def rollup(metric: str, minute: int, labels: dict[str, str], **stats: float | None) -> Row:
    """One ROLLUPS_SCHEMA row: the 1m window ending at `minute`; stats not given are null."""
    return {
        "window_start": at(minute - 1),
        "window_end": at(minute),
        "resolution": "1m",
        "series_id": fingerprint({"__name__": metric, **labels}),
        "metric_name": metric,
        "unit": "",
        "type": "gauge",
        "is_monotonic": False,
        "service_name": labels.get("service.name", ""),
        "attributes": list(labels.items()),
        "points": 1,
        **dict.fromkeys(("count", "sum", "min", "max", "last", "increase", "rate")),
        **dict.fromkeys(("p50", "p90", "p95", "p99")),
        **stats,
    }


def frame(rows: list[Row]) -> pl.DataFrame:
    return pl.DataFrame(pa.Table.from_pylist(rows, schema=ROLLUPS_SCHEMA))


def make_rule(expr: dict[str, Any], op: str = ">", threshold: float = 0.0, **keys: Any) -> Rule:
    """A rule with severity info; `for_` stands for the `for` key."""
    rule = {"alert": "Test", "expr": expr, "op": op, "threshold": threshold, "labels": {"severity": "info"}}
    rule |= {key.rstrip("_"): value for key, value in keys.items()}
    return parse_rules({"groups": [{"name": "g", "rules": [rule]}]}).groups[0].rules[0]


def seed(alert: str) -> Rule:
    rules = [rule for group in load_rules(REPO / "alerts.yaml").groups for rule in group.rules]
    return next(rule for rule in rules if rule.alert == alert)


Transition = tuple[int, str, str, float]


def drive(runner: RuleRunner, rows: Callable[[int], list[Row]], minutes: range) -> list[Transition]:
    """Add each minute's window, evaluate at its end: (minute, previous_state, state, value)."""
    seen = []
    for minute in minutes:
        runner.add(frame(rows(minute)))
        seen += [(minute, e["previous_state"], e["state"], e["value"]) for e in runner.evaluate(at(minute))]
    return seen


# -- the rule file -------------------------------------------------------------------------------


def test_seed_file_is_valid() -> None:
    rule_file = load_rules(REPO / "alerts.yaml")
    rules = {rule.alert: rule for group in rule_file.groups for rule in group.rules}
    assert set(rules) == {
        "HighCpuUtilization",
        "HeartbeatMissing",
        "AgentTaskFailureRateHigh",
        "AgentQueueBacklog",
        "SlowResponses",
        "BudgetNearlySpent",
        "LlmLatencyHigh",
        "LlmProviderErrorRateHigh",
    }
    for rule in rules.values():
        assert {"summary", "description", "runbook_url"} <= set(rule.annotations)
    assert rules["BudgetNearlySpent"].labels["severity"] == "critical"
    assert rules["LlmLatencyHigh"].for_ == 600


def broken(**change: Any) -> dict[str, Any]:
    rule = {
        "alert": "Broken",
        "expr": {"value": {"metric": "m", "field": "last"}},
        "op": ">",
        "threshold": 1,
        "labels": {"severity": "warning"},
    }
    return {"groups": [{"name": "infra", "rules": [rule | change]}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"expr": {"value": {"metric": "m", "field": "last", "match": {"host": "=~web-(1"}}}},
            "group 'infra', rule 'Broken', expr.value.match.host: invalid regex 'web-(1': unclosed group",
        ),
        (
            {"expr": {"value": {"metric": "m", "field": "median"}}},
            "rule 'Broken', expr.value.field: Input should be 'last', 'sum', 'count'",
        ),
        ({"labels": {"team": "a"}}, "rule 'Broken', labels: severity is required: one of critical, high"),
        (
            {"labels": {"severity": "page"}},
            "labels: severity must be one of critical, high, warning, info; got 'page'",
        ),
        ({"for": "90s"}, "rule 'Broken', for: 90s is not a multiple of the 60s rollup resolution"),
        (
            {"expr": {"value": {"metric": "m", "field": "rate", "over": "150s"}}},
            "expr.value.over: 150s is not a multiple of the 60s rollup resolution",
        ),
        ({"for": "5 minutes"}, "for: invalid duration '5 minutes': expected a number with a unit"),
        (
            {"expr": {"value": {"metric": "m", "field": "last"}, "absent": {"metric": "m", "for": "2m"}}},
            "expr: needs exactly one of value, ratio, absent; got ['value', 'absent']",
        ),
        (
            {"expr": {"value": {"metric": "m", "field": "last", "by": "host"}}},
            "by: Input should be a valid list",
        ),
        (
            {"expr": {"ratio": {"numerator": {"metric": "m", "field": "count", "by": ["a"]}}}},
            "expr.ratio.numerator.by: Extra inputs are not permitted",
        ),
        (
            {"annotations": {"summary": "{{ $value | humanize }}"}},
            "annotations.summary: unsupported template {{ $value | humanize }}",
        ),
        ({"op": "=>"}, "op: Input should be '>', '>=', '<', '<=', '==' or '!='"),
    ],
)
def test_validation_errors_name_group_rule_and_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(broken(**change), "alerts.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("alerts.yaml: group 'infra', rule 'Broken', ")


def test_every_problem_is_reported_and_unnamed_items_by_position() -> None:
    raw = broken(**{"for": "30s", "keep_firing_for": "45s"})
    raw["groups"][0]["rules"].append({"expr": {"value": {"metric": "m", "field": "last"}}})
    with pytest.raises(RuleFileError) as caught:
        parse_rules(raw)
    keys = [(p.rule, p.key) for p in caught.value.problems]
    assert keys == [
        ("Broken", "for"),
        ("Broken", "keep_firing_for"),
        ("rules[1]", "alert"),
        ("rules[1]", "op"),
        ("rules[1]", "threshold"),
        ("rules[1]", "labels"),
    ]


def test_duplicate_groups_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match=r"groups: group names must be unique; repeated: \['a'\]"):
        parse_rules({"groups": [{"name": "a"}, {"name": "a"}]})
    (tmp_path / "bad.yaml").write_text("groups: [")
    with pytest.raises(RuleFileError, match=r"bad\.yaml: <top>: not valid YAML"):
        load_rules(tmp_path / "bad.yaml")
    with pytest.raises(RuleFileError, match=r"missing\.yaml: <top>: cannot read: No such file"):
        load_rules(tmp_path / "missing.yaml")


def test_runner_refuses_durations_finer_than_its_resolution() -> None:
    with pytest.raises(ValueError, match=r"rule Test: for: 300s is not whole 3600s windows"):
        RuleRunner(make_rule({"value": {"metric": "m", "field": "last", "over": "1h"}}, for_="5m"), 3600)


# -- templates and fingerprints ------------------------------------------------------------------


def test_fingerprint_is_alertmanagers() -> None:
    # prometheus/common model/signature_test.go: TestMetricToFingerprint and the benchmarks
    assert (
        fingerprint({"name": "garland, briggs", "fear": "love is not enough"})
        == f"{5799056148416392346:016x}"
    )
    assert fingerprint({"first-label": "first-label-value"}) == f"{5146282821936882169:016x}"
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"fear": "love is not enough", "name": "garland, briggs"}) == "507a62d79ee76c9a"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.85, "0.85"),
        (5.0, "5"),
        (999999.0, "999999"),
        (1234567.0, "1.234567e+06"),
        (1e-05, "1e-05"),
        (0.0001, "0.0001"),
        (-2.5, "-2.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (float("inf"), "+Inf"),
    ],
)
def test_value_prints_as_go_does(value: float, text: str) -> None:
    assert format_value(value) == text


def test_annotations_template_labels_and_value() -> None:
    rule = make_rule(
        {"value": {"metric": "m", "field": "last"}},
        annotations={
            "summary": '{{ $labels.service.name }}/{{index $labels "a b"}} at {{$value}}{{ $labels.x }}'
        },
    )
    assert rule.annotate({"service.name": "api", "a b": "c"}, 0.5) == {"summary": "api/c at 0.5"}


# -- expression values ---------------------------------------------------------------------------


def value_at(expr: dict[str, Any], rows: list[Row], minute: int) -> dict[str, float]:
    """The expression's values at `minute`, by group: every group is made to fire with `>= -inf`."""
    runner = RuleRunner(make_rule(expr, ">=", float("-inf")))
    runner.add(frame(rows))
    return {
        ",".join(f"{k}={v}" for k, v in e["labels"].items() if k not in ("alertname", "severity")): e["value"]
        for e in runner.evaluate(at(minute))
    }


LATENCY = [  # two series of one service over three windows
    rollup("lat", 1, {"service.name": "a", "op": "x"}, count=1, sum=2, min=2, max=2, last=2, p95=2),
    rollup("lat", 2, {"service.name": "a", "op": "x"}, count=3, sum=9, min=1, max=5, last=4, p95=5),
    rollup("lat", 3, {"service.name": "a", "op": "x"}, count=0, sum=0, last=None, p95=None),
    rollup("lat", 3, {"service.name": "a", "op": "y"}, count=4, sum=4, min=0.5, max=2, last=1, p95=2),
    rollup("lat", 3, {"service.name": "b", "op": "y"}, count=2, sum=8, min=4, max=4, last=4, p95=4),
    # an hourly rollup ending at minute 3: another resolution, never read
    rollup("lat", 3, {"service.name": "a", "op": "z"}, count=5, sum=5, last=1, p95=9)
    | {"window_start": at(-57)},
]


@pytest.mark.parametrize(
    ("field", "over", "expected"),
    [
        ("count", "3m", {"a": 8.0, "b": 2.0}),
        ("sum", "3m", {"a": 15.0, "b": 8.0}),
        ("min", "3m", {"a": 0.5, "b": 4.0}),
        ("max", "2m", {"a": 5.0, "b": 4.0}),
        ("avg", "3m", {"a": 15 / 8, "b": 4.0}),
        ("last", "3m", {"a": 4.0, "b": 4.0}),  # op x's latest value is in minute 2, op y's is 1
        ("last", "1m", {"a": 1.0, "b": 4.0}),
        ("p95", "1m", {"a": 2.0, "b": 4.0}),  # one window of one series: exact
        ("p95", "3m", {"a": (1 * 2 + 3 * 5 + 4 * 2) / 8, "b": 4.0}),  # count-weighted mean
    ],
)
def test_value_fields_across_windows_and_series(field: str, over: str, expected: dict[str, float]) -> None:
    expr = {"value": {"metric": "lat", "field": field, "over": over, "by": ["service.name"]}}
    assert value_at(expr, LATENCY, 3) == {f"service.name={k}": v for k, v in expected.items()}


def test_increase_and_rate_add_up_and_missing_data_is_no_result() -> None:
    rows = [
        rollup("req", m, {"path": p}, increase=n) for m, p, n in [(1, "/a", 30), (2, "/a", 60), (2, "/b", 30)]
    ]
    rows.append(rollup("req", 2, {"path": "/c"}))  # no increase: a gauge, say
    increase = {"value": {"metric": "req", "field": "increase", "over": "2m", "by": ["path"]}}
    assert value_at(increase, rows, 2) == {"path=/a": 90.0, "path=/b": 30.0}
    rate = {"value": {"metric": "req", "field": "rate", "over": "2m"}}
    assert value_at(rate, rows, 2) == {"": 1.0}  # 120 over 120 s, no `by`: one group
    assert value_at(rate, rows, 5) == {}


def test_matchers_and_missing_labels() -> None:
    rows = [
        rollup("m", 1, {"env": "prod", "host": "web-1"}, last=1),
        rollup("m", 1, {"env": "staging", "host": "web-2"}, last=2),
        rollup("m", 1, {"host": "db-1"}, last=4),
    ]

    def total(match: dict[str, str]) -> float | None:
        return value_at({"value": {"metric": "m", "field": "sum", "match": match}}, rows, 1).get("")

    for row in rows:
        row["sum"] = row["last"]
    assert total({"env": "prod"}) == 1
    assert total({"env": "!=prod"}) == 6  # a missing label is "": not prod
    assert total({"host": "=~web-.*"}) == 3
    assert total({"host": "=~web"}) is None  # anchored: the whole value must match
    assert total({"host": "!~web-.*", "env": "=~.*"}) == 4
    assert total({"env": "=~.+"}) == 3
    assert total({"env": "=!=x"}) is None  # "=" forces an equal
    by_env = value_at({"value": {"metric": "m", "field": "last", "by": ["env"]}}, rows, 1)
    assert by_env == {"env=prod": 1.0, "env=staging": 2.0, "": 4.0}  # an empty label is dropped


def test_ratio_joins_on_by_and_skips_zero_denominators() -> None:
    rows = [
        rollup("calls", 1, {"svc": "a", "status": "ERROR"}, count=1),
        rollup("calls", 1, {"svc": "a", "status": "OK"}, count=3),
        rollup("calls", 1, {"svc": "b", "status": "OK"}, count=5),  # no errors at all: 0
        rollup("calls", 1, {"svc": "c", "status": "OK"}, count=0),  # no calls: no result
    ]
    side = {"metric": "calls", "field": "count"}
    expr = {"ratio": {"numerator": side | {"match": {"status": "ERROR"}}, "denominator": side, "by": ["svc"]}}
    assert value_at(expr, rows, 1) == {"svc=a": 0.25, "svc=b": 0.0}


def test_absent_counts_from_the_last_window_and_ignores_groups_never_seen() -> None:
    runner = RuleRunner(make_rule({"absent": {"metric": "beat", "for": "2m", "by": ["component"]}}, ">", 0))

    def rows(minute: int) -> list[Row]:
        alive = ["planner", "executor"] if minute <= 3 else ["planner"]
        return [rollup("beat", minute, {"component": c}, last=1) for c in alive]

    events = {}
    for minute in range(1, 10):
        runner.add(frame(rows(minute) if minute < 7 else []))
        events[minute] = [
            (e["labels"]["component"], e["state"], e["value"]) for e in runner.evaluate(at(minute))
        ]
    # executor's last window ended at minute 3: absent for 2m at minute 5 (120 s since then).
    assert events[5] == [("executor", "firing", 120.0)]
    # planner stops after minute 6; executor stays absent (its rows are long pruned).
    assert events[8] == [("planner", "firing", 120.0)]
    assert all(not events[m] for m in (1, 2, 3, 4, 6, 7, 9))
    runner.add(frame([rollup("beat", 10, {"component": "executor"}, last=1)]))
    assert [(e["labels"]["component"], e["state"]) for e in runner.evaluate(at(10))] == [
        ("executor", "resolved")
    ]


# -- the state machine ---------------------------------------------------------------------------


def gauge(metric: str, values: Mapping[int, float], labels: dict[str, str]) -> Callable[[int], list[Row]]:
    return lambda minute: [rollup(metric, minute, labels, last=values[minute])] if minute in values else []


def test_transitions_carry_the_alertmanager_shape() -> None:
    rule = make_rule(
        {"value": {"metric": "q", "field": "last", "by": ["service.name"]}},
        threshold=50,
        labels={"severity": "warning", "team": "agents"},
        annotations={"summary": "{{ $labels.service.name }} queue at {{ $value }}"},
        for_="2m",
    )
    labels = {"service.name": "mailer", "instance": "m-1"}
    values = {1: 60.0, 2: 70.0, 3: 80.0, 4: 10.0}
    runner = RuleRunner(rule)
    events = []
    for minute in range(1, 5):
        runner.add(frame(gauge("q", values, labels)(minute)))
        events += runner.evaluate(at(minute))
    alert_labels = {"service.name": "mailer", "severity": "warning", "team": "agents", "alertname": "Test"}
    common = {"labels": alert_labels, "generatorURL": "", "fingerprint": fingerprint(alert_labels)}
    assert events == [
        common
        | {
            "status": "pending",
            "annotations": {"summary": "mailer queue at 60"},
            "startsAt": stamp(1),
            "endsAt": ACTIVE_ENDS_AT,
            "state": "pending",
            "previous_state": "inactive",
            "value": 60.0,
            "evaluatedAt": stamp(1),
        },
        common
        | {
            "status": "firing",
            "annotations": {"summary": "mailer queue at 80"},
            "startsAt": stamp(3),
            "endsAt": ACTIVE_ENDS_AT,
            "state": "firing",
            "previous_state": "pending",
            "value": 80.0,
            "evaluatedAt": stamp(3),
        },
        common
        | {
            "status": "resolved",
            "annotations": {"summary": "mailer queue at 80"},
            "startsAt": stamp(3),
            "endsAt": stamp(4),
            "state": "resolved",
            "previous_state": "firing",
            "value": 80.0,
            "evaluatedAt": stamp(4),
        },
    ]
    table = alert_rows(events)
    assert table.schema == ALERTS_SCHEMA
    assert table.column("ends_at").to_pylist() == [None, None, at(4)]
    assert table.column("severity").to_pylist() == ["warning"] * 3
    assert dict(table.column("labels").to_pylist()[0]) == alert_labels
    assert alert_rows([]).num_rows == 0


def test_keep_firing_for_and_a_flapping_condition() -> None:
    rule = make_rule({"value": {"metric": "g", "field": "last"}}, threshold=1, keep_firing_for="2m")
    values = {1: 2, 2: 0, 3: 2, 4: 0, 5: 0, 6: 0, 7: 2}
    transitions = drive(RuleRunner(rule), gauge("g", values, {}), range(1, 8))
    # minute 3 holds again within keep_firing_for: still firing; 4..6 clear for 2m: resolved at 6
    assert transitions == [
        (1, "inactive", "firing", 2.0),
        (6, "firing", "resolved", 2.0),
        (7, "inactive", "firing", 2.0),
    ]


def stored_windows(runner: RuleRunner) -> list[datetime]:
    """The window ends a value rule keeps: what bounds its memory."""
    return list(runner._term._rows.frame["window_end"])  # type: ignore[attr-defined]


def test_event_time_only_moves_forward_and_late_rows_are_dropped() -> None:
    runner = RuleRunner(make_rule({"value": {"metric": "g", "field": "max", "over": "2m"}}, threshold=1))
    runner.add(frame([rollup("g", 2, {}, max=5), rollup("g", 4, {}, max=0)]))
    assert runner.evaluate(at(1)) == []  # a future window is not read
    assert [e["state"] for e in runner.evaluate(at(2))] == ["firing"]
    assert runner.evaluate(at(2)) == []  # a replay: nothing changes
    assert runner.evaluate(at(1)) == []
    runner.add(frame([rollup("g", 0, {}, max=9)]))  # behind every later evaluation's range: dropped
    assert stored_windows(runner) == [at(2), at(4)]
    runner.add(frame([rollup("g", 3, {}, max=7)]))  # late, but inside the next range: read
    assert runner.evaluate(at(4)) == []  # still firing on minute 3's 7
    assert [e["state"] for e in runner.evaluate(at(5))] == ["resolved"]


def test_runner_pickles_mid_stream_and_keeps_only_its_range() -> None:
    rule = make_rule({"value": {"metric": "g", "field": "sum", "over": "3m"}}, threshold=10, for_="1m")
    runner = RuleRunner(rule)
    for minute in range(1, 4):
        runner.add(frame([rollup("g", minute, {}, sum=5), rollup("other", minute, {}, sum=5)]))
        runner.evaluate(at(minute))
    copy = pickle.loads(pickle.dumps(runner))
    for r in (runner, copy):
        r.add(frame([rollup("g", 4, {}, sum=5)]))
    assert (
        [e["state"] for e in copy.evaluate(at(4))]
        == [e["state"] for e in runner.evaluate(at(4))]
        == ["firing"]
    )
    assert stored_windows(copy) == [at(2), at(3), at(4)]  # minute 1 is out of the 3m range


def test_thousands_of_series_evaluate_vectorised() -> None:
    services, instances, minutes = 100, 50, 5
    rows = [
        rollup("q", m, {"service.name": f"s{s}", "service.instance.id": f"i{i}"}, last=float(s + i))
        for m in range(1, minutes + 1)
        for s in range(services)
        for i in range(instances)
    ]
    runner = RuleRunner(seed("AgentQueueBacklog").model_copy(update={"for_": 0.0}))
    data = frame(rows).with_columns(pl.lit("agent.queue.depth").alias("metric_name"))
    runner.add(data)
    events = runner.evaluate(at(minutes))
    # the largest instance of service s is s + 49: above 50 from s = 2 on
    assert sorted(int(e["labels"]["service.name"][1:]) for e in events) == list(range(2, services))


# -- the seed rules ------------------------------------------------------------------------------

API = {"service.name": "api", "service.instance.id": "api-1"}


def cpu(values: dict[int, float]) -> Callable[[int], list[Row]]:
    def rows(minute: int) -> list[Row]:
        idle = rollup("system.cpu.utilization", minute, API | {"cpu.mode": "idle"}, last=0.95)
        return [*gauge("system.cpu.utilization", values, API)(minute), idle]  # idle never counts

    return rows


def spans(errors: dict[int, float]) -> Callable[[int], list[Row]]:
    def rows(minute: int) -> list[Row]:
        ok = rollup("span.duration", minute, {"service.name": "api", "status_code": "OK"}, count=8)
        error = rollup(
            "span.duration", minute, {"service.name": "api", "status_code": "ERROR"}, count=errors.get(minute)
        )
        return [ok, error] if minute in errors else [ok]

    return rows


def slow(p95_a: dict[int, float]) -> Callable[[int], list[Row]]:
    def rows(minute: int) -> list[Row]:
        labels = {"service.name": "api", "status_code": "OK"}
        a = rollup(
            "span.duration", minute, labels | {"span.name": "a"}, count=10, p95=p95_a.get(minute, 20000)
        )
        b = rollup("span.duration", minute, labels | {"span.name": "b"}, count=10, p95=30000)
        return [a, b]

    return rows


def provider(counts: dict[int, tuple[float, float]]) -> Callable[[int], list[Row]]:
    def rows(minute: int) -> list[Row]:
        ok, failed = counts.get(minute, (20, 0))
        labels = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
        metric = "gen_ai.client.operation.duration"
        return [
            rollup(metric, minute, labels, count=ok),
            rollup(metric, minute, labels | {"error.type": "timeout"}, count=failed),
            rollup(metric, minute, labels | {"error.type": ""}, count=5),  # empty: not an error
        ]

    return rows


def model_latency(p95: dict[int, float]) -> Callable[[int], list[Row]]:
    labels = {"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"}
    return lambda m: (
        [rollup("gen_ai.client.operation.duration", m, labels, count=4, p95=p95[m])] if m in p95 else []
    )


def repeat(value: float, minutes: range) -> dict[int, float]:
    return dict.fromkeys(minutes, value)


SEEDS: list[tuple[str, Callable[[int], list[Row]], int, list[Transition]]] = [
    (
        "HighCpuUtilization",
        cpu(repeat(0.9, range(1, 9)) | {9: 0.5}),
        10,
        [(1, "inactive", "pending", 0.9), (6, "pending", "firing", 0.9), (9, "firing", "resolved", 0.9)],
    ),
    (
        "HighCpuUtilization",
        cpu(repeat(0.9, range(1, 4)) | {4: 0.5}),
        6,
        [(1, "inactive", "pending", 0.9), (4, "pending", "inactive", 0.9)],
    ),
    (
        "HeartbeatMissing",
        gauge("heartbeat.age_seconds", {1: 30, 2: 90, 3: 150, 4: 20}, {"component": "planner"}),
        5,
        [(2, "inactive", "firing", 90.0), (4, "firing", "resolved", 150.0)],
    ),
    (
        # errors in minutes 3 and 4 only; the 5m ratio keeps them until minute 8
        "AgentTaskFailureRateHigh",
        spans({3: 4, 4: 4}),
        9,
        [(3, "inactive", "firing", 4 / 28), (8, "firing", "resolved", 8 / 48)],
    ),
    (
        "AgentQueueBacklog",
        gauge("agent.queue.depth", repeat(60, range(1, 5)) | {5: 10}, {"service.name": "mailer"}),
        6,
        [(1, "inactive", "pending", 60.0), (3, "pending", "firing", 60.0), (5, "firing", "resolved", 60.0)],
    ),
    (
        "AgentQueueBacklog",
        gauge("agent.queue.depth", {1: 60, 2: 10}, {"service.name": "mailer"}),
        3,
        [(1, "inactive", "pending", 60.0), (2, "pending", "inactive", 60.0)],
    ),
    (
        # span a at 40 s and span b at 30 s, 10 calls each: 35 s, until a drops to 20 s
        "SlowResponses",
        slow(repeat(40000, range(1, 7))),
        8,
        [
            (1, "inactive", "pending", 35000.0),
            (6, "pending", "firing", 35000.0),
            (7, "firing", "resolved", 35000.0),
        ],
    ),
    (
        "SlowResponses",
        slow(repeat(40000, range(1, 3))),
        4,
        [(1, "inactive", "pending", 35000.0), (3, "pending", "inactive", 35000.0)],
    ),
    (
        "BudgetNearlySpent",
        gauge("orchestrator_budget_utilization_percent", {1: 80, 2: 95, 3: 85}, {"service.name": "fleet"}),
        4,
        [(2, "inactive", "firing", 95.0), (3, "firing", "resolved", 95.0)],
    ),
    (
        "LlmLatencyHigh",
        model_latency(repeat(6.5, range(1, 12)) | {12: 4}),
        13,
        [(1, "inactive", "pending", 6.5), (11, "pending", "firing", 6.5), (12, "firing", "resolved", 6.5)],
    ),
    (
        "LlmLatencyHigh",
        model_latency({1: 6.5, 2: 4}),
        3,
        [(1, "inactive", "pending", 6.5), (2, "pending", "inactive", 6.5)],
    ),
    (
        # with the 5 calls whose error.type is empty: 1 of 25 is not above 5%, 4 of 50 over two
        # minutes is, 4 of 75 still is, 4 of 100 by minute 4 is not
        "LlmProviderErrorRateHigh",
        provider({1: (19, 1), 2: (17, 3)}),
        6,
        [(2, "inactive", "firing", 0.08), (4, "firing", "resolved", 4 / 75)],
    ),
]


@pytest.mark.parametrize(("alert", "rows", "until", "expected"), SEEDS, ids=[s[0] for s in SEEDS])
def test_seed_rule(
    alert: str, rows: Callable[[int], list[Row]], until: int, expected: list[Transition]
) -> None:
    transitions = drive(RuleRunner(seed(alert)), rows, range(1, until + 1))
    assert [t[:3] for t in transitions] == [t[:3] for t in expected]
    assert [t[3] for t in transitions] == pytest.approx([t[3] for t in expected])


def test_seed_annotations_are_templated() -> None:
    runner = RuleRunner(seed("BudgetNearlySpent"))
    runner.add(frame(gauge("orchestrator_budget_utilization_percent", {1: 95}, {"service.name": "fleet"})(1)))
    (event,) = runner.evaluate(at(1))
    assert event["labels"] == {
        "service.name": "fleet",
        "severity": "critical",
        "alertname": "BudgetNearlySpent",
    }
    assert event["annotations"]["summary"] == "fleet has used 95% of its budget"
    assert event["annotations"]["runbook_url"].startswith("https://")


# -- talonflow rules check -----------------------------------------------------------------------


def check(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "talonflow.cli", "rules", "check", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_cli_check(tmp_path: Path) -> None:
    ok = check(str(REPO / "alerts.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "alerts.yaml: ok, 3 groups, 8 rules" in ok.stderr

    raw = yaml.safe_load((REPO / "alerts.yaml").read_text())
    raw["groups"][1]["rules"][0]["expr"]["ratio"]["numerator"]["match"] = {"status_code": "=~(ERROR"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    failed = check(str(bad))
    assert failed.returncode == 1
    assert (
        f"{bad}: group 'agents', rule 'AgentTaskFailureRateHigh', "
        "expr.ratio.numerator.match.status_code: invalid regex '(ERROR': unclosed group"
    ) in failed.stderr

    summary = json.loads(check("--json", str(REPO / "alerts.yaml"), str(bad)).stdout)
    assert summary["valid"] is False
    assert [f["valid"] for f in summary["files"]] == [True, False]
    assert summary["files"][1]["errors"] == [
        {
            "group": "agents",
            "rule": "AgentTaskFailureRateHigh",
            "key": "expr.ratio.numerator.match.status_code",
            "message": "invalid regex '(ERROR': unclosed group",
        }
    ]

"""Rule groups evaluated by rules/evaluation.py: transitions, limits, recording output, templates."""

from __future__ import annotations

import pytest

from promql import MemoryStorage, instant_query, labels_of
from rules.evaluation import GroupEvaluator
from rules.templates import TemplateContext, humanize, humanize_duration, humanize_timestamp
from schemas.prometheus_rules import PromRuleFileError, parse_prometheus_rules

MIN = 60_000


def _evaluator(
    rules: list[dict[str, object]], limit: int = 0, storage: MemoryStorage | None = None
) -> tuple[GroupEvaluator, MemoryStorage]:
    storage = storage if storage is not None else MemoryStorage()
    context = TemplateContext(storage)
    raw = {"groups": [{"name": "g", "interval": "1m", "limit": limit, "rules": rules}]}
    (group,) = parse_prometheus_rules(raw, "test.yml", context.funcs())
    return GroupEvaluator(group, storage, context, {"cluster": "c1"}), storage


def test_transitions_follow_for_and_keep_firing_for() -> None:
    ev, storage = _evaluator(
        [{"alert": "Down", "expr": "up == 0", "for": "2m", "keep_firing_for": "1m",
          "annotations": {"s": "{{ $labels.job }} in {{ $externalLabels.cluster }}"}}]
    )  # fmt: skip
    up = labels_of({"__name__": "up", "job": "api"})
    for minute, value in enumerate([0, 0, 0, 1, 1, 1]):
        storage.append(up, minute * MIN, value)
    seen = []
    for minute in range(6):
        result = ev.evaluate(minute * MIN)
        assert result.errors == []
        seen += [(t.t_ms // MIN, t.old, t.new) for t in result.transitions]
    # pending at 0, firing at 2m (for: 2m), condition gone at 3m but kept firing until 3m + 1m
    assert seen == [(0, "inactive", "pending"), (2, "pending", "firing"), (4, "firing", "inactive")]
    (alert,) = ev.alerts("Down")
    assert alert.annotations == {"s": "api in c1"}
    assert alert.labels == (("alertname", "Down"), ("job", "api"))


def test_recording_rules_feed_later_rules_and_go_stale() -> None:
    ev, storage = _evaluator(
        [{"record": "job:x:sum", "expr": "sum by (job) (x)", "labels": {"tier": "1"}},
         {"alert": "Big", "expr": "job:x:sum > 5"}]
    )  # fmt: skip
    storage.append(labels_of({"__name__": "x", "job": "a", "i": "1"}), 0, 4)
    storage.append(labels_of({"__name__": "x", "job": "a", "i": "2"}), 0, 3)
    assert ev.evaluate(0).errors == []
    assert [a.state for a in ev.alerts("Big")] == ["firing"]  # no `for`: fires at once
    got = instant_query("job:x:sum", 0, storage)
    assert got.labels == [labels_of({"__name__": "job:x:sum", "job": "a", "tier": "1"})]  # type: ignore[union-attr]
    # the input disappears (stale): the recorded series is marked stale at the next evaluation
    ev.evaluate(10 * MIN)
    assert instant_query("job:x:sum", 10 * MIN, storage).labels == []  # type: ignore[union-attr]


def test_limit_and_duplicate_results_are_errors_of_that_rule_only() -> None:
    ev, storage = _evaluator(
        [{"alert": "Many", "expr": "x > 0"}, {"record": "dup", "expr": "x", "labels": {"i": "same"}},
         {"record": "fine", "expr": "vector(1)"}],
        limit=1,
    )  # fmt: skip
    for i in range(3):
        storage.append(labels_of({"__name__": "x", "i": str(i)}), 0, 1)
    result = ev.evaluate(0)
    assert dict(result.errors)["Many"] == "exceeded limit of 1 with 3 alerts"
    assert (
        dict(result.errors)["dup"]
        == "vector contains metrics with the same labelset after applying rule labels"
    )
    assert ev.alerts("Many") == []
    assert instant_query("fine", 0, storage).values.tolist() == [1.0]  # type: ignore[union-attr]


def test_a_failing_template_renders_the_error_not_a_crash() -> None:
    ev, storage = _evaluator([{"alert": "A", "expr": "x", "annotations": {"s": '{{ humanize "abc" }}'}}])
    storage.append(labels_of({"__name__": "x"}), 0, 1)
    ev.evaluate(0)
    (alert,) = ev.alerts("A")
    assert alert.annotations["s"].startswith("<error expanding template: ")


def test_rule_files_refuse_unsupported_promql_by_name() -> None:
    raw = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sin(x) < 0"}]}]}
    with pytest.raises(PromRuleFileError, match=r"rule 1 \(\"A\"\): expr: .*sin\(\) is not supported"):
        parse_prometheus_rules(raw, "f.yml", TemplateContext().funcs())


def test_humanize_functions_match_prometheus() -> None:
    assert [humanize(v) for v in (0, 1234.0, 0.00123, 1e9)] == ["0", "1.234k", "1.23m", "1G"]
    assert [humanize_duration(v) for v in (3600.0, 59.5, 0.002, -90.0)] == [
        "1h 0m 0s",
        "59.5s",
        "2ms",
        "-1m 30s",
    ]
    assert humanize_timestamp(0) == "1970-01-01 00:00:00 +0000 UTC"


def test_a_restored_snapshot_continues_without_repeating_a_transition() -> None:
    rules: list[dict[str, object]] = [{"alert": "Down", "expr": "up == 0", "for": "1m"}]
    first, storage = _evaluator(rules)
    for minute in range(4):
        storage.append(labels_of({"__name__": "up"}), minute * MIN, 0)
    assert [t.new for t in first.evaluate(0).transitions] == ["pending"]
    saved = first.snapshot()
    first.evaluate(MIN)  # the lost run fires; the restored one must fire exactly once too
    second, _ = _evaluator(rules, storage=storage)
    second.restore(saved)
    assert [t.new for t in second.evaluate(MIN).transitions] == ["firing"]
    assert second.evaluate(2 * MIN).transitions == []

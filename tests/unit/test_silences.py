"""Silences and inhibit rules as Alertmanager applies them (pure logic; the Kafka store and the API
are tested against the real broker and amtool in tests/test_alertmanager_api.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.notify import InhibitRule
from sinks.notify.alerts import Alert
from sinks.notify.inhibition import Inhibitor
from sinks.notify.silences import Silence, Silences, rfc3339

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def silence(
    matchers: list[dict[str, Any]], hours: float = 1, start: datetime = NOW, **extra: Any
) -> dict[str, Any]:
    return {
        "matchers": matchers,
        "startsAt": rfc3339(start),
        "endsAt": rfc3339(start + timedelta(hours=hours)),
        "createdBy": "ops",
        "comment": "maintenance",
        **extra,
    }


def eq(name: str, value: str, regex: bool = False, equal: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_a_silence_mutes_matching_labels_while_active() -> None:
    clock = Clock()
    store = Silences(clock)
    made = store.put(silence([eq("alertname", "ToolErrors"), eq("agent", "a[12]", regex=True)]))
    assert made.id and store.get(made.id) == made
    assert store.mutes({"alertname": "ToolErrors", "agent": "a1"}, NOW)
    assert not store.mutes({"alertname": "ToolErrors", "agent": "a3"}, NOW)
    assert not store.mutes({"alertname": "Other", "agent": "a1"}, NOW)
    assert not store.mutes(
        {"alertname": "ToolErrors", "agent": "a1"}, NOW + timedelta(hours=1)
    )  # end exclusive
    negative = store.put(silence([eq("alertname", "X"), eq("env", "prod", equal=False)]))
    assert store.silencing({"alertname": "X", "env": "dev"}, NOW) == [negative.id]
    assert store.silencing({"alertname": "X", "env": "prod"}, NOW) == []


def test_update_expire_and_states() -> None:
    clock = Clock()
    store = Silences(clock)
    later = store.put(silence([eq("a", "b")], start=NOW + timedelta(hours=1)))
    assert later.api(NOW)["status"] == {"state": "pending"}
    active = store.put(silence([eq("a", "b")]))
    clock.now = NOW + timedelta(minutes=10)
    updated = store.put(silence([eq("a", "b")], hours=3, start=NOW + timedelta(minutes=5), id=active.id))
    assert updated.id == active.id and updated.starts_at == NOW  # an active silence keeps its start
    expired = store.expire(active.id)
    assert expired.ends_at == clock.now and expired.state(clock.now) == "expired"
    with pytest.raises(ValueError, match="already expired"):
        store.expire(active.id)
    renewed = store.put(silence([eq("a", "b")], start=clock.now, id=active.id))
    assert renewed.id != active.id  # an expired silence is replaced, as Alertmanager does
    store.expire(later.id)
    assert store.get(later.id).starts_at == store.get(later.id).ends_at == clock.now  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        store.expire("nope")
    clock.now += timedelta(days=6)
    assert [s.id for s in store.all()] == []  # past retention


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (silence([]), "matchers: at least one matcher is required"),
        (silence([eq("a", ".*", regex=True)]), "at least one matcher must not match the empty string"),
        (silence([eq("bad-name", "x")]), r"matchers\[0\]\.name: 'bad-name' is not a valid label name"),
        (silence([eq("a", "(", regex=True)]), r"matchers\[0\]\.value: invalid regex"),
        (silence([eq("a", "b")], hours=-1), "endsAt: the end must not be before the start"),
        (silence([eq("a", "b")], start=NOW - timedelta(hours=2)), "endsAt: the end must be in the future"),
        (
            {**silence([eq("a", "b")]), "startsAt": "yesterday"},
            "startsAt: 'yesterday' is not an RFC 3339 time",
        ),
        ({**silence([eq("a", "b")]), "comment": ""}, "comment: required"),
        (silence([eq("a", "b")], id="missing"), "id: silence missing not found"),
    ],
)
def test_bad_silences_are_refused_with_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Silences(Clock()).put(raw)


def test_the_kafka_document_round_trips() -> None:
    made = Silences(Clock()).put(silence([eq("a", "b"), eq("c", "d+", regex=True, equal=False)]))
    assert Silence.from_document(made.document()) == made


def alert(status: str = "firing", **labels: str) -> Alert:
    return Alert.parse({"status": status, "labels": labels})


def test_inhibit_rules_with_equal_labels() -> None:
    rule = InhibitRule.model_validate(
        {
            "source_match": {"severity": "critical"},
            "target_matchers": ["severity=~warning|info"],
            "equal": ["agent"],
        }
    )
    inhibitor = Inhibitor([rule])
    warning = alert(alertname="Slow", severity="warning", agent="a1")
    elsewhere = alert(alertname="Slow", severity="warning", agent="a2")
    assert not inhibitor.inhibited(warning)
    critical = alert(alertname="Down", severity="critical", agent="a1")
    inhibitor.observe(critical)
    assert inhibitor.inhibited(warning)
    assert not inhibitor.inhibited(elsewhere)  # a different `agent`
    assert not inhibitor.inhibited(critical)  # not a target
    inhibitor.observe(alert("resolved", alertname="Down", severity="critical", agent="a1"))
    assert not inhibitor.inhibited(warning)


def test_alerts_matching_both_sides_do_not_inhibit_each_other() -> None:
    rule = InhibitRule.model_validate({"source_match": {"team": "ops"}, "target_match": {"team": "ops"}})
    inhibitor = Inhibitor([rule])
    first, second = alert(alertname="A", team="ops"), alert(alertname="B", team="ops")
    inhibitor.observe(first)
    inhibitor.observe(second)
    assert not inhibitor.inhibited(first) and not inhibitor.inhibited(second)

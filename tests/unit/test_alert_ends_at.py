"""An alert whose endsAt has passed is resolved, as Alertmanager's `Alert.Resolved()`."""

from __future__ import annotations

from datetime import UTC, datetime

from sinks.notify.alerts import ZERO_TIME, Alert

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def alert(status: str, ends_at: str) -> Alert:
    return Alert.parse(
        {
            "status": status,
            "labels": {"alertname": "A"},
            "startsAt": "2026-12-03T11:00:00Z",
            "endsAt": ends_at,
        }
    )


def test_firing_until_ends_at_then_resolved() -> None:
    assert alert("firing", "2026-12-03T12:00:01Z").as_of(NOW).status == "firing"
    ended = alert("firing", "2026-12-03T12:00:00Z").as_of(NOW)
    assert ended.status == "resolved" and ended.ends_at == "2026-12-03T12:00:00Z"  # at endsAt itself
    assert (
        alert("firing", "2026-12-03T11:59:59.123456789Z").as_of(NOW).status == "resolved"
    )  # Go's nanoseconds


def test_no_end_or_already_resolved_is_left_as_it_is() -> None:
    for kept in (
        alert("firing", ZERO_TIME),
        alert("resolved", "2026-12-03T13:00:00Z"),
        alert("firing", "soon"),
    ):
        assert kept.as_of(NOW) is kept

"""The Alerts page's silences: what the Alertmanager API's store holds that is not over yet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from console.alerting import live_silences
from console.humanize import remaining
from sinks.notify.silences import Silences

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _add(silences: Silences, matchers: list[dict[str, object]], starts: timedelta, ends: timedelta) -> str:
    raw = {
        "matchers": matchers,
        "startsAt": (NOW + starts).isoformat(),
        "endsAt": (NOW + ends).isoformat(),
        "createdBy": "ops",
        "comment": "upgrade",
    }
    return silences.put(raw).id


def test_active_and_pending_silences_with_matchers_as_amtool_writes_them() -> None:
    clock = [NOW]
    silences = Silences(lambda: clock[0])
    every_kind = [
        {"name": "alertname", "value": "Down", "isRegex": False},
        {"name": "env", "value": "dev", "isRegex": False, "isEqual": False},
        {"name": "agent", "value": "gw-.*", "isRegex": True},
        {"name": "team", "value": "qa|ml", "isRegex": True, "isEqual": False},
    ]
    active = _add(silences, every_kind, timedelta(0), timedelta(hours=2))
    pending = _add(silences, every_kind[:1], timedelta(hours=1), timedelta(hours=3))
    short = _add(silences, every_kind[:1], timedelta(0), timedelta(minutes=5))
    clock[0] = NOW + timedelta(minutes=10)  # `short` is over
    shown = live_silences(silences, clock[0])
    assert [(s["id"], s["state"]) for s in shown] == [(active, "active"), (pending, "pending")]
    assert shown[0]["matchers"] == ['alertname="Down"', 'env!="dev"', 'agent=~"gw-.*"', 'team!~"qa|ml"']
    assert short not in {s["id"] for s in shown}
    assert remaining(shown[0]["ends_at"], clock[0]) == "in 1.8 h"
    assert remaining(NOW + timedelta(seconds=30), NOW) == "in 30 s"

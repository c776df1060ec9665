"""Alert transition events: the Alertmanager webhook alert shape on `talon_alerts`, and their rows.

An event is one alert in Alertmanager's webhook shape (status, labels, annotations, startsAt,
endsAt, generatorURL, fingerprint) plus `state` (pending, firing, resolved, inactive),
`previous_state`, `value` and `evaluatedAt`. Alertmanager knows only "firing" and "resolved":
pending and inactive events carry their state as status too, so forward only firing and resolved
ones to it. startsAt is when the alert fired (pending, inactive: when its condition began to
hold); endsAt is "0001-01-01T00:00:00Z" while active, the evaluation time once it ended. The
alerts flow (rule transitions) and the heartbeats flow (HeartbeatDown) both write them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa

from schemas.rollups import ALERTS_SCHEMA

ACTIVE_ENDS_AT: Final = "0001-01-01T00:00:00Z"  # Alertmanager's zero time: no end yet
_FNV_OFFSET, _FNV_PRIME, _U64 = 14695981039346656037, 1099511628211, (1 << 64) - 1


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's `LabelSet.Fingerprint()`: FNV-1a 64 over the sorted names and values, each
    followed by 0xff, as 16 hex digits. Code point order is UTF-8 byte order, as Go sorts."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for byte in b"%b\xff%b\xff" % (name.encode(), labels[name].encode()):
            digest = ((digest ^ byte) * _FNV_PRIME) & _U64
    return f"{digest:016x}"


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_rows(events: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Transition events as rows of ALERTS_SCHEMA (the `alerts` dataset); no end time while active."""
    rows = [
        {
            "time": datetime.fromisoformat(event["evaluatedAt"]),
            "alertname": event["labels"]["alertname"],
            "fingerprint": event["fingerprint"],
            "state": event["state"],
            "previous_state": event["previous_state"],
            "severity": event["labels"].get("severity"),
            "value": event["value"],
            "starts_at": datetime.fromisoformat(event["startsAt"]),
            "ends_at": None if event["endsAt"] == ACTIVE_ENDS_AT else datetime.fromisoformat(event["endsAt"]),
            "labels": list(event["labels"].items()),
            "annotations": list(event["annotations"].items()),
        }
        for event in events
    ]
    return pa.Table.from_pylist(rows, schema=ALERTS_SCHEMA)

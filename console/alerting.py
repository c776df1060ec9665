"""The Alerts and heartbeats page: what is firing or pending, the transitions, each component's timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from console.fleet import active_alerts
from console.scan import rows, scan
from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from sinks.notify.silences import Silence, Silences

HISTORY_LIMIT = 300


def transitions(config: TalonflowConfig, window: TimeRange) -> list[dict[str, Any]]:
    history = (
        scan(config, "alerts", window)
        .with_columns(pl.col("annotations").map.get("summary").alias("summary"))
        .sort("time", descending=True)
        .head(HISTORY_LIMIT)
    )
    return rows(history)


def heartbeat_timelines(config: TalonflowConfig, window: TimeRange) -> list[dict[str, Any]]:
    """Per component and instance, the window cut into up/late/down segments (percent of its width).

    The state at the window's start is the last transition before it, so the whole dataset is
    read: it holds transitions only, a few rows per component and day.
    """
    beats = scan(config, "heartbeats").filter(pl.col("time") < window.end).sort("time").collect()
    timelines = []
    for key, part in beats.partition_by("component", "service_instance_id", as_dict=True).items():
        segments = []
        events = part.select("time", "state").to_dicts()
        first = part.row(0, named=True)
        if first["previous_state"] and first["last_seen"] and first["last_seen"] < first["time"]:
            # the state before the first verdict held at least from the last beat it names
            events.insert(0, {"time": first["last_seen"], "state": first["previous_state"]})
        for current, following in zip(events, [*events[1:], None], strict=True):
            begin = max(current["time"], window.start)
            end = following["time"] if following else window.end
            if end <= window.start:
                continue
            offset = (begin - window.start).total_seconds() / window.seconds
            width = (end - begin).total_seconds() / window.seconds
            segments.append(
                {"state": current["state"], "offset": 100 * offset, "width": 100 * width, "since": begin}
            )
        timelines.append(
            {
                "component": key[0],
                "instance": key[1],
                "service": part["service_name"][-1],
                "state": part["state"][-1],
                "last_seen": part["last_seen"].max(),
                "segments": segments,
            }
        )
    return sorted(timelines, key=lambda t: (t["component"], t["instance"]))


def _matcher_text(silence: Silence) -> list[str]:
    """Each matcher as amtool prints it: name=value, name!=value, name=~regex, name!~regex."""
    ops = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}
    return [f'{m.name}{ops[m.is_regex, m.is_equal]}"{m.value}"' for m in silence.matchers]


def live_silences(silences: Silences, now: datetime | None = None) -> list[dict[str, Any]]:
    """The active and pending silences of the store the Alertmanager API serves, soonest end first."""
    now = now or datetime.now(UTC)
    shown = []
    for silence in silences.all():
        state = silence.state(now)
        if state != "expired":
            shown.append(
                {
                    "id": silence.id,
                    "state": state,
                    "matchers": _matcher_text(silence),
                    "created_by": silence.created_by,
                    "comment": silence.comment,
                    "starts_at": silence.starts_at,
                    "ends_at": silence.ends_at,
                }
            )
    return sorted(shown, key=lambda s: (s["ends_at"], s["id"]))


def alerts_page(config: TalonflowConfig, window: TimeRange, silences: Silences) -> dict[str, Any]:
    active = active_alerts(config)
    return {
        "silences": live_silences(silences),
        "firing": [a for a in active if a["state"] == "firing"],
        "pending": [a for a in active if a["state"] == "pending"],
        "history": transitions(config, window),
        "timelines": heartbeat_timelines(config, window),
    }

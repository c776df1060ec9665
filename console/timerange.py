"""The time range of a page, read from its URL so that a shared link shows the same window.

`range=1h` (any duration: 15m, 6h, 7d) means "the last hour" and stays relative when the link
is opened later, as in Grafana; `from=` and `to=` (ISO 8601, UTC when no offset is given) pin
an absolute window and win over `range`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter, ValidationError

from schemas.types import Seconds

_DURATION: TypeAdapter[float] = TypeAdapter(Seconds)
# Chart steps a person reads easily, in seconds.
_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
CHOICES = ("15m", "1h", "6h", "24h", "7d", "30d")


class RangeError(ValueError):
    """A range parameter that cannot be read; the message names it."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    relative: str | None  # "1h" for a relative range, None for an absolute one

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def step(self, points: int = 120) -> int:
        """The smallest readable step that draws the range in at most `points` buckets."""
        wanted = self.seconds / points
        return next((s for s in _STEPS if s >= wanted), _STEPS[-1])

    def query(self) -> dict[str, str]:
        """The URL parameters that reproduce this range."""
        if self.relative is not None:
            return {"range": self.relative}
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def _instant(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RangeError(f"{name}: {text!r} is not an ISO 8601 time such as 2026-12-03T10:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_range(params: Mapping[str, str], default: str = "1h", now: datetime | None = None) -> TimeRange:
    now = now or datetime.now(UTC)
    if params.get("from") or params.get("to"):
        start = _instant("from", params["from"]) if params.get("from") else now - timedelta(hours=1)
        end = _instant("to", params["to"]) if params.get("to") else now
        if end <= start:
            raise RangeError(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
        return TimeRange(start, end, None)
    text = params.get("range") or default
    try:
        seconds = _DURATION.validate_python(text)
    except ValidationError:
        raise RangeError(f"range: {text!r} is not a duration such as 15m, 1h, 24h or 7d") from None
    if seconds <= 0:
        raise RangeError(f"range: {text!r} must be longer than zero")
    return TimeRange(now - timedelta(seconds=seconds), now, text)

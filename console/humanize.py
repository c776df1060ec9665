"""Numbers, durations, money and times formatted for people: the console's Jinja filters."""

from __future__ import annotations

from datetime import UTC, datetime

_EMPTY = "—"


def number(value: float | None, digits: int = 1) -> str:
    """1234 -> 1.2k, 3_400_000 -> 3.4M; small numbers as they are."""
    if value is None:
        return _EMPTY
    magnitude = abs(value)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= size:
            return f"{value / size:.{digits}f}{suffix}"
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.{digits + 1}g}" if magnitude < 1 else f"{value:.{digits}f}"


def millis(value: float | None) -> str:
    """A duration given in milliseconds: 0.4 ms, 850 ms, 1.2 s, 3.5 min, 2.0 h."""
    if value is None:
        return _EMPTY
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def usd(value: float | None) -> str:
    """Dollars with cents, and enough digits for the fractions of a cent that one LLM call costs."""
    if value is None:
        return "unpriced"
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if abs(value) >= 0.0001 else f"${value:.2e}"


def percent(value: float | None) -> str:
    if value is None:
        return _EMPTY
    return f"{value * 100:.1f}%" if value < 0.1 else f"{value * 100:.0f}%"


def rate(value: float | None) -> str:
    """Events per second, or per minute when that reads better."""
    if value is None:
        return _EMPTY
    return f"{number(value)}/s" if value >= 1 else f"{number(value * 60)}/min"


def _spell(seconds: float) -> str:
    """A length of time in the unit people read it in: s, min, h or d."""
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    return _spell(((now or datetime.now(UTC)) - value).total_seconds()) + " ago"


def remaining(value: datetime | None, now: datetime | None = None) -> str:
    """How long until a time to come ("in 2.0 h"), as `ago` says how long since one past."""
    if value is None:
        return _EMPTY
    return "in " + _spell((value - (now or datetime.now(UTC))).total_seconds())


def clock(value: datetime | None) -> str:
    """UTC date and time to the millisecond: what people compare across pages and logs."""
    return _EMPTY if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


FILTERS = {
    "number": number,
    "millis": millis,
    "usd": usd,
    "percent": percent,
    "rate": rate,
    "ago": ago,
    "remaining": remaining,
    "clock": clock,
}

"""Alertmanager's `time_intervals` (and the older `mute_time_intervals`): when a route may notify.

Same keys, syntax and meaning as Alertmanager: an interval holds when every field it sets holds
(`times` as HH:MM with an exclusive end, `weekdays`, `days_of_month` with negative days counted
from the month's end, `months`, `years`, ranges written `start:end` with both ends included),
in `location` (an IANA zone, UTC by default); a named entry holds when any of its intervals does.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator

from schemas.types import Strict

_WEEKDAYS = {name.lower(): (i + 1) % 7 for i, name in enumerate(calendar.day_name)}  # sunday = 0
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")
Range = tuple[int, int]


def _bounds(text: str, parse: Any, what: str) -> Range:
    start, sep, end = str(text).partition(":")
    first = parse(start.strip(), what)
    last = parse(end.strip(), what) if sep else first
    return first, last


def _named(table: dict[str, int], low: int, high: int) -> Any:
    def parse(token: str, what: str) -> int:
        if token.lower() in table:
            return table[token.lower()]
        if token.lstrip("-").isdigit() and low <= int(token) <= high:
            return int(token)
        raise ValueError(f"{token!r} is not a valid {what}")

    return parse


def _ranges(parse: Any, what: str, check: Any = None) -> Any:
    def convert(value: Any) -> list[Range]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {what}s or ranges like 'a:b'")
        out = []
        for item in value:
            first, last = _bounds(str(item), parse, what)
            if check is not None:
                check(first, last, item)
            elif first > last:
                raise ValueError(f"{item!r}: start {what} cannot be after the end")
            out.append((first, last))
        return out

    return convert


def _day_order(first: int, last: int, item: Any) -> None:
    if first == 0 or last == 0:
        raise ValueError(f"{item!r}: a day of month is 1..31 or -31..-1")
    if (first > 0) == (last > 0) and first > last:
        raise ValueError(f"{item!r}: start day cannot be after the end day")
    if first < 0 < last:
        raise ValueError(f"{item!r}: a negative start cannot precede a positive end")


def _day(token: str, what: str) -> int:
    if not re.fullmatch(r"-?\d+", token) or not -31 <= int(token) <= 31:
        raise ValueError(f"{token!r} is not a valid {what}")
    return int(token)


def _year(token: str, what: str) -> int:
    if not token.isdigit():
        raise ValueError(f"{token!r} is not a valid {what}")
    return int(token)


Weekdays = Annotated[list[Range], BeforeValidator(_ranges(_named(_WEEKDAYS, 1, 0), "weekday"))]
Months = Annotated[list[Range], BeforeValidator(_ranges(_named(_MONTHS, 1, 12), "month"))]
DaysOfMonth = Annotated[list[Range], BeforeValidator(_ranges(_day, "day of month", _day_order))]
Years = Annotated[list[Range], BeforeValidator(_ranges(_year, "year"))]


class TimeRange(Strict):
    start_time: str
    end_time: str

    @field_validator("start_time", "end_time")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError(f"{value!r}: expected HH:MM between 00:00 and 24:00")
        return value

    def minutes(self) -> Range:
        def of(text: str) -> int:
            hours, minutes = text.split(":")
            return int(hours) * 60 + int(minutes)

        start, end = of(self.start_time), of(self.end_time)
        if start >= end:
            raise ValueError(f"start time {self.start_time} must be before end time {self.end_time}")
        return start, end


class TimeInterval(Strict):
    """One interval: every field it sets must hold."""

    times: list[TimeRange] = Field(default_factory=list)
    weekdays: Weekdays = Field(default_factory=list)
    days_of_month: DaysOfMonth = Field(default_factory=list)
    months: Months = Field(default_factory=list)
    years: Years = Field(default_factory=list)
    location: str = "UTC"

    @field_validator("times")
    @classmethod
    def _ordered(cls, value: list[TimeRange]) -> list[TimeRange]:
        for span in value:
            span.minutes()  # raises on start >= end
        return value

    @field_validator("location")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo("UTC" if value == "Local" else value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(ZoneInfo("UTC" if self.location == "Local" else self.location))
        minute = local.hour * 60 + local.minute
        if self.times and not any(s <= minute < e for s, e in (t.minutes() for t in self.times)):
            return False
        weekday = (local.weekday() + 1) % 7
        if self.weekdays and not any(a <= weekday <= b for a, b in self.weekdays):
            return False
        if self.days_of_month:
            days = calendar.monthrange(local.year, local.month)[1]

            def day(value: int) -> int:
                return value if value > 0 else days + value + 1

            if not any(day(a) <= local.day <= day(b) for a, b in self.days_of_month):
                return False
        if self.months and not any(a <= local.month <= b for a, b in self.months):
            return False
        return not self.years or any(a <= local.year <= b for a, b in self.years)


class NamedTimeInterval(Strict):
    name: str = Field(min_length=1)
    time_intervals: list[TimeInterval] = Field(default_factory=list)

    def contains(self, when: datetime) -> bool:
        return any(interval.contains(when) for interval in self.time_intervals)


def active(intervals: Sequence[NamedTimeInterval], when: datetime) -> bool:
    """Whether any of the named intervals holds at `when`."""
    return any(interval.contains(when) for interval in intervals)

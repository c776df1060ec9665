"""Alertmanager's time intervals: each field, ranges, negative days, zones, exclusive end times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.timeintervals import NamedTimeInterval, TimeInterval

MONDAY_0930_UTC = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)  # a Monday


def interval(**fields: Any) -> TimeInterval:
    return TimeInterval.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "when", "expected"),
    [
        ({}, MONDAY_0930_UTC, True),  # no field: always
        ({"times": [{"start_time": "09:00", "end_time": "17:00"}]}, MONDAY_0930_UTC, True),
        ({"times": [{"start_time": "09:00", "end_time": "09:30"}]}, MONDAY_0930_UTC, False),  # end exclusive
        (
            {"times": [{"start_time": "17:00", "end_time": "24:00"}]},
            datetime(2026, 1, 1, 23, 59, tzinfo=UTC),
            True,
        ),
        ({"weekdays": ["monday:friday"]}, MONDAY_0930_UTC, True),
        ({"weekdays": ["saturday", "sunday"]}, MONDAY_0930_UTC, False),
        ({"weekdays": ["Sunday"]}, datetime(2026, 11, 22, tzinfo=UTC), True),
        ({"days_of_month": ["-1"]}, datetime(2026, 2, 28, tzinfo=UTC), True),  # the last day of February
        ({"days_of_month": ["-1"]}, datetime(2028, 2, 28, tzinfo=UTC), False),  # a leap year
        ({"days_of_month": ["1:5", "-7:-1"]}, datetime(2026, 11, 24, tzinfo=UTC), True),
        ({"days_of_month": ["1:5"]}, datetime(2026, 11, 24, tzinfo=UTC), False),
        ({"months": ["january:march", "november"]}, MONDAY_0930_UTC, True),
        ({"months": ["1:3"]}, MONDAY_0930_UTC, False),
        ({"years": ["2020:2025"]}, MONDAY_0930_UTC, False),
        ({"years": ["2026"]}, MONDAY_0930_UTC, True),
        # 09:30 UTC is 18:30 in Tokyo: outside office hours there
        (
            {"times": [{"start_time": "09:00", "end_time": "17:00"}], "location": "Asia/Tokyo"},
            MONDAY_0930_UTC,
            False,
        ),
        ({"weekdays": ["tuesday"], "location": "Asia/Tokyo"}, datetime(2026, 11, 23, 20, tzinfo=UTC), True),
        (
            {"times": [{"start_time": "09:00", "end_time": "17:00"}], "weekdays": ["saturday"]},
            MONDAY_0930_UTC,
            False,  # every field must hold
        ),
    ],
)
def test_interval_contains(fields: dict[str, Any], when: datetime, expected: bool) -> None:
    assert interval(**fields).contains(when) is expected


def test_a_named_interval_holds_when_any_of_its_intervals_does() -> None:
    named = NamedTimeInterval.model_validate(
        {
            "name": "offhours",
            "time_intervals": [
                {"weekdays": ["saturday", "sunday"]},
                {"times": [{"start_time": "00:00", "end_time": "09:00"}]},
            ],
        }
    )
    assert not named.contains(MONDAY_0930_UTC)
    assert named.contains(datetime(2026, 11, 23, 8, 59, tzinfo=UTC))
    assert named.contains(datetime(2026, 11, 28, 12, tzinfo=UTC))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weekdays": ["funday"]}, "'funday' is not a valid weekday"),
        ({"weekdays": ["friday:monday"]}, "start weekday cannot be after the end"),
        ({"months": ["13"]}, "'13' is not a valid month"),
        ({"days_of_month": ["0"]}, "a day of month is 1..31 or -31..-1"),
        ({"days_of_month": ["-1:5"]}, "a negative start cannot precede a positive end"),
        ({"times": [{"start_time": "9:00", "end_time": "17:00"}]}, "expected HH:MM"),
        ({"times": [{"start_time": "18:00", "end_time": "17:00"}]}, "must be before end time"),
        ({"location": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_invalid_intervals_name_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        interval(**fields)

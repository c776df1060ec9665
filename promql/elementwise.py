"""Functions that map each sample value on its own: exponentials and logarithms, sign, degrees,
and the calendar functions (hour(), day_of_week(), ...), with Go's formulas where they differ from
libm's (Prometheus answers with Go's math package and time.Unix(...).UTC()). The trigonometric
functions stay refused: Go computes them with its own polynomials, not ported here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from promql import gomath
from promql.values import FloatArray, IntArray

# Go's constants 1/Ln2 and 1/Ln10, rounded once from the exact values as Go's constant arithmetic
# does (Python's 1/math.log(10) is one more rounding and may differ in the last bit).
_INV_LN2 = 1.4426950408889634
_INV_LN10 = 0.4342944819032518


def _log2(xs: FloatArray) -> FloatArray:
    """Go's math.Log2: exact for powers of two, else Log(frac)/Ln2 + exp (not libm's log2)."""
    frac, exp = np.frexp(xs)
    exact = frac == 0.5
    return np.where(exact, exp - 1.0, gomath.log(frac) * _INV_LN2 + exp)


def _sgn(xs: FloatArray) -> FloatArray:
    return np.where(xs < 0, -1.0, np.where(xs > 0, 1.0, xs))  # NaN and ±0 stay as they are


MATH: dict[str, Callable[[FloatArray], FloatArray]] = {
    "exp": np.exp,  # libm's; Go's may differ in the last bit (not ported: no case found yet)
    "sqrt": np.sqrt,  # correctly rounded in both
    "ln": gomath.log,
    "log2": _log2,
    "log10": lambda xs: gomath.log(xs) * _INV_LN10,  # Go's math.Log10, not libm's log10
    "sgn": _sgn,
    "deg": lambda xs: xs * 180 / np.pi,
    "rad": lambda xs: xs * np.pi / 180,
}


def apply_math(name: str, xs: FloatArray) -> FloatArray:
    with np.errstate(all="ignore"):  # Go: log(-1) is NaN, log(0) -Inf, exp(1000) +Inf, no errors
        return np.asarray(MATH[name](xs), dtype=np.float64)


_SECONDS_PER_DAY = 86_400
_DAYS_BEFORE_MONTH_ZERO = 719_468  # days from 0000-03-01 to 1970-01-01 (Hinnant's civil_from_days)
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _civil(days: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """(year, month, day) of days since 1970-01-01 in the proleptic Gregorian calendar, for any
    int64 day count: Howard Hinnant's civil_from_days, because Python's datetime stops at year 9999
    and Go's time does not."""
    z = days + _DAYS_BEFORE_MONTH_ZERO
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _leap(year: IntArray) -> np.ndarray:
    return (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))


def _day_of_year(year: IntArray, month: IntArray, day: IntArray) -> IntArray:
    before = np.cumsum(np.concatenate(([0], _MONTH_DAYS[:-1])))
    return before[month - 1] + day + ((month > 2) & _leap(year))


def _calendar(name: str, seconds: IntArray) -> IntArray:
    days, in_day = seconds // _SECONDS_PER_DAY, seconds % _SECONDS_PER_DAY
    if name == "hour":
        return in_day // 3600
    if name == "minute":
        return in_day % 3600 // 60
    if name == "day_of_week":
        return (days + 4) % 7  # 1970-01-01 was a Thursday; Sunday is 0, as Go's Weekday
    year, month, day = _civil(days)
    if name == "year":
        return year
    if name == "month":
        return month
    if name == "day_of_month":
        return day
    if name == "day_of_year":
        return _day_of_year(year, month, day)
    assert name == "days_in_month"
    return _MONTH_DAYS[month - 1] + ((month == 2) & _leap(year))


CALENDAR = frozenset(
    {"day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year"}
)


def apply_calendar(name: str, xs: FloatArray) -> FloatArray:
    """The calendar field of each value read as Unix seconds, truncated to whole seconds as Go's
    int64(v). A value that is no int64 (NaN, ±Inf, beyond ±2^63) gives NaN: Go converts it to an
    unspecified integer (amd64: the minimum), whose date talonflow does not imitate."""
    valid = np.isfinite(xs) & (np.abs(xs) < 2.0**63)
    seconds = np.trunc(np.where(valid, xs, 0.0)).astype(np.int64)
    fields = _calendar(name, seconds).astype(np.float64)
    return np.where(valid, fields, np.nan)

"""Functions of a range vector, as Prometheus 2.42 computes them.

Each takes one step's windows of every series of a selector (staleness markers already removed)
and returns the series that have a value, with the values; counter functions run on all series
at once, the others window by window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from promql.errors import EvalError
from promql.packed import PackedSeries
from promql.values import FloatArray, IntArray


@dataclass(frozen=True)
class Window:
    """One series' samples in [range_start, range_end] plus the range itself, for extrapolation."""

    timestamps: IntArray
    values: FloatArray
    range_start: int
    range_end: int
    range_ms: int


def _kahan_inc(inc: float, total: float, comp: float) -> tuple[float, float]:
    """One step of Kahan-Babuska-Neumaier summation, as Prometheus' kahanSumInc."""
    t = total + inc
    if math.isinf(t):
        return t, 0.0
    if abs(total) >= abs(inc):
        return t, comp + ((total - t) + inc)
    return t, comp + ((inc - t) + total)


def kahan_sum(values: FloatArray) -> float:
    total, comp = 0.0, 0.0
    for v in values.tolist():
        total, comp = _kahan_inc(v, total, comp)
    return total if math.isinf(total) else total + comp


def _extrapolated(w: Window, is_counter: bool, is_rate: bool) -> float:
    """Prometheus' extrapolatedRate for one window of at least two samples."""
    ts, vs = w.timestamps, w.values
    result = float(vs[-1] - vs[0])
    if is_counter:
        prev = vs[:-1]
        result += float(prev[vs[1:] < prev].sum())
    duration_to_start = (int(ts[0]) - w.range_start) / 1000
    duration_to_end = (w.range_end - int(ts[-1])) / 1000
    sampled = (int(ts[-1]) - int(ts[0])) / 1000
    average = sampled / (len(vs) - 1)
    if is_counter and result > 0 and vs[0] >= 0:
        duration_to_zero = sampled * (float(vs[0]) / result)
        duration_to_start = min(duration_to_start, duration_to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else average / 2
    interval += duration_to_end if duration_to_end < threshold else average / 2
    factor = interval / sampled
    if is_rate:
        factor /= w.range_ms / 1000
    return result * factor


def _avg(w: Window) -> float:
    """An incremental mean, so that large values do not overflow a sum (funcAvgOverTime)."""
    mean, comp, count = 0.0, 0.0, 0.0
    for v in w.values.tolist():
        count += 1
        if math.isinf(mean) and (
            (math.isinf(v) and (mean > 0) == (v > 0)) or (not math.isinf(v) and not math.isnan(v))
        ):
            continue
        mean, comp = _kahan_inc(v / count - mean / count, mean, comp)
    return mean if math.isinf(mean) else mean + comp


def _variance(w: Window) -> float:
    count, mean, c_mean, aux, c_aux = 0.0, 0.0, 0.0, 0.0, 0.0
    for v in w.values.tolist():
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = _kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = _kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def linear_regression(w: Window, intercept_ms: int) -> tuple[float, float]:
    """Prometheus' linearRegression (2.42): least squares with Kahan sums, x in seconds from
    `intercept_ms`; a constant series has slope 0 (NaN when the constant is infinite)."""
    ts, vs = w.timestamps.tolist(), w.values.tolist()
    n = float(len(vs))
    sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    for t, v in zip(ts, vs, strict=True):
        x = (t - intercept_ms) / 1e3
        sum_x, c_x = _kahan_inc(x, sum_x, c_x)
        sum_y, c_y = _kahan_inc(v, sum_y, c_y)
        sum_xy, c_xy = _kahan_inc(x * v, sum_xy, c_xy)
        sum_x2, c_x2 = _kahan_inc(x * x, sum_x2, c_x2)
    if all(v == vs[0] for v in vs[1:]):
        return (math.nan, math.nan) if math.isinf(vs[0]) else (0.0, vs[0])
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    with np.errstate(all="ignore"):  # Go float division: x/0 is ±Inf or NaN
        slope = float(np.float64(cov_xy) / np.float64(var_x))
    return slope, sum_y / n - slope * sum_x / n


def _deriv(w: Windows) -> Result:
    """The per-second slope of each window of at least two samples, x counted from its first."""
    idx = np.flatnonzero(w.hi - w.lo >= 2)
    slopes = [linear_regression(win, int(win.timestamps[0]))[0] for win in map(w.window, idx.tolist())]
    return idx, np.array(slopes, dtype=np.float64)


def predict_linear(w: Windows, t_ms: int, seconds: float) -> Result:
    """The regression line of each window of at least two samples, read `seconds` after the
    evaluation time t_ms (the step's time, not the offset-shifted window end, as Prometheus)."""
    idx = np.flatnonzero(w.hi - w.lo >= 2)
    lines = [linear_regression(win, t_ms) for win in map(w.window, idx.tolist())]
    return idx, np.array([slope * seconds + intercept for slope, intercept in lines], dtype=np.float64)


def _go_f(x: float) -> str:
    """Go's %f: Python's, but NaN and ±Inf spelled as Go spells them."""
    return "NaN" if math.isnan(x) else ("+Inf" if x > 0 else "-Inf") if math.isinf(x) else f"{x:f}"


def holt_winters(w: Windows, sf: float, tf: float) -> Result:
    """Double exponential smoothing of each window of at least two samples (funcHoltWinters, 2.42);
    bad factors are an error only when some window has a sample, as Prometheus calls it per series."""
    if len(w.nonempty()):
        if not 0 < sf < 1:
            raise EvalError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {_go_f(sf)}")
        if not 0 < tf < 1:
            raise EvalError(f"invalid trend factor. Expected: 0 < tf < 1, got: {_go_f(tf)}")
    idx = np.flatnonzero(w.hi - w.lo >= 2)
    out = []
    for i in idx.tolist():
        vs = w.window(i).values.tolist()
        s0, s1, b = 0.0, vs[0], vs[1] - vs[0]
        for k in range(1, len(vs)):
            if k > 1:  # calcTrendValue: the first step keeps the initial trend
                b = tf * (s1 - s0) + (1 - tf) * b
            s0, s1 = s1, sf * vs[k] + (1 - sf) * (s1 + b)
        out.append(s1)
    return idx, np.array(out, dtype=np.float64)


def extreme(xs: list[float], better: Callable[[float, float], bool]) -> float:
    """min/max as Prometheus: a NaN so far is replaced by any later value."""
    out = xs[0]
    for v in xs[1:]:
        if better(out, v) or math.isnan(out):
            out = v
    return out


def _greater(cur: float, v: float) -> bool:
    return cur > v


def _less(cur: float, v: float) -> bool:
    return cur < v


def quantile(q: float, values: list[float]) -> float:
    """Prometheus' quantile over plain values (quantile_over_time and the quantile aggregation)."""
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=lambda v: (not math.isnan(v), v))  # NaN sorts first, as in Go's Less
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


@dataclass(frozen=True)
class Windows:
    """One step of a range selector: for series i of `packed`, its samples lo[i]:hi[i]."""

    packed: PackedSeries
    lo: IntArray
    hi: IntArray
    start: int | IntArray  # an array: one window per (step, series) pair, each with its own range
    end: int | IntArray
    range_ms: int

    def window(self, i: int) -> Window:
        lo, hi = int(self.lo[i]), int(self.hi[i])
        start, end = int(_of(self.start, i)), int(_of(self.end, i))
        return Window(self.packed.ts[lo:hi], self.packed.vs[lo:hi], start, end, self.range_ms)

    def nonempty(self) -> IntArray:
        return np.flatnonzero(self.hi > self.lo)


def _of(bound: int | IntArray, idx: IntArray | int) -> int | IntArray:
    """A window bound of the windows idx: the same for all, or each window's own."""
    return bound if isinstance(bound, int) else bound[idx]


Result = tuple[IntArray, FloatArray]  # the series (indexes into packed.labels) with a value, and the values


def _extrapolated_all(w: Windows, is_counter: bool, is_rate: bool) -> Result:
    """extrapolatedRate for every series at once; a window with a counter reset is redone one by one
    so that the resets add up in Prometheus' order, to the last bit."""
    p = w.packed
    idx = np.flatnonzero(w.hi - w.lo >= 2)
    lo, hi = w.lo[idx], w.hi[idx]
    first_v, last_v = p.vs[lo], p.vs[hi - 1]
    first_t, last_t = p.ts[lo], p.ts[hi - 1]
    result = last_v - first_v
    duration_to_start = (first_t - _of(w.start, idx)) / 1000
    duration_to_end = (_of(w.end, idx) - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average = sampled / (hi - lo - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if is_counter:
            to_zero = sampled * (first_v / result)
            use_zero = (result > 0) & (first_v >= 0) & (to_zero < duration_to_start)
            duration_to_start = np.where(use_zero, to_zero, duration_to_start)
        threshold = average * 1.1
        interval = (
            sampled
            + np.where(duration_to_start < threshold, duration_to_start, average / 2)
            + np.where(duration_to_end < threshold, duration_to_end, average / 2)
        )
        factor = interval / sampled
        if is_rate:
            factor = factor / (w.range_ms / 1000)
        values = result * factor
    if is_counter:
        for k in np.flatnonzero(p.reset_prefix[hi] - p.reset_prefix[lo + 1] > 0):
            values[k] = _extrapolated(w.window(int(idx[k])), True, is_rate)
    return idx, values


def _instant_all(w: Windows, is_rate: bool) -> Result:
    """irate / idelta: the last two samples of each window."""
    p = w.packed
    idx = np.flatnonzero(w.hi - w.lo >= 2)
    hi = w.hi[idx]
    last, prev = p.vs[hi - 1], p.vs[hi - 2]
    interval = p.ts[hi - 1] - p.ts[hi - 2]
    result = np.where(last < prev, last, last - prev) if is_rate else last - prev
    if is_rate:
        result = result / (interval / 1000)
    keep = interval != 0
    return idx[keep], result[keep]


def _counted(prefix: IntArray, w: Windows) -> Result:
    """resets / changes: flagged samples after each window's first, from a prefix count."""
    idx = w.nonempty()
    return idx, (prefix[w.hi[idx]] - prefix[w.lo[idx] + 1]).astype(np.float64)


def _each(fn: Callable[[Window], float]) -> Callable[[Windows], Result]:
    """A function that needs each window's values in order (Kahan sums, quantiles): one by one."""

    def run(w: Windows) -> Result:
        idx = w.nonempty()
        return idx, np.array([fn(w.window(int(i))) for i in idx], dtype=np.float64)

    return run


def _last(w: Windows) -> Result:
    idx = w.nonempty()
    return idx, w.packed.vs[w.hi[idx] - 1]


def _count(w: Windows) -> Result:
    idx = w.nonempty()
    return idx, (w.hi[idx] - w.lo[idx]).astype(np.float64)


RANGE_FUNCTIONS: dict[str, Callable[[Windows], Result]] = {
    "rate": lambda w: _extrapolated_all(w, True, True),
    "increase": lambda w: _extrapolated_all(w, True, False),
    "delta": lambda w: _extrapolated_all(w, False, False),
    "irate": lambda w: _instant_all(w, True),
    "idelta": lambda w: _instant_all(w, False),
    "resets": lambda w: _counted(w.packed.reset_prefix, w),
    "changes": lambda w: _counted(w.packed.change_prefix, w),
    "avg_over_time": _each(_avg),
    "min_over_time": _each(lambda w: extreme(w.values.tolist(), _greater)),
    "max_over_time": _each(lambda w: extreme(w.values.tolist(), _less)),
    "sum_over_time": _each(lambda w: kahan_sum(w.values)),
    "count_over_time": _count,
    "last_over_time": _last,
    "present_over_time": lambda w: (w.nonempty(), np.ones(len(w.nonempty()))),
    "deriv": _deriv,
    "stdvar_over_time": _each(_variance),
    "stddev_over_time": _each(lambda w: math.sqrt(_variance(w))),
}

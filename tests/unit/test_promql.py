"""Unit tests of the PromQL parser and evaluator (pure: in-memory storage, fixed times)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promql import (
    STALE_NAN,
    EvalError,
    Matrix,
    MemoryStorage,
    ParseError,
    Scalar,
    Unsupported,
    Vector,
    format_float,
    instant_query,
    labels_of,
    parse,
    range_query,
)
from promql.packed import PackedSeries
from promql.values import Series

MIN = 60_000


def _store(series: dict[str, list[float | None]], step_ms: int = MIN) -> MemoryStorage:
    """Series written as `name{a="b"}` -> values every step from t=0 (None = no sample)."""
    store = MemoryStorage()
    for text, values in series.items():
        name, _, rest = text.partition("{")
        pairs = dict(p.split("=", 1) for p in rest.rstrip("}").split(",") if p)
        labels = labels_of({"__name__": name, **{k: v.strip('"') for k, v in pairs.items()}})
        for i, v in enumerate(values):
            if v is not None:
                store.append(labels, i * step_ms, v)
    return store


def _by_labels(vec: object) -> dict[str, float]:
    assert isinstance(vec, Vector)
    return {
        ",".join(f"{k}={v}" for k, v in ls): float(v) for ls, v in zip(vec.labels, vec.values, strict=True)
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("foo bar", '1:5: parse error: unexpected "bar" after a complete expression'),
        ("rate(x[5m]", 'unexpected end of input in function call, expected ","'),
        ("rate(x)", 'expected type range vector in call to function "rate", got instant vector'),
        ("1 > 2", "comparisons between scalars must use BOOL modifier"),
        ("cos(x)", "function cos() is not supported by talonflow"),
        ("rate(x[5m:1m] @ 100 @ 200)", "@ <timestamp> may not be set multiple times"),
        ("rate(x[5m][10m:1m])", "subquery is only allowed on instant vector, got range vector"),
        ("rate(x[0s])", "1:8: parse error: duration must be greater than 0"),
        ("x offset 0s", "1:10: parse error: duration must be greater than 0"),
        ("max_over_time(x[5m:0s])", "1:20: parse error: duration must be greater than 0"),
        ('{job=""}', "vector selector must contain at least one non-empty matcher"),
        ("x and 1", 'set operator "and" not allowed in binary scalar expression'),
        ("nosuch(x)", 'unknown function with name "nosuch"'),
        ('x{a=~"("}', "invalid regular expression"),
    ],
)
def test_parse_errors_name_the_construct(query: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(query)
    assert message in str(err.value)


def test_precedence_follows_prometheus() -> None:
    store = _store({"x": [2.0]})
    assert isinstance(v := instant_query("-2 ^ 2", 0, store), Scalar) and v.value == -4
    assert isinstance(v := instant_query("2 ^ 3 ^ 2", 0, store), Scalar) and v.value == 512
    assert isinstance(v := instant_query("1 + 2 * 3 > bool 6", 0, store), Scalar) and v.value == 1


def test_rate_extrapolates_and_handles_counter_resets() -> None:
    # 0,10,20,5(reset),15 at 1m spacing: increase = 15 + 20 = 35 over 4m of samples in a 5m window.
    store = _store({"c": [0, 10, 20, 5, 15]})
    got = _by_labels(instant_query("increase(c[5m])", 4 * MIN, store))
    # first sample is at the range start, and the zero point caps extrapolation to the start: 35 * 4/4
    assert got == {"": pytest.approx(35.0)}
    assert _by_labels(instant_query("resets(c[5m])", 4 * MIN, store)) == {"": 1.0}
    assert _by_labels(instant_query("irate(c[5m])", 4 * MIN, store)) == {"": pytest.approx(10 / 60)}
    assert _by_labels(instant_query("idelta(c[5m])", 4 * MIN, store)) == {"": 10.0}


def test_rate_extrapolates_to_window_edges() -> None:
    store = _store({"c": [None, 100, 110, 120, None]}, step_ms=MIN)
    # samples at 1m..3m in the window [0, 4m]: sampled 2m, both gaps (1m) < 1.1 * average (1m)...
    got = _by_labels(instant_query("increase(c[4m])", 4 * MIN, store))
    assert got[""] == pytest.approx(20 * (120 + 60 + 60) / 120)


def test_lookback_and_staleness() -> None:
    store = _store({"g": [1.0, None, None, None, None, None, None]})
    assert _by_labels(instant_query("g", 5 * MIN, store)) == {"__name__=g": 1.0}  # closed 5m lookback
    assert _by_labels(instant_query("g", 5 * MIN + 1, store)) == {}
    store.append(labels_of({"__name__": "g"}), MIN, STALE_NAN)
    assert _by_labels(instant_query("g", 2 * MIN, store)) == {}
    assert _by_labels(instant_query("count_over_time(g[5m])", 2 * MIN, store)) == {"": 1.0}


def test_vector_matching_group_left_and_set_operators() -> None:
    store = _store(
        {
            'req{job="a",path="/x"}': [4],
            'req{job="a",path="/y"}': [6],
            'info{job="a",team="t1"}': [1],
            'up{job="a"}': [1],
            'up{job="b"}': [0],
        }
    )
    joined = _by_labels(instant_query("req * on(job) group_left(team) info", 0, store))
    assert joined == {"job=a,path=/x,team=t1": 4.0, "job=a,path=/y,team=t1": 6.0}
    assert _by_labels(instant_query("up == 0 or up > 5", 0, store)) == {"__name__=up,job=b": 0.0}
    assert _by_labels(instant_query("up unless on(job) req", 0, store)) == {"__name__=up,job=b": 0.0}
    with pytest.raises(EvalError, match="many-to-many matching not allowed"):
        instant_query("info * on(job) req", 0, store)


def test_aggregations() -> None:
    store = _store({'m{i="1",j="a"}': [1], 'm{i="2",j="a"}': [3], 'm{i="3",j="b"}': [8]})
    assert _by_labels(instant_query("sum by (j) (m)", 0, store)) == {"j=a": 4.0, "j=b": 8.0}
    assert _by_labels(instant_query("avg without (i) (m)", 0, store)) == {"j=a": 2.0, "j=b": 8.0}
    assert _by_labels(instant_query("topk(1, m)", 0, store)) == {"__name__=m,i=3,j=b": 8.0}
    assert _by_labels(instant_query("quantile(0.5, m)", 0, store)) == {"": 3.0}
    assert _by_labels(instant_query("count_values('v', m)", 0, store)) == {"v=1": 1.0, "v=3": 1.0, "v=8": 1.0}
    assert _by_labels(instant_query("stddev(m)", 0, store))[""] == pytest.approx(np.std([1, 3, 8]))


def test_histogram_quantile_classic_buckets() -> None:
    store = _store({'h_bucket{le="0.1"}': [50], 'h_bucket{le="1"}': [90], 'h_bucket{le="+Inf"}': [100]})
    got = _by_labels(instant_query("histogram_quantile(0.9, h_bucket)", 0, store))
    assert got == {"": pytest.approx(1.0)}
    got = _by_labels(instant_query("histogram_quantile(0.5, h_bucket)", 0, store))
    assert got == {"": pytest.approx(0.1)}
    assert math.isnan(
        _by_labels(instant_query('histogram_quantile(0.5, h_bucket{le!="+Inf"})', 0, store))[""]
    )


def test_label_functions_absent_and_range_query() -> None:
    store = _store({'up{instance="host:9100"}': [1, 1, 1]})
    got = _by_labels(instant_query('label_replace(up, "host", "$1", "instance", "(.*):.*")', 0, store))
    assert got == {"__name__=up,host=host,instance=host:9100": 1.0}
    got = _by_labels(instant_query('label_join(up, "x", "-", "instance", "instance")', 0, store))
    assert got == {"__name__=up,instance=host:9100,x=host:9100-host:9100": 1.0}
    assert _by_labels(instant_query('absent(up{job="j"})', 0, store)) == {"job=j": 1.0}
    assert _by_labels(instant_query("absent(up)", 0, store)) == {}
    matrix = range_query("timestamp(up)", 0, 2 * MIN, MIN, store)
    assert matrix.series[0].values.tolist() == [0.0, 60.0, 120.0]


def test_format_float_matches_go() -> None:
    assert [format_float(v) for v in (1.0, 0.1, 1e21, -2.5e-7, math.inf, math.nan)] == [
        "1",
        "0.1",
        "1000000000000000000000",
        "-0.00000025",
        "+Inf",
        "NaN",
    ]


def test_packed_windows_never_reach_into_a_neighbouring_series() -> None:
    def series(name: str, ts: list[int]) -> Series:
        return Series(labels_of({"__name__": name}), np.array(ts, dtype=np.int64), np.ones(len(ts)))

    packed = PackedSeries.pack([series("a", [0, 10, 20]), series("b", [5, 15]), series("c", [20])])
    assert packed.first_from(-100).tolist() == [0, 3, 5]  # before every sample: each series' start
    assert packed.end_at(-100).tolist() == [0, 3, 5]  # nothing at or before: empty windows
    assert packed.first_from(12).tolist() == [2, 4, 5]
    assert packed.end_at(15).tolist() == [2, 5, 5]
    assert packed.first_from(100).tolist() == [3, 5, 6]  # after every sample: each series' end
    assert packed.end_at(100).tolist() == [3, 5, 6]


def test_packed_without_stale_keeps_each_series_bounds() -> None:
    a = Series(labels_of({"__name__": "a"}), np.array([0, 10, 20]), np.array([1.0, STALE_NAN, 3.0]))
    b = Series(labels_of({"__name__": "b"}), np.array([5]), np.array([STALE_NAN]))
    c = Series(labels_of({"__name__": "c"}), np.array([7]), np.array([4.0]))
    packed = PackedSeries.pack([a, b, c]).without_stale()
    assert packed.bounds.tolist() == [0, 2, 2, 3]
    assert packed.vs.tolist() == [1.0, 3.0, 4.0]
    assert packed.end_at(100).tolist() == [2, 2, 3]


def test_refused_constructs_are_unsupported_not_wrong() -> None:
    """The API answers these 501 (not implemented) rather than 400: valid PromQL, not evaluated here."""
    with pytest.raises(Unsupported):
        parse("sin(x)")
    with pytest.raises(ParseError) as err:
        parse("nosuch(x)")
    assert not isinstance(err.value, Unsupported)


def test_math_functions_use_gos_formulas() -> None:
    """Prometheus answers with Go's math: Go's Log(3) and Log10(3) are one bit off glibc's."""
    store = _store({'x{i="3"}': [3.0], 'x{i="8"}': [8.0], 'x{i="neg"}': [-1.0], 'x{i="zero"}': [0.0]})
    assert _by_labels(instant_query("log10(x)", 0, store))["i=3"] == 0.4771212547196624
    assert math.log10(3) != 0.4771212547196624 and math.log(3) != 1.0986122886681096
    assert _by_labels(instant_query("ln(x)", 0, store))["i=3"] == 1.0986122886681096
    log2 = _by_labels(instant_query("log2(x)", 0, store))
    assert log2["i=8"] == 3.0 and log2["i=3"] == 1.5849625007211563 and math.isnan(log2["i=neg"])
    assert log2["i=zero"] == -math.inf
    assert _by_labels(instant_query("sgn(x)", 0, store)) == {"i=3": 1, "i=8": 1, "i=neg": -1, "i=zero": 0}
    assert _by_labels(instant_query("deg(x)", 0, store))["i=3"] == 171.88733853924697
    assert _by_labels(instant_query("exp(x)", 0, store))["i=zero"] == 1.0
    assert isinstance(v := instant_query("pi()", 0, store), Scalar) and v.value == math.pi


def test_calendar_functions_read_values_as_unix_seconds() -> None:
    store = _store(
        {
            't{k="leap"}': [951_782_400.0],
            't{k="before"}': [-1.5],
            't{k="far"}': [1e13],
            't{k="nan"}': [math.nan],
        }
    )
    # 2000-02-29 00:00:00; -1.5 truncates to -1 s: 1969-12-31 23:59:59, a Wednesday; 1e13 s is in year 318857
    assert _by_labels(instant_query("days_in_month(t)", 0, store))["k=leap"] == 29
    assert _by_labels(instant_query("day_of_year(t)", 0, store))["k=leap"] == 60
    week = _by_labels(instant_query("day_of_week(t)", 0, store))
    assert week["k=before"] == 3 and math.isnan(week["k=nan"])
    assert _by_labels(instant_query("hour(t)", 0, store))["k=before"] == 23
    assert _by_labels(instant_query("year(t)", 0, store))["k=far"] == 318_857
    assert _by_labels(instant_query("minute()", 90 * MIN + 999, store)) == {"": 30.0}


def test_deriv_and_predict_linear() -> None:
    store = _store({"lin": [float(10 + 2 * i) for i in range(6)], "flat": [7.0] * 6}, step_ms=15_000)
    assert _by_labels(instant_query("deriv(lin[5m])", 75_000, store)) == {"": pytest.approx(2 / 15)}
    got = _by_labels(instant_query("predict_linear(lin[5m], 60)", 75_000, store))
    assert got == {"": pytest.approx(20 + 8)}  # the line at the evaluation time (20) plus 60 s of slope
    assert _by_labels(instant_query("deriv(flat[5m])", 75_000, store)) == {"": 0.0}
    assert _by_labels(instant_query("predict_linear(flat[5m], 600)", 75_000, store)) == {"": 7.0}
    assert _by_labels(instant_query("deriv(lin[10s])", 75_000, store)) == {}  # one sample: no slope


def test_subqueries_evaluate_on_a_step_aligned_grid() -> None:
    store = _store({"c": [float(i * 60) for i in range(11)]})
    # c[2m:1m] at 5m30s: inner steps at 4m and 5m (multiples of the step after 3m30s), not 3m30s..5m30s
    got = instant_query("c[2m:1m]", 5 * MIN + 30_000, store)
    assert isinstance(got, Matrix) and got.series[0].timestamps.tolist() == [4 * MIN, 5 * MIN]
    assert got.series[0].values.tolist() == [240.0, 300.0]
    offset = _by_labels(instant_query("sum_over_time(c[2m:1m] offset 3m)", 6 * MIN, store))
    assert offset == {"": 60.0 + 120.0 + 180.0}  # closed window [1m, 3m]: three inner steps
    ranged = range_query("max_over_time(rate(c[2m])[3m:30s])", 4 * MIN, 6 * MIN, MIN, store)
    assert [s.values.tolist() for s in ranged.series] == [[1.0, 1.0, 1.0]]
    assert _by_labels(instant_query("count_over_time(c[5m:])", 5 * MIN, store)) == {"": 6.0}  # 1m default


def test_holt_winters_refuses_bad_factors_only_when_a_window_has_samples() -> None:
    store = _store({"g": [1.0, 3.0, 2.0, 6.0]})
    assert _by_labels(instant_query("holt_winters(g[1m], 0.5, 0.5)", 3 * MIN, store)) == {"": 6.0}  # 2, 6
    with pytest.raises(EvalError, match=r"invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"):
        instant_query("holt_winters(g[5m], 1, 0.5)", 3 * MIN, store)
    with pytest.raises(EvalError, match=r"invalid trend factor. Expected: 0 < tf < 1, got: NaN"):
        instant_query("holt_winters(g[5m], 0.5, NaN)", 3 * MIN, store)
    assert _by_labels(instant_query("holt_winters(nothing[5m], 2, 2)", 3 * MIN, store)) == {}


def test_sort_orders_by_value_with_nan_last_and_keeps_names() -> None:
    store = _store({'m{i="a"}': [3.0], 'm{i="b"}': [math.nan], 'm{i="c"}': [-1.0], 'm{i="d"}': [7.0]})
    up = instant_query("sort(m)", 0, store)
    down = instant_query("sort_desc(m)", 0, store)
    assert isinstance(up, Vector) and isinstance(down, Vector)
    assert [dict(ls)["i"] for ls in up.labels] == ["c", "a", "d", "b"]
    assert [dict(ls)["i"] for ls in down.labels] == ["d", "a", "c", "b"]
    assert all(dict(ls)["__name__"] == "m" for ls in down.labels)


def test_at_start_and_end_inside_a_subquery_are_the_querys() -> None:
    store = _store({"c": [float(i) for i in range(11)]})
    # the subquery steps from 3m to 5m, but `@ end()` is the query's end (10m): c = 10 at every step
    got = _by_labels(instant_query("sum_over_time((c @ end())[2m:1m])", 5 * MIN, store))
    assert got == {"": 15.0}  # at 5m the query's end is 5m: 5 + 5 + 5
    ranged = range_query("sum_over_time((c @ end())[2m:1m])", 5 * MIN, 10 * MIN, 5 * MIN, store)
    assert [s.values.tolist() for s in ranged.series] == [[30.0, 30.0]]


def test_at_pins_a_subquery_window() -> None:
    store = _store({"c": [float(i) for i in range(11)]})
    # every step reads the window ending at 4m - 1m = 3m: inner steps 1m, 2m, 3m
    ranged = range_query("sum_over_time(c[2m:1m] @ 240 offset 1m)", 5 * MIN, 10 * MIN, 5 * MIN, store)
    assert [s.values.tolist() for s in ranged.series] == [[6.0, 6.0]]
    ends = range_query("max_over_time(c[1m:1m] @ end())", 2 * MIN, 6 * MIN, 2 * MIN, store)
    assert [s.values.tolist() for s in ends.series] == [[6.0, 6.0, 6.0]]

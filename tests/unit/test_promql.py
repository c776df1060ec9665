"""Unit tests of the PromQL parser and evaluator (pure: in-memory storage, fixed times)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promql import (
    STALE_NAN,
    EvalError,
    MemoryStorage,
    ParseError,
    Scalar,
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
        ("predict_linear(x[5m], 60)", "function predict_linear() is not supported by talonflow"),
        ("rate(x[5m:1m])", "subqueries are not supported by talonflow"),
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

"""range_query evaluates whole blocks of steps at once; on random series with gaps, staleness
markers, NaN samples and counter resets it must give exactly what evaluating each step alone
(the engine's per-step path, eval()) gives."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from promql import STALE_NAN, EvalError, Matrix, MemoryStorage, engine, labels_of, parse, range_query
from promql.engine import DEFAULT_LOOKBACK_MS, DEFAULT_SUBQUERY_STEP_MS, _Evaluator
from promql.values import Labels, Vector

MIN = 60_000
START, END, STEP = 5 * MIN, 60 * MIN, 30_000

EXPRESSIONS = (
    "m",
    "m offset 2m",
    "m @ 900",
    "m @ start()",
    "(m @ end())",
    "sum by (job) (m)",
    "sum(m)",
    "avg without (instance) (m)",
    "min(m)",
    "max by (job) (m)",
    "count by (job) (m)",
    "group(m)",
    "-m",
    "m * 2",
    "2 - m",
    "m > 3",
    "3 < bool m",
    "1 + 2 * 3",
    "time()",
    "m + on (job, instance) c",
    "m and c",
    "topk(2, m)",
    "quantile by (job) (0.5, m)",
    "stddev(m)",
    'count_values("v", m > 8)',
    "sum by (job) (rate(c[3m]))",
    "abs(m)",
    'label_replace(m, "x", "$1", "job", "(.*)")',
    "timestamp(m)",
    "scalar(sum(m)) * m",
    "max_over_time(m[4m:1m])",
    "rate(c[3m])",
    "increase(c[5m] offset 1m)",
    "rate(c[3m] @ 1200)",
    "irate(c[2m])",
    "delta(m[3m])",
    "idelta(m[3m])",
    "resets(c[10m])",
    "changes(m[5m])",
    "count_over_time(m[2m])",
    "last_over_time(m[3m])",
    "present_over_time(m[1m])",
    "avg by (job) (increase(c[4m]))",
)


def _storage(seed: int) -> MemoryStorage:
    """A gauge m and a counter c per (job, instance): random gaps, staleness markers, NaNs, resets."""
    rnd = random.Random(seed)
    store = MemoryStorage()
    for job in ("a", "b"):
        for instance in ("1", "2", "3"):
            for name in ("m", "c"):
                labels = labels_of({"__name__": name, "job": job, "instance": instance})
                t, total = rnd.randrange(0, 10 * MIN), 0.0
                while t < END:
                    roll = rnd.random()
                    if roll < 0.05:
                        value = STALE_NAN
                    elif roll < 0.08 and name == "m":
                        value = math.nan
                    elif name == "m":
                        value = rnd.choice([rnd.uniform(-10, 10), float(rnd.randrange(-2, 10))])
                    else:
                        total = 0.0 if roll > 0.95 else total + rnd.uniform(0, 5)
                        value = total
                    store.append(labels, t, value)
                    t += rnd.choice([15_000, 15_000, 30_000, 7 * MIN])
    return store


def _per_step(expr: str, store: MemoryStorage) -> dict[Labels, list[tuple[int, float]]]:
    node = parse(expr)
    evaluator = _Evaluator(store, node, START, END, DEFAULT_LOOKBACK_MS, DEFAULT_SUBQUERY_STEP_MS)
    out: dict[Labels, list[tuple[int, float]]] = {}
    for t in range(START, END + 1, STEP):
        value = evaluator.eval(node, t)
        if isinstance(value, float):
            value = Vector(t, [()], np.array([value]))
        assert isinstance(value, Vector)
        for ls, v in zip(value.labels, value.values.tolist(), strict=True):
            out.setdefault(ls, []).append((t, v))
    return out


def _by_labels(matrix: Matrix) -> dict[Labels, list[tuple[int, float]]]:
    return {s.labels: list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True)) for s in matrix.series}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_all_steps_at_once_equal_each_step_alone(expr: str, seed: int) -> None:
    _compare(expr, _storage(seed))


@pytest.mark.parametrize("expr", ["sum by (job) (m)", "-m", "rate(c[3m])", "topk(1, m)", "time()"])
def test_chunks_of_steps_join_up(expr: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps are evaluated in chunks; a series split across chunks comes out whole."""
    monkeypatch.setattr(engine, "CHUNK_STEPS", 7)
    _compare(expr, _storage(1))


def _compare(expr: str, store: MemoryStorage) -> None:
    ours = range_query(expr, START, END, STEP, store)
    assert [s.labels for s in ours.series] == sorted(s.labels for s in ours.series)
    expected = _per_step(expr, store)
    got = _by_labels(ours)
    assert got.keys() == expected.keys()
    for labels, points in expected.items():
        want_t, want_v = zip(*points, strict=True)
        have_t, have_v = zip(*got[labels], strict=True)
        assert have_t == want_t, labels
        np.testing.assert_array_equal(np.array(have_v), np.array(want_v), err_msg=str(labels))


def test_the_data_exercise_every_case() -> None:
    """The random series do hold what the comparison is about (else it proves little)."""
    store = _storage(0)
    values = np.concatenate([b.as_arrays()[1] for b in store.series.values()])
    bits = values.view(np.uint64)
    assert (bits == np.array([STALE_NAN]).view(np.uint64)[0]).any()
    assert (np.isnan(values) & (bits != np.array([STALE_NAN]).view(np.uint64)[0])).any()
    series = range_query("m", START, END, STEP, store).series
    assert any(len(s.timestamps) < len(range(START, END + 1, STEP)) for s in series)  # gaps


def test_names_dropped_into_one_series_are_refused_only_when_they_meet() -> None:
    """`-x` over two metrics that differ only by name: one series where they take turns, an
    error where both have a value at one step, as Prometheus refuses such a vector."""
    store = MemoryStorage()
    store.append(labels_of({"__name__": "x", "job": "a"}), 0, 1.0)
    store.append(labels_of({"__name__": "y", "job": "a"}), 10 * MIN, 2.0)
    merged = range_query('-{__name__=~"x|y"}', 0, 15 * MIN, 5 * MIN, store)
    assert [(s.labels, s.timestamps.tolist(), s.values.tolist()) for s in merged.series] == [
        ((("job", "a"),), [0, 5 * MIN, 10 * MIN, 15 * MIN], [-1.0, -1.0, -2.0, -2.0])
    ]
    with pytest.raises(EvalError, match="same labelset"):
        range_query('-{__name__=~"x|y"}', 0, 15 * MIN, 5 * MIN, _both_at_once())


def _both_at_once() -> MemoryStorage:
    store = MemoryStorage()
    store.append(labels_of({"__name__": "x", "job": "a"}), 0, 1.0)
    store.append(labels_of({"__name__": "y", "job": "a"}), 0, 2.0)
    return store

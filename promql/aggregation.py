"""Aggregation operators (sum, avg, topk, quantile...) with by/without, as Prometheus 2.42 groups them."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from promql.errors import EvalError
from promql.range_functions import extreme, quantile
from promql.values import LABEL_NAME, Labels, Vector, format_float


@lru_cache(maxsize=1 << 16)  # a range query asks for the same series' groups at every step
def group_labels(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    if without:
        return tuple(kv for kv in labels if kv[0] not in grouping and kv[0] != "__name__")
    return tuple(kv for kv in labels if kv[0] in grouping)


def aggregate(
    op: str, vec: Vector, grouping: tuple[str, ...], without: bool, param: float | str | None
) -> Vector:
    """One step of an aggregation; groups come out in order of first appearance, as in Prometheus."""
    labels, values = vec.labels, vec.values.tolist()
    if op == "count_values":
        assert isinstance(param, str)
        if not LABEL_NAME.fullmatch(param):
            raise EvalError(f"invalid label name {param!r}")
        labels = [
            tuple(sorted({**dict(ls), param: format_float(v)}.items()))
            for ls, v in zip(labels, values, strict=True)
        ]
        if not without:
            grouping = (*grouping, param)
    groups: dict[Labels, list[int]] = {}
    for i, ls in enumerate(labels):
        groups.setdefault(group_labels(ls, grouping, without), []).append(i)
    if op in ("topk", "bottomk"):
        assert isinstance(param, float)
        return _top(op, vec, groups, param)
    out_labels, out_values = list(groups), []
    for members in groups.values():
        out_values.append(_reduce(op, [values[i] for i in members], param))
    return Vector(vec.t, out_labels, np.asarray(out_values, dtype=np.float64))


def _reduce(op: str, xs: list[float], param: float | str | None) -> float:
    if op == "sum":
        return float(sum(xs[1:], xs[0])) if len(xs) > 1 else xs[0]
    if op == "avg":
        return _mean(xs)
    if op in ("count", "count_values"):
        return float(len(xs))
    if op == "group":
        return 1.0
    if op in ("min", "max"):
        return extreme(xs, (lambda cur, v: cur > v) if op == "min" else (lambda cur, v: cur < v))
    if op in ("stddev", "stdvar"):
        count, mean, value = 1.0, xs[0], 0.0
        for v in xs[1:]:
            count += 1
            delta = v - mean
            mean += delta / count
            value += delta * (v - mean)
        return math.sqrt(value / count) if op == "stddev" else value / count
    assert op == "quantile" and isinstance(param, float)
    return quantile(param, xs)


def _mean(xs: list[float]) -> float:
    mean, count = xs[0], 1.0
    for v in xs[1:]:
        count += 1
        if math.isinf(mean) and (
            (math.isinf(v) and (mean > 0) == (v > 0)) or (not math.isinf(v) and not math.isnan(v))
        ):
            continue
        mean += v / count - mean / count
    return mean


def _top(op: str, vec: Vector, groups: dict[Labels, list[int]], param: float) -> Vector:
    """topk/bottomk keep the input series' labels; NaN ranks last in both, as in Prometheus' heaps."""
    if not -(2**63) <= param < 2**63:
        raise EvalError(f"Scalar value {param} overflows int64")
    k = int(param)
    out_labels: list[Labels] = []
    out_values: list[float] = []
    if k < 1:
        return Vector(vec.t, [], np.empty(0))
    sign = -1.0 if op == "topk" else 1.0
    for members in groups.values():
        ranked = sorted(members, key=lambda i: (math.isnan(vec.values[i]), sign * vec.values[i]))[:k]
        out_labels.extend(vec.labels[i] for i in ranked)
        out_values.extend(float(vec.values[i]) for i in ranked)
    return Vector(vec.t, out_labels, np.asarray(out_values, dtype=np.float64))

"""Binary operators between scalars and instant vectors, with Prometheus' vector matching."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from promql.ast import VectorMatching
from promql.errors import EvalError
from promql.gomath import atan2
from promql.values import Labels, Vector, format_labels

ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {  # numpy ufuncs: on arrays and on np.float64
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,  # Go's math.Mod: the result takes the sign of the dividend
    "^": np.power,
    "atan2": atan2,
}
DROPS_NAME = frozenset({"+", "-", "*", "/", "%", "^"})  # not atan2: Prometheus 2.42 keeps the name there
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def scalar_op(op: str, lhs: float, rhs: float) -> float:
    """scalar OP scalar (comparisons only reach here with `bool`)."""
    with np.errstate(all="ignore"):
        a, b = np.array([lhs]), np.array([rhs])
        if op in ARITHMETIC:
            return float(ARITHMETIC[op](a, b)[0])
        return 1.0 if bool(COMPARE[op](a, b)[0]) else 0.0


def drop_name(labels: Labels) -> Labels:
    """The labels without `__name__`, which sorts first unless a label name starts upper-case."""
    if labels and labels[0][0] == "__name__":
        return labels[1:]
    return tuple(kv for kv in labels if kv[0] != "__name__")


def vector_scalar(op: str, vec: Vector, scalar: float, scalar_left: bool, return_bool: bool) -> Vector:
    """vector OP scalar or scalar OP vector; comparisons keep the vector's value as Prometheus does."""
    values = vec.values
    other = np.full_like(values, scalar)
    lhs, rhs = (other, values) if scalar_left else (values, other)
    with np.errstate(all="ignore"):
        if op in ARITHMETIC:
            out, keep = ARITHMETIC[op](lhs, rhs), np.ones(len(values), dtype=bool)
        else:
            keep = np.asarray(COMPARE[op](lhs, rhs), dtype=bool)
            out = values.copy()
    if return_bool:
        out, keep = keep.astype(np.float64), np.ones(len(values), dtype=bool)
    drop = op in DROPS_NAME or return_bool
    labels = [drop_name(ls) if drop else ls for ls, k in zip(vec.labels, keep, strict=True) if k]
    return Vector(vec.t, labels, out[keep])


def _signature(labels: Labels, m: VectorMatching) -> Labels:
    if m.on:
        return tuple(kv for kv in labels if kv[0] in m.labels)
    return tuple(kv for kv in labels if kv[0] != "__name__" and kv[0] not in m.labels)


def set_operation(op: str, lhs: Vector, rhs: Vector, m: VectorMatching) -> Vector:
    """and / or / unless: many-to-many by signature."""
    right_sigs = {_signature(ls, m) for ls in rhs.labels}
    if op == "and":
        keep = [i for i, ls in enumerate(lhs.labels) if _signature(ls, m) in right_sigs]
    elif op == "unless":
        keep = [i for i, ls in enumerate(lhs.labels) if _signature(ls, m) not in right_sigs]
    else:
        left_sigs = {_signature(ls, m) for ls in lhs.labels}
        extra = [i for i, ls in enumerate(rhs.labels) if _signature(ls, m) not in left_sigs]
        labels = lhs.labels + [rhs.labels[i] for i in extra]
        return Vector(lhs.t, labels, np.concatenate([lhs.values, rhs.values[extra]]))
    return Vector(lhs.t, [lhs.labels[i] for i in keep], lhs.values[keep])


def vector_vector(op: str, lhs: Vector, rhs: Vector, m: VectorMatching, return_bool: bool) -> Vector:
    """vector OP vector for arithmetic and comparisons, one-to-one or group_left/group_right."""
    swapped = m.card == "one-to-many"
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    one_side: dict[Labels, int] = {}
    for i, ls in enumerate(one.labels):
        sig = _signature(ls, m)
        if sig in one_side:
            side = "left" if swapped else "right"
            raise EvalError(
                f"found duplicate series for the match group {format_labels(sig)} on the {side} hand-side "
                f"of the operation: [{format_labels(ls)}, {format_labels(one.labels[one_side[sig]])}];"
                "many-to-many matching not allowed: matching labels must be unique on one side"
            )
        one_side[sig] = i
    matched: dict[Labels, set[Labels]] = {}
    out_labels: list[Labels] = []
    out_values: list[float] = []
    for i, ls in enumerate(many.labels):
        sig = _signature(ls, m)
        j = one_side.get(sig)
        if j is None:
            continue
        vl, vr = float(many.values[i]), float(one.values[j])
        if swapped:
            vl, vr = vr, vl
        value, keep = _elem_op(op, vl, vr)
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if not keep:
            continue
        metric = _result_labels(ls, one.labels[j], op, m, return_bool)
        seen = matched.get(sig)
        if m.card == "one-to-one":
            if seen is not None:
                raise EvalError(
                    "multiple matches for labels: many-to-one matching must be explicit "
                    "(group_left/group_right)"
                )
            matched[sig] = set()
        else:
            seen = matched.setdefault(sig, set())
            if metric in seen:
                raise EvalError("multiple matches for labels: grouping labels must ensure unique matches")
            seen.add(metric)
        out_labels.append(metric)
        out_values.append(value)
    return Vector(lhs.t, out_labels, np.asarray(out_values, dtype=np.float64))


def _elem_op(op: str, lhs: float, rhs: float) -> tuple[float, bool]:
    if op in ARITHMETIC:
        with np.errstate(all="ignore"):  # Go float semantics: x/0 is ±Inf or NaN, never an error
            return float(ARITHMETIC[op](np.float64(lhs), np.float64(rhs))), True
    return lhs, bool(COMPARE[op](lhs, rhs))


def _result_labels(many: Labels, one: Labels, op: str, m: VectorMatching, return_bool: bool) -> Labels:
    out = dict(many)
    if op in DROPS_NAME or return_bool:
        out.pop("__name__", None)
    if m.card == "one-to-one":
        if m.on:
            out = {k: v for k, v in out.items() if k in m.labels}
        else:
            for name in m.labels:
                out.pop(name, None)
    one_map = dict(one)
    for name in m.include:
        if one_map.get(name, ""):
            out[name] = one_map[name]
        else:
            out.pop(name, None)
    return tuple(sorted(out.items()))

"""Functions of instant vectors and scalars (abs, clamp, label_replace, histogram_quantile...)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import numpy as np

from promql.ast import Expr, MatrixSelector, Paren, VectorSelector
from promql.binary import drop_name
from promql.elementwise import CALENDAR, MATH, apply_calendar, apply_math
from promql.errors import EvalError
from promql.values import LABEL_NAME, Labels, Vector, check_unique, get_label

_GO_TEMPLATE_REF = re.compile(r"\$(?:\{([a-zA-Z0-9_]+)\}|([a-zA-Z0-9_]+)|(\$))")

ArgValue = Vector | float | str


def _map_values(vec: Vector, values: np.ndarray) -> Vector:
    return Vector(vec.t, [drop_name(ls) for ls in vec.labels], values.astype(np.float64))


def call_vector_function(
    name: str, args: Sequence[ArgValue], arg_exprs: Sequence[Expr], t: int
) -> Vector | float:
    """Evaluate a function whose arguments are instant vectors, scalars and strings at time t."""
    if name == "time":
        return t / 1000
    if name == "pi":
        return math.pi
    if name == "vector":
        assert isinstance(args[0], float)
        return Vector(t, [()], np.array([args[0]]))
    if name in CALENDAR and not args:  # of the evaluation time, in whole seconds as Go's enh.Ts/1000
        return Vector(t, [()], apply_calendar(name, np.array([float(t // 1000)])))
    vec = args[0]
    if name == "histogram_quantile":
        assert isinstance(args[1], Vector) and isinstance(args[0], float)
        return histogram_quantile(args[0], args[1])
    assert isinstance(vec, Vector)
    if name == "scalar":
        return float(vec.values[0]) if len(vec.values) == 1 else math.nan
    if name == "absent":
        if len(vec.values):
            return Vector(t, [], np.empty(0))
        return Vector(t, [absent_labels(arg_exprs[0])], np.array([1.0]))
    if name in ("sort", "sort_desc"):
        return _sorted(vec, descending=name == "sort_desc")
    if name in MATH:
        return _map_values(vec, apply_math(name, vec.values))
    if name in CALENDAR:
        return _map_values(vec, apply_calendar(name, vec.values))
    if name in ("abs", "ceil", "floor"):
        return _map_values(vec, getattr(np, name)(vec.values))
    if name == "round":
        to_nearest = float(args[1]) if len(args) > 1 else 1.0  # type: ignore[arg-type]
        inverse = 1.0 / to_nearest
        return _map_values(vec, np.floor(vec.values * inverse + 0.5) / inverse)
    if name in ("clamp", "clamp_min", "clamp_max"):
        return _clamp(name, vec, [float(a) for a in args[1:]])  # type: ignore[arg-type]
    if name == "label_replace":
        return label_replace(vec, *(str(a) for a in args[1:]))
    if name == "label_join":
        return label_join(vec, str(args[1]), str(args[2]), [str(a) for a in args[3:]])
    raise EvalError(f"function {name} has no vector implementation")


def _sorted(vec: Vector, descending: bool) -> Vector:
    """sort / sort_desc: by value, NaN last either way, labels (and the name) kept. Ties stay in
    input order here; Go's unstable sort may order them otherwise, so only values are comparable."""
    values = vec.values.tolist()
    sign = -1.0 if descending else 1.0
    order = sorted(range(len(values)), key=lambda i: (math.isnan(values[i]), sign * values[i]))
    return Vector(vec.t, [vec.labels[i] for i in order], vec.values[order])


def _clamp(name: str, vec: Vector, bounds: list[float]) -> Vector:
    with np.errstate(invalid="ignore"):
        if name == "clamp_min":
            return _map_values(vec, np.maximum(bounds[0], vec.values))
        if name == "clamp_max":
            return _map_values(vec, np.minimum(bounds[0], vec.values))
        low, high = bounds
        if high < low:
            return Vector(vec.t, [], np.empty(0))
        return _map_values(vec, np.maximum(low, np.minimum(high, vec.values)))


def absent_labels(expr: Expr) -> Labels:
    """The labels absent() reports: the selector's equality matchers, each name given once."""
    while isinstance(expr, Paren):
        expr = expr.expr
    if isinstance(expr, MatrixSelector):
        expr = expr.selector
    if not isinstance(expr, VectorSelector):
        return ()
    out: dict[str, str] = {}
    has: set[str] = set()
    for m in expr.matchers:
        if m.name == "__name__":
            continue
        if m.op == "=" and m.name not in has:
            out[m.name] = m.value
            has.add(m.name)
        else:
            out.pop(m.name, None)
    return tuple(sorted((k, v) for k, v in out.items() if v != ""))


def expand_go_template(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: `$1`, `${1}`, `$name`; unknown or out of range names expand to ''."""

    def ref(m: re.Match[str]) -> str:
        if m.group(3):
            return "$"
        name = m.group(1) or m.group(2)
        if name.isdigit():
            index = int(name)
            return (match.group(index) or "") if index <= (match.re.groups or 0) else ""
        return (match.group(name) or "") if name in match.re.groupindex else ""

    return _GO_TEMPLATE_REF.sub(ref, template)


def label_replace(vec: Vector, dst: str, replacement: str, src: str, regex: str) -> Vector:
    try:
        pattern = re.compile(f"(?:{_go_named_groups(regex)})")
    except re.error as exc:
        raise EvalError(f"invalid regular expression in label_replace(): {regex}: {exc}") from None
    if not LABEL_NAME.fullmatch(dst):
        raise EvalError(f"invalid destination label name in label_replace(): {dst}")
    labels = []
    for ls in vec.labels:
        match = pattern.fullmatch(get_label(ls, src))
        if match is None:
            labels.append(ls)
            continue
        value = expand_go_template(replacement, match)
        rest = {k: v for k, v in ls if k != dst}
        if value:
            rest[dst] = value
        labels.append(tuple(sorted(rest.items())))
    return check_unique(Vector(vec.t, labels, vec.values))


def label_join(vec: Vector, dst: str, sep: str, sources: list[str]) -> Vector:
    if not LABEL_NAME.fullmatch(dst):
        raise EvalError(f"invalid destination label name in label_join(): {dst}")
    labels = []
    for ls in vec.labels:
        value = sep.join(get_label(ls, s) for s in sources)
        rest = {k: v for k, v in ls if k != dst}
        if value:
            rest[dst] = value
        labels.append(tuple(sorted(rest.items())))
    return check_unique(Vector(vec.t, labels, vec.values))


def _go_named_groups(regex: str) -> str:
    """RE2 writes named groups `(?P<n>...)` like Python; also accept Go's newer `(?<n>...)`."""
    return re.sub(r"\(\?<([a-zA-Z_])", r"(?P<\1", regex)


def histogram_quantile(q: float, vec: Vector) -> Vector:
    """Classic-bucket quantile: series grouped by all labels but `le`, as Prometheus' bucketQuantile."""
    groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
    for ls, value in zip(vec.labels, vec.values.tolist(), strict=True):
        if (bucket := _bucket(ls)) is None:
            continue
        upper, sig, out = bucket
        groups.setdefault(sig, (out, []))[1].append((upper, value))
    labels = [entry[0] for entry in groups.values()]
    values = [bucket_quantile(q, entry[1]) for entry in groups.values()]
    return Vector(vec.t, labels, np.asarray(values, dtype=np.float64))


@functools.lru_cache(maxsize=65_536)
def _bucket(labels: Labels) -> tuple[float, Labels, Labels] | None:
    """A bucket series' upper bound, group and output labels; None without a numeric `le`.
    Cached: a range query asks again at every step for the same series (43k times for the
    compliance tester's histogram_quantile over 61 steps)."""
    try:
        upper = float(get_label(labels, "le").replace("Inf", "inf"))
    except ValueError:
        return None
    sig = tuple(kv for kv in labels if kv[0] != "le")
    return upper, sig, tuple(kv for kv in sig if kv[0] != "__name__")


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(ordered[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for upper, count in ordered:
        if merged and merged[-1][0] == upper:
            merged[-1][1] += count
        else:
            merged.append([upper, count])
    highest = merged[0][1]
    for b in merged[1:]:
        highest = b[1] = max(highest, b[1])
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    index = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if index == len(merged) - 1:
        return merged[-2][0]
    if index == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[index][0], merged[index][1]
    if index > 0:
        start = merged[index - 1][0]
        count -= merged[index - 1][1]
        rank -= merged[index - 1][1]
    return start + (end - start) * (rank / count)

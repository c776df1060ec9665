"""The PromQL evaluator: instant and range queries over a Storage, with Prometheus 2.42 semantics.

No wall clock: every query names its evaluation time(s). Each selector is read from storage
once for the whole query, then sliced per step with binary search on its numpy arrays.
Range and lookback windows are closed at both ends, as in Prometheus 2.x (promtool 2.42).
"""

from __future__ import annotations

import time

import numpy as np

from promql.aggregation import aggregate
from promql.ast import (
    Aggregate,
    Binary,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    Paren,
    StringLiteral,
    Subquery,
    Unary,
    ValueType,
    VectorSelector,
)
from promql.binary import drop_name, scalar_op, set_operation, vector_scalar, vector_vector
from promql.errors import EvalError, QueryTimeout
from promql.packed import PackedSeries
from promql.parser import SET_OPERATORS, parse, type_name, value_type
from promql.range_functions import RANGE_FUNCTIONS, Windows, holt_winters, predict_linear, quantile
from promql.values import (
    IntArray,
    Labels,
    Matrix,
    Scalar,
    Series,
    Storage,
    String,
    Value,
    Vector,
    check_unique,
    is_stale,
)
from promql.vector_functions import absent_labels, call_vector_function

DEFAULT_LOOKBACK_MS = 300_000
DEFAULT_SUBQUERY_STEP_MS = 60_000  # of `x[5m:]`: Prometheus' default global evaluation_interval


_StepValue = Vector | float | str | Windows


def instant_query(
    expr: str | Expr,
    t_ms: int,
    storage: Storage,
    lookback_ms: int = DEFAULT_LOOKBACK_MS,
    subquery_step_ms: int = DEFAULT_SUBQUERY_STEP_MS,
    timeout_s: float | None = None,
) -> Value:
    """Evaluate at one time: a Vector, Scalar, String, or a Matrix for a bare range selector.
    `subquery_step_ms` is the step of `x[5m:]`: the evaluation_interval of the caller's config;
    past `timeout_s` evaluation stops with QueryTimeout."""
    node = parse(expr) if isinstance(expr, str) else expr
    deadline = _deadline(timeout_s)
    value = _Evaluator(storage, node, t_ms, t_ms, lookback_ms, subquery_step_ms, deadline=deadline).eval(
        node, t_ms
    )
    if isinstance(value, Windows):
        windows = [(value.packed.labels[i], value.window(int(i))) for i in value.nonempty()]
        return Matrix([Series(ls, w.timestamps, w.values) for ls, w in windows])
    if isinstance(value, float):
        return Scalar(t_ms, value)
    if isinstance(value, str):
        return String(t_ms, value)
    return value


def range_query(
    expr: str | Expr,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    storage: Storage,
    lookback_ms: int = DEFAULT_LOOKBACK_MS,
    subquery_step_ms: int = DEFAULT_SUBQUERY_STEP_MS,
    timeout_s: float | None = None,
) -> Matrix:
    """Evaluate at start, start+step, ... end; series are returned sorted by labels. Past
    `timeout_s` evaluation stops with QueryTimeout."""
    node = parse(expr) if isinstance(expr, str) else expr
    kind = value_type(node)
    if kind not in (ValueType.SCALAR, ValueType.VECTOR):
        raise EvalError(
            f'invalid expression type "{type_name(kind)}" for range query, must be Scalar or instant Vector'
        )
    if step_ms <= 0:
        raise EvalError("zero or negative query resolution step widths are not accepted")
    evaluator = _Evaluator(
        storage, node, start_ms, end_ms, lookback_ms, subquery_step_ms, deadline=_deadline(timeout_s)
    )
    return evaluator.steps(node, step_ms)


def _deadline(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


class _Evaluator:
    def __init__(
        self,
        storage: Storage,
        node: Expr,
        start: int,
        end: int,
        lookback: int,
        subquery_step: int,
        query: tuple[int, int] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.start, self.end, self.lookback = start, end, lookback
        self.deadline = deadline  # time.monotonic() past which steps() gives up
        self.storage, self.subquery_step = storage, subquery_step
        # `@ start()` / `@ end()` are the query's, also inside a subquery's own range of steps
        self.query_start, self.query_end = query or (start, end)
        self.selected: dict[VectorSelector | MatrixSelector | Subquery, PackedSeries] = {}
        self._select_all(node)

    def steps(self, node: Expr, step_ms: int) -> Matrix:
        """Evaluate at start, start+step, ... end; series are returned sorted by labels."""
        points: dict[Labels, tuple[list[int], list[float]]] = {}
        for t in range(self.start, self.end + 1, step_ms):
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise QueryTimeout()
            value = self.eval(node, t)
            if isinstance(value, float):
                value = Vector(t, [()], np.array([value]))
            assert isinstance(value, Vector)
            for ls, v in zip(value.labels, value.values.tolist(), strict=True):
                ts, vs = points.setdefault(ls, ([], []))
                ts.append(t)
                vs.append(v)
        return Matrix(
            [
                Series(ls, np.asarray(ts, dtype=np.int64), np.asarray(vs, dtype=np.float64))
                for ls, (ts, vs) in sorted(points.items())
            ]
        )

    def _ref_time(self, sel: VectorSelector | Subquery, t: int) -> int:
        """The time a selector (or a subquery's window) ends at step t: `@` pins it, `offset` moves
        it back."""
        if sel.at_start_end == "start":
            t = self.query_start
        elif sel.at_start_end == "end":
            t = self.query_end
        elif sel.at_ms is not None:
            t = sel.at_ms
        return t - sel.offset_ms

    def _select_all(self, node: Expr) -> None:
        """Read every selector's samples once, for the widest window any step needs."""
        if isinstance(node, VectorSelector | MatrixSelector):
            sel = node.selector if isinstance(node, MatrixSelector) else node
            lo, hi = self._ref_time(sel, self.start), self._ref_time(sel, self.end)
            width = node.range_ms if isinstance(node, MatrixSelector) else self.lookback
            packed = PackedSeries.pack(self.storage.select(sel.matchers, lo - width, hi))
            self.selected[node] = packed.without_stale() if isinstance(node, MatrixSelector) else packed
            return
        if isinstance(node, Subquery):
            self.selected[node] = self._subquery_series(node)
            return
        for child in _children(node):
            self._select_all(child)

    def _subquery_series(self, node: Subquery) -> PackedSeries:
        """The inner expression evaluated once at every step any outer step's window needs, on the
        step grid aligned to multiples of the step (from 0), as Prometheus' evalSubquery."""
        step = node.step_ms or self.subquery_step
        lowest = self._ref_time(node, self.start) - node.range_ms
        start = -(-lowest // step) * step  # the first multiple of step at or after lowest
        end = self._ref_time(node, self.end)
        if end < start:
            return PackedSeries.pack([])
        query = (self.query_start, self.query_end)
        inner = _Evaluator(
            self.storage, node.expr, start, end, self.lookback, self.subquery_step, query, self.deadline
        )
        return PackedSeries.pack(inner.steps(node.expr, step).series)

    def eval(self, node: Expr, t: int) -> _StepValue:
        if isinstance(node, NumberLiteral):
            return node.value
        if isinstance(node, StringLiteral):
            return node.value
        if isinstance(node, Paren):
            return self.eval(node.expr, t)
        if isinstance(node, VectorSelector):
            return self._instant_selector(node, t)[0]
        if isinstance(node, MatrixSelector):
            return self._range_selector(node, t)
        if isinstance(node, Subquery):
            return self._subquery_windows(node, t)
        if isinstance(node, Unary):
            return self._unary(node, t)
        if isinstance(node, Binary):
            return self._binary(node, t)
        if isinstance(node, Aggregate):
            return self._aggregate(node, t)
        assert isinstance(node, Call)
        return self._call(node, t)

    def _instant_selector(self, sel: VectorSelector, t: int) -> tuple[Vector, IntArray]:
        """Per series the latest sample at or before the reference time, within the lookback, unless
        it is a staleness marker; also returns the samples' timestamps (for timestamp())."""
        ref = self._ref_time(sel, t)
        p = self.selected[sel]
        last = p.end_at(ref) - 1
        has = last >= p.bounds[:-1]
        at = np.where(has, last, 0)
        if len(p.ts):
            has &= (p.ts[at] >= ref - self.lookback) & ~is_stale(p.vs[at])
        keep = np.flatnonzero(has)
        return Vector(t, [p.labels[i] for i in keep], p.vs[at[keep]]), p.ts[at[keep]]

    def _range_selector(self, node: MatrixSelector, t: int) -> Windows:
        end = self._ref_time(node.selector, t)
        start = end - node.range_ms
        p = self.selected[node]
        return Windows(p, p.first_from(start), p.end_at(end), start, end, node.range_ms)

    def _subquery_windows(self, node: Subquery, t: int) -> Windows:
        """The inner steps in the closed window [end - range, end], as a range selector's."""
        end = self._ref_time(node, t)
        start = end - node.range_ms
        p = self.selected[node]
        return Windows(p, p.first_from(start), p.end_at(end), start, end, node.range_ms)

    def _unary(self, node: Unary, t: int) -> _StepValue:
        value = self.eval(node.expr, t)
        if node.op == "+":
            return value
        if isinstance(value, float):
            return -value
        assert isinstance(value, Vector)
        return check_unique(Vector(t, [drop_name(ls) for ls in value.labels], -value.values))

    def _binary(self, node: Binary, t: int) -> _StepValue:
        lhs, rhs = self.eval(node.lhs, t), self.eval(node.rhs, t)
        if isinstance(lhs, float) and isinstance(rhs, float):
            return scalar_op(node.op, lhs, rhs)
        if isinstance(lhs, Vector) and isinstance(rhs, Vector):
            assert node.matching is not None
            if node.op in SET_OPERATORS:
                return set_operation(node.op, lhs, rhs, node.matching)
            return vector_vector(node.op, lhs, rhs, node.matching, node.return_bool)
        if isinstance(lhs, Vector) and isinstance(rhs, float):
            return vector_scalar(node.op, lhs, rhs, False, node.return_bool)
        assert isinstance(lhs, float) and isinstance(rhs, Vector)
        return vector_scalar(node.op, rhs, lhs, True, node.return_bool)

    def _aggregate(self, node: Aggregate, t: int) -> Vector:
        vec = self.eval(node.expr, t)
        assert isinstance(vec, Vector)
        param = self.eval(node.param, t) if node.param is not None else None
        assert param is None or isinstance(param, float | str)
        return aggregate(node.op, vec, node.grouping, node.without, param)

    def _call(self, node: Call, t: int) -> _StepValue:
        if node.func == "timestamp":
            arg = node.args[0]
            while isinstance(arg, Paren):
                arg = arg.expr
            if isinstance(arg, VectorSelector):
                vec, stamps = self._instant_selector(arg, t)
                return Vector(
                    t, [drop_name(ls) for ls in vec.labels], np.asarray(stamps, dtype=np.float64) / 1000
                )
        matrix_index = next((i for i, a in enumerate(node.args) if value_type(a) == ValueType.MATRIX), None)
        args = [self.eval(a, t) for a in node.args]
        if matrix_index is None:
            if node.func == "timestamp":
                inner = args[0]
                assert isinstance(inner, Vector)
                return Vector(t, [drop_name(ls) for ls in inner.labels], np.full(len(inner.values), t / 1000))
            plain = [a for a in args if not isinstance(a, Windows)]
            result = call_vector_function(node.func, plain, node.args, t)
            return check_unique(result) if isinstance(result, Vector) else result
        rng = args[matrix_index]
        assert isinstance(rng, Windows)
        return self._range_call(node, rng, args, t)

    def _range_call(self, node: Call, windows: Windows, args: list[_StepValue], t: int) -> Vector:
        labels = windows.packed.labels
        if node.func == "absent_over_time":
            if len(windows.nonempty()):
                return Vector(t, [], np.empty(0))
            return Vector(t, [absent_labels(node.args[0])], np.array([1.0]))
        if node.func == "quantile_over_time":
            q = args[0]
            assert isinstance(q, float)
            idx = windows.nonempty()
            values = np.array(
                [quantile(q, windows.window(int(i)).values.tolist()) for i in idx], dtype=np.float64
            )
        elif node.func == "holt_winters":
            sf, tf = args[1], args[2]
            assert isinstance(sf, float) and isinstance(tf, float)
            idx, values = holt_winters(windows, sf, tf)
        elif node.func == "predict_linear":
            seconds = args[1]
            assert isinstance(seconds, float)
            idx, values = predict_linear(windows, t, seconds)
        else:
            idx, values = RANGE_FUNCTIONS[node.func](windows)
        keep_name = node.func == "last_over_time"  # it acts like offset, as in Prometheus
        out = [labels[i] if keep_name else drop_name(labels[i]) for i in idx]
        return check_unique(Vector(t, out, np.asarray(values, dtype=np.float64)))


def _children(node: Expr) -> list[Expr]:
    if isinstance(node, Paren | Unary):
        return [node.expr]
    if isinstance(node, Binary):
        return [node.lhs, node.rhs]
    if isinstance(node, Aggregate):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, Call):
        return list(node.args)
    return []

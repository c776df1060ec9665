"""The PromQL evaluator: instant and range queries over a Storage, with Prometheus 2.42 semantics.

No wall clock: every query names its evaluation time(s). Each selector is read from storage
once for the whole query, then sliced per step with binary search on its numpy arrays.
Range and lookback windows are closed at both ends, as in Prometheus 2.x (promtool 2.42).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

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
    children,
)
from promql.binary import drop_name, scalar_op, set_operation, vector_scalar, vector_vector
from promql.errors import EvalError, QueryTimeout
from promql.packed import PackedSeries
from promql.parser import SET_OPERATORS, parse, type_name, value_type
from promql.range_functions import RANGE_FUNCTIONS, Windows, holt_winters, predict_linear, quantile
from promql.step_block import (
    VECTORISED_AGGREGATIONS,
    StepBlock,
    StepFunction,
    from_scalars,
    negate,
    per_step,
    scalar_binary,
)
from promql.step_block import Sliced as _Sliced
from promql.step_block import aggregate as block_aggregate
from promql.step_block import vector_scalar as block_vector_scalar
from promql.values import (
    FloatArray,
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
CHUNK_STEPS = 2048  # steps evaluated at once: a day at 60 s in one go, (series x steps) matrices bounded
# range functions computed without a Python loop per window (see range_functions.RANGE_FUNCTIONS)
ALL_STEPS_RANGE_FUNCTIONS = frozenset(
    {
        "rate",
        "increase",
        "delta",
        "irate",
        "idelta",
        "resets",
        "changes",
        "count_over_time",
        "last_over_time",
        "present_over_time",
    }
)
DEFAULT_SUBQUERY_STEP_MS = 60_000  # of `x[5m:]`: Prometheus' default global evaluation_interval


_StepValue = Vector | float | str | Windows
_Block = StepBlock | FloatArray | str  # a node at every step: vector, scalar or string


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
        """Evaluate at start, start+step, ... end; series are returned sorted by labels. Steps go
        in chunks of CHUNK_STEPS, which bounds the matrices' memory and lets a deadline stop a
        subquery of billions of steps."""
        count = (self.end - self.start) // step_ms + 1 if self.end >= self.start else 0
        parts: dict[Labels, list[Series]] = {}
        for first in range(0, count, CHUNK_STEPS):
            self._check_deadline()
            times = self.start + step_ms * np.arange(first, min(count, first + CHUNK_STEPS), dtype=np.int64)
            value = self._block(node, times)
            assert not isinstance(value, str)
            block = value if isinstance(value, StepBlock) else from_scalars(value)
            for series in block.to_matrix(times).series:
                parts.setdefault(series.labels, []).append(series)
        return Matrix(
            [
                Series(ls, np.concatenate([s.timestamps for s in ss]), np.concatenate([s.values for s in ss]))
                for ls, ss in sorted(parts.items())
            ]
        )

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryTimeout()

    def _block(self, node: Expr, times: IntArray) -> _Block:
        """The node at every step at once: a StepBlock for a vector, an array for a scalar.
        Selectors, aggregations, operators and functions of instant vectors work on whole blocks or
        slice their children's blocks; the rest (range selectors and their functions, subqueries,
        timestamp()) is evaluated step by step by eval(), the engine's one per-step path."""
        self._check_deadline()
        if isinstance(node, Paren):
            return self._block(node.expr, times)
        if isinstance(node, NumberLiteral):
            return np.full(len(times), node.value)
        if isinstance(node, StringLiteral):
            return node.value
        if isinstance(node, VectorSelector):
            return self._selector_block(node, times)
        if isinstance(node, Unary):
            inner = self._block(node.expr, times)
            assert not isinstance(inner, str)
            if node.op == "+":
                return inner
            return negate(inner) if isinstance(inner, StepBlock) else -inner
        if isinstance(node, Binary):
            return self._binary_block(node, times)
        if isinstance(node, Aggregate):
            return self._aggregate_block(node, times)
        assert isinstance(node, Call)
        if node.func in ALL_STEPS_RANGE_FUNCTIONS and isinstance(node.args[0], MatrixSelector):
            return self._range_function_block(node, node.args[0], times)
        if node.func == "timestamp" or any(value_type(a) == ValueType.MATRIX for a in node.args):
            order = self._series_order(node)
            return self._scalars_of(
                node, self._each_step(times, lambda t, _: self._plain(node, t), [], order)
            )
        args = [self._block(a, times) for a in node.args]

        def call(t: int, sliced: list[_Sliced]) -> Vector | float:
            result = call_vector_function(node.func, [a for a in sliced if a is not None], node.args, t)
            return check_unique(result) if isinstance(result, Vector) else result

        return self._scalars_of(node, self._each_step(times, call, args))

    def _plain(self, node: Expr, t: int) -> Vector | float:
        value = self.eval(node, t)
        assert isinstance(value, Vector | float)
        return value

    def _series_order(self, node: Call) -> list[Labels]:
        """The order eval() gives a range function's (or timestamp()'s) series in: its selector's."""
        arg = next((a for a in node.args if value_type(a) in (ValueType.MATRIX, ValueType.VECTOR)), None)
        while isinstance(arg, Paren):
            arg = arg.expr
        packed = (
            self.selected.get(arg) if isinstance(arg, VectorSelector | MatrixSelector | Subquery) else None
        )
        if packed is None:
            return []
        return packed.labels if node.func == "last_over_time" else [drop_name(ls) for ls in packed.labels]

    def _each_step(
        self, times: IntArray, fn: StepFunction, args: Sequence[_Block | None], order: Sequence[Labels] = ()
    ) -> StepBlock:
        """fn at every step over the children's blocks sliced to that step, minding the deadline."""

        def timed(t: int, sliced: list[_Sliced]) -> Vector | float:
            self._check_deadline()
            return fn(t, sliced)

        return per_step(times, args, timed, order)

    @staticmethod
    def _scalars_of(node: Expr, block: StepBlock) -> _Block:
        """A scalar-valued node's steps as an array (collect() made them a series with no labels)."""
        if value_type(node) != ValueType.SCALAR:
            return block
        return block.values[0] if block.labels else np.empty(0)

    def _selector_block(self, sel: VectorSelector, times: IntArray) -> StepBlock:
        """_instant_selector at every step: one binary search of all (series, step) pairs."""
        p = self.selected[sel]
        n = len(p.labels)
        pinned = sel.at_ms is not None or sel.at_start_end is not None
        refs = np.full(len(times), self._ref_time(sel, 0)) if pinned else times - sel.offset_ms
        if not len(p.ts):
            return StepBlock(
                p.labels, np.full((n, len(times)), np.nan), np.zeros((n, len(times)), dtype=bool)
            )
        offsets = np.clip(refs - p.base, -1, p.span - 1)
        targets = np.arange(n, dtype=np.int64)[:, np.newaxis] * p.span + offsets[np.newaxis, :]
        last = np.searchsorted(p.keys, targets, "right").astype(np.int64) - 1
        has = last >= p.bounds[:-1, np.newaxis]
        at = np.where(has, last, 0)
        has &= (p.ts[at] >= refs - self.lookback) & ~is_stale(p.vs[at])
        return StepBlock(p.labels, p.vs[at], has)

    def _range_function_block(self, node: Call, arg: MatrixSelector, times: IntArray) -> StepBlock:
        """A range function whose windows need no Python loop, over the windows of every (step,
        series) pair at once: window k * n + i is series i at step k."""
        p = self.selected[arg]
        n, steps = len(p.labels), len(times)
        sel = arg.selector
        pinned = sel.at_ms is not None or sel.at_start_end is not None
        ends = np.full(steps, self._ref_time(sel, 0)) if pinned else times - sel.offset_ms
        starts = ends - arg.range_ms
        # Searched series by series, where the targets rise (numpy's binary search starts from the
        # previous answer then: 3 times faster over a day's steps), then laid out step by step.
        rows = np.arange(n, dtype=np.int64)[:, np.newaxis] * p.span
        first = rows + np.clip(starts - p.base, 0, p.span)[np.newaxis, :]
        last = rows + np.clip(ends - p.base, -1, p.span - 1)[np.newaxis, :]
        lo = np.searchsorted(p.keys, first.ravel(), "left").astype(np.int64).reshape(n, steps).T.ravel()
        hi = np.searchsorted(p.keys, last.ravel(), "right").astype(np.int64).reshape(n, steps).T.ravel()
        windows = Windows(p, lo, hi, np.repeat(starts, n), np.repeat(ends, n), arg.range_ms)
        idx, found = RANGE_FUNCTIONS[node.func](windows)
        values = np.full((n, steps), np.nan)
        present = np.zeros((n, steps), dtype=bool)
        values[idx % n, idx // n] = found
        present[idx % n, idx // n] = True
        keep_name = node.func == "last_over_time"  # as _range_call
        labels = p.labels if keep_name else [drop_name(ls) for ls in p.labels]
        return StepBlock(p.labels, values, present).relabel(labels)

    def _binary_block(self, node: Binary, times: IntArray) -> _Block:
        lhs, rhs = self._block(node.lhs, times), self._block(node.rhs, times)
        assert not isinstance(lhs, str) and not isinstance(rhs, str)
        if isinstance(lhs, StepBlock) and isinstance(rhs, StepBlock):
            matching = node.matching
            assert matching is not None

            def vectors(t: int, sliced: list[_Sliced]) -> Vector:
                left, right = sliced
                assert isinstance(left, Vector) and isinstance(right, Vector)
                if node.op in SET_OPERATORS:
                    return set_operation(node.op, left, right, matching)
                return vector_vector(node.op, left, right, matching, node.return_bool)

            return self._each_step(times, vectors, [lhs, rhs])
        if isinstance(lhs, StepBlock):
            assert not isinstance(rhs, StepBlock)
            return block_vector_scalar(node.op, lhs, rhs, False, node.return_bool)
        if isinstance(rhs, StepBlock):
            return block_vector_scalar(node.op, rhs, lhs, True, node.return_bool)
        return scalar_binary(node.op, lhs, rhs)

    def _aggregate_block(self, node: Aggregate, times: IntArray) -> StepBlock:
        inner = self._block(node.expr, times)
        assert isinstance(inner, StepBlock)
        if node.op in VECTORISED_AGGREGATIONS:
            return block_aggregate(node.op, inner, node.grouping, node.without)
        param = None if node.param is None else self._block(node.param, times)

        def step(t: int, sliced: list[_Sliced]) -> Vector:
            vec, value = sliced
            assert isinstance(vec, Vector) and not isinstance(value, Vector)
            return aggregate(node.op, vec, node.grouping, node.without, value)

        return self._each_step(times, step, [inner, param])

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
        for child in children(node):
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

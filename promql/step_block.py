"""Instant vectors at every step of a range query as one (series x steps) matrix.

A range query over a day at 60 s has 1,441 steps; evaluating selectors, aggregations and
scalar arithmetic once over the whole matrix in NumPy replaces 1,441 rounds of Python per node.
A row is a label set; `present` says at which steps it has a value (NaN is a value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from promql.aggregation import group_labels
from promql.binary import ARITHMETIC, COMPARE, DROPS_NAME, drop_name
from promql.errors import EvalError
from promql.values import FloatArray, IntArray, Labels, Matrix, Series, Vector

BoolArray = npt.NDArray[np.bool_]
Sliced = Vector | float | str | None  # a child's value at one step (None: an absent parameter)
StepFunction = Callable[[int, list[Sliced]], Vector | float]
VECTORISED_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "group"})


@dataclass
class StepBlock:
    """Row i is series labels[i]: values[i, k] at step k where present[i, k]."""

    labels: list[Labels]
    values: FloatArray  # (rows, steps)
    present: BoolArray  # (rows, steps)

    def vector(self, k: int, t: int) -> Vector:
        """The instant vector of step k, for the functions that work one step at a time."""
        rows = np.flatnonzero(self.present[:, k])
        return Vector(t, [self.labels[i] for i in rows], self.values[rows, k])

    def relabel(self, labels: list[Labels]) -> StepBlock:
        """The same rows under new labels; rows that now share a label set become one series,
        which Prometheus refuses only when two of them have a value at the same step."""
        if len(set(labels)) == len(labels):
            return StepBlock(labels, self.values, self.present)
        rows: dict[Labels, list[int]] = {}
        for i, ls in enumerate(labels):
            rows.setdefault(ls, []).append(i)
        values = np.full((len(rows), self.values.shape[1]), np.nan)
        present = np.zeros(values.shape, dtype=bool)
        for g, members in enumerate(rows.values()):
            if (self.present[members].sum(axis=0) > 1).any():
                raise EvalError("vector cannot contain metrics with the same labelset")
            for i in members:
                values[g] = np.where(self.present[i], self.values[i], values[g])
                present[g] |= self.present[i]
        return StepBlock(list(rows), values, present)

    def to_matrix(self, times: IntArray) -> Matrix:
        """A range query's result: the series with at least one value, sorted by labels."""
        order = sorted(range(len(self.labels)), key=lambda i: self.labels[i])
        out = []
        for i in order:
            keep = self.present[i]
            if keep.any():
                out.append(Series(self.labels[i], times[keep], self.values[i, keep]))
        return Matrix(out)


def collect(
    times: IntArray, step: Callable[[int, int], Vector | float], order: Iterable[Labels] = ()
) -> StepBlock:
    """A block from a function evaluated step by step (for the nodes not vectorised); a scalar
    result becomes the series with no labels, as a range query returns it. Rows come in `order`
    (the order of the steps' vectors, when known), then in order of first appearance: an
    aggregation adds rows up in this order, which decides the last bit of a sum."""
    rows: dict[Labels, int] = {ls: i for i, ls in enumerate(dict.fromkeys(order))}
    row_ids: list[IntArray] = []
    columns: list[IntArray] = []
    cells: list[FloatArray] = []
    for k, t in enumerate(times.tolist()):
        value = step(k, t)
        if isinstance(value, float):
            value = Vector(t, [()], np.array([value]))
        ids = [rows.setdefault(ls, len(rows)) for ls in value.labels]
        if len(set(ids)) != len(ids):
            raise EvalError("vector cannot contain metrics with the same labelset")
        row_ids.append(np.asarray(ids, dtype=np.int64))
        columns.append(np.full(len(ids), k, dtype=np.int64))
        cells.append(value.values)
    values = np.full((len(rows), len(times)), np.nan)
    present = np.zeros(values.shape, dtype=bool)
    if rows:
        row, col = np.concatenate(row_ids), np.concatenate(columns)
        values[row, col] = np.concatenate(cells)
        present[row, col] = True
    return StepBlock(list(rows), values, present)


def from_scalars(values: FloatArray) -> StepBlock:
    """A scalar at every step as the one series with no labels."""
    return StepBlock([()], values[np.newaxis, :].copy(), np.ones((1, len(values)), dtype=bool))


def negate(block: StepBlock) -> StepBlock:
    """Unary minus: the values negated, the metric name dropped."""
    return StepBlock(block.labels, -block.values, block.present).relabel(
        [drop_name(ls) for ls in block.labels]
    )


def scalar_binary(op: str, lhs: FloatArray, rhs: FloatArray) -> FloatArray:
    """scalar OP scalar at every step (comparisons only reach here with `bool`)."""
    with np.errstate(all="ignore"):
        if op in ARITHMETIC:
            return np.asarray(ARITHMETIC[op](lhs, rhs), dtype=np.float64)
        return np.asarray(COMPARE[op](lhs, rhs), dtype=np.float64)


def vector_scalar(
    op: str, block: StepBlock, scalar: FloatArray, scalar_left: bool, return_bool: bool
) -> StepBlock:
    """vector OP scalar at every step; a comparison keeps the vector's value where it holds."""
    other = np.broadcast_to(scalar, block.values.shape)
    lhs, rhs = (other, block.values) if scalar_left else (block.values, other)
    present = block.present
    with np.errstate(all="ignore"):
        if op in ARITHMETIC:
            values = np.asarray(ARITHMETIC[op](lhs, rhs), dtype=np.float64)
        else:
            holds = np.asarray(COMPARE[op](lhs, rhs), dtype=bool)
            values = holds.astype(np.float64) if return_bool else block.values
            present = present if return_bool else present & holds
    labels = [drop_name(ls) for ls in block.labels] if op in DROPS_NAME or return_bool else block.labels
    return StepBlock(block.labels, values, present).relabel(labels)


def aggregate(op: str, block: StepBlock, grouping: tuple[str, ...], without: bool) -> StepBlock:
    """sum/avg/min/max/count/group by or without over every step at once, each group's members
    taken in row order as Prometheus takes them in the vector's order."""
    groups: dict[Labels, int] = {}
    gid = np.fromiter(
        (groups.setdefault(group_labels(ls, grouping, without), len(groups)) for ls in block.labels),
        dtype=np.int64,
        count=len(block.labels),
    )
    shape = (len(groups), block.values.shape[1])
    count = np.zeros(shape)
    np.add.at(count, gid, block.present.astype(np.float64))
    present = count > 0
    if op == "count":
        values = count
    elif op == "group":
        values = np.ones(shape)
    elif op == "sum":
        # -0.0 is the identity of IEEE addition (0.0 would turn a lone -0.0 into 0.0)
        values = np.full(shape, -0.0)
        np.add.at(values, gid, np.where(block.present, block.values, -0.0))
    elif op in ("min", "max"):
        # fmin/fmax: a NaN so far gives way to any later value, as Prometheus' min and max
        values = np.full(shape, np.nan)
        (np.fmin if op == "min" else np.fmax).at(values, gid, np.where(block.present, block.values, np.nan))
    else:
        assert op == "avg"
        values = _mean(block, gid, shape)
    return StepBlock(list(groups), values, present)


def _mean(block: StepBlock, gid: IntArray, shape: tuple[int, int]) -> FloatArray:
    """Prometheus' incremental mean (no overflowing sum, ±Inf kept), a row at a time over all
    steps: the update depends on the running mean, so rows cannot be summed at once."""
    mean, count = np.zeros(shape), np.zeros(shape)
    with np.errstate(all="ignore"):
        for i, g in enumerate(gid.tolist()):
            has, v = block.present[i], block.values[i]
            first = has & (count[g] == 0)
            count[g] += has
            cur, n = mean[g], count[g]
            keep_inf = np.isinf(cur) & ((np.isinf(v) & ((cur > 0) == (v > 0))) | np.isfinite(v))
            update = has & ~first & ~keep_inf
            mean[g] = np.where(first, v, np.where(update, cur + (v / n - cur / n), cur))
    return mean


def per_step(
    times: IntArray,
    blocks: Iterable[StepBlock | FloatArray | str | None],
    fn: StepFunction,
    order: Iterable[Labels] = (),
) -> StepBlock:
    """A node whose operation works one step at a time, over children already evaluated for
    every step: each step's vectors are sliced out of the children's blocks."""
    args = list(blocks)

    def step(k: int, t: int) -> Vector | float:
        sliced: list[Sliced] = []
        for a in args:
            if isinstance(a, StepBlock):
                sliced.append(a.vector(k, t))
            elif isinstance(a, np.ndarray):
                sliced.append(float(a[k]))
            else:
                sliced.append(a)
        return fn(t, sliced)

    return collect(times, step, order)

"""Series, result types and the storage protocol the engine reads from.

Samples live in numpy arrays per series (timestamps in ms, float64 values); a staleness
marker is Prometheus' own NaN bit pattern, so it survives any float64 store.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import numpy as np
import numpy.typing as npt

from promql.ast import Matcher
from promql.errors import EvalError

Labels = tuple[tuple[str, str], ...]  # sorted by name; "__name__" is the metric name
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STALE_NAN_BITS = 0x7FF0000000000002  # value.StaleNaN in Prometheus
STALE_NAN = float(np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0])


def is_stale(values: FloatArray) -> npt.NDArray[np.bool_]:
    """Which values are staleness markers (not any NaN: a NaN sample is a real value)."""
    return values.view(np.uint64) == STALE_NAN_BITS


def labels_of(mapping: dict[str, str]) -> Labels:
    """Labels from a dict, dropping empty values as Prometheus does."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def get_label(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


def format_labels(labels: Labels) -> str:
    """`name{a="b"}` as Prometheus prints a series."""
    name = get_label(labels, "__name__")
    rest = ", ".join(f'{k}="{_escape(v)}"' for k, v in labels if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Series:
    """One series' samples in a time range, sorted by timestamp."""

    labels: Labels
    timestamps: IntArray
    values: FloatArray


@dataclass
class Vector:
    """An instant vector at time `t`: one value per label set, as parallel arrays."""

    t: int
    labels: list[Labels]
    values: FloatArray


def check_unique(vec: Vector) -> Vector:
    """Prometheus refuses a result in which two elements share a label set."""
    if len(set(vec.labels)) != len(vec.labels):
        raise EvalError("vector cannot contain metrics with the same labelset")
    return vec


@dataclass
class Matrix:
    """A range vector, or the result of a range query."""

    series: list[Series]


@dataclass
class Scalar:
    t: int
    value: float


@dataclass
class String:
    t: int
    value: str


Value = Vector | Matrix | Scalar | String


class Storage(Protocol):
    """What the engine reads: every series matching all matchers, samples in [start_ms, end_ms]."""

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]: ...


@dataclass
class _Buffer:
    """One series' samples: lists to append to, arrays made again only after an append."""

    timestamps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    arrays: tuple[IntArray, FloatArray] | None = None

    def as_arrays(self) -> tuple[IntArray, FloatArray]:
        if self.arrays is None:
            self.arrays = (
                np.asarray(self.timestamps, dtype=np.int64),
                np.asarray(self.values, dtype=np.float64),
            )
        return self.arrays


@dataclass
class MemoryStorage:
    """Series held in memory, indexed by metric name: the test runner's and the rule evaluator's store."""

    series: dict[Labels, _Buffer] = field(default_factory=dict)
    by_name: dict[str, list[Labels]] = field(default_factory=dict)

    def append(self, labels: Labels, t_ms: int, value: float) -> bool:
        """Add one sample; False (and nothing stored) when the series already has one at or after
        t_ms: as Prometheus' TSDB, which drops out-of-order and duplicate samples (the first stays)."""
        buf = self.series.get(labels)
        if buf is None:
            buf = self.series[labels] = _Buffer()
            self.by_name.setdefault(get_label(labels, "__name__"), []).append(labels)
        if buf.timestamps and buf.timestamps[-1] >= t_ms:
            return False
        buf.arrays = None
        buf.timestamps.append(t_ms)
        buf.values.append(value)
        return True

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[Series]:
        name = next((m.value for m in matchers if m.name == "__name__" and m.op == "="), None)
        candidates = self.by_name.get(name, []) if name is not None else list(self.series)
        others = [m for m in matchers if not (m.name == "__name__" and m.op == "=")]
        out = []
        for labels in candidates:
            if others:
                lookup = dict(labels)
                if not all(m.matches(lookup.get(m.name, "")) for m in others):
                    continue
            buf = self.series[labels]
            lo, hi = bisect_left(buf.timestamps, start_ms), bisect_right(buf.timestamps, end_ms)
            if hi > lo:
                t_arr, v_arr = buf.as_arrays()
                out.append(Series(labels, t_arr[lo:hi], v_arr[lo:hi]))
        return out


def format_float(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    if "e" not in text and "E" not in text:
        return text[:-2] if text.endswith(".0") else text
    return format(Decimal(text), "f")

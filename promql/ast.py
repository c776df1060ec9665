"""The PromQL syntax tree: immutable nodes the parser builds and the engine walks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class ValueType(StrEnum):
    """Prometheus' four value types; the engine checks them before evaluating."""

    SCALAR = "scalar"
    VECTOR = "vector"
    MATRIX = "matrix"
    STRING = "string"


@dataclass(frozen=True)
class Matcher:
    """One label matcher; regexes are anchored as Prometheus anchors them."""

    name: str
    op: str  # one of = != =~ !~
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, value: str) -> bool:
        """Whether a label value (empty when the label is absent) satisfies this matcher."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True)
class StringLiteral:
    value: str


@dataclass(frozen=True)
class VectorSelector:
    """`name{matchers} offset d @ t`; offset and at are in milliseconds."""

    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int = 0
    at_ms: int | None = None
    at_start_end: str | None = None  # "start" or "end" for `@ start()` / `@ end()`


@dataclass(frozen=True)
class MatrixSelector:
    selector: VectorSelector
    range_ms: int


@dataclass(frozen=True)
class Subquery:
    """`expr[range:step] offset d @ t`: expr evaluated every step (0: the default interval) over a
    range; offset and `@` as a selector's."""

    expr: Expr
    range_ms: int
    step_ms: int
    offset_ms: int = 0
    at_ms: int | None = None
    at_start_end: str | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: Expr
    param: Expr | None
    grouping: tuple[str, ...]
    without: bool


@dataclass(frozen=True)
class VectorMatching:
    """`on`/`ignoring` labels and `group_left`/`group_right` with their include labels."""

    card: str  # one-to-one, many-to-one, one-to-many, many-to-many
    labels: tuple[str, ...]
    on: bool
    include: tuple[str, ...]


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Expr
    rhs: Expr
    matching: VectorMatching | None
    return_bool: bool


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "+"
    expr: Expr


@dataclass(frozen=True)
class Paren:
    expr: Expr


Expr = (
    NumberLiteral
    | StringLiteral
    | VectorSelector
    | MatrixSelector
    | Subquery
    | Call
    | Aggregate
    | Binary
    | Unary
    | Paren
)


def children(node: Expr) -> list[Expr]:
    """A node's operands; a subquery's expression is not one (it is evaluated on steps of its own)."""
    if isinstance(node, Paren | Unary):
        return [node.expr]
    if isinstance(node, Binary):
        return [node.lhs, node.rhs]
    if isinstance(node, Aggregate):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, Call):
        return list(node.args)
    return []


def reach(node: Expr, lookback_ms: int) -> tuple[int, int] | None:
    """How far before and after a step's time the samples its value depends on may lie (ms, both
    at least 0); None when a selector or subquery is pinned by `@` (its samples are the same at
    every step, wherever the steps are)."""
    if isinstance(node, VectorSelector | MatrixSelector | Subquery):
        pinned = node.selector if isinstance(node, MatrixSelector) else node
        if pinned.at_ms is not None or pinned.at_start_end is not None:
            return None
        if isinstance(node, Subquery):
            inner = reach(node.expr, lookback_ms)
            if inner is None:
                return None
            back, ahead = node.offset_ms + node.range_ms + inner[0], inner[1] - node.offset_ms
        else:
            width = node.range_ms if isinstance(node, MatrixSelector) else lookback_ms
            back, ahead = pinned.offset_ms + width, -pinned.offset_ms
        return max(0, back), max(0, ahead)
    found = [reach(child, lookback_ms) for child in children(node)]
    if any(r is None for r in found):
        return None
    return max((r[0] for r in found if r), default=0), max((r[1] for r in found if r), default=0)

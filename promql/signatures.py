"""The functions and aggregations talonflow evaluates, with their argument and result types.

Anything Prometheus knows but not listed here is refused at parse time by name, so a rule
is never mis-evaluated by a half-implemented function.
"""

from __future__ import annotations

from dataclasses import dataclass

from promql.ast import ValueType
from promql.elementwise import CALENDAR, MATH

S, V, M, STR = ValueType.SCALAR, ValueType.VECTOR, ValueType.MATRIX, ValueType.STRING


@dataclass(frozen=True)
class Signature:
    args: tuple[ValueType, ...]
    returns: ValueType
    optional: int = 0  # how many trailing args may be left out
    variadic: bool = False  # the last argument may repeat


FUNCTIONS: dict[str, Signature] = {
    "abs": Signature((V,), V),
    "ceil": Signature((V,), V),
    "floor": Signature((V,), V),
    "round": Signature((V, S), V, optional=1),
    "clamp": Signature((V, S, S), V),
    "clamp_min": Signature((V, S), V),
    "clamp_max": Signature((V, S), V),
    "absent": Signature((V,), V),
    "absent_over_time": Signature((M,), V),
    "rate": Signature((M,), V),
    "irate": Signature((M,), V),
    "increase": Signature((M,), V),
    "delta": Signature((M,), V),
    "idelta": Signature((M,), V),
    "resets": Signature((M,), V),
    "changes": Signature((M,), V),
    "avg_over_time": Signature((M,), V),
    "min_over_time": Signature((M,), V),
    "max_over_time": Signature((M,), V),
    "sum_over_time": Signature((M,), V),
    "count_over_time": Signature((M,), V),
    "last_over_time": Signature((M,), V),
    "stddev_over_time": Signature((M,), V),
    "stdvar_over_time": Signature((M,), V),
    "quantile_over_time": Signature((S, M), V),
    "time": Signature((), S),
    "timestamp": Signature((V,), V),
    "vector": Signature((S,), V),
    "scalar": Signature((V,), S),
    "label_replace": Signature((V, STR, STR, STR, STR), V),
    "label_join": Signature((V, STR, STR, STR), V, optional=1, variadic=True),
    "histogram_quantile": Signature((S, V), V),
    "pi": Signature((), S),
    "deriv": Signature((M,), V),
    "predict_linear": Signature((M, S), V),
    "holt_winters": Signature((M, S, S), V),
    "sort": Signature((V,), V),
    "sort_desc": Signature((V,), V),
    "present_over_time": Signature((M,), V),
    **{name: Signature((V,), V) for name in sorted(MATH)},  # exp, sqrt, ln, log2, log10, sgn, deg, rad
    **{name: Signature((V,), V, optional=1) for name in sorted(CALENDAR)},  # () is vector(time())
}

# Functions Prometheus 2.42 has that talonflow refuses by name rather than calling unknown.
KNOWN_UNSUPPORTED = frozenset(
    {
        "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh",
        "histogram_count", "histogram_fraction", "histogram_sum",
    }
)  # fmt: skip

AGGREGATIONS = frozenset(
    {"sum", "avg", "min", "max", "count", "count_values", "stddev", "stdvar", "topk", "bottomk",
     "quantile", "group"}
)  # fmt: skip
AGGREGATION_PARAM = {"topk": S, "bottomk": S, "quantile": S, "count_values": STR}

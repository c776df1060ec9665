"""PromQL: parser and evaluator with Prometheus' semantics, free of Kafka, bytewax and the wall clock.

The one engine behind the alerts flow, `talonflow rules test` and the console's query API.
"""

from promql.engine import DEFAULT_LOOKBACK_MS, DEFAULT_SUBQUERY_STEP_MS, instant_query, range_query
from promql.errors import EvalError, ParseError, PromQLError, QueryTimeout, Unsupported
from promql.parser import parse
from promql.values import (
    STALE_NAN,
    Labels,
    Matrix,
    MemoryStorage,
    Scalar,
    Series,
    Storage,
    String,
    Value,
    Vector,
    format_float,
    format_labels,
    labels_of,
)

__all__ = [
    "DEFAULT_LOOKBACK_MS",
    "DEFAULT_SUBQUERY_STEP_MS",
    "STALE_NAN",
    "EvalError",
    "Labels",
    "Matrix",
    "MemoryStorage",
    "ParseError",
    "PromQLError",
    "QueryTimeout",
    "Scalar",
    "Series",
    "Storage",
    "String",
    "Unsupported",
    "Value",
    "Vector",
    "format_float",
    "format_labels",
    "instant_query",
    "labels_of",
    "parse",
    "range_query",
]

"""Prometheus' template functions for alert labels and annotations (template/template.go, 2.42).

Passed as `funcs` to schemas/gotemplate.GoTemplate; `query` runs on the same engine and storage
as the rule, at the rule's evaluation time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from promql import DEFAULT_SUBQUERY_STEP_MS, PromQLError, Scalar, Storage, Vector, instant_query
from promql.lexer import parse_duration
from promql.vector_functions import expand_go_template
from schemas.gotemplate import StringMap, go_sprintf


@dataclass
class QuerySample:
    """One sample of a `query` result, with the capitalised fields templates read."""

    Labels: StringMap
    Value: float


def _float(value: Any) -> float:
    """convertToFloat: numbers, or strings Go's ParseFloat accepts."""
    if isinstance(value, bool):
        raise ValueError(f"can't convert {value} to float")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace("Inf", "inf"))
        except ValueError:
            raise ValueError(f'strconv.ParseFloat: parsing "{value}": invalid syntax') from None
    raise ValueError(f"can't convert {type(value).__name__} to float")


def _g4(value: float) -> str:
    return go_sprintf("%.4g", value)


def humanize(value: Any) -> str:
    v = _float(value)
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return _g4(v) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize1024(value: Any) -> str:
    v = _float(value)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix, v = p, v / 1024
    return _g4(v) + prefix


def humanize_duration(value: Any) -> str:
    v = _float(value)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    if v == 0:
        return _g4(v) + "s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        whole = int(v)
        seconds, minutes, hours, days = whole % 60, whole // 60 % 60, whole // 3600 % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}s"


def humanize_percentage(value: Any) -> str:
    return go_sprintf("%.4g%%", _float(value) * 100)


def humanize_timestamp(value: Any) -> str:
    """fmt.Sprint(time.Time) in UTC: `2026-12-03 11:40:13.5 +0000 UTC`."""
    v = _float(value)
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    seconds = math.floor(v)
    nanos = round((v - seconds) * 1e9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{stamp}{fraction} +0000 UTC"


def _strip_port(host_port: str) -> str:
    match = re.fullmatch(r"\[(.*)\]:\d*|([^:]*):\d*", host_port)
    if match is None:
        return host_port
    return match.group(1) if match.group(1) is not None else match.group(2)


def _first(result: list[QuerySample]) -> QuerySample:
    if not result:
        raise ValueError("first() called on vector with no elements")
    return result[0]


def _parse_duration(text: str) -> float:
    return 0.0 if text == "0" else parse_duration(text) / 1000


@dataclass
class TemplateContext:
    """Where and when `query` runs: set by the rule evaluator before it renders a rule's templates."""

    storage: Storage | None = None
    t_ms: int = 0
    subquery_step_ms: int = DEFAULT_SUBQUERY_STEP_MS  # the global evaluation_interval, as Prometheus'

    def funcs(self) -> dict[str, Callable[..., Any]]:
        return template_funcs(self)


def template_funcs(context: TemplateContext) -> dict[str, Callable[..., Any]]:
    """The function map for templates, Prometheus' names; `query` reads the context when called."""

    def query(expr: str) -> list[QuerySample]:
        if context.storage is None:
            raise ValueError("query() is not available here")
        try:
            result = instant_query(
                expr, context.t_ms, context.storage, subquery_step_ms=context.subquery_step_ms
            )
        except PromQLError as err:
            raise ValueError(str(err)) from None
        if isinstance(result, Scalar):
            return [QuerySample(StringMap(), result.value)]
        if not isinstance(result, Vector):
            raise ValueError("query result is not a vector or scalar")
        return [
            QuerySample(StringMap(ls), float(v)) for ls, v in zip(result.labels, result.values, strict=True)
        ]

    return {
        "query": query,
        "first": _first,
        "label": lambda name, sample: sample.Labels.get(name, ""),
        "value": lambda sample: sample.Value,
        "strvalue": lambda sample: sample.Labels.get("__value__", ""),
        "args": lambda *a: {f"arg{i}": v for i, v in enumerate(a)},
        "reReplaceAll": lambda pattern, repl, text: re.sub(pattern, _go_replacement(repl), text),
        "safeHtml": lambda text: text,
        "match": lambda pattern, text: re.search(pattern, text) is not None,
        "title": lambda text: re.sub(r"\b[a-z]", lambda m: m.group().upper(), text),
        "toUpper": str.upper,
        "toLower": str.lower,
        "sortByLabel": lambda name, result: sorted(result, key=lambda s: s.Labels.get(name, "")),
        "stripPort": _strip_port,
        "humanize": humanize,
        "humanize1024": humanize1024,
        "humanizeDuration": humanize_duration,
        "humanizePercentage": humanize_percentage,
        "humanizeTimestamp": humanize_timestamp,
        "parseDuration": _parse_duration,
    }


def _go_replacement(repl: str) -> Callable[[re.Match[str]], str]:
    """Go's ReplaceAllString expands `$1`/`${name}` the way label_replace does."""
    return lambda m: expand_go_template(repl, m)

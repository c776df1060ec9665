"""promtool's input series notation: `metric{a="b"}` and values like `1+2x3 _ stale 5x2`."""

from __future__ import annotations

import re

from promql import STALE_NAN, Labels, ParseError, parse
from promql.ast import VectorSelector

_EMPTY = re.compile(r"\s*\{\s*\}\s*")
_ITEM = re.compile(
    r"(?P<blank>_)(?:x(?P<blank_times>\d+))?"
    r"|(?P<stale>stale)"
    r"|(?P<start>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|inf|NaN))"
    r"(?:(?P<sign>[-+])(?P<step>[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|inf))?(?:x(?P<times>\d+))?"
)


def parse_series_labels(text: str) -> Labels:
    """`name{a="b"}`, `{__name__="x"}` or `{}` as a label set; only `=` matchers are allowed."""
    if _EMPTY.fullmatch(text):
        return ()
    try:
        expr = parse(text)
    except ParseError as err:
        raise ValueError(f"{text!r}: {err}") from None
    if not isinstance(expr, VectorSelector) or expr.offset_ms or expr.at_ms is not None:
        raise ValueError(f"{text!r}: not a series description")
    labels = {}
    for m in expr.matchers:
        if m.op != "=":
            raise ValueError(f"{text!r}: a series description takes only = matchers")
        labels[m.name] = m.value
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def expand_values(text: str) -> list[float | None]:
    """The values of one series, one per interval step; None is `_` (no sample at that step)."""
    out: list[float | None] = []
    for word in str(text).split():
        match = _ITEM.fullmatch(word)
        if match is None:
            raise ValueError(f"bad value {word!r} in series values {text!r}")
        if match["blank"]:
            out.extend([None] * int(match["blank_times"] or 1))
        elif match["stale"]:
            out.append(STALE_NAN)
        else:
            value = float(match["start"])
            times = match["times"]
            step = float(match["step"] or 0) * (-1 if match["sign"] == "-" else 1)
            if times is None and match["step"]:
                raise ValueError(f"bad value {word!r}: a step needs a repeat count (x)")
            out.append(value)
            for _ in range(int(times or 0)):
                value += step
                out.append(value)
    return out

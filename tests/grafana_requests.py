"""The requests Grafana's Prometheus data source makes for a dashboard, made without Grafana.

Grafana cannot run here (no Docker, not in Debian, no download), so the tests send what it would.
Its backend (pkg/promlib) derives each panel query's step from the dashboard range, the panel's
maxDataPoints (its width in pixels unless set) and the data source's scrape interval
(`timeInterval`): range / maxDataPoints rounded to a "nice" interval, never under the scrape
interval, never over 11,000 points. It aligns start and end down to a multiple of the step,
substitutes `$__interval` (kbn format, "1m"), `$__rate_interval` (max(interval + scrape,
4 x scrape), in Go's Duration format, "4m0s"), `$__range` ("21600s") and the template variables
(a multi-value or All selection as a regex alternation), and POSTs the form to /api/v1/query_range.
Hand-written from that documented behaviour: there is no Python port of it to depend on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

SAFE_RESOLUTION: Final = 11_000  # Grafana's cap on points per series
DASHBOARD_PIXELS: Final = 1600  # width of the whole 24-column grid: a panel of w columns is w/24 of it
# (upper bound of the raw interval in ms, the nice interval it rounds to), as Grafana's roundInterval
_NICE: Final = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000), (750_000, 600_000),
    (1_050_000, 900_000), (1_500_000, 1_200_000), (2_700_000, 1_800_000), (5_400_000, 3_600_000),
    (9_000_000, 7_200_000), (16_200_000, 10_800_000), (32_400_000, 21_600_000),
    (86_400_000, 43_200_000), (604_800_000, 86_400_000), (1_814_400_000, 604_800_000),
)  # fmt: skip
_KBN: Final = (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000))
_REGEX_SPECIAL: Final = re.compile(r"([\\^$*+?.()|{}\[\]])")


def round_interval(ms: int) -> int:
    for upper, nice in _NICE:
        if ms <= upper:
            return nice
    return 2_592_000_000 if ms < 3_628_800_000 else 31_536_000_000


def kbn_interval(ms: int) -> str:
    """`$__interval` as Grafana writes it: the largest whole unit (90 s → "1m")."""
    for unit, size in _KBN:
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


def go_duration(ms: int) -> str:
    """Go's time.Duration.String, which `$__rate_interval` is written in: 4m0s, 1h0m0s, 45s."""
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{seconds}s"


def go_float(seconds: float) -> str:
    """Go's strconv.FormatFloat(x, 'f', -1, 64), in which Grafana's client writes start, end and
    step: the shortest digits that read back, never an exponent. (`f"{x:g}"` kept six significant
    digits, so a start or end of 1.8e9 s moved by up to 5,000 s, which emptied every panel whenever
    the end was rounded down to before the data.)"""
    return str(np.format_float_positional(seconds, trim="-"))


def _interval(range_ms: int, resolution: int, floor_ms: int) -> int:
    raw = range_ms // resolution
    return floor_ms if raw < floor_ms else round_interval(raw)


def variable_value(selected: Sequence[str], definition: Mapping[str, Any]) -> str:
    """A template variable's text in a query: All → its allValue, several → (a|b), regex-escaped."""
    if list(selected) == ["$__all"]:
        return str(definition["allValue"])
    escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", value) for value in selected]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class PanelQuery:
    expr: str
    start_s: float
    end_s: float
    step_s: float

    def form(self) -> dict[str, str]:
        return {
            "query": self.expr,
            "start": go_float(self.start_s),
            "end": go_float(self.end_s),
            "step": go_float(self.step_s),
        }


def panel_query(
    expr: str,
    panel: Mapping[str, Any],
    from_ms: int,
    to_ms: int,
    scrape_ms: int,
    variables: Mapping[str, str],
) -> PanelQuery:
    """The query_range form Grafana sends for one target of `panel` over [from, to]."""
    range_ms = to_ms - from_ms
    max_points = int(panel.get("maxDataPoints") or panel["gridPos"]["w"] * DASHBOARD_PIXELS // 24)
    interval = _interval(range_ms, max_points, scrape_ms)
    step = max(interval, round_interval(range_ms // SAFE_RESOLUTION))
    rate_interval = max(interval + scrape_ms, 4 * scrape_ms)
    text = expr
    for name, value in (
        ("__rate_interval", go_duration(rate_interval)),
        ("__interval", kbn_interval(step)),
        ("__range", f"{round(range_ms / 1000)}s"),
        *variables.items(),
    ):
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    start = math.floor(from_ms / step) * step
    end = math.floor(to_ms / step) * step
    return PanelQuery(text, start / 1000, end / 1000, step / 1000)


def targets(dashboard: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Every (panel, target) of a dashboard, rows' nested panels included."""
    found: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend((inner, target) for target in inner.get("targets", []))
    return found

"""Bars on a shared time axis (waterfalls, session timelines), laid out in percent of the whole."""

from __future__ import annotations

from datetime import datetime
from typing import Any

MIN_WIDTH = 0.3  # percent: an instant still shows as a sliver


def lay_out(records: list[dict[str, Any]]) -> tuple[datetime, float]:
    """Sets `offset` and `width` on each span-like record; returns the first start and the seconds spanned."""
    start = min(r["start_time"] for r in records)
    total = max((max(r["end_time"] for r in records) - start).total_seconds(), 1e-9)
    for record in records:
        record["offset"] = 100 * (record["start_time"] - start).total_seconds() / total
        record["width"] = max(
            100 * (record["end_time"] - record["start_time"]).total_seconds() / total, MIN_WIDTH
        )
    return start, total

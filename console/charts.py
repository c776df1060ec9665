"""Time series shaped for uPlot: one shared x axis (epoch seconds) and one array per line.

Only these arrays go to the browser: a chart of any range is at most ~120 points per line.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from console.timerange import TimeRange

BUCKET = "bucket"


def bucketed(frame: pl.LazyFrame, time_column: str, window: TimeRange) -> pl.LazyFrame:
    """Adds `bucket`, the start of each row's step, for a group_by."""
    return frame.with_columns(pl.col(time_column).dt.truncate(f"{window.step()}s").alias(BUCKET))


def chart(
    title: str,
    unit: str,
    frame: pl.DataFrame,
    window: TimeRange,
    values: list[str] | None = None,
    by: str | None = None,
    counts: bool = False,
) -> dict[str, Any]:
    """A chart from `frame` (a `bucket` column plus value columns): one line per value column,
    or, with `by`, one line per distinct value of `by` for the single value column. `counts`:
    an empty step is a zero (calls, tokens, USD), not a gap (a latency nobody measured)."""
    step = window.step()
    start = int(window.start.timestamp()) // step * step
    xs = list(range(start, int(window.end.timestamp()) + 1, step))
    index = {x: i for i, x in enumerate(xs)}
    series: list[dict[str, Any]] = []
    frame = frame.with_columns((pl.col(BUCKET).dt.epoch("s")).alias("_x"))
    if by is None:
        for column in values or [c for c in frame.columns if c not in (BUCKET, "_x")]:
            series.append({"label": column, "values": _line(frame["_x"], frame[column], index, counts)})
    else:
        (column,) = values or [c for c in frame.columns if c not in (BUCKET, "_x", by)]
        for key, part in sorted(frame.partition_by(by, as_dict=True).items(), key=lambda kv: str(kv[0])):
            series.append({"label": str(key[0]), "values": _line(part["_x"], part[column], index, counts)})
    return {"title": title, "unit": unit, "x": xs, "series": series, "counts": counts}


def _line(xs: pl.Series, ys: pl.Series, index: dict[int, int], counts: bool) -> list[float | None]:
    line: list[float | None] = [0.0 if counts else None] * len(index)
    for x, y in zip(xs.to_list(), ys.to_list(), strict=True):
        if x in index and y is not None:
            line[index[x]] = float(y)
    return line

"""The datasets as the console reads them: all tiers, pruned to a time range by hive partition.

Every page goes through `scan`, so each query names its window and Polars skips the
`date=…/hour=…` files outside it before opening any (talonflow/query.py lists hot + warm + cold).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.datasets import DATASETS, PARTITION_COLUMNS
from talonflow.query import dataset_frame

DATE, HOUR = PARTITION_COLUMNS


def scan(config: TalonflowConfig, dataset: str, window: TimeRange | None = None) -> pl.LazyFrame:
    frame = dataset_frame(config, dataset)
    if window is None:
        return frame
    time = pl.col(DATASETS[dataset].time_column)
    first, last = window.start.astimezone(UTC), window.end.astimezone(UTC)
    partitions = pl.col(DATE).is_between(first.date(), last.date())
    if first.date() == last.date():  # one day: prune hours too
        partitions &= pl.col(HOUR).is_between(first.hour, last.hour)
    return frame.filter(partitions, time >= first, time < last)


def today(now: datetime | None = None) -> TimeRange:
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return TimeRange(midnight, now + timedelta(seconds=1), None)


def rows(frame: pl.LazyFrame) -> list[dict[str, Any]]:
    return frame.collect().to_dicts()

"""The datasets as the console reads them: all tiers, pruned to a time range by hive partition.

Every page goes through `scan`, so each query names its window and Polars skips the
`date=…/hour=…` files outside it before opening any (talonflow/query.py lists hot + warm + cold).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import polars as pl

from console.timerange import TimeRange
from schemas.config import TalonflowConfig
from schemas.datasets import DATASETS, PARTITION_COLUMNS
from talonflow.query import dataset_files, dataset_frame, files_frame

DATE, HOUR = PARTITION_COLUMNS
_PARTITION: Final = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


def scan(config: TalonflowConfig, dataset: str, window: TimeRange | None = None) -> pl.LazyFrame:
    frame = dataset_frame(config, dataset)
    return frame if window is None else within(frame, dataset, window)


def scan_files(config: TalonflowConfig, dataset: str, uris: list[str], window: TimeRange) -> pl.LazyFrame:
    """Only the given files of the dataset (local paths or s3 URLs, as console/trace_index.py lists them)."""
    local = [u for u in uris if not u.startswith("s3://")]
    return within(files_frame(config, dataset, local, [u for u in uris if u not in local]), dataset, window)


def file_hour(uri: str) -> datetime | None:
    """The UTC hour of a file's hive partition (`…/date=YYYY-MM-DD/hour=HH/…`): all its rows are in it."""
    found = _PARTITION.search(uri)
    return None if found is None else datetime.fromisoformat(found[1]).replace(hour=int(found[2]), tzinfo=UTC)


def files_in(config: TalonflowConfig, dataset: str, window: TimeRange) -> list[str]:
    """The dataset's files (local paths, then s3 URLs) whose hour overlaps the window."""
    local, remote = dataset_files(config, dataset)
    hours = {uri: file_hour(uri) for uri in (*local, *remote)}
    return [u for u, h in hours.items() if h is None or (window.start - timedelta(hours=1) < h < window.end)]


def file_key(uri: str) -> str:
    """What identifies a file's content: a local path with its size and mtime (a replay or a
    compaction rewrites files); an object's key alone (it carries the content's sha256)."""
    if uri.startswith("s3://"):
        return uri
    stat = os.stat(uri)  # not Path(uri).stat(): pathlib's parsing cost more than the call, per file
    return f"{uri}:{stat.st_size}:{stat.st_mtime_ns}"


def of_dataset(key: str, dataset: str) -> bool:
    """Whether a file's path, URL or key (`file_key`) is one of the dataset's, in any tier."""
    return f"/{dataset}/date=" in key


def within(frame: pl.LazyFrame, dataset: str, window: TimeRange) -> pl.LazyFrame:
    time = pl.col(DATASETS[dataset].time_column)
    first, last = window.start.astimezone(UTC), window.end.astimezone(UTC)
    date, hour = pl.col(DATE), pl.col(HOUR)
    if first.date() == last.date():
        partitions = (date == first.date()) & hour.is_between(first.hour, last.hour)
    else:  # the first and last days from their hours on or up to them, whole days between
        partitions = (
            ((date == first.date()) & (hour >= first.hour))
            | ((date > first.date()) & (date < last.date()))
            | ((date == last.date()) & (hour <= last.hour))
        )
    return frame.filter(partitions, time >= first, time < last)


def today(now: datetime | None = None) -> TimeRange:
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return TimeRange(midnight, now + timedelta(seconds=1), None)


def rows(frame: pl.LazyFrame) -> list[dict[str, Any]]:
    return frame.collect().to_dicts()

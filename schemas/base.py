"""Arrow types and the dataset descriptor shared by every schema module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pyarrow as pa

TIME: Final = pa.timestamp("ns", tz="UTC")
ATTRIBUTES: Final = pa.map_(pa.string(), pa.string())
PARTITION_COLUMNS: Final = ("date", "hour")  # hive keys, derived from each dataset's time_column


@dataclass(frozen=True)
class Dataset:
    name: str
    schema: pa.Schema
    time_column: str  # drives the date/hour partitions
    sort_by: tuple[str, ...]  # row order inside a file, for compression and scans

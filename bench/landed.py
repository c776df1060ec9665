"""What landed in Parquet, read across all tiers as `talonflow query` reads them, for the chaos,
faults and soak runs' counts by unique id."""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from schemas.config import TalonflowConfig
from talonflow.query import dataset_frame

ID = "chaos.id"  # the attribute that makes every span, point and log line of the SDK load countable


def tiered(
    config: TalonflowConfig, dataset: str, query: Callable[[pl.LazyFrame], pl.LazyFrame]
) -> pl.DataFrame:
    """`query` over the dataset across all tiers, as `talonflow query` reads it (the manifest
    decides which copy counts), each row with its `file`. A file the lifecycle mover removed while
    it was read makes the count start over."""
    for _ in range(5):
        try:
            return query(dataset_frame(config, dataset, file_column="file")).collect()
        except (FileNotFoundError, pl.exceptions.ComputeError):
            time.sleep(1)
    raise RuntimeError(f"{dataset}: files kept vanishing while counted")


def landed_ids(config: TalonflowConfig, dataset: str) -> pl.DataFrame:
    """Rows per unique id in a dataset, and the files holding them (sinks/parquet.py names a hot
    file `<topic>-<partition>-<first offset>-<last offset>`; a moved one is named by its hash)."""
    stems = pl.col("file").str.extract(r"([^/]+)\.parquet$")

    def ids(frame: pl.LazyFrame) -> pl.LazyFrame:
        found = frame.select(pl.col("attributes").map.get(ID).alias("id"), stems.alias("file")).drop_nulls(
            "id"
        )
        return found.group_by("id").agg(pl.len().alias("n"), pl.col("file").alias("files"))

    return tiered(config, dataset, ids)

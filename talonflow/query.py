"""`talonflow query`: Polars SQL over the Parquet datasets, each dataset a table across all tiers.

A table is the union of its hot files on local disk and its warm and cold objects in MinIO, as
the tier manifest lists them (sinks/tiers.py), so a partition is counted once wherever it is.
Scans are lazy and hive-partitioned: `WHERE date = ... AND hour = ...` prunes files before any
is opened. A dataset with no files yet is an empty table of the right schema.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

import polars as pl
import pyarrow as pa

from schemas.config import TalonflowConfig
from schemas.datasets import DATASETS, PARTITION_COLUMNS
from sinks.lifecycle import hot_files
from sinks.tiers import Manifest, storage_options

_HIVE_SCHEMA = {PARTITION_COLUMNS[0]: pl.Date, PARTITION_COLUMNS[1]: pl.Int8}


def dataset_frame(config: TalonflowConfig, name: str) -> pl.LazyFrame:
    manifest = Manifest.load(config.data_dir, name)
    local = [str(p) for files in hot_files(config.data_dir, name, manifest).values() for p in files]
    remote = [f"s3://{config.minio.bucket}/{o.key}" for p in manifest.partitions.values() for o in p.objects]
    frames = []
    if local:
        frames.append(pl.scan_parquet(local, hive_partitioning=True, hive_schema=_HIVE_SCHEMA))
    if remote:
        options = storage_options(config.minio)
        frames.append(
            pl.scan_parquet(remote, hive_partitioning=True, hive_schema=_HIVE_SCHEMA, storage_options=options)
        )
    if frames:
        return pl.concat(frames, how="vertical")
    empty = pl.from_arrow(pa.Table.from_pylist([], DATASETS[name].schema))
    assert isinstance(empty, pl.DataFrame)
    return empty.lazy().with_columns(*(pl.lit(None, dtype).alias(c) for c, dtype in _HIVE_SCHEMA.items()))


def run_query(config: TalonflowConfig, sql: str) -> pl.DataFrame:
    context = pl.SQLContext({name: dataset_frame(config, name) for name in DATASETS})
    return context.execute(sql, eager=True)


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested columns (maps, lists, structs) as JSON text, for CSV."""
    nested = [c for c, t in frame.schema.items() if t.is_nested() or isinstance(t, pl.Map)]
    if not nested:
        return frame
    return frame.with_columns(
        pl.Series(c, [json.dumps(v, default=str) for v in frame[c].to_list()], pl.String) for c in nested
    )


def write_result(frame: pl.DataFrame, output_format: str, out: TextIO = sys.stdout) -> None:
    if output_format == "csv":
        out.write(_flat(frame).write_csv())
    elif output_format == "json":
        for row in frame.iter_rows(named=True):
            out.write(json.dumps(row, default=str) + "\n")
    else:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=80, tbl_hide_dataframe_shape=False):
            out.write(f"{frame}\n")

"""`talonflow query`: Polars SQL over the Parquet datasets, each dataset a table.

Tables are lazy scans of the hive partitions, so `WHERE date = ... AND hour = ...` prunes files
before any is opened. A dataset with no files yet is an empty table of the right schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

import polars as pl
import pyarrow as pa

from schemas.datasets import DATASETS, PARTITION_COLUMNS

_HIVE_SCHEMA = {PARTITION_COLUMNS[0]: pl.Date, PARTITION_COLUMNS[1]: pl.Int8}


def dataset_frame(root: Path, name: str) -> pl.LazyFrame:
    folder = root / name
    if any(folder.glob("date=*/hour=*/*.parquet")):
        return pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=True, hive_schema=_HIVE_SCHEMA)
    empty = pl.from_arrow(pa.Table.from_pylist([], DATASETS[name].schema))
    assert isinstance(empty, pl.DataFrame)
    return empty.lazy().with_columns(*(pl.lit(None, dtype).alias(c) for c, dtype in _HIVE_SCHEMA.items()))


def run_query(root: Path, sql: str) -> pl.DataFrame:
    context = pl.SQLContext({name: dataset_frame(root, name) for name in DATASETS})
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

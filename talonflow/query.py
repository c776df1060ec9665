"""`talonflow query`: Polars SQL over the Parquet datasets, each dataset a table across all tiers.

A table is the union of its hot files on local disk and its warm and cold objects in MinIO, as
the tier manifest lists them (sinks/tiers.py), so a partition is counted once wherever it is.
Scans are lazy and hive-partitioned: `WHERE date = ... AND hour = ...` prunes files before any
is opened. A dataset with no files yet is an empty table of the right schema.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterable
from typing import Final, TextIO

import polars as pl
import pyarrow as pa

from schemas.config import TalonflowConfig
from schemas.datasets import DATASETS, PARTITION_COLUMNS
from sinks.lifecycle import hot_files
from sinks.tiers import Manifest, storage_options

_HIVE_SCHEMA = {PARTITION_COLUMNS[0]: pl.Date, PARTITION_COLUMNS[1]: pl.Int8}


def dataset_files(config: TalonflowConfig, name: str) -> tuple[list[str], list[str]]:
    """(local paths, s3 URLs) of the dataset's files across all tiers, each partition once."""
    manifest = Manifest.load(config.data_dir, name)
    local = [str(p) for files in hot_files(config.data_dir, name, manifest).values() for p in files]
    remote = [f"s3://{config.minio.bucket}/{o.key}" for p in manifest.partitions.values() for o in p.objects]
    return local, remote


def dataset_frame(config: TalonflowConfig, name: str, file_column: str | None = None) -> pl.LazyFrame:
    return files_frame(config, name, *dataset_files(config, name), file_column=file_column)


def files_frame(
    config: TalonflowConfig, name: str, local: list[str], remote: list[str], file_column: str | None = None
) -> pl.LazyFrame:
    """Some of the dataset's files (`dataset_files`) as one lazy table with the hive columns (and
    each row's file path or URL in `file_column`, when named: which copy a row came from)."""
    frames = []
    if local:
        frames.append(
            pl.scan_parquet(
                local, hive_partitioning=True, hive_schema=_HIVE_SCHEMA, include_file_paths=file_column
            )
        )
    if remote:
        options = storage_options(config.minio)
        frames.append(
            pl.scan_parquet(
                remote,
                hive_partitioning=True,
                hive_schema=_HIVE_SCHEMA,
                storage_options=options,
                include_file_paths=file_column,
            )
        )
    if frames:
        return pl.concat(frames, how="vertical")
    empty = pl.from_arrow(pa.Table.from_pylist([], DATASETS[name].schema))
    assert isinstance(empty, pl.DataFrame)
    extra = {**_HIVE_SCHEMA, **({file_column: pl.String} if file_column else {})}
    return empty.lazy().with_columns(*(pl.lit(None, dtype).alias(c) for c, dtype in extra.items()))


# Polars SQL cannot index a Map column, so `attributes['session_id']` (DuckDB's syntax, as the
# README writes it) becomes a column computed with Polars' own `map.get`, named as written.
_MAP_LOOKUP: Final = re.compile(r"\b(attributes|resource_attributes)\s*\[\s*'([^']*)'\s*\]")


def _with_map_lookups(sql: str, frames: dict[str, pl.LazyFrame]) -> tuple[str, dict[str, pl.LazyFrame]]:
    lookups = {f"{m.group(1)}['{m.group(2)}']": (m.group(1), m.group(2)) for m in _MAP_LOOKUP.finditer(sql)}
    if not lookups:
        return sql, frames
    for name, frame in frames.items():
        columns = set(frame.collect_schema().names())
        extra = [pl.col(c).map.get(k).alias(alias) for alias, (c, k) in lookups.items() if c in columns]
        frames[name] = frame.with_columns(extra) if extra else frame
    return _MAP_LOOKUP.sub(lambda m: f"\"{m.group(1)}['{m.group(2)}']\"", sql), frames


class QueryError(ValueError):
    """A query that cannot run as written. The message says what is wrong in a line or two;
    `detail` keeps Polars' own text (with its resolved plan) for `--verbose`."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def run_query(config: TalonflowConfig, sql: str) -> pl.DataFrame:
    sql, frames = _with_map_lookups(sql, {name: dataset_frame(config, name) for name in DATASETS})
    context = pl.SQLContext(frames)
    try:
        return context.execute(sql, eager=True)
    except _QUERY_ERRORS as err:
        raise QueryError(_explain(err, sql), str(err)) from err
    except pl.exceptions.ComputeError as err:  # also raised for I/O: only type mismatches are the query's
        if not _TYPE_MISMATCH.search(str(err)):
            raise
        raise QueryError(_explain(err, sql), str(err)) from err


# What Polars raises for a query that is wrong as written (as opposed to data it cannot read).
_QUERY_ERRORS: Final = (
    pl.exceptions.ColumnNotFoundError,
    pl.exceptions.SQLInterfaceError,
    pl.exceptions.SQLSyntaxError,
    pl.exceptions.InvalidOperationError,
    pl.exceptions.SchemaError,
    pl.exceptions.SchemaFieldNotFoundError,
    pl.exceptions.DuplicateError,
)
_TYPE_MISMATCH: Final = re.compile(r"cannot compare|dtype|data type|cannot cast|conversion from", re.I)
_MISSING_COLUMN: Final = re.compile(r'unable to find column "([^"]+)"|no column named \'([^\']+)\'')
_MISSING_TABLE: Final = re.compile(r"relation '([^']+)' was not found")
_TABLES: Final = re.compile(r"\b(?:from|join)\s+\"?(\w+)", re.I)
# Columns a failing expression cites; file pruning cites their statistics (duration_ns_max).
_COLUMN_REFERENCE: Final = re.compile(r'col\("([^"]+?)(?:_min|_max|_null_count)?"\)|column \'([^\']+)\'')


def _columns(table: str) -> dict[str, str]:
    """Column name -> type, as `talonflow query` shows the table (with the hive columns)."""
    schema = DATASETS[table].schema
    return {f.name: str(f.type) for f in schema} | {c: str(t).lower() for c, t in _HIVE_SCHEMA.items()}


def _explain(err: pl.exceptions.PolarsError, sql: str) -> str:
    """One or two lines for people: what is wrong, the columns involved, and the closest valid name."""
    text = str(err)
    summary = text.split("\n\n")[0].split("; valid columns")[0].strip()
    tables = [t for t in dict.fromkeys(_TABLES.findall(sql)) if t in DATASETS] or list(DATASETS)
    if table := _MISSING_TABLE.search(text):
        name = table.group(1)
        return f'no table "{name}"{_close(name, DATASETS)}\ntables: {", ".join(DATASETS)}'
    if column := _MISSING_COLUMN.search(text):
        name = column.group(1) or column.group(2)
        known = [c for table in tables for c in _columns(table)]
        listed = "; ".join(f"{table}: {', '.join(_columns(table))}" for table in tables)
        return f'no column "{name}" in {" or ".join(tables)}{_close(name, known)}\ncolumns of {listed}'
    cited = [a or b for a, b in _COLUMN_REFERENCE.findall(text)]
    types = [
        f"{c} is {t} in {table}" for c in dict.fromkeys(cited) for table in tables
        if (t := _columns(table).get(c))
    ]  # fmt: skip
    return f"{summary}\n{'; '.join(types)}" if types else summary


def _close(name: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1)
    return f'; did you mean "{match[0]}"?' if match else ""


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

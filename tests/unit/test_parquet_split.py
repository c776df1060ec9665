"""sinks/parquet.py: one sort per flush splits rows by hour exactly as a filter per hour did, and
the random ids are written without a dictionary or statistics, delta-length encoded."""

from __future__ import annotations

import io
import random
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.datasets import RANDOM_ID_COLUMNS, SPANS
from sinks.lifecycle import compact
from sinks.parquet import HOUR_NS, dictionary_columns, split_by_hour, write_atomically


def _spans(rows: int, seed: int, hours: int = 3, start: int = 1_790_000_000_000_000_000) -> pa.Table:
    """Spans over `hours` hours from `start`'s hour, in chunks, with ties on every sort key so that
    order is tested."""
    rng = random.Random(seed)
    start = start // HOUR_NS * HOUR_NS
    columns = {
        "start_time": [start + rng.randrange(hours * HOUR_NS) // 1000 * 1000 for _ in range(rows)],
        "service_name": [rng.choice(["a", "b", None]) for _ in range(rows)],
        "name": [rng.choice(["chat", "tool"]) for _ in range(rows)],
        "span_id": [f"{i:016x}" for i in range(rows)],  # tells rows apart
    }
    table = pa.Table.from_pydict(
        {name: columns.get(name) or [None] * rows for name in SPANS.schema.names}, schema=SPANS.schema
    )
    return pa.concat_tables([table.slice(0, rows // 3), table.slice(rows // 3)])


def _reference(table: pa.Table) -> list[tuple[int, list[str]]]:
    """The previous split: a filter per hour, then a stable sort by the dataset's keys."""
    hours = pc.floor_temporal(table["start_time"], unit="hour").cast(pa.int64())
    parts = []
    for hour in sorted(pc.unique(hours).to_pylist()):
        rows = table.filter(pc.equal(hours, hour)).sort_by([(c, "ascending") for c in SPANS.sort_by])
        parts.append((hour, rows["span_id"].to_pylist()))
    return parts


def test_split_by_hour_matches_a_filter_per_hour() -> None:
    table = _spans(3000, seed=7)
    parts = split_by_hour(table, SPANS)
    assert [(hour, rows["span_id"].to_pylist()) for hour, rows in parts] == _reference(table)
    assert len(parts) == 3
    assert sum(rows.num_rows for _, rows in parts) == table.num_rows


def test_split_by_hour_within_one_hour_and_before_1970() -> None:
    """The one-hour shortcut, and integer hours floored as `floor_temporal` floors them before 1970."""
    for table in (_spans(1000, seed=3, hours=1), _spans(1000, seed=5, start=-5 * HOUR_NS - 1)):
        parts = split_by_hour(table, SPANS)
        assert [(hour, rows["span_id"].to_pylist()) for hour, rows in parts] == _reference(table)
    assert len(split_by_hour(_spans(1000, seed=3, hours=1), SPANS)) == 1


def test_split_by_hour_of_no_rows() -> None:
    assert split_by_hour(SPANS.schema.empty_table(), SPANS) == []


def test_ids_have_no_dictionary_and_nested_columns_keep_theirs() -> None:
    columns = dictionary_columns(SPANS.schema)
    assert not set(columns) & set(RANDOM_ID_COLUMNS)
    assert "attributes.key_value.value" in columns and "name" in columns
    buffer = io.BytesIO()
    pq.write_table(_spans(300, seed=1), buffer, use_dictionary=list(columns))
    metadata = pq.ParquetFile(buffer).metadata.row_group(0)
    encodings = {
        metadata.column(i).path_in_schema: metadata.column(i).encodings for i in range(metadata.num_columns)
    }
    assert "RLE_DICTIONARY" not in encodings["span_id"]
    assert "RLE_DICTIONARY" in encodings["name"]


def test_flat_columns_keep_their_statistics_and_nested_ones_have_none(tmp_path: Path) -> None:
    path = tmp_path / "spans.parquet"
    write_atomically(_spans(300, seed=3), path, 1024)
    group = pq.ParquetFile(path).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).statistics for i in range(group.num_columns)}
    assert stats["start_time"] is not None and stats["start_time"].has_min_max
    assert stats["service_name"].has_min_max and stats["name"].min == "chat"
    assert stats["attributes.key_value.key"] is None or not stats["attributes.key_value.key"].has_min_max


def test_ids_are_delta_length_encoded_without_statistics_and_read_back_alike(tmp_path: Path) -> None:
    table = _spans(300, seed=5)
    ids = ["", None, *(f"{i:032x}" for i in range(298))]  # no trace context, and a null, read back too
    table = table.set_column(table.schema.get_field_index("trace_id"), "trace_id", pa.array(ids))
    links = [
        [{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "attributes": []}] if i % 2 else []
        for i in range(300)
    ]
    links_field = SPANS.schema.field("links")
    table = table.set_column(
        table.schema.get_field_index("links"), links_field, pa.array(links, links_field.type)
    )
    path = tmp_path / "spans.parquet"
    write_atomically(table, path, 1024)
    group = pq.ParquetFile(path).metadata.row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    link_ids = ["links.list.element.trace_id", "links.list.element.span_id"]
    for column in [*RANDOM_ID_COLUMNS, *link_ids]:
        assert "DELTA_LENGTH_BYTE_ARRAY" in chunks[column].encodings
        assert "RLE_DICTIONARY" not in chunks[column].encodings
        assert chunks[column].statistics is None or not chunks[column].statistics.has_min_max
    assert chunks["name"].statistics.has_min_max  # the sort keys keep theirs
    assert pq.read_table(path)["links"].to_pylist() == table["links"].to_pylist()
    expected = {c: table[c].to_pylist() for c in RANDOM_ID_COLUMNS}
    assert {c: pq.read_table(path)[c].to_pylist() for c in RANDOM_ID_COLUMNS} == expected
    assert pl.read_parquet(path).select(RANDOM_ID_COLUMNS).to_dict(as_series=False) == expected
    read = (
        duckdb.connect()
        .execute(f"SELECT {', '.join(RANDOM_ID_COLUMNS)} FROM read_parquet('{path}')")
        .fetchall()
    )
    assert [list(row) for row in read] == [list(row) for row in zip(*expected.values(), strict=True)]


def test_compaction_writes_ids_as_the_sink_does(tmp_path: Path) -> None:
    """Warm and cold files (sinks/lifecycle.py's compaction) keep the sink's id encoding."""
    table = _spans(300, seed=6)
    ids = pa.array([f"{i:032x}" for i in range(300)])
    table = table.set_column(table.schema.get_field_index("trace_id"), "trace_id", ids)
    compacted = compact([table.slice(0, 100), table.slice(100)], SPANS, tmp_path, level=3)
    group = pq.ParquetFile(compacted.path).metadata.row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    for column in RANDOM_ID_COLUMNS:
        assert "DELTA_LENGTH_BYTE_ARRAY" in chunks[column].encodings
        assert "RLE_DICTIONARY" not in chunks[column].encodings
    assert chunks["name"].statistics.has_min_max
    assert sorted(pq.read_table(compacted.path)["trace_id"].to_pylist()) == ids.to_pylist()

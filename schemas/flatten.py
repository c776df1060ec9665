"""OTLP export requests → Arrow tables, one Kafka poll at a time.

The records of a poll go to the native decoder (native/, Rust) in one call per signal, which
releases the GIL and returns one Arrow batch in the dataset's schema: no Python object is made per
span, point or attribute. Records that Python's protobuf would reject are rejected whole and become
dead letters with their reason; rows with absurd timestamps become dead letters here. The previous
field-by-field Python path lives on only as the test oracle, tests/python_flatten_oracle.py; where
it crashed a whole poll (times past 2^63 ns, negative span kinds or status codes, unknown
temporalities) the native path answers: a dead letter, UNSPECIFIED, UNSET, an empty temporality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from talonflow_native import Decoder

from schemas.datasets import (
    ATTRIBUTE_COLUMNS,
    DEAD_LETTERS,
    LOGS,
    METRICS,
    RESOURCE_COLUMNS,
    SPANS,
    Dataset,
)
from schemas.topics import LOGS_TOPIC, METRICS_TOPIC, SPANS_TOPIC


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # when the receiver's producer stamped the record: the replay-stable "now"
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class TimeBounds:
    """Rows whose event time is further than this from their record's Kafka time are dead letters."""

    max_past_s: float = 7 * 86400.0
    max_future_s: float = 3600.0


@dataclass
class Flattened:
    tables: dict[str, pa.Table] = field(default_factory=dict)  # dataset name -> rows of this poll
    # dataset name -> for each row of its table, the index in the poll of the record it came from
    # (dead letters excepted), so that per-record facts need no second flatten (flows/alerts.py)
    record_of_row: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, dataset: Dataset, table: pa.Table, record_of_row: np.ndarray | None = None) -> None:
        if table.num_rows:
            previous = self.tables.get(dataset.name)
            self.tables[dataset.name] = table if previous is None else pa.concat_tables([previous, table])
        if record_of_row is not None and len(record_of_row):
            before = self.record_of_row.get(dataset.name)
            self.record_of_row[dataset.name] = (
                record_of_row if before is None else np.concatenate([before, record_of_row])
            )

    def newest_of_record(self, index: int, datasets: Sequence[Dataset]) -> int | None:
        """The newest event time (ns) among the rows of `datasets` that came from record `index`."""
        newest: int | None = None
        for dataset in datasets:
            table, rows_from = self.tables.get(dataset.name), self.record_of_row.get(dataset.name)
            if table is None or rows_from is None:
                continue
            mine = table[dataset.time_column].cast(pa.int64()).filter(pa.array(rows_from == index))
            latest = pc.max(mine).as_py()
            if latest is not None:
                newest = latest if newest is None else max(newest, latest)
        return newest


@dataclass(frozen=True)
class _Signal:
    dataset: Dataset
    request: str  # the export request's message name, for dead-letter reasons
    decoder: Decoder


def native_decoder(signal: str, dataset: Dataset, build: type[Decoder] = Decoder) -> Decoder:
    """The native decoder of `signal`; `build` is another build's class (bench/ingest.py compares)."""
    promoted = [(column, list(keys)) for column, _, keys in ATTRIBUTE_COLUMNS]
    return build(signal, dataset.schema, promoted, list(RESOURCE_COLUMNS))


_BY_TOPIC = {
    SPANS_TOPIC: _Signal(SPANS, "ExportTraceServiceRequest", native_decoder("spans", SPANS)),
    METRICS_TOPIC: _Signal(METRICS, "ExportMetricsServiceRequest", native_decoder("metrics", METRICS)),
    LOGS_TOPIC: _Signal(LOGS, "ExportLogsServiceRequest", native_decoder("logs", LOGS)),
}


class DeadLetters:
    """The dead-letter rows of one poll."""

    def __init__(self) -> None:
        self.lists: dict[str, list[Any]] = {name: [] for name in DEAD_LETTERS.schema.names}

    def add(self, record: KafkaRecord, reason: str, items: int, payload: bytes) -> None:
        for column, value in (
            ("time", record.timestamp_ms * 1_000_000),
            ("topic", record.topic),
            ("partition", record.partition),
            ("offset", record.offset),
            ("key", record.key.decode(errors="replace") if record.key else None),
            ("reason", reason),
            ("items", items),
            ("payload", payload),
        ):
            self.lists[column].append(value)

    def __len__(self) -> int:
        return len(self.lists["offset"])

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.lists, schema=DEAD_LETTERS.schema)


def flatten(records: Sequence[KafkaRecord], bounds: TimeBounds = TimeBounds()) -> Flattened:
    """The rows of a poll's records, per dataset; a bad record becomes a dead letter, never an error."""
    by_topic: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_topic.setdefault(record.topic, []).append(index)
    rejected: list[tuple[int, str]] = []
    decoded: list[tuple[Dataset, pa.Table, np.ndarray]] = []
    for topic, indices in by_topic.items():
        signal = _BY_TOPIC.get(topic)
        if signal is None:
            rejected.extend((i, f"unknown topic {topic}") for i in indices)
            continue
        mine = [records[i] for i in indices]
        batch, record_of_row, failures = signal.decoder.decode(
            [r.value for r in mine], [r.timestamp_ms * 1_000_000 for r in mine]
        )
        rejected.extend((indices[i], f"undecodable {signal.request}: {why}") for i, why in failures)
        rows_from = np.asarray(indices, dtype=np.int64)[record_of_row.to_numpy()]
        decoded.append((signal.dataset, pa.Table.from_batches([batch]), rows_from))
    dead = DeadLetters()
    for index, reason in sorted(rejected):
        dead.add(records[index], reason, 0, records[index].value)
    result = Flattened()
    for dataset, table, record_of_row in decoded:
        result.add(dataset, *reject_out_of_bounds(dataset, table, record_of_row, records, bounds, dead))
    if len(dead):  # most polls have none: an empty table cost about a sixth of a small poll's flatten
        result.add(DEAD_LETTERS, dead.table())
    return result


def reject_out_of_bounds(
    dataset: Dataset,
    table: pa.Table,
    record_of_row: np.ndarray,
    records: Sequence[KafkaRecord],
    bounds: TimeBounds,
    dead: DeadLetters,
) -> tuple[pa.Table, np.ndarray]:
    """Keep rows whose event time is near their record's Kafka time (returned with the record of
    each row kept); the rest become dead letters.

    The reference is the Kafka timestamp, not the clock, so a replay sorts rows exactly as before.
    """
    received_ms = np.asarray([r.timestamp_ms for r in records], dtype=np.int64)
    received_ns = received_ms[record_of_row] * 1_000_000
    # a timestamp[ns] column read as numpy's datetime64[ns] and viewed as int64: no cast kernel
    event_ns = table[dataset.time_column].to_numpy().view(np.int64)
    ok = (event_ns >= received_ns - int(bounds.max_past_s * 1e9)) & (
        event_ns <= received_ns + int(bounds.max_future_s * 1e9)
    )
    if ok.all():
        return table, record_of_row
    # imported here, on this rare path only: polars is the ingest flow's only user of it, and costs
    # it about 30 MB of RSS and a third of a second of start-up (bench/ingest.py)
    import polars as pl

    rejected = table.filter(pa.array(~ok))
    rejected_records = record_of_row[~ok]
    for record_index in np.unique(rejected_records):
        mine = rejected.filter(pa.array(rejected_records == record_index))
        payload = pl.from_arrow(mine).write_ndjson().encode()  # type: ignore[union-attr]
        reason = (
            f"{mine.num_rows} rows with {dataset.time_column} more than {bounds.max_past_s:.0f}s before "
            f"or {bounds.max_future_s:.0f}s after the record's Kafka time"
        )
        dead.add(records[int(record_index)], reason, mine.num_rows, payload)
    return table.filter(pa.array(ok)), record_of_row[ok]

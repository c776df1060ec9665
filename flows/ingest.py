"""Kafka `otlp_*` topics → Parquet datasets spans, metrics, logs (and dead_letters).

    TALONFLOW_CONFIG=talonflow.yaml python -m bytewax.run flows.ingest:flow \\
        -r .talonflow/recovery/ingest -s 60 -b 0

Each bytewax item is one Kafka poll (a list of records), flattened into Arrow tables in one
step, so the per-item cost of bytewax is paid per poll, not per span. Each Kafka partition has
its own Parquet writer, which makes the output exactly-once (see sinks/parquet.py); without
recovery a restart re-reads the retained topics and rewrites, rather than duplicates, the files.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from flows.kafka_batches import Batch, KafkaBatchSource, earliest_offset
from flows.lazy import lazy_flow
from schemas.config import TalonflowConfig
from schemas.flatten import TimeBounds, flatten
from schemas.topics import OTLP_TOPICS
from sinks.parquet import Chunk, ParquetSink

CONSUMER_GROUP = "talonflow-ingest"


def build(config: TalonflowConfig) -> Dataflow:
    ingest = config.ingest
    bounds = TimeBounds(max_past_s=ingest.max_past, max_future_s=ingest.max_future)

    def to_chunks(batch: Batch) -> list[tuple[str, Chunk]]:
        part, records = batch
        first, last = records[0].offset, records[-1].offset
        tables = flatten(records, bounds).tables
        return [(part, (dataset, table, first, last)) for dataset, table in tables.items()]

    flow = Dataflow("ingest")
    source = KafkaBatchSource(config.kafka, OTLP_TOPICS, CONSUMER_GROUP, ingest.poll_records)
    # librdkafka prefetches up to 64 MiB per consumer, and there is one per partition (12 by
    # default): a backlog on every topic could hold most of a GiB before any of it is flattened.
    # The queue may overshoot by one fetch, so fetches are a quarter of it: with 8 MiB fetches
    # each consumer held about 30 MB whatever its queue limit, with 1 MiB about 9 (bench/ingest.py).
    # A record batch larger than a fetch still comes whole: Kafka returns the first one regardless.
    source.settings["queued.max.messages.kbytes"] = ingest.prefetch_bytes // 1024
    source.settings["max.partition.fetch.bytes"] = max(64 * 1024, ingest.prefetch_bytes // 4)
    polls = op.input("kafka", flow, source)
    chunks = op.flat_map("flatten", polls, to_chunks)
    sink = ParquetSink(
        config.data_dir,
        source.list_parts(),
        lambda part: earliest_offset(source.settings, part),
        ingest.roll_bytes,
        ingest.row_group_rows,
        ingest.buffer_bytes,
    )
    op.output("parquet", chunks, sink)
    return flow


__getattr__ = lazy_flow(build)

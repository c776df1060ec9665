"""Kafka `otlp_*` topics → Parquet datasets spans, metrics, logs (and dead_letters).

    TALONFLOW_CONFIG=talonflow.yaml python -m bytewax.run flows.ingest:flow \\
        -r .talonflow/recovery/ingest -s 60 -b 0

Each bytewax item is one Kafka poll (a list of records), flattened into Arrow tables in one
step, so the per-item cost of bytewax is paid per poll, not per span. Each Kafka partition has
its own Parquet writer, which makes the output exactly-once (see sinks/parquet.py); without
recovery a restart re-reads the retained topics and rewrites, rather than duplicates, the files.
A record an SDK sent again (same key and bytes within `ingest.dedupe_window`) is dropped before
flattening and counted in `dead_letters` (flows/resends.py).
"""

from __future__ import annotations

import bytewax.operators as op
import pyarrow as pa
from bytewax.dataflow import Dataflow

from flows.kafka_batches import KafkaBatchSource, earliest_offset
from flows.lazy import lazy_flow
from flows.resends import Screened, resent_letters, screen_resends
from schemas.config import TalonflowConfig
from schemas.datasets import DEAD_LETTERS
from schemas.flatten import TimeBounds, flatten
from schemas.topics import OTLP_TOPICS
from sinks.parquet import Chunk, ParquetSink

CONSUMER_GROUP = "talonflow-ingest"


def build(config: TalonflowConfig) -> Dataflow:
    ingest = config.ingest
    bounds = TimeBounds(max_past_s=ingest.max_past, max_future_s=ingest.max_future)

    def to_chunks(item: tuple[str, Screened]) -> list[tuple[str, Chunk]]:
        part, screened = item
        if not screened.records:
            return []
        # every chunk spans the whole poll's offsets, resends included: the sink's resume offset
        first, last = screened.records[0].offset, screened.records[-1].offset
        tables = flatten(screened.kept, bounds).tables
        resent = resent_letters(screened)
        if resent is not None:
            earlier = tables.get(DEAD_LETTERS.name)
            tables[DEAD_LETTERS.name] = resent if earlier is None else pa.concat_tables([earlier, resent])
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
    screened = screen_resends("resends", polls, ingest.dedupe_window)
    chunks = op.flat_map("flatten", screened, to_chunks)
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

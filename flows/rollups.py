"""Kafka `otlp_metrics` and `otlp_spans` → windowed rollups on `talon_rollups` and in `rollups_<res>`.

    TALONFLOW_CONFIG=talonflow.yaml python -m bytewax.run flows.rollups:flow \\
        -r .talonflow/recovery/rollups -s 10 -b 0

Each Kafka poll is flattened and turned into points (flows/aggregates.py), split by series
into `shards` keyed streams, and folded there into per-window partials. Windowing is our own
rather than bytewax's window operators: their event clock busy-loops on replayed data (#578)
and a resume can push replayed items into `late` (BYTEWAX.md). A shard's watermark is the
newest event time it has seen minus the allowed lateness, plus the wall-clock time since its
last item (so an idle pipeline still closes its windows); a replay has no idle gaps, so it
closes the same windows with the same contents. Points older than the watermark are late:
they are counted in the `late_points` dataset, never folded silently into a closed window.

Closed windows of the finest resolution are rebased into the next one (1m → 1h → 1d) and
finalised when that closes in turn. Rows go to Parquet through the exactly-once sink of
sinks/parquet.py (files named by an output sequence kept in the shard's state) and to the
topic as JSON, at least once: a consumer deduplicates on (resolution, series_id, window_start).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import polars as pl
import pyarrow as pa
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic

from flows.aggregates import (
    CumulativeState,
    Partial,
    SeriesCache,
    empty_points,
    finalize,
    merge,
    metric_points,
    partials,
    rebase,
    span_points,
    with_text_labels,
)
from flows.kafka_batches import Batch, KafkaBatchSource
from flows.lazy import lazy_flow, sequenced_sink
from flows.resends import without_resends
from schemas.config import RollupsConfig, TalonflowConfig
from schemas.datasets import DATASETS
from schemas.flatten import TimeBounds, flatten
from schemas.prices import PriceTable
from schemas.rollups import RESOLUTIONS
from schemas.topics import METRICS_TOPIC, ROLLUPS_TOPIC, SPANS_TOPIC
from sinks.parquet import Chunk

CONSUMER_GROUP = "talonflow-rollups"
NOTIFY_EVERY_S = 1.0  # how often an idle shard checks its windows against the clock
SINK_PREFIX = "rollups"
Output = tuple[str, pa.Table]  # (dataset name, rows)


@dataclass
class ShardState:
    """Everything a shard must keep across a restart; pickled into bytewax snapshots."""

    cumulative: CumulativeState = field(default_factory=CumulativeState)
    open: dict[str, Partial] = field(default_factory=dict)  # resolution -> merged partials of open windows
    newest_ns: int = 0  # newest event time seen
    sequence: int = 0  # next output number: names this shard's Parquet files


class ShardWindows(StatefulLogic[pl.DataFrame, tuple[int, Output], ShardState]):
    """One shard's windows: fold points in, close what the watermark has passed."""

    def __init__(self, config: RollupsConfig, state: ShardState | None) -> None:
        self._config = config
        self._widths = {r: RESOLUTIONS[r] * 1_000_000_000 for r in config.resolutions}
        self._lateness_ns = int(config.allowed_lateness * 1e9)
        self.state = _upgraded(state) if state else ShardState()
        self._last_item = time.monotonic()  # wall time is not state: a restart does not age the windows

    def on_item(self, value: pl.DataFrame) -> tuple[Iterable[tuple[int, Output]], bool]:
        self._last_item = time.monotonic()
        state = self.state
        deltas, out_of_order = state.cumulative.to_deltas(value)
        base = self._config.resolutions[0]
        width = self._widths[base]
        watermark = self._watermark()
        times = deltas["time"]
        oldest = times.min()
        if times.null_count() or (oldest is not None and _window_end(oldest, width) <= watermark):
            is_late = pl.col("time") - pl.col("time") % width + width <= watermark
            late, fresh = deltas.filter(is_late), deltas.filter(~is_late)
        else:  # most polls have no late point: no copy, and no query to find out
            late, fresh = deltas[:0], deltas
        if not fresh.is_empty():
            state.open[base] = partials(fresh, width, self._config.sketch_scale, into=state.open.get(base))
        if not value.is_empty():
            state.newest_ns = max(state.newest_ns, int(value["time"].max()))  # type: ignore[arg-type]
        outputs = self._late(late, "late", width) + self._late(out_of_order, "out_of_order", width)
        return self._emit(outputs + self._close(self._watermark())), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[tuple[int, Output]], bool]:
        return self._emit(self._close(self._watermark())), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(seconds=NOTIFY_EVERY_S) if self.state.open else None

    def snapshot(self) -> ShardState:
        return self.state

    def _watermark(self) -> int:
        idle_ns = int((time.monotonic() - self._last_item) * 1e9)
        return self.state.newest_ns - self._lateness_ns + idle_ns if self.state.newest_ns else 0

    def _close(self, watermark: int) -> list[Output]:
        """Finalise every window whose end the watermark passed, coarsest last; feed the next resolution."""
        outputs: list[Output] = []
        resolutions = self._config.resolutions
        for index, resolution in enumerate(resolutions):
            partial = self.state.open.get(resolution)
            if partial is None:
                continue
            width = self._widths[resolution]
            oldest = partial.rows["window_start"].min()
            if oldest is None or int(oldest) + width > watermark:  # type: ignore[arg-type]
                continue  # the usual poll: nothing to close, and no query to find out
            starts = partial.rows["window_start"].unique()
            closed = starts.filter(starts + width <= watermark)
            if closed.is_empty():
                continue
            done, still_open = partial.split(closed)
            self.state.open[resolution] = still_open
            if still_open.rows.is_empty():
                del self.state.open[resolution]
            outputs.append((f"rollups_{resolution}", finalize(done, width, resolution)))
            if index + 1 < len(resolutions):
                coarser = resolutions[index + 1]
                rebased = rebase(done, self._widths[coarser])
                existing = self.state.open.get(coarser)
                self.state.open[coarser] = merge(Partial.concat([existing, rebased]) if existing else rebased)
        return outputs

    @staticmethod
    def _late(points: pl.DataFrame, reason: str, width: int) -> list[Output]:
        if points.is_empty():
            return []
        counts = (
            points.group_by(window=pl.col("time") - pl.col("time") % width, series_id="series_id")
            .agg(pl.col("metric_name").first(), pl.len().cast(pl.Int64).alias("points"))
            .select(
                pl.from_epoch("window", "ns").dt.replace_time_zone("UTC").alias("time"),
                "metric_name",
                pl.col("series_id").map_elements(lambda h: f"{h:016x}", return_dtype=pl.String),
                pl.lit(reason).alias("reason"),
                "points",
            )
        )
        return [("late_points", counts.to_arrow().cast(DATASETS["late_points"].schema))]

    def _emit(self, outputs: list[Output]) -> list[tuple[int, Output]]:
        """Number every output: the sequence is the exactly-once name of its Parquet file."""
        numbered = []
        for output in outputs:
            if output[1].num_rows:
                numbered.append((self.state.sequence, output))
                self.state.sequence += 1
        return numbered


def _upgraded(state: ShardState) -> ShardState:
    """A snapshot's state with labels as text, whichever version took it (list labels: 2cffe28 and older)."""
    state.cumulative.last = with_text_labels(state.cumulative.last)
    for partial in state.open.values():
        partial.rows = with_text_labels(partial.rows)
    return state


def _window_end(time_ns: Any, width: int) -> int:
    """The end of the window of `width` that holds `time_ns`."""
    return int(time_ns) - int(time_ns) % width + width


def to_points(batch: Batch, bounds: TimeBounds, prices: PriceTable, cache: SeriesCache) -> pl.DataFrame:
    """The points of one poll: metric data points and span-derived samples, as one frame."""
    _part, records = batch
    tables = flatten(records, bounds).tables
    frames = []
    if "metrics" in tables:
        frames.append(metric_points(tables["metrics"], prices, cache))
    if "spans" in tables:
        frames.append(span_points(tables["spans"], prices))
    return pl.concat(frames) if frames else empty_points()


def by_shard(points: pl.DataFrame, shards: int) -> list[tuple[str, pl.DataFrame]]:
    """Route each series to its shard: one keyed item per shard present in the poll."""
    if points.is_empty():
        return []
    keyed = points.with_columns(_shard=(pl.col("series_id") % shards).cast(pl.Int64))
    parts = keyed.partition_by("_shard", as_dict=True, include_key=False)
    return [(str(key[0]), frame) for key, frame in parts.items()]


def kafka_messages(output: Output) -> list[KafkaSinkMessage[bytes, bytes]]:
    """One JSON message per rollup row, keyed by series so a series stays on one partition."""
    dataset, table = output
    if not dataset.startswith("rollups_"):
        return []
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    lines = frame.with_columns(
        pl.col("attributes").map.entries(),
        pl.col("window_start").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("window_end").dt.to_string("%Y-%m-%dT%H:%M:%SZ"),
    ).write_ndjson()
    messages = []
    for series_id, line in zip(table["series_id"].to_pylist(), lines.splitlines(), strict=True):
        row: dict[str, Any] = json.loads(line)
        row["attributes"] = {pair["key"]: pair["value"] for pair in row["attributes"]}
        messages.append(KafkaSinkMessage(series_id.encode(), json.dumps(row, separators=(",", ":")).encode()))
    return messages


def build(config: TalonflowConfig) -> Dataflow:
    settings = config.rollups
    bounds = TimeBounds(max_past_s=config.ingest.max_past, max_future_s=config.ingest.max_future)
    prices = PriceTable.with_defaults(settings.prices)
    shards = settings.shards

    flow = Dataflow("rollups")
    source = KafkaBatchSource(
        config.kafka, (METRICS_TOPIC, SPANS_TOPIC), CONSUMER_GROUP, settings.poll_records
    )
    polls = without_resends("resends", op.input("kafka", flow, source), config.ingest.dedupe_window)
    cache = SeriesCache(prices)  # of this process's flow: worked out again after a restart
    points = op.map("points", polls, lambda batch: to_points(batch, bounds, prices, cache))
    keyed = op.flat_map("shard", points, lambda frame: by_shard(frame, shards))
    windows = op.stateful("windows", keyed, lambda state: ShardWindows(settings, state))

    def to_chunk(item: tuple[str, tuple[int, Output]]) -> tuple[str, Chunk]:
        shard, (sequence, (dataset, table)) = item
        return f"{SINK_PREFIX}:{shard}", (dataset, table, sequence, sequence)

    chunks = op.map("chunk", windows, to_chunk)
    sink = sequenced_sink(config, [f"{SINK_PREFIX}:{shard}" for shard in range(shards)])
    op.output("parquet", chunks, sink)
    messages = op.flat_map("json", windows, lambda item: kafka_messages(item[1][1]))
    brokers = config.kafka.bootstrap_servers.split(",")
    # Plain at-least-once producer: an idempotent one blocks the worker until the broker grants it an id.
    op.output("kafka-out", messages, KafkaSink(brokers, ROLLUPS_TOPIC))
    return flow


__getattr__ = lazy_flow(build)

"""A bytewax source that yields one item per Kafka poll: a list of records, never one per record.

bytewax's own KafkaSource emits every record as an item; at a few microseconds per item that
is the hot-path cost BYTEWAX.md warns about, so this source batches. Offsets live in bytewax's
recovery snapshots (resume exactly where the last committed epoch ended) and are also committed
to Kafka under `group_id`, only so that the usual consumer-lag tools can show progress.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_delay, wait_fixed

from flows import clock_watch
from schemas.config import KafkaConfig
from schemas.flatten import KafkaRecord
from talonflow.kafka_log import kafka_logger

log = logging.getLogger(__name__)
Batch = tuple[str, list[KafkaRecord]]  # ("topic:partition", records of one poll)
CLOCK_PART: Final = "clock"  # the extra partition of a ticking source: yields (CLOCK_PART, []) batches
_IDLE = timedelta(milliseconds=100)
TOPIC_WAIT_S: Final = 120  # how long a starting flow waits for its topics before it gives up
FETCH_QUEUE_BACKOFF_MS: Final = 10  # a full partition queue's pause before the next fetch (below)


class _PartitionReader(StatefulSourcePartition[Batch, int | None]):
    def __init__(
        self,
        settings: dict[str, Any],
        topic: str,
        partition: int,
        offset: int,
        size: int,
        idle_after: timedelta | None = None,
    ) -> None:
        self._topic, self._partition, self._size = topic, partition, size
        self._consumer = Consumer(settings)
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        self._next_offset = offset
        self._read_to = offset  # past the last message consumed, kept or not: how far the log was read
        self._awake: datetime | None = None
        self._idle_after, self._quiet_since, self._said_idle = idle_after, datetime.now(UTC), False

    def next_batch(self) -> list[Batch]:
        messages = self._consumer.consume(self._size, timeout=0)
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal() or not error.retriable():
                    raise KafkaException(error)
                log.warning("kafka %s:%s: %s (retrying)", self._topic, self._partition, error.str())
                continue
            offset, value = message.offset(), message.value()
            self._read_to = self._read_to if offset is None else offset + 1
            if offset is None or value is None:  # a tombstone or a client without offsets: nothing to ingest
                continue
            records.append(
                KafkaRecord(
                    self._topic, self._partition, offset, message.timestamp()[1], message.key(), value
                )
            )
        self._awake = None if records else datetime.now(UTC) + _IDLE
        if not records:
            return self._idle_mark()
        self._quiet_since, self._said_idle = datetime.now(UTC), False
        self._next_offset = records[-1].offset + 1
        return [(f"{self._topic}:{self._partition}", records)]

    def _idle_mark(self) -> list[Batch]:
        """With `idle_after`: one empty batch per quiet spell, once the partition is read to its end
        and nothing came for that long, so that a flow following event time stops waiting for it."""
        if (
            self._idle_after is None
            or self._said_idle
            or datetime.now(UTC) - self._quiet_since < self._idle_after
        ):
            return []
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, self._partition), timeout=5, cached=False
            )
        except KafkaException as err:
            log.warning("kafka %s:%s: %s (idle unknown)", self._topic, self._partition, err)
            return []
        if (low != high) if self._read_to < 0 else (self._read_to < high):
            return []  # more to read than fetched so far: not idle
        self._said_idle = True
        return [(f"{self._topic}:{self._partition}", [])]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        if self._next_offset >= 0:  # not OFFSET_BEGINNING: something was read
            offset = TopicPartition(self._topic, self._partition, self._next_offset)
            self._consumer.commit(offsets=[offset], asynchronous=True)  # for lag tools only
        return self._next_offset

    def close(self) -> None:
        self._consumer.close()


class _ClockPartition(StatefulSourcePartition[Batch, int | None]):
    """A tick every `interval`, as an empty batch of the same source.

    Not a second input (bytewax's `SimplePollingSource`): two inputs advance their epochs out of
    step, and an input whose epoch waits for the other's is re-activated at once, again and
    again, until it may go on, which kept a core busy (bytewax 0.21, src/inputs.rs). One source,
    one epoch clock.
    """

    def __init__(self, interval: timedelta) -> None:
        self._interval = interval
        self._next = datetime.now(UTC)

    def next_batch(self) -> list[Batch]:
        now = datetime.now(UTC)
        self._next = max(self._next + self._interval, now)  # after a stall, one tick, not a burst
        return [(CLOCK_PART, [])]

    def next_awake(self) -> datetime | None:
        return self._next

    def snapshot(self) -> None:
        return None


class MissingTopic(RuntimeError):
    """A topic the flow reads is not there (yet): `talonflow up` creates it once Kafka answers."""


@retry(
    retry=retry_if_exception_type((MissingTopic, KafkaException)),
    wait=wait_fixed(1),
    stop=stop_after_delay(TOPIC_WAIT_S),
    before_sleep=before_sleep_log(log, logging.WARNING),
    reraise=True,
)
def source_partitions(settings: dict[str, Any], topics: tuple[str, ...]) -> list[str]:
    """ "topic:partition" for every partition of `topics`, as sources and sinks name them.

    A flow started beside a broker that is still coming up waits for it and its topics rather than
    dying, so that a supervisor's restart budget is not spent on start-up order.
    """
    consumer = Consumer({**settings, "group.id": f"{settings['group.id']}-metadata"})
    try:
        metadata = consumer.list_topics(timeout=30)
    finally:
        consumer.close()
    parts: list[str] = []
    for topic in topics:
        if topic not in metadata.topics:
            raise MissingTopic(f"topic {topic} does not exist; `talonflow up` creates it")
        parts.extend(f"{topic}:{p}" for p in sorted(metadata.topics[topic].partitions))
    return parts


def earliest_offset(settings: dict[str, Any], part: str) -> int:
    """Where a source partition without resume state starts reading: the oldest retained offset."""
    topic, partition = part.rsplit(":", 1)
    consumer = Consumer({**settings, "group.id": f"{settings['group.id']}-metadata"})
    try:
        low, _high = consumer.get_watermark_offsets(TopicPartition(topic, int(partition)), timeout=30)
    finally:
        consumer.close()
    return int(low)


class KafkaBatchSource(FixedPartitionedSource[Batch, int | None]):
    """Every partition of `topics`, read from the start (or the resumed offset), a poll per item;
    with `tick`, also a clock partition that yields an empty `CLOCK_PART` batch that often; with
    `idle_after`, a partition read to its end and quiet that long yields one empty batch of its own."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: tuple[str, ...],
        group_id: str,
        poll_records: int,
        tick: timedelta | None = None,
        idle_after: timedelta | None = None,
    ) -> None:
        self._topics = topics
        self._poll_records = poll_records
        self._tick, self._idle_after = tick, idle_after
        self.settings: dict[str, Any] = {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "max.partition.fetch.bytes": kafka.record_limit_bytes,
            "fetch.max.bytes": max(kafka.record_limit_bytes, 64 * 1024**2),
            "reconnect.backoff.max.ms": 1000,
            # Once a partition's queue passes queued.max.messages.kbytes (ingest's prefetch_bytes,
            # 2 MiB), librdkafka postpones its next fetch by this long, 1 s by default, while the
            # flow drains the queue in milliseconds: ingest then idled two thirds of the time
            # (34k spans/s steady at 3.5 s of CPU in 9 s; bench/ingest.py, README "Ingest figures").
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
            "logger": kafka_logger(log.name),
        }

    def list_parts(self) -> list[str]:
        clock = [] if self._tick is None else [CLOCK_PART]
        return source_partitions(self.settings, self._topics) + clock

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[Batch, int | None]:
        clock_watch.start_if_supervised()  # every flow reads through here: its process is watched once
        if for_part == CLOCK_PART and self._tick is not None:
            return _ClockPartition(self._tick)
        topic, partition = for_part.rsplit(":", 1)
        offset = OFFSET_BEGINNING if resume_state is None else resume_state
        return _PartitionReader(
            self.settings, topic, int(partition), offset, self._poll_records, self._idle_after
        )

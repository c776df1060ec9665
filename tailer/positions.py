"""The tailer's file positions in Kafka, committed in the same transaction as the lines they cover.

A poll's log records and the positions after it are produced in one Kafka transaction: the
ingest flow reads `read_committed` (librdkafka's default), so after a kill -9 it sees either
both or neither. On start, `init_transactions` aborts whatever the killed process left open,
then the latest committed positions are read back from the compacted `talon_tailer_offsets`
topic, keyed by the tailer's id: every line is shipped exactly once.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from schemas.config import TalonflowConfig
from schemas.topics import TAILER_POSITIONS_TOPIC
from tailer.files import Position
from talonflow.kafka_log import kafka_logger

FORMAT_VERSION = 1

log = logging.getLogger("talonflow.tailer")


def positions_key(config: TalonflowConfig) -> bytes:
    return f"tailer/{config.tailer.id}".encode()


def encode(positions: list[Position]) -> bytes:
    return json.dumps({"version": FORMAT_VERSION, "files": [p.as_json() for p in positions]}).encode()


def decode(value: bytes) -> list[Position]:
    document = json.loads(value)
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"positions format {document.get('version')!r}, expected {FORMAT_VERSION}")
    return [Position.from_json(entry) for entry in document["files"]]


def transactional_producer(config: TalonflowConfig) -> Producer:
    """An idempotent, transactional producer; its id fences any earlier process of this tailer."""
    kafka = config.kafka
    settings: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "transactional.id": f"talonflow-tailer-{config.tailer.id}",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": config.receiver.producer.compression,
        "linger.ms": 5,
        "message.max.bytes": kafka.record_limit_bytes,
        "transaction.timeout.ms": 60_000,
        "logger": kafka_logger("talonflow.tailer"),
    }
    producer = Producer(settings)
    init_transactions(producer, timeout=60)
    return producer


def init_transactions(producer: Producer, timeout: float) -> None:
    """librdkafka's `init_transactions`, retried while its error is retriable.

    On a broker just started, the transaction coordinator may not be elected yet
    (`NOT_COORDINATOR`, `COORDINATOR_LOAD_IN_PROGRESS`): librdkafka marks these retriable and
    says to call again, rather than ending the tailer for supervisord to restart.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            producer.init_transactions(max(deadline - time.monotonic(), 1.0))
            return
        except KafkaException as exc:
            error = exc.args[0]
            if not error.retriable() or time.monotonic() >= deadline:
                raise
            log.info("tailer: Kafka transactions not ready yet (%s), retrying", error.str())
            time.sleep(0.5)


_NOT_YET = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE)


def _partitions(consumer: Consumer, timeout: float) -> set[int]:
    """The positions topic's partitions. Just after `up` created it, a broker may not know it yet
    (UNKNOWN_TOPIC_OR_PART, LEADER_NOT_AVAILABLE): ask again until `timeout` rather than end the tailer."""
    deadline = time.monotonic() + timeout
    while True:
        metadata = consumer.list_topics(TAILER_POSITIONS_TOPIC, timeout=max(deadline - time.monotonic(), 1.0))
        topic = metadata.topics[TAILER_POSITIONS_TOPIC]
        if topic.error is None and topic.partitions:
            return set(topic.partitions)
        not_yet = topic.error is None or topic.error.code() in _NOT_YET
        if not not_yet or time.monotonic() >= deadline:
            raise RuntimeError(f"topic {TAILER_POSITIONS_TOPIC}: {topic.error or 'no partitions'}")
        log.info("tailer: %s not ready yet (%s), retrying", TAILER_POSITIONS_TOPIC, topic.error)
        time.sleep(0.5)


def load(config: TalonflowConfig, timeout: float = 60) -> list[Position] | None:
    """The latest committed positions of this tailer; None when it never committed any."""
    key = positions_key(config)
    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "group.id": f"talonflow-tailer-{config.tailer.id}-positions",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.message.max.bytes": config.kafka.record_limit_bytes,
            "logger": kafka_logger("talonflow.tailer"),
        }
    )
    try:
        pending = _partitions(consumer, timeout)
        consumer.assign([TopicPartition(TAILER_POSITIONS_TOPIC, p, OFFSET_BEGINNING) for p in pending])
        latest: bytes | None = None
        while pending:
            message = consumer.poll(timeout)
            if message is None:
                raise RuntimeError(f"no answer reading {TAILER_POSITIONS_TOPIC} within {timeout:.0f}s")
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                    continue
                raise RuntimeError(f"reading {TAILER_POSITIONS_TOPIC}: {error}")
            if message.key() == key:
                latest = message.value()
        return None if latest is None else decode(latest)
    finally:
        consumer.close()

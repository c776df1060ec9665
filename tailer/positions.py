"""The tailer's file positions in Kafka, committed in the same transaction as the lines they cover.

A poll's log records and the positions after it are produced in one Kafka transaction: the
ingest flow reads `read_committed` (librdkafka's default), so after a kill -9 it sees either
both or neither. On start, `init_transactions` aborts whatever the killed process left open,
then the latest committed positions are read back from the compacted `talon_tailer_offsets`
topic, keyed by the tailer's id: every line is shipped exactly once.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from tenacity import stop_after_delay

from schemas.config import TalonflowConfig
from schemas.topics import TAILER_POSITIONS_TOPIC
from tailer.files import Position
from talonflow.kafka_log import kafka_logger
from talonflow.kafka_retry import init_transactions, topic_partitions

FORMAT_VERSION = 1


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
        pending = set(topic_partitions(consumer, TAILER_POSITIONS_TOPIC, stop_after_delay(timeout)))
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

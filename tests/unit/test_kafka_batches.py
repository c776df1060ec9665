"""The flows' Kafka source keeps its consumers fetching while a backlog drains (flows/kafka_batches.py)."""

from __future__ import annotations

from flows.kafka_batches import FETCH_QUEUE_BACKOFF_MS, KafkaBatchSource
from schemas.config import KafkaConfig
from schemas.topics import OTLP_TOPICS


def test_a_full_partition_queue_pauses_its_fetches_briefly() -> None:
    """librdkafka's default pause after a full queue is 1 s: with ingest's 2 MiB queue per
    partition that capped a backlog at a queue a second per partition (README "Ingest figures")."""
    settings = KafkaBatchSource(KafkaConfig(), OTLP_TOPICS, "group", 50).settings
    assert settings["fetch.queue.backoff.ms"] == FETCH_QUEUE_BACKOFF_MS <= 10

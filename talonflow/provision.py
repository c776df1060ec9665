"""Create what the services need once they answer: Kafka topics (the bucket: sinks.tiers). Idempotent."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import TalonflowConfig
from schemas.topics import ALL_TOPICS, TOPIC_OVERRIDES


def ensure_topics(config: TalonflowConfig) -> list[str]:
    """Create the missing topics with the configured partitions, replicas, retention and record limit."""
    kafka = config.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers, "log_level": 0})
    existing = admin.list_topics(timeout=5).topics
    settings = {
        "retention.ms": str(int(kafka.topics.retention * 1000)),
        "max.message.bytes": str(kafka.record_limit_bytes),
    }
    if kafka.managed or kafka.topics.min_insync_replicas:  # an existing cluster keeps its own default
        settings["min.insync.replicas"] = str(kafka.min_insync)  # acks=all waits for this many copies
    wanted = [
        NewTopic(
            name,
            kafka.topics.partitions,
            kafka.replication,
            config={**settings, **TOPIC_OVERRIDES.get(name, {})},
        )
        for name in ALL_TOPICS
        if name not in existing
    ]
    if not wanted:
        return []
    for future in admin.create_topics(wanted, request_timeout=15).values():
        try:
            future.result()
        except KafkaException as err:
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return [t.topic for t in wanted]

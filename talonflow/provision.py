"""Create what the services need once they answer: Kafka topics (the bucket: sinks.tiers). Idempotent."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import TalonflowConfig
from schemas.topics import ALL_TOPICS, TOPIC_OVERRIDES
from talonflow.kafka_retry import again_on_dropped_connection, destroyed_broker


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
    pending = {topic.topic: topic for topic in wanted}
    again_on_dropped_connection(lambda: _create(admin, pending))
    return [t.topic for t in wanted]


def _create(admin: AdminClient, pending: dict[str, NewTopic]) -> None:
    """Ask for every pending topic in one request. A topic created (or already there) leaves
    `pending`, so when librdkafka dropped the connection under some of them only those are asked
    again; a broker's refusal is raised before a dropped connection, and is not retried."""
    futures = admin.create_topics(list(pending.values()), request_timeout=15)
    errors: list[KafkaException] = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as err:
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                errors.append(err)
                continue
        del pending[name]
    if errors:
        raise min(errors, key=destroyed_broker)

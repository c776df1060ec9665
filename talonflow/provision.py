"""Create what the services need once they answer: Kafka topics and the MinIO bucket. Idempotent."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from minio import Minio

from schemas.config import TalonflowConfig
from schemas.topics import ALL_TOPICS


def ensure_topics(config: TalonflowConfig) -> list[str]:
    """Create the missing topics with the configured partitions, retention and record limit."""
    kafka = config.kafka
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers, "log_level": 0})
    existing = admin.list_topics(timeout=5).topics
    settings = {
        "retention.ms": str(int(kafka.topics.retention * 1000)),
        "max.message.bytes": str(kafka.record_limit_bytes),
    }
    wanted = [
        NewTopic(name, kafka.topics.partitions, kafka.topics.replication_factor, config=settings)
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


def ensure_bucket(config: TalonflowConfig) -> bool:
    """Create the MinIO bucket if it is missing; True when it was created."""
    minio = config.minio
    client = Minio(
        minio.endpoint.address,
        access_key=minio.access_key.get_secret_value(),
        secret_key=minio.secret_key.get_secret_value(),
        secure=False,
    )
    if client.bucket_exists(minio.bucket):
        return False
    client.make_bucket(minio.bucket)
    return True

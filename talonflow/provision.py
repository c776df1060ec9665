"""Create what the services need once they answer: Kafka topics (the bucket: sinks.tiers). Idempotent."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.config import TalonflowConfig
from schemas.topics import ALL_TOPICS, TOPIC_OVERRIDES

T = TypeVar("T")


def admin_result(request: Callable[[], Future[T]], attempts: int = 5) -> T:
    """An admin request's result, asked again when librdkafka dropped the connection it went on.

    librdkafka (2.10+) decommissions its bootstrap connection once metadata names the brokers, and
    a request in flight on it fails with _DESTROY_BROKER: a client-side hiccup, not an answer."""
    for attempt in range(attempts):
        try:
            return request().result()
        except KafkaException as err:
            if err.args[0].code() != KafkaError._DESTROY_BROKER or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


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
    for topic in wanted:
        try:
            admin_result(functools.partial(_create, admin, topic))
        except KafkaException as err:
            if err.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return [t.topic for t in wanted]


def _create(admin: AdminClient, topic: NewTopic) -> Future[None]:
    return admin.create_topics([topic], request_timeout=15)[topic.topic]

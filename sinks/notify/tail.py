"""Read a whole Kafka topic from its start on a daemon thread, then keep reading as it grows.

For the small state topics every process must know in full (silences, the alert transitions the
Alertmanager API lists): each reader uses a consumer group of its own and commits nothing.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import stop_when_event_set

from schemas.config import KafkaConfig
from talonflow.kafka_log import kafka_logger
from talonflow.kafka_retry import TopicNotReady, topic_partitions

log = logging.getLogger(__name__)


class TopicTail:
    """Calls `on_record(value)` for every record of `topic`, on its own thread."""

    def __init__(self, kafka: KafkaConfig, topic: str, on_record: Callable[[bytes], None]) -> None:
        self._kafka, self._topic, self._on_record = kafka, topic, on_record
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Return once the topic has been read to its end (or after `timeout`, still reading on;
        0 returns at once)."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"tail {self._topic}", daemon=True
        )
        self._thread.start()
        if timeout and not ready.wait(timeout):
            log.warning("%s: not read to its end within %.0fs; reading on", self._topic, timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self._kafka.bootstrap_servers,
                "group.id": f"talonflow-tail-{uuid.uuid4()}",  # every reader reads everything
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "logger": kafka_logger(log.name),
            }
        )
        try:
            try:
                pending = set(topic_partitions(consumer, self._topic, stop_when_event_set(self._stop)))
            except (TopicNotReady, KafkaException):  # stopped while the broker was away: nothing to read
                return
            except RuntimeError as err:  # the broker refuses the topic (authorization, say)
                log.error("%s: %s", self._topic, err)
                return
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in pending])
            if not pending:
                ready.set()
            while not self._stop.is_set():
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("%s: %s", self._topic, error.str())
                        continue
                    pending.discard(message.partition() or 0)
                    if not pending:
                        ready.set()
                    continue
                value = message.value()
                if value:
                    try:
                        self._on_record(value)
                    except (ValueError, KeyError, TypeError) as err:
                        log.warning("%s: ignored an unreadable record: %s", self._topic, err)
        finally:
            consumer.close()
            ready.set()

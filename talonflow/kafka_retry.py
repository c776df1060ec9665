"""Kafka calls asked again while the broker is not ready yet, one policy for every client.

A broker just started (or a topic `up` just created) answers some calls with errors that only
mean "not yet": no transaction coordinator elected, a topic without a leader, the bootstrap
connection dropped under a request by librdkafka itself. These helpers retry exactly those
(tenacity, as the rest of the codebase retries) and let every other error through at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)
from tenacity.stop import stop_base

T = TypeVar("T")

log = logging.getLogger("talonflow.kafka")

_NOT_YET = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE)


class TopicNotReady(RuntimeError):
    """The broker does not know the topic's partitions yet."""


def destroyed_broker(error: BaseException) -> bool:
    """librdkafka (2.10+) decommissions its bootstrap connection once metadata names the brokers,
    and a request in flight on it fails with _DESTROY_BROKER: a client-side hiccup, not an answer."""
    return isinstance(error, KafkaException) and error.args[0].code() == KafkaError._DESTROY_BROKER


def again_on_dropped_connection(call: Callable[[], T], attempts: int = 5) -> T:
    """`call` (an admin request and its result, say), made again when librdkafka dropped the
    connection its request went on."""
    retrying = Retrying(
        retry=retry_if_exception(destroyed_broker), stop=stop_after_attempt(attempts), reraise=True
    )
    return retrying(call)


def _retriable(error: BaseException) -> bool:
    return isinstance(error, KafkaException) and error.args[0].retriable()


def init_transactions(producer: Producer, timeout: float) -> None:
    """librdkafka's `init_transactions`, called again while its error is retriable.

    On a broker just started, the transaction coordinator may not be elected yet
    (`NOT_COORDINATOR`, `COORDINATOR_LOAD_IN_PROGRESS`): librdkafka marks these retriable and
    says to call again, rather than ending the process for supervisord to restart.
    """
    retrying = Retrying(
        retry=retry_if_exception(_retriable),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.5),
        before_sleep=before_sleep_log(log, logging.INFO),
        reraise=True,
    )
    deadline = time.monotonic() + timeout
    retrying(lambda: producer.init_transactions(max(deadline - time.monotonic(), 1.0)))


def _known_partitions(consumer: Consumer, topic: str) -> list[int]:
    found = consumer.list_topics(topic, timeout=1.0).topics.get(topic)
    if found is None or (found.error is None and not found.partitions):
        raise TopicNotReady(f"topic {topic}: no partitions yet")
    if found.error is not None:
        if found.error.code() in _NOT_YET:
            raise TopicNotReady(f"topic {topic}: {found.error.str()}")
        raise RuntimeError(f"topic {topic}: {found.error.str()}")
    return sorted(found.partitions)


def topic_partitions(consumer: Consumer, topic: str, stop: stop_base) -> list[int]:
    """The topic's partitions once the broker answers and knows them, asked every 0.5 s.

    Gives up when `stop` says so (`stop_after_delay`, `stop_when_event_set`), raising the last
    error; a broker that answers with any other error about the topic ends the wait at once."""
    retrying = Retrying(
        retry=retry_if_exception_type((TopicNotReady, KafkaException)),
        stop=stop,
        wait=wait_fixed(0.5),
        before_sleep=before_sleep_log(log, logging.INFO),
        reraise=True,
    )
    return retrying(_known_partitions, consumer, topic)

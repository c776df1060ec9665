"""Kafka calls on a broker just started: what is asked again, what is raised at once, when it stops."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from tenacity import stop_after_delay, stop_when_event_set

from talonflow.kafka_retry import (
    TopicNotReady,
    again_on_dropped_connection,
    init_transactions,
    topic_partitions,
)
from talonflow.provision import _create

NOT_COORDINATOR = KafkaError(KafkaError.NOT_COORDINATOR, "coordinator not ready", retriable=True)
DESTROYED = KafkaError(KafkaError._DESTROY_BROKER, "broker handle is being destroyed")


class FlakyProducer:
    """Fails `init_transactions` with the given errors, then succeeds."""

    def __init__(self, errors: list[KafkaError]) -> None:
        self.errors = errors
        self.calls = 0

    def init_transactions(self, timeout: float) -> None:
        self.calls += 1
        if self.errors:
            raise KafkaException(self.errors.pop(0))


def test_a_retriable_error_is_retried_until_it_passes() -> None:
    producer: Any = FlakyProducer([NOT_COORDINATOR, NOT_COORDINATOR])
    init_transactions(producer, timeout=60)
    assert producer.calls == 3


def test_a_fatal_error_is_raised_at_once() -> None:
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    producer: Any = FlakyProducer([fenced])
    with pytest.raises(KafkaException, match="fenced"):
        init_transactions(producer, timeout=60)
    assert producer.calls == 1


def test_retries_stop_at_the_deadline() -> None:
    producer: Any = FlakyProducer([NOT_COORDINATOR] * 100)
    with pytest.raises(KafkaException, match="coordinator"):
        init_transactions(producer, timeout=0.7)
    assert 2 <= producer.calls <= 3  # at 0, 0.5 (and 1.0 s when the first sleep ran late)


class Topic:
    def __init__(self, error: KafkaError | None, partitions: dict[int, object]) -> None:
        self.error, self.partitions = error, partitions


class Metadata:
    def __init__(self, topic: Topic) -> None:
        self.topics = {"talon_tailer_offsets": topic}


class NewTopicConsumer:
    """Answers `error` `unknown` times (a topic just created), then its partitions."""

    def __init__(self, unknown: int, error: int = KafkaError.UNKNOWN_TOPIC_OR_PART) -> None:
        self.unknown, self.error, self.calls = unknown, error, 0

    def list_topics(self, topic: str, timeout: float) -> Metadata:
        self.calls += 1
        if self.calls <= self.unknown:
            return Metadata(Topic(KafkaError(self.error), {}))
        return Metadata(Topic(None, {1: object(), 0: object()}))


@pytest.mark.parametrize("error", [KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE])
def test_a_topic_not_known_yet_is_asked_for_again(error: int) -> None:
    consumer: Any = NewTopicConsumer(unknown=2, error=error)
    assert topic_partitions(consumer, "talon_tailer_offsets", stop_after_delay(60)) == [0, 1]
    assert consumer.calls == 3


def test_another_topic_error_is_raised_at_once() -> None:
    consumer: Any = NewTopicConsumer(unknown=1, error=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(RuntimeError, match="talon_tailer_offsets"):
        topic_partitions(consumer, "talon_tailer_offsets", stop_after_delay(60))
    assert consumer.calls == 1


def test_a_wait_ends_when_its_reader_stops() -> None:
    stopped = threading.Event()
    stopped.set()
    consumer: Any = NewTopicConsumer(unknown=100)
    with pytest.raises(TopicNotReady):
        topic_partitions(consumer, "talon_tailer_offsets", stop_when_event_set(stopped))
    assert consumer.calls == 1


def _future(error: KafkaError | None) -> Future[None]:
    future: Future[None] = Future()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaException(error))
    return future


def test_an_admin_request_is_asked_again_only_on_a_dropped_connection() -> None:
    answers = [DESTROYED, DESTROYED, None]
    assert again_on_dropped_connection(lambda: _future(answers.pop(0)).result()) is None
    assert answers == []
    refused = [KafkaError(KafkaError.POLICY_VIOLATION, "no"), None]
    with pytest.raises(KafkaException, match="no"):
        again_on_dropped_connection(lambda: _future(refused.pop(0)).result())
    assert refused == [None]


class Admin:
    """Answers each `create_topics` with the next round of per-topic errors (None: created)."""

    def __init__(self, rounds: list[dict[str, KafkaError | None]]) -> None:
        self.rounds = rounds
        self.asked: list[list[str]] = []

    def create_topics(self, topics: list[Any], request_timeout: float) -> dict[str, Future[None]]:
        self.asked.append(sorted(t.topic for t in topics))
        answers = self.rounds.pop(0)
        return {t.topic: _future(answers[t.topic]) for t in topics}


class NewTopic:
    def __init__(self, topic: str) -> None:
        self.topic = topic


def test_created_topics_leave_the_request_and_a_refusal_wins() -> None:
    exists = KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, "exists")
    admin: Any = Admin([{"a": None, "b": DESTROYED, "c": exists}])
    pending: dict[str, Any] = {name: NewTopic(name) for name in "abc"}
    with pytest.raises(KafkaException, match="destroyed"):
        _create(admin, pending)
    assert admin.asked == [["a", "b", "c"]]  # one request for all of them
    assert list(pending) == ["b"]  # only the dropped one is asked for again
    admin = Admin([{"a": DESTROYED, "b": KafkaError(KafkaError.INVALID_CONFIG, "bad config")}])
    both: dict[str, Any] = {name: NewTopic(name) for name in "ab"}
    with pytest.raises(KafkaException, match="bad config"):
        _create(admin, both)

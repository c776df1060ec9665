"""The tailer starts on a broker just started: its transactions and its positions topic may not be ready."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from tailer.positions import _partitions, init_transactions


class FlakyProducer:
    """Fails `init_transactions` with the given errors, then succeeds."""

    def __init__(self, errors: list[KafkaError]) -> None:
        self.errors = errors
        self.calls = 0

    def init_transactions(self, timeout: float) -> None:
        self.calls += 1
        if self.errors:
            raise KafkaException(self.errors.pop(0))


def test_a_retriable_error_is_retried_until_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tailer.positions.time.sleep", lambda _: None)
    not_ready = KafkaError(KafkaError.NOT_COORDINATOR, "coordinator not ready", retriable=True)
    producer: Any = FlakyProducer([not_ready, not_ready])
    init_transactions(producer, timeout=60)
    assert producer.calls == 3


def test_a_fatal_error_is_raised_at_once() -> None:
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    producer: Any = FlakyProducer([fenced])
    with pytest.raises(KafkaException, match="fenced"):
        init_transactions(producer, timeout=60)
    assert producer.calls == 1


def test_retries_stop_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tailer.positions.time.sleep", lambda _: None)
    clock = iter(float(t) for t in range(0, 1000, 10))
    monkeypatch.setattr("tailer.positions.time.monotonic", lambda: next(clock))
    not_ready = KafkaError(KafkaError.NOT_COORDINATOR, "coordinator not ready", retriable=True)
    producer: Any = FlakyProducer([not_ready] * 100)
    with pytest.raises(KafkaException, match="coordinator"):
        init_transactions(producer, timeout=30)
    assert producer.calls < 10


class Topic:
    def __init__(self, error: KafkaError | None, partitions: dict[int, object]) -> None:
        self.error, self.partitions = error, partitions


class Metadata:
    def __init__(self, topic: Topic) -> None:
        self.topics = {"talon_tailer_offsets": topic}


class NewTopicConsumer:
    """Answers UNKNOWN_TOPIC_OR_PART `unknown` times (a topic just created), then its partitions."""

    def __init__(self, unknown: int, error: int = KafkaError.UNKNOWN_TOPIC_OR_PART) -> None:
        self.unknown, self.error, self.calls = unknown, error, 0

    def list_topics(self, topic: str, timeout: float) -> Metadata:
        self.calls += 1
        if self.calls <= self.unknown:
            return Metadata(Topic(KafkaError(self.error), {}))
        return Metadata(Topic(None, {0: object(), 1: object()}))


def test_a_topic_not_known_yet_is_asked_for_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tailer.positions.time.sleep", lambda _: None)
    consumer: Any = NewTopicConsumer(unknown=3)
    assert _partitions(consumer, timeout=60) == {0, 1}
    assert consumer.calls == 4


def test_another_topic_error_is_raised_at_once() -> None:
    consumer: Any = NewTopicConsumer(unknown=1, error=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(RuntimeError, match="talon_tailer_offsets"):
        _partitions(consumer, timeout=60)
    assert consumer.calls == 1

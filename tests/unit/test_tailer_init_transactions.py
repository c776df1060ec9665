"""The tailer's producer retries `init_transactions` while the coordinator is not ready yet."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from tailer.positions import init_transactions


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

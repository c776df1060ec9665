"""librdkafka's repeated lines (a broker away) are logged once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from talonflow.kafka_log import RepeatFilter, kafka_logger

REFUSED = (
    "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: "
    "Connection refused (after {}ms in state CONNECT)"
)


def record(text: str) -> logging.LogRecord:
    """A record shaped as confluent-kafka logs it: `log(level, "%s [%s] %s", fac, name, text)`."""
    return logging.LogRecord(
        "k", logging.ERROR, __file__, 1, "%s [%s] %s", ("FAIL", "rdkafka#consumer-1", text), None
    )


def test_repeats_are_counted_and_shown_with_the_next_line(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("talonflow.kafka_log.time.monotonic", lambda: now[0])
    gate = RepeatFilter(every=30)
    passed = []
    for step in range(200):  # every 50 ms for 10 s, as librdkafka retries a refused connect
        now[0] = 100.0 + step * 0.05
        line = record(REFUSED.format(step % 3))
        if gate.filter(line):
            passed.append(line.getMessage())
    assert passed == [f"FAIL [rdkafka#consumer-1] {REFUSED.format(0)}"]
    now[0] = 131.0
    later = record(REFUSED.format(1))
    assert gate.filter(later)
    assert later.getMessage().endswith("(199 more like it in the last 31s)")


def test_another_line_is_not_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("talonflow.kafka_log.time.monotonic", lambda: 5.0)
    gate = RepeatFilter(every=30)
    assert gate.filter(record(REFUSED.format(0)))
    assert gate.filter(record("127.0.0.1:9092/1: Disconnected (after 10ms in state UP)"))
    assert not gate.filter(record(REFUSED.format(7)))


def test_the_filter_is_added_once_per_logger() -> None:
    first = kafka_logger("talonflow.test.kafka")
    second = kafka_logger("talonflow.test.kafka")
    assert first is second
    assert sum(isinstance(f, RepeatFilter) for f in first.filters) == 1

"""The retry delay the receiver advises while Kafka is away grows with the outage."""

from __future__ import annotations

import pytest

from receiver import readiness
from receiver.readiness import KafkaReadiness


def test_advised_delay_is_the_outage_age_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = KafkaReadiness("127.0.0.1:1", interval=0.2)  # nothing listens there
    assert probe.retry_after(2, 30) == 2  # never probed: no outage known
    now = [1000.0]
    monkeypatch.setattr(readiness.time, "monotonic", lambda: now[0])
    probe.probe()
    assert not probe.ready and probe.reason.startswith("kafka unreachable")
    assert probe.retry_after(2, 30) == 2  # a blip is retried soon
    now[0] += 7.5
    probe.probe()  # still away: the outage keeps its start
    assert probe.retry_after(2, 30) == 7.5
    now[0] += 100
    assert probe.retry_after(2, 30) == 30

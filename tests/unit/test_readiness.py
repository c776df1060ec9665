"""The retry delay the receiver advises while Kafka is away grows with the outage."""

from __future__ import annotations

import pytest

from receiver import readiness
from receiver.readiness import KafkaReadiness


def test_advised_delay_is_three_times_the_outage_age_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = KafkaReadiness("127.0.0.1:1", interval=0.2)  # nothing listens there
    assert probe.retry_after(2, 30) == 2  # never probed: no outage known
    now = [1000.0]
    monkeypatch.setattr(readiness.time, "monotonic", lambda: now[0])
    probe.probe()
    assert not probe.ready and probe.reason.startswith("kafka unreachable")
    assert probe.retry_after(2, 30) == 2  # a blip is retried soon
    now[0] += 7.5
    probe.probe()  # still away: the outage keeps its start
    assert probe.retry_after(2, 30) == 22.5
    now[0] += 100
    assert probe.retry_after(2, 30) == 30


def last_attempt(refused_at: float, advise: KafkaReadiness, now: list[float], timeout: float) -> float:
    """When an OTel SDK exporter refused from `refused_at` (seconds into the outage) makes its last
    attempt: six attempts, the server's delay in place of its own backoff, and it gives up when that
    delay would pass its deadline (opentelemetry-exporter-otlp 1.45, grpc and http alike)."""
    at, deadline = refused_at, refused_at + timeout
    for attempt in range(6):
        now[0] = 1000.0 + at
        delay = advise.retry_after(2, 30)
        if attempt == 5 or delay > deadline - at:
            return at
        at += delay
    return at


@pytest.mark.parametrize(("timeout", "reach"), [(120, 92), (90, 62)])
def test_an_sdk_refused_at_any_moment_of_an_outage_keeps_trying_this_long(
    monkeypatch: pytest.MonkeyPatch, timeout: float, reach: float
) -> None:
    """With the README's 120 s exporter timeout every client tries until 92 s into an outage or
    later, whenever it was first refused: Kafka away 60 s and its restart. The outage's own age as
    the delay gave up at 32 s for a client refused at its start."""
    probe = KafkaReadiness("127.0.0.1:1", interval=0.2)
    now = [1000.0]
    monkeypatch.setattr(readiness.time, "monotonic", lambda: now[0])
    probe.probe()  # the outage starts at 1000.0
    reached = min(last_attempt(start / 8, probe, now, timeout) for start in range(0, 8 * 120))
    assert reached >= reach

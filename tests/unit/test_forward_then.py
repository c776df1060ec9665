"""The gRPC front door's path through the Forwarder (export_then): what Kafka's answers turn into."""

from __future__ import annotations

import threading
from typing import cast

import grpc

from receiver.forward import Forwarder
from receiver.outcome import Outcome
from receiver.producer import ProduceError, Records, Settled, _Countdown
from receiver.readiness import KafkaReadiness
from receiver.signals import TRACES
from receiver.telemetry import ReceiverMetrics
from tests.otlp_clients import span_request


class _Ready:
    ready = True
    reason = ""

    def retry_after(self, floor: float, ceiling: float) -> float:
        return floor


class _Kafka:
    """Answers each record from a thread of its own, as librdkafka's delivery thread would."""

    def __init__(self, refuse: ProduceError | None = None) -> None:
        self.refuse = refuse
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.threads: list[threading.Thread] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        raise AssertionError("the gRPC path must not use the event loop's send")

    def send_then(self, topic: str, records: Records, settled: Settled) -> None:
        countdown = _Countdown(len(records), settled)
        threads = []
        for index, (key, value) in enumerate(records):
            self.sent.append((topic, key, value))
            error = self.refuse if index == len(records) - 1 else None
            threads.append(threading.Thread(target=countdown.done, args=(error,)))
        self.threads = threads
        for thread in threads:
            thread.start()

    def close(self, timeout: float = 10.0) -> None:
        pass


def forward(kafka: _Kafka, body: bytes) -> tuple[grpc.StatusCode, ReceiverMetrics]:
    metrics = ReceiverMetrics()
    forwarder = Forwarder(kafka, cast(KafkaReadiness, _Ready()), metrics, 1 << 20, (2.0, 30.0))
    answers: list[Outcome] = []
    answered = threading.Event()

    def done(result: Outcome) -> None:
        answers.append(result)
        answered.set()

    forwarder.export_then(TRACES, body, done)
    assert answered.wait(5)
    for thread in kafka.threads:
        thread.join()
    assert len(answers) == 1, "answered once, after the last record"
    return answers[0].code, metrics


def items(metrics: ReceiverMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "talonflow_receiver_items_total", {"signal": "traces", "outcome": outcome}
    )
    return value or 0.0


def test_every_record_of_a_split_request_is_sent_and_ok_follows_all_acks() -> None:
    kafka = _Kafka()
    code, metrics = forward(kafka, span_request([("a", "1"), ("b", "2")], spans_per_agent=3))
    assert code is grpc.StatusCode.OK
    assert [(topic, key) for topic, key, _ in kafka.sent] == [(TRACES.topic, b"a/1"), (TRACES.topic, b"b/2")]
    assert items(metrics, "accepted") == 6


def test_one_refused_record_refuses_the_request_as_retryable() -> None:
    kafka = _Kafka(refuse=ProduceError("kafka: broker down"))
    code, metrics = forward(kafka, span_request([("a", "1"), ("b", "2")], spans_per_agent=3))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert items(metrics, "refused") == 6 and items(metrics, "accepted") == 0


def test_a_full_buffer_asks_the_client_to_back_off() -> None:
    kafka = _Kafka(refuse=ProduceError("producer buffer full", overloaded=True))
    code, _ = forward(kafka, span_request([("a", "1")]))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_undecodable_bytes_send_nothing() -> None:
    kafka = _Kafka()
    code, _ = forward(kafka, b"\x0a\xff\xff")
    assert code is grpc.StatusCode.INVALID_ARGUMENT and kafka.sent == []


def test_an_empty_request_is_ok_without_waiting_on_kafka() -> None:
    kafka = _Kafka()
    code, _ = forward(kafka, b"")
    assert code is grpc.StatusCode.OK and kafka.sent == []

"""The receiver's own Prometheus metrics, served on the ops port at /metrics."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from receiver.outcome import Outcome

M = TypeVar("M", Counter, Histogram)


class Children(Generic[M]):
    """A labelled metric's children, each looked up once: `labels()` checks and locks on every call
    (~0.7 us), and a gRPC call takes four of them on its way."""

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:  # two threads may both look it up: labels() gives both the same child
            child = self._children[values] = self._metric.labels(*values)
        return child


class ReceiverMetrics:
    """One registry per receiver, so several can live in one test process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "talonflow_receiver_requests",
            "Export requests answered, by signal, transport and outcome.",
            ["signal", "transport", "outcome"],
            registry=self.registry,
        )
        self.items = Counter(
            "talonflow_receiver_items",
            "Spans, data points and log records, by outcome (accepted, rejected, refused).",
            ["signal", "outcome"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "talonflow_receiver_bytes",
            "Request bytes received as sent on the wire (before decompression).",
            ["signal", "transport"],
            registry=self.registry,
        )
        self.errors = Counter(
            "talonflow_receiver_errors",
            "Requests not accepted, by reason.",
            ["signal", "reason"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "talonflow_receiver_kafka_produce_seconds",
            "Time from handing a request's records to Kafka until all were acknowledged (acks=all).",
            ["signal"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.records = Counter(
            "talonflow_receiver_kafka_records",
            "Kafka records acknowledged, by topic.",
            ["topic"],
            registry=self.registry,
        )
        self.kafka_ready = Gauge(
            "talonflow_receiver_kafka_ready",
            "1 when the broker answered the last metadata probe and every OTLP topic exists.",
            registry=self.registry,
        )
        self._requests = Children(self.requests)
        self._errors = Children(self.errors)

    def observe(self, signal: str, transport: str, result: Outcome) -> None:
        """Count one answered request."""
        self._requests(signal, transport, result.reason).inc()
        if not result.ok:
            self._errors(signal, result.reason).inc()

"""Decode, split by resource and produce: the one path every OTLP request takes into Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from receiver import outcome
from receiver.outcome import Outcome
from receiver.producer import ProduceError, Producer
from receiver.readiness import KafkaReadiness
from receiver.signals import Signal
from receiver.split import Record, Split, split_request
from receiver.telemetry import Children, ReceiverMetrics


class Forwarder:
    """Answers OK only after Kafka acknowledged every record of the request."""

    def __init__(
        self,
        producer: Producer,
        readiness: KafkaReadiness,
        metrics: ReceiverMetrics,
        max_record_bytes: int,
        retry_after: tuple[float, float],
    ) -> None:
        self._producer = producer
        self._readiness = readiness
        self._produce_seconds = Children(metrics.produce_seconds)
        self._records = Children(metrics.records)
        self._items = Children(metrics.items)
        self._max_record_bytes = max_record_bytes
        self._retry_after = retry_after  # (floor, ceiling) of the advised delay, see KafkaReadiness

    async def export(self, signal: Signal, body: bytes) -> Outcome:
        """Forward one serialized ExportXServiceRequest (the HTTP front end, on the event loop)."""
        split = self._split(signal, body)
        if isinstance(split, Outcome):
            return split
        started = time.perf_counter()
        failures = await self._produce(signal.topic, split.records)
        return self._answer(signal, split, failures, started)

    def export_then(self, signal: Signal, body: bytes, done: Callable[[Outcome], None]) -> None:
        """`export` without waiting (the gRPC front door's dispatcher): `done` gets the answer once
        Kafka has it, from Kafka's delivery thread, so many requests wait on Kafka at once."""
        split = self._split(signal, body)
        if isinstance(split, Outcome):
            done(split)
            return
        started = time.perf_counter()

        def settled(failures: list[ProduceError]) -> None:
            done(self._answer(signal, split, failures, started))

        self._producer.send_then(signal.topic, [(r.key, r.value) for r in split.records], settled)

    def _split(self, signal: Signal, body: bytes) -> Split | Outcome:
        """The request's Kafka records, or the answer when it cannot be forwarded at all."""
        if not self._readiness.ready:
            return self._unavailable(self._readiness.reason)
        try:
            return split_request(signal, body, self._max_record_bytes)
        except ValueError as err:
            return outcome.invalid(f"cannot decode {signal.request.DESCRIPTOR.name}: {err}")

    def _answer(self, signal: Signal, split: Split, failures: list[ProduceError], started: float) -> Outcome:
        """Count what Kafka took or refused and say so: OK only when it took every record."""
        self._produce_seconds(signal.name).observe(time.perf_counter() - started)
        sent = len(split.records) - len(failures)
        if sent:
            self._records(signal.topic).inc(sent)
        items = sum(r.items for r in split.records)
        if failures:
            self._items(signal.name, "refused").inc(items)
            if any(f.overloaded for f in failures):
                return outcome.overloaded(str(failures[0]), self._retry_after[0])
            return self._unavailable(str(failures[0]))
        self._items(signal.name, "accepted").inc(items)
        if split.rejected_items:
            self._items(signal.name, "rejected").inc(split.rejected_items)
        return outcome.accepted(signal.response_bytes(split.rejected_items, split.rejected_reason))

    async def _produce(self, topic: str, records: list[Record]) -> list[ProduceError]:
        """Send every record; the Kafka refusals. One record, the usual case, is awaited directly:
        gather would wrap it in a task, a loop round trip of its own on every request."""
        if len(records) == 1:
            try:
                await self._producer.send(topic, records[0].key, records[0].value)
            except ProduceError as err:
                return [err]
            return []
        results = await asyncio.gather(
            *(self._producer.send(topic, r.key, r.value) for r in records), return_exceptions=True
        )
        failures: list[ProduceError] = []
        for result in results:
            if isinstance(result, ProduceError):
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result  # a bug, not a Kafka answer: let it surface
        return failures

    def _unavailable(self, message: str) -> Outcome:
        return outcome.unavailable(message, self._readiness.retry_after(*self._retry_after))

"""Asyncio-facing Kafka producers: `await send(...)` returns once the broker acknowledged (acks=all).

Two clients sit behind one small interface so they can be measured inside the receiver on the
real broker (bench/receiver.py); confluent-kafka is the default because it measured faster.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import confluent_kafka
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from schemas.config import KafkaConfig, ProducerConfig
from talonflow.kafka_log import kafka_logger


class ProduceError(Exception):
    """The record was not acknowledged; `overloaded` separates a full buffer from an outage."""

    def __init__(self, reason: str, *, overloaded: bool = False) -> None:
        super().__init__(reason)
        self.overloaded = overloaded


Records = Sequence[tuple[bytes | None, bytes]]  # (key, value) of each record to send
Settled = Callable[[list[ProduceError]], None]  # takes the refusals of a request's records
LONE_FLUSH = 0.001  # s; how long a lone record's flush may last (librdkafka counts whole ms)


class Producer(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def send_then(self, topic: str, records: Records, settled: Settled) -> None:
        """Send every record without waiting; `settled` gets the refusals once all were answered,
        from whichever thread has the last answer."""
        ...

    def close(self, timeout: float = 10.0) -> None: ...


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _Countdown:
    """Collects the refusals of a request's records; hands them to `settled` once every one was
    answered (at once for no records)."""

    def __init__(self, count: int, settled: Settled) -> None:
        self._left = count
        self._lock = threading.Lock()
        self._settled = settled
        self.failures: list[ProduceError] = []
        if count == 0:
            settled(self.failures)

    def done(self, error: ProduceError | None) -> None:
        with self._lock:
            if error is not None:
                self.failures.append(error)
            self._left -= 1
            last = self._left == 0
        if last:
            self._settled(self.failures)


class ConfluentProducer:
    """librdkafka does the batching; a background thread serves its delivery callbacks.

    `linger` lets concurrent requests share a batch, but a request that is alone would only wait it
    out: nothing else is coming to fill the batch. So when a record is produced with no other in
    flight, a `flush()` sends it at once (librdkafka ignores linger while a flush is running). The
    flush is cut at LONE_FLUSH, about when the lone record has left: under concurrency a lone record
    follows every acknowledged batch, and while a flush runs with records queued behind those in
    flight, librdkafka's broker thread spins (300k wakeups/s, librdkafka 2.16). Flushing for the
    whole linger cost 90-190 us of CPU per request at 10 spans x 16 in flight, more than the rest of
    the receiver. The flush runs on a thread of its own that a `threading.Event` wakes: on the
    loop's executor it would wake the event loop once more per lone request for nothing (the
    delivery callback already settles the request). Not in the thread that waits for the answer
    either: the delivery thread usually takes the callback, and a flush that finds no callback to
    serve sleeps out its whole timeout (p50 6.6 ms, measured).
    """

    def __init__(self, kafka: KafkaConfig, settings: ProducerConfig) -> None:
        self._producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": kafka.bootstrap_servers,
                "acks": "all",
                "enable.idempotence": True,
                # 1 (the default): what arrives during a round trip goes out together in the next
                # request (fewer, fuller requests; 1.1-1.4x spans per CPU-s measured at 16 in flight)
                "max.in.flight.requests.per.connection": settings.max_in_flight,
                "linger.ms": settings.linger * 1000,
                "compression.type": settings.compression,
                "message.max.bytes": kafka.record_limit_bytes,
                "message.timeout.ms": int(settings.delivery_timeout * 1000),
                "queue.buffering.max.kbytes": max(1, settings.buffer_bytes // 1024),
                "queue.buffering.max.messages": 1_000_000,
                "reconnect.backoff.max.ms": 1000,
                "partitioner": "murmur2_random",  # the Java client's mapping of keys to partitions
                "logger": kafka_logger("receiver.kafka"),
            }
        )
        self._linger = settings.linger
        self._in_flight = 0  # records produced and not yet settled, from any thread
        self._count_lock = threading.Lock()
        self._closed = threading.Event()
        self._lone = threading.Event()  # set when a record goes out with no other in flight
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()
        self._flusher = threading.Thread(target=self._flush_lone, name="kafka-flush", daemon=True)
        self._flusher.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def _flush_lone(self) -> None:
        while True:
            self._lone.wait()
            self._lone.clear()
            if self._closed.is_set():
                return
            self._producer.flush(min(self._linger, LONE_FLUSH))

    def _produce(
        self, topic: str, key: bytes | None, value: bytes, done: Callable[[ProduceError | None], None]
    ) -> bool:
        """Hand one record to librdkafka; `done` runs once Kafka answered. True when it is alone
        in flight and should be flushed rather than linger."""

        def delivered(err: confluent_kafka.KafkaError | None, _msg: Any) -> None:
            with self._count_lock:
                self._in_flight -= 1
            done(None if err is None else ProduceError(f"kafka: {err.str()}"))

        try:
            self._producer.produce(topic, value, key, on_delivery=delivered)
        except BufferError as err:
            raise ProduceError("producer buffer full", overloaded=True) from err
        except confluent_kafka.KafkaException as err:
            raise ProduceError(f"kafka: {err}") from err
        with self._count_lock:
            self._in_flight += 1
            lone = self._in_flight == 1
        return lone and self._linger > 0

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(error: ProduceError | None) -> None:
            loop.call_soon_threadsafe(_settle, future, error)

        if self._produce(topic, key, value, done):
            self._lone.set()
        await future

    def send_then(self, topic: str, records: Records, settled: Settled) -> None:
        countdown = _Countdown(len(records), settled)
        lone = False
        for key, value in records:
            try:
                lone |= self._produce(topic, key, value, countdown.done)
            except ProduceError as err:
                countdown.done(err)
        if lone:
            self._lone.set()

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._closed.set()
        self._lone.set()
        self._poller.join()
        self._flusher.join()


class KafkaPythonProducer:
    """kafka-python's producer, kept for side-by-side measurement (see README).

    kafka-python 3 has no bound on buffered bytes, so `buffer_bytes` does not apply here.
    """

    def __init__(self, kafka: KafkaConfig, settings: ProducerConfig) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers.split(","),
            acks="all",
            linger_ms=int(settings.linger * 1000),
            compression_type=None if settings.compression == "none" else settings.compression,
            max_request_size=kafka.record_limit_bytes,
            allow_auto_create_topics=False,
            delivery_timeout_ms=int(settings.delivery_timeout * 1000),
            request_timeout_ms=max(1000, int(settings.delivery_timeout * 1000) - 500),
            max_block_ms=100,  # send() runs on the event loop: never wait there for long
            reconnect_backoff_max_ms=1000,
            max_in_flight_requests_per_connection=settings.max_in_flight,
        )

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        try:
            sent = self._producer.send(topic, value=value, key=key)
        except KafkaTimeoutError as err:
            raise ProduceError("producer buffer full or no metadata", overloaded=True) from err
        sent.add_callback(lambda _meta: loop.call_soon_threadsafe(_settle, future, None))
        sent.add_errback(
            lambda exc: loop.call_soon_threadsafe(_settle, future, ProduceError(f"kafka: {exc}"))
        )
        await future

    def send_then(self, topic: str, records: Records, settled: Settled) -> None:
        countdown = _Countdown(len(records), settled)
        for key, value in records:
            try:
                sent = self._producer.send(topic, value=value, key=key)
            except KafkaTimeoutError:
                countdown.done(ProduceError("producer buffer full or no metadata", overloaded=True))
                continue
            sent.add_callback(lambda _meta: countdown.done(None))
            sent.add_errback(lambda exc: countdown.done(ProduceError(f"kafka: {exc}")))

    def close(self, timeout: float = 10.0) -> None:
        self._producer.close(timeout=timeout)


def make_producer(kafka: KafkaConfig, settings: ProducerConfig) -> Producer:
    if settings.client == "kafka-python":
        return KafkaPythonProducer(kafka, settings)
    return ConfluentProducer(kafka, settings)

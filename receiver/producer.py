"""Asyncio-facing Kafka producers: `await send(...)` returns once the broker acknowledged (acks=all).

Two clients sit behind one small interface so they can be measured inside the receiver on the
real broker (bench/receiver.py); confluent-kafka is the default because it measured faster.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

import confluent_kafka
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from schemas.config import KafkaConfig, ProducerConfig


class ProduceError(Exception):
    """The record was not acknowledged; `overloaded` separates a full buffer from an outage."""

    def __init__(self, reason: str, *, overloaded: bool = False) -> None:
        super().__init__(reason)
        self.overloaded = overloaded


class Producer(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class ConfluentProducer:
    """librdkafka does the batching; a background thread serves its delivery callbacks.

    `linger` lets concurrent requests share a batch, but a request that is alone would only wait it
    out: nothing else is coming to fill the batch. So when a record is produced with no other in
    flight, a `flush()` on the executor sends it at once (librdkafka ignores linger while a flush
    is running). The flush lasts at most one linger, so under steady concurrency, when a lone
    record is rare anyway, batching is off for no longer than linger would have waited.
    """

    def __init__(self, kafka: KafkaConfig, settings: ProducerConfig) -> None:
        self._producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": kafka.bootstrap_servers,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": settings.linger * 1000,
                "compression.type": settings.compression,
                "message.max.bytes": kafka.record_limit_bytes,
                "message.timeout.ms": int(settings.delivery_timeout * 1000),
                "queue.buffering.max.kbytes": max(1, settings.buffer_bytes // 1024),
                "queue.buffering.max.messages": 1_000_000,
                "reconnect.backoff.max.ms": 1000,
                "partitioner": "murmur2_random",  # the Java client's mapping of keys to partitions
                "logger": logging.getLogger("receiver.kafka"),
            }
        )
        self._linger = settings.linger
        self._in_flight = 0  # records produced and not yet settled; touched on the event loop only
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def delivered(err: confluent_kafka.KafkaError | None, _msg: Any) -> None:
            error = None if err is None else ProduceError(f"kafka: {err.str()}")
            loop.call_soon_threadsafe(_settle, future, error)

        try:
            self._producer.produce(topic, value, key, on_delivery=delivered)
        except BufferError as err:
            raise ProduceError("producer buffer full", overloaded=True) from err
        except confluent_kafka.KafkaException as err:
            raise ProduceError(f"kafka: {err}") from err
        self._in_flight += 1
        if self._in_flight == 1 and self._linger > 0:
            loop.run_in_executor(None, self._producer.flush, self._linger)
        try:
            await future
        finally:
            self._in_flight -= 1

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._closed.set()
        self._poller.join()


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

    def close(self, timeout: float = 10.0) -> None:
        self._producer.close(timeout=timeout)


def make_producer(kafka: KafkaConfig, settings: ProducerConfig) -> Producer:
    if settings.client == "kafka-python":
        return KafkaPythonProducer(kafka, settings)
    return ConfluentProducer(kafka, settings)

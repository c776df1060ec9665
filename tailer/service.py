"""The tailer loop: poll the files, ship lines and positions in one transaction, serve the ops port.

Any Kafka error ends the process (exit 1) rather than being retried in place: the in-memory
positions are then ahead of the committed ones, and supervisord's restart re-reads the committed
ones, which is the one path that is known to be exactly once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from schemas.config import TalonflowConfig
from schemas.topics import LOGS_TOPIC, TAILER_POSITIONS_TOPIC
from tailer import positions
from tailer.export import Exporter
from tailer.files import FileTracker

log = logging.getLogger("talonflow.tailer")


class TailerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lines = Counter("talonflow_tailer_lines", "Lines shipped to Kafka", ["service"], registry=r)
        self.unparsed = Counter("talonflow_tailer_unparsed_lines", "Lines kept as a plain body", registry=r)
        self.bytes = Counter("talonflow_tailer_read_bytes", "Bytes read from log files", registry=r)
        self.transactions = Counter(
            "talonflow_tailer_transactions", "Kafka transactions committed", registry=r
        )
        self.files = Gauge("talonflow_tailer_open_files", "Files open for reading", registry=r)
        self.lag = Gauge("talonflow_tailer_lag_bytes", "Bytes in the files not read yet", registry=r)


def serve_ops(config: TalonflowConfig, metrics: TailerMetrics, last_poll: list[float]) -> ThreadingHTTPServer:
    """/healthz (the loop polled recently; answers with the pid) and /metrics on the ops port.

    Hand-written on http.server because prometheus_client's own server answers every path with
    the metrics, and a health check must be able to fail. `last_poll[0]` is the loop's last poll
    (monotonic seconds), 0 before the first.
    """
    stale_after = max(60.0, 10 * config.tailer.poll_interval)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                age = time.monotonic() - last_poll[0]  # a step of the host clock is no silence
                ok = age < stale_after
                if not last_poll[0]:
                    text = "starting: positions not read yet\n"
                else:
                    text = f"ok {os.getpid()}\n" if ok else f"stuck: last poll {age:.0f}s ago\n"
                self._answer(200 if ok else 503, text.encode(), "text/plain")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the tailer's own log

    server = ThreadingHTTPServer((config.tailer.host, config.tailer.port), Handler)
    threading.Thread(target=server.serve_forever, name="tailer-ops", daemon=True).start()
    return server


def ship(producer: Producer, records: list[tuple[bytes, bytes]], key: bytes, state: bytes) -> None:
    """One transaction: the poll's log records and the positions after them, or nothing."""
    producer.begin_transaction()
    for record_key, value in records:
        while True:
            try:
                producer.produce(LOGS_TOPIC, value, record_key)
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let deliveries drain it
    producer.produce(TAILER_POSITIONS_TOPIC, state, key)
    producer.commit_transaction(60)


def run(config: TalonflowConfig, config_file: Path, stop: threading.Event) -> None:
    # one line must fit one Kafka record, OTLP framing included: a longer one is cut, not refused
    record_room = config.kafka.max_message_bytes // 2
    settings = config.tailer.model_copy(
        update={"max_line_bytes": min(config.tailer.max_line_bytes, record_room)}
    )
    metrics = TailerMetrics()
    last_poll = [0.0]  # healthy once the first poll is done: files are then followed from there
    server = serve_ops(config, metrics, last_poll)
    producer = positions.transactional_producer(config)  # first: aborts what a killed tailer left open
    stored = positions.load(config)
    key = positions.positions_key(config)
    base = config_file.resolve().parent
    tracker = FileTracker(list(config.log_files), settings, base, stored)
    exporter = Exporter(list(config.log_files), min(4 * 1024**2, record_room))
    log.info(
        "tailer %s: %d sources, %s, ops on %s",
        settings.id,
        len(config.log_files),
        f"{len(stored)} stored positions" if stored is not None else "first start",
        settings.address,
    )
    try:
        while not stop.is_set():
            polled = tracker.poll()
            metrics.files.set(tracker.open_files())
            metrics.lag.set(tracker.lag_bytes())
            if not tracker.changed:
                last_poll[0] = time.monotonic()
                stop.wait(settings.poll_interval)
                continue
            batch = exporter.batch(polled)
            ship(producer, batch.records, key, positions.encode(tracker.positions()))
            tracker.changed = False
            last_poll[0] = time.monotonic()  # after the commit: a first start's positions are then kept
            metrics.transactions.inc()
            metrics.bytes.inc(sum(chunk.size for chunk in polled))
            for chunk in polled:
                metrics.lines.labels(config.log_files[chunk.source].service_name).inc(len(chunk.lines))
            metrics.unparsed.inc(batch.unparsed)
            if not polled:
                stop.wait(settings.poll_interval)
    finally:
        tracker.close()
        server.shutdown()
        producer.flush(10)

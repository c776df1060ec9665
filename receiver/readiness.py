"""Is Kafka there? A background probe that the request path reads without waiting."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka.admin import AdminClient

from schemas.topics import OTLP_TOPICS

log = logging.getLogger(__name__)


class KafkaReadiness:
    """Asks the broker for metadata every `interval` seconds; ready means every OTLP topic exists."""

    def __init__(self, bootstrap_servers: str, interval: float = 1.0) -> None:
        self._admin = AdminClient(
            {"bootstrap.servers": bootstrap_servers, "reconnect.backoff.max.ms": 1000, "log_level": 0}
        )
        self._interval = interval
        self._stop = threading.Event()
        self.ready = False
        self.reason = ""  # empty before the first probe, which start() runs
        self._unready_since: float | None = None  # time.monotonic() when the current outage was seen
        self._thread = threading.Thread(target=self._run, name="kafka-readiness", daemon=True)

    def start(self) -> None:
        self.probe()
        self._thread.start()

    def probe(self) -> None:
        try:
            metadata = self._admin.list_topics(timeout=max(self._interval, 1.0))
            missing = [t for t in OTLP_TOPICS if t not in metadata.topics]
            reason = f"topics missing: {', '.join(missing)}" if missing else ""
        except Exception as err:  # any failure to answer means "not ready", whatever its type
            reason = f"kafka unreachable: {err}"
        if reason and (self.ready or not self.reason):
            log.warning("kafka not ready: %s", reason)
        elif not reason and not self.ready:
            log.info("kafka ready")
        if reason and self._unready_since is None:
            self._unready_since = time.monotonic()
        elif not reason:
            self._unready_since = None
        self.ready, self.reason = not reason, reason

    def retry_after(self, floor: float, ceiling: float) -> float:
        """The delay to advise a refused client: three times as long as the outage has lasted,
        within [floor, ceiling].

        The OTel SDKs make six attempts and take a server's delay in place of their own exponential
        backoff, so a fixed 2 s gave up ten seconds into an outage (a broker restart takes longer).
        Growing with the outage keeps a blip cheap. Three times, not once: a client refused at the
        start of an outage retried at 2, 4, 8, 16 s and gave up at 32 s with the outage's own age
        (bench/faults.py, Kafka away 60 s); with 3x and a 120 s exporter timeout every client's
        last attempt comes 92 s or more into the outage, with a 90 s timeout still 62 s.
        """
        since = self._unready_since
        lasted = 0.0 if since is None else time.monotonic() - since
        return min(max(3 * lasted, floor), ceiling)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

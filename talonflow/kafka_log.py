"""librdkafka's log lines through Python logging, a repeated line once per interval.

While a broker is away, every librdkafka client logs a failed connect each time it retries
(about every 50 ms at its default `reconnect.backoff.ms`), so a minute's outage wrote thousands
of identical lines per process. The first line of a kind is logged at once; repeats within
`every` seconds are counted and their number is logged with the next one let through.
"""

from __future__ import annotations

import logging
import re
import threading
import time

# "(after 0ms in state CONNECT)", "(10 identical error(s) suppressed)": parts that vary between
# otherwise identical lines.
_VARYING = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Lets a line through once per `every` seconds per (facility, text without numbers)."""

    def __init__(self, every: float = 30.0) -> None:
        super().__init__()
        self._every = every
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last let through, suppressed since)

    def filter(self, record: logging.LogRecord) -> bool:
        key = _VARYING.sub("#", record.getMessage())
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(key, (-self._every, 0))
            if now - last < self._every:
                self._seen[key] = (last, suppressed + 1)
                return False
            if len(self._seen) > 1000:  # a bound: keys are few, but a broker's text is not ours
                self._seen.clear()
            self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like it in the last {now - last:.0f}s)"
        return True


def kafka_logger(name: str, every: float = 30.0) -> logging.Logger:
    """The logger to pass as a librdkafka client's `logger` setting."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter(every))
    return logger

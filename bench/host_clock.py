"""The host's wall clock stepped on purpose (as NTP, a resumed VM or `date -s` step it), and put
back by the monotonic time elapsed, so that no time server is needed to undo it.

`clock_settime(CLOCK_REALTIME)` moves every process's wall clock; CLOCK_MONOTONIC does not move
with it. The true wall time is therefore the monotonic clock plus the offset between the two read
before the first step, and putting the clock back is one more step, to that time.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType

Setter = Callable[[int, float], None]  # time.clock_settime's shape


class HostClock:
    """Steps CLOCK_REALTIME relative to the true time read at creation; `step(0)` puts it back."""

    def __init__(self, settime: Setter = time.clock_settime) -> None:
        self._settime = settime
        self._offset = time.time() - time.monotonic()  # true wall time = monotonic + offset
        self.stepped = 0.0  # seconds ahead of (or behind) the true time now

    def true_time(self) -> float:
        return time.monotonic() + self._offset

    def step(self, ahead: float) -> None:
        """Set the wall clock `ahead` seconds from the true time (negative: behind it)."""
        self._settime(time.CLOCK_REALTIME, self.true_time() + ahead)
        self.stepped = ahead


def settable(settime: Setter = time.clock_settime) -> str:
    """ "" when this process may set the host's clock, else why not (it sets it to its own time)."""
    try:
        settime(time.CLOCK_REALTIME, time.time())
    except OSError as err:
        return f"cannot set the host's clock: {err.strerror} (needs root or CAP_SYS_TIME)"
    return ""


@contextlib.contextmanager
def host_clock(settime: Setter = time.clock_settime) -> Iterator[HostClock]:
    """A HostClock whose steps are undone on leaving the block, on an exception, Ctrl-C or SIGTERM
    (SIGTERM is turned into SystemExit for the block, so that `finally` runs)."""
    clock = HostClock(settime)

    def terminated(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield clock
    finally:
        if clock.stepped:
            clock.step(0.0)
        signal.signal(signal.SIGTERM, previous)

"""A supervised flow's process exits when the host's clock steps back, so that it restarts at once.

bytewax 0.21 times epochs and each source partition's next wake-up on the wall clock
(src/inputs.rs: `now - epoch_started >= epoch_interval`, `now >= next_awake`, with `Utc::now()`).
After the clock steps back S seconds no epoch closes and no idle partition is polled for S
seconds: nothing is written or committed and no heartbeat verdict is made. `python -m
bench.faults --scenarios clock` measured it: stepped 120 s back, ingest wrote no Parquet file for
121 s. A restart from the last snapshot is what a kill -9 is, exact and a few seconds long, so a
flow that a supervisor restarts (`talonflow up`'s supervisord, compose's restart policy: they set
SUPERVISED_ENV) exits instead of standing still. A forward step needs nothing (epochs close at
once), and a step back shorter than STEP_BACK_S costs less standing still than a restart.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

SUPERVISED_ENV: Final = "TALONFLOW_SUPERVISED"  # "1": a supervisor restarts this process when it exits
STEP_BACK_S: Final = 10.0  # a step back at least this long exits the process
CHECK_EVERY_S: Final = 1.0
EXIT_CODE: Final = 75  # EX_TEMPFAIL: try again (supervisord and compose restart on any code)

_started = threading.Lock()
_watching = False


def wall_step(last: tuple[float, float], now: tuple[float, float]) -> float:
    """How far the wall clock moved beyond the monotonic one between two (wall, monotonic)
    readings, in their unit: a step of the host's clock (negative: back). A process stalled
    under load moves both alike. flows/heartbeats.py judges by it too."""
    return (now[0] - last[0]) - (now[1] - last[1])


def _readings() -> tuple[float, float]:
    return time.time(), time.monotonic()


def watch(exit_process: Callable[[int], None], every_s: float = CHECK_EVERY_S) -> None:
    """Reads both clocks every `every_s` until the wall clock steps back STEP_BACK_S or more; then
    says so and calls `exit_process(EXIT_CODE)`."""
    last = _readings()
    while True:
        time.sleep(every_s)
        now = _readings()
        back = -wall_step(last, now)
        if back >= STEP_BACK_S:
            log.error(
                "the system clock stepped back %.1fs: bytewax times epochs on the wall clock and would "
                "commit nothing for that long; exiting for a restart from the last snapshot",
                back,
            )
            sys.stderr.flush()
            exit_process(EXIT_CODE)
            return
        last = now


def start_if_supervised() -> bool:
    """Starts the watch once per process, when a supervisor restarts it; True if it runs."""
    global _watching
    if os.environ.get(SUPERVISED_ENV) != "1":
        return False
    with _started:
        if not _watching:
            threading.Thread(target=watch, args=(os._exit,), name="clock-watch", daemon=True).start()
            _watching = True
    return True

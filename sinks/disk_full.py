"""Writes that wait out a full data disk instead of failing the flow.

A write that hits ENOSPC (or a quota) is retried until space is freed. The bytewax worker blocks
inside the sink, so its epoch does not close: no recovery snapshot and no Kafka offset is
committed for rows that are not on disk, and the records wait in Kafka. Crashing instead would
restart the flow into the same full disk, re-reading its backlog each time until supervisord
gives up on it; waiting costs nothing and resumes by itself.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

log = logging.getLogger(__name__)
FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
MAX_WAIT_S: Final = 10.0  # between attempts once the disk has been full for a while


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in FULL


def _waiting(path: Path) -> Callable[[RetryCallState], None]:
    def say(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0
        log.error(
            "data disk full writing %s: %s; nothing is committed until space is freed, retrying in %.1fs",
            path,
            error,
            pause,
        )

    return say


def when_space(write: Callable[[], None], path: Path) -> None:
    """Run `write` (of `path`) until it succeeds; only a full disk is waited for, any other error
    is raised at once. `write` must leave nothing behind when it fails (write_atomically does)."""
    retrying = Retrying(
        retry=retry_if_exception(is_disk_full),
        wait=wait_exponential(multiplier=0.5, max=MAX_WAIT_S),
        before_sleep=_waiting(path),
        reraise=True,
    )
    retrying(write)
    attempts = int(retrying.statistics.get("attempt_number", 1))
    if attempts > 1:
        waited = float(retrying.statistics.get("idle_for", 0.0))
        log.warning("data disk has space again: %s written after %d attempts, %.0fs", path, attempts, waited)

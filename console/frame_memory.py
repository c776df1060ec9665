"""The in-memory part of the console's per-file frame caches (partials, series catalogues): an LRU
bounded in bytes. Bounded by count (50,000 partials, 4,096 catalogues) they grew with every file
landing for as long as the soak ran (issue 12); beyond the bound a frame is read back from disk.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

import polars as pl
from cachetools import LRUCache

Key = TypeVar("Key", bound=Hashable)


def frame_bytes(frame: pl.DataFrame) -> int:
    """Polars' estimate of the frame's buffers; an empty frame counts one (cachetools needs > 0)."""
    return max(int(frame.estimated_size()), 1)


def bounded(cache: LRUCache[Key, pl.DataFrame], limit: int) -> LRUCache[Key, pl.DataFrame]:
    """`cache`, or a new empty one when the configured bound is another (tests run several configs)."""
    return cache if cache.maxsize == limit else LRUCache(limit, getsizeof=frame_bytes)


def keep(cache: LRUCache[Key, pl.DataFrame], key: Key, frame: pl.DataFrame) -> None:
    """Kept as the most recently used; a frame larger than the whole bound stays on disk only."""
    if frame_bytes(frame) <= cache.maxsize:
        cache[key] = frame

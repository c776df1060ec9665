"""The in-memory part of the console's frame caches (partials, series catalogues, kept query
results): an LRU bounded in bytes. Bounded by count (50,000 partials, 4,096 catalogues) they grew
with every file landing for as long as the soak ran (issue 12); beyond the bound a frame is read
back from disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import polars as pl
from cachetools import LRUCache

from schemas.config import TalonflowConfig

Key = TypeVar("Key", bound=Hashable)


def frame_bytes(frame: pl.DataFrame) -> int:
    """Polars' estimate of the frame's buffers; an empty frame counts one (cachetools needs > 0)."""
    return max(int(frame.estimated_size()), 1)


class FrameMemory(Generic[Key]):
    """One cache's frames, shared by the request threads and console/warmer.py under its own lock.
    Its bound (`limit` of the config) is read at each use: tests run several configs, and a new
    bound starts empty."""

    def __init__(self, limit: Callable[[TalonflowConfig], int]) -> None:
        self._limit = limit
        self._cache: LRUCache[Key, pl.DataFrame] = LRUCache(1, getsizeof=frame_bytes)
        self._lock = threading.Lock()

    def _bounded(self, config: TalonflowConfig) -> LRUCache[Key, pl.DataFrame]:
        limit = self._limit(config)
        if self._cache.maxsize != limit:
            self._cache = LRUCache(limit, getsizeof=frame_bytes)
        return self._cache

    def get(self, config: TalonflowConfig, key: Key) -> pl.DataFrame | None:
        """The frame, now the most recently used; None when it is not in memory."""
        with self._lock:
            return self._bounded(config).get(key)

    def has(self, config: TalonflowConfig, key: Key) -> bool:
        """Whether it is in memory, without counting as a use."""
        with self._lock:
            return key in self._bounded(config)

    def keep(self, config: TalonflowConfig, key: Key, frame: pl.DataFrame) -> None:
        """Kept as the most recently used; a frame larger than the whole bound stays on disk only."""
        with self._lock:
            cache = self._bounded(config)
            if frame_bytes(frame) <= cache.maxsize:
                cache[key] = frame

    def forget(self, config: TalonflowConfig, gone: Callable[[Key], bool]) -> None:
        """Drops the frames whose key is `gone`."""
        with self._lock:
            cache = self._bounded(config)
            for key in [k for k in cache if gone(k)]:
                del cache[key]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def held(self) -> list[Key]:
        """The keys held, least recently used first."""
        with self._lock:
            return list(self._cache)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return int(self._cache.currsize)

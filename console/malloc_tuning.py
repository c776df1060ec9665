"""Pins glibc's mmap threshold, so the console's heap does not grow with every file landing.

glibc serves a block over `M_MMAP_THRESHOLD` (128 KiB) with its own mmap, unmapped when freed;
but freeing one raises the threshold to its size (up to 32 MiB) and the heap trim threshold to
twice that. The warmer's passes build lists, dicts and sets of every file and cache file, larger
as files land, so after the first large one is freed they come from the heap, between the
small objects that live on (cache keys, trace index arrays): the heap only grows, its free
part with it (issue 12: the warmer over 2,300 landing files, glibc in use flat at 40 MB, free
4 -> 25 MB, about 1 MB per 100 files). Fixed at the defaults (as `MALLOC_MMAP_THRESHOLD_=131072`
would at start-up, but set by the console itself, whoever starts it), large blocks go back to
the system when freed and the heap stays at what is in use. Polars (jemalloc) and pyarrow
(mimalloc) allocate elsewhere and are not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

M_TRIM_THRESHOLD: Final = -1  # glibc's malloc.h
M_MMAP_THRESHOLD: Final = -3
DEFAULT: Final = 128 * 1024  # glibc's own default for both


def pin_mmap_threshold(threshold: int = DEFAULT) -> bool:
    """Sets both thresholds (which stops glibc's dynamic raise); False where the C library is
    not glibc (musl, macOS have no `mallopt` or other semantics): nothing to do there."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, threshold))

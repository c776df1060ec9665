"""glibc's mmap threshold pinned by the console (console/malloc_tuning.py): a large block freed no
longer moves the next large ones into the heap, where they fragmented it as files landed."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# In a child process: mallopt changes the whole process's allocator. Prints the bytes glibc has
# mmapped for a 1 MiB block allocated after a 4 MiB one was freed.
_PROBE = """
import ctypes, sys
from console.malloc_tuning import pin_mmap_threshold

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "pinned" and not pin_mmap_threshold():
    sys.exit("not pinned")
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(block)
"""


def _mmapped(mode: str) -> int:
    tuned = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")  # would pin it already
    env = {k: v for k, v in os.environ.items() if k not in tuned}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, env=env
    )
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_a_large_block_stays_out_of_the_heap_once_pinned() -> None:
    assert _mmapped("default") == 0  # glibc raised its threshold to 4 MiB: the block is in the heap
    assert _mmapped("pinned") >= 1 << 20

"""Keeps the console's caches under `state_dir` (trace indexes, partials, series catalogues)
within `console.disk_cache` bytes: without a bound a week of them grows with the data.

Files are removed least recently used first: their readers renew a file's mtime when they read
it, so the mtime is its last use. Hand-written: it is a walk and a sort, and the caches are
plain files that their own modules write and read.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

T = TypeVar("T")


class Stored(NamedTuple):
    mtime: float
    size: int
    path: Path


def read_renewed(path: Path, read: Callable[[Path], T]) -> T | None:
    """The stored cache file read, its mtime renewed (so `bound` sees its last use); None when
    there is none, or `bound` or a prune has just removed it."""
    try:
        os.utime(path)
        return read(path)
    except FileNotFoundError:
        return None


def write_whole(path: Path, write: Callable[[Path], object]) -> None:
    """`write` to a temporary name beside `path`, then renamed to it: a crash never leaves half a
    file, and two threads writing one path at once rename two whole files (the name is per
    thread). A failed write leaves no temporary file. `.name.tmp` names are not the caches' own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _stored(roots: Sequence[Path]) -> list[Stored]:
    """Every cache file under the roots, but those being written (`.name.tmp`, renamed when done)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.name.startswith("."):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed by a prune meanwhile
                continue
            if path.is_file():
                found.append(Stored(stat.st_mtime, stat.st_size, path))
    return found


def forget_gone(folder: Path, pattern: str, kept: set[str], before: float) -> int:
    """Removes the entries (files, or folders of one file's caches) in `folder` matching `pattern`
    whose names are not `kept`, but those changed after `before` (epoch s): a request may just have
    built one for a file that landed after the caller listed the files. Returns how many went."""
    removed = 0
    for entry in folder.glob(pattern):
        if entry.name not in kept and entry.stat().st_mtime < before:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def usage(roots: Sequence[Path]) -> int:
    """Bytes the caches under the roots take."""
    return sum(s.size for s in _stored(roots))


def bound(roots: Sequence[Path], limit: int) -> int:
    """Removes cache files, the least recently used first, until those under the roots take at
    most `limit` bytes; returns how many went. A folder left empty stays (a request may be writing
    into it; `forget_gone` removes it with its file)."""
    stored = _stored(roots)
    total = sum(s.size for s in stored)
    removed = 0
    for _, size, path in sorted(stored):
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed

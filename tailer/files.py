"""Which files to read and from where: globs, fingerprints, rotation, complete lines.

A file is known by its first bytes (a fingerprint, as the filelog receiver does), not by name or
inode, so every rotation scheme comes out right when the globs also match the rotated names:
- rename and create: the renamed file keeps its open descriptor and its position; the new file
  has new first bytes and is read from its start;
- copy and truncate: the truncated file no longer starts with its fingerprint, so its position is
  let go; the copy starts with those bytes and takes the position over, so the lines the copy
  holds beyond it are read there, once;
- a restart: stored positions are matched to files by fingerprint.
Only complete lines are read; a line cut by `max_line_bytes` becomes several records. The
position is never advanced by anything but what a poll returned, so the caller commits the
positions and the lines together.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from schemas.tailer import LogFileSource, TailerConfig

log = logging.getLogger("talonflow.tailer")
_COPY_CHECK_BYTES = 1024**2  # how much of a new file is compared with the open ones


@dataclass
class Position:
    """How far a file's content was read; `fingerprint` hashes its first `length` bytes."""

    fingerprint: str
    length: int
    offset: int
    path: str
    seen: float = field(default_factory=time.time)  # last time a file had this identity

    def as_json(self) -> dict[str, object]:
        return {"fp": self.fingerprint, "len": self.length, "offset": self.offset, "path": self.path}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Position:
        return cls(str(data["fp"]), int(str(data["len"])), int(str(data["offset"])), str(data["path"]))


@dataclass
class Lines:
    """Complete lines of one file read in one poll."""

    source: int  # index in config.log_files
    path: str
    lines: list[bytes]
    size: int  # bytes consumed, newlines included


@dataclass
class _Reader:
    path: str
    fd: int
    inode: tuple[int, int]
    source: int
    position: Position | None = None  # None until the file has content and an identity
    gone_since: float | None = None  # when the globs stopped matching it (renamed away, deleted)


def _hash(fd: int, length: int) -> str:
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()


def resolve_globs(sources: list[LogFileSource], base: Path) -> dict[str, int]:
    """Every existing file the sources match → the index of the first source matching it.

    An exclude pattern matches the end of a path ("*.gz": any gzipped name) or, from the
    config's folder, the whole of it, as filelog's exclude does.
    """
    found: dict[str, int] = {}
    for index, source in enumerate(sources):
        for pattern in source.include:
            for path in sorted(glob.glob(str(base / pattern))):
                excluded = any(Path(path).match(e) or Path(path).match(str(base / e)) for e in source.exclude)
                if not excluded and os.path.isfile(path):
                    found.setdefault(path, index)
    return found


class FileTracker:
    """The open files and their positions; `poll()` returns what to ship, `positions()` what to commit."""

    def __init__(
        self,
        sources: list[LogFileSource],
        settings: TailerConfig,
        base: Path,
        stored: list[Position] | None,
    ) -> None:
        self.sources = sources
        self.settings = settings
        self.base = base
        self._readers: dict[tuple[int, int], _Reader] = {}
        # positions with no open file: restored at start, or let go by a truncation (a copy may take them)
        self._loose: list[Position] = list(stored or [])
        self._fresh_start = stored is None  # start_at applies to the files found at the very first poll
        self.changed = stored is None  # positions differ from what was last committed
        self._refused: set[str] = set()  # paths that could not be opened, reported once
        self._turn = 0  # which open file reads first in this poll

    # -- one poll -----------------------------------------------------------------------------
    def poll(self) -> list[Lines]:
        now = time.time()
        self._discover(now)
        for reader in list(self._readers.values()):
            self._check_identity(reader)
        for reader in list(self._readers.values()):
            if reader.position is None:
                self._identify(reader)
        self._fresh_start = False
        out: list[Lines] = []
        budget = self.settings.batch_bytes
        readers = list(self._readers.values())
        self._turn = (self._turn + 1) % max(1, len(readers))  # a backlogged file cannot starve the rest
        for reader in readers[self._turn :] + readers[: self._turn]:
            if budget <= 0:
                break
            lines = self._read(reader, budget)
            if lines is not None:
                budget -= lines.size
                out.append(lines)
            elif reader.gone_since is not None and now - reader.gone_since >= self.settings.rotate_wait:
                self._close(reader)
        self._forget(now)
        return out

    def positions(self) -> list[Position]:
        attached = [r.position for r in self._readers.values() if r.position is not None]
        return attached + self._loose

    def lag_bytes(self) -> int:
        """Bytes written to the open files and not read yet."""
        lag = 0
        for reader in self._readers.values():
            if reader.position is not None:
                lag += max(0, os.fstat(reader.fd).st_size - reader.position.offset)
        return lag

    def open_files(self) -> int:
        return len(self._readers)

    def close(self) -> None:
        for reader in list(self._readers.values()):
            self._close(reader)

    # -- steps --------------------------------------------------------------------------------
    def _discover(self, now: float) -> None:
        matched = resolve_globs(self.sources, self.base)
        current: set[tuple[int, int]] = set()
        for path, source in matched.items():
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue  # rotated away between glob and stat: the next poll sees where it went
            inode = (stat.st_dev, stat.st_ino)
            current.add(inode)
            reader = self._readers.get(inode)
            if reader is not None:
                reader.path, reader.source, reader.gone_since = path, source, None
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            except OSError as err:  # unreadable (permissions): said once, the other files go on
                if path not in self._refused:
                    log.warning("cannot read %s: %s; skipped until it can be read", path, err.strerror)
                    self._refused.add(path)
                continue
            self._refused.discard(path)
            if (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != inode:
                os.close(fd)  # replaced between stat and open: the next poll takes the new one
                continue
            self._readers[inode] = _Reader(path, fd, inode, source)
        for inode, reader in self._readers.items():
            if inode not in current and reader.gone_since is None:
                reader.gone_since = now

    def _check_identity(self, reader: _Reader) -> None:
        """Let a position go when its file was truncated or rewritten (copytruncate)."""
        position = reader.position
        if position is None:
            return
        size = os.fstat(reader.fd).st_size
        if (
            size < position.offset
            or size < position.length
            or _hash(reader.fd, position.length) != (position.fingerprint)
        ):
            self._loose.append(position)
            reader.position = None
            self.changed = True

    def _identify(self, reader: _Reader) -> None:
        """Give a file its position: a stored or let-go one it matches, else a new one."""
        size = os.fstat(reader.fd).st_size
        if size == 0:
            return
        hashes: dict[int, str] = {}

        def prefix(length: int) -> str:
            if length not in hashes:
                hashes[length] = _hash(reader.fd, length)
            return hashes[length]

        for position in self._loose:
            if (
                position.length <= size
                and position.offset <= size
                and prefix(position.length) == (position.fingerprint)
            ):
                self._loose.remove(position)
                position.path = reader.path
                reader.position = position
                self.changed = True
                return
        for other in self._readers.values():
            # a copy of a file still being read (copytruncate, before the truncate): wait, the
            # truncate lets the position go and this copy takes it over. A copy holds the same
            # bytes as far as both go; two files that only start alike (a header line) do not.
            if other is not reader and other.position is not None:
                common = min(size, os.fstat(other.fd).st_size, _COPY_CHECK_BYTES)
                if os.pread(reader.fd, common, 0) == os.pread(other.fd, common, 0):
                    return
        length = min(size, self.settings.fingerprint_bytes)
        offset = 0
        if self._fresh_start and self.sources[reader.source].start_at == "end":
            offset = self._last_line_end(reader.fd, size)
        reader.position = Position(prefix(length), length, offset, reader.path)
        self.changed = True

    @staticmethod
    def _last_line_end(fd: int, size: int) -> int:
        """The offset just past the file's last newline: start_at end never starts mid-line."""
        end = size
        while end > 0:
            start = max(0, end - 65536)
            at = os.pread(fd, end - start, start).rfind(b"\n")
            if at >= 0:
                return start + at + 1
            end = start
        return 0

    def _read(self, reader: _Reader, budget: int) -> Lines | None:
        position = reader.position
        if position is None:
            return None
        size = os.fstat(reader.fd).st_size
        if size <= position.offset:
            return None
        want = min(size - position.offset, budget, max(self.settings.max_line_bytes, 64 * 1024))
        data = os.pread(reader.fd, want, position.offset)
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) < self.settings.max_line_bytes:
                return None  # a line still being written
            end = self.settings.max_line_bytes
        lines = []
        for line in data[:end].split(b"\n"):
            while len(line) > self.settings.max_line_bytes:
                lines.append(line[: self.settings.max_line_bytes])
                line = line[self.settings.max_line_bytes :]
            lines.append(line)
        if data[:end].endswith(b"\n"):
            lines.pop()  # the empty piece after the last newline
        position.offset += end
        position.path = reader.path
        position.seen = time.time()
        if position.length < self.settings.fingerprint_bytes and size > position.length:
            position.length = min(size, self.settings.fingerprint_bytes)
            position.fingerprint = _hash(reader.fd, position.length)
        self.changed = True
        return Lines(reader.source, reader.path, lines, end)

    def _close(self, reader: _Reader) -> None:
        os.close(reader.fd)
        del self._readers[reader.inode]
        if reader.position is not None:
            self._loose.append(reader.position)  # a copy elsewhere, or a restart, may still need it

    def _forget(self, now: float) -> None:
        keep = [p for p in self._loose if now - p.seen < self.settings.forget_after]
        if len(keep) != len(self._loose):
            self._loose = keep
            self.changed = True

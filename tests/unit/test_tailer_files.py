"""FileTracker on real files: appends, both rotations, restarts, long lines: every line exactly once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from schemas.tailer import LogFileSource, TailerConfig
from tailer.files import FileTracker, Position, resolve_globs


def source(start_at: str = "beginning", **extra: object) -> LogFileSource:
    return LogFileSource.model_validate(
        {"include": ["logs/app.log*"], "service_name": "svc", "start_at": start_at, **extra}
    )


def tracker(
    base: Path, stored: list[Position] | None = None, start_at: str = "beginning", **settings: object
) -> FileTracker:
    config = TailerConfig.model_validate({"rotate_wait": 0, **settings})
    return FileTracker([source(start_at)], config, base, stored)


def write(path: Path, first: int, count: int) -> None:
    with path.open("a") as out:
        out.writelines(
            f'{{"seq": {i}, "msg": "line {i} of a log file that rotates"}}\n'
            for i in range(first, first + count)
        )


def drain(files: FileTracker, polls: int = 3) -> list[bytes]:
    lines: list[bytes] = []
    for _ in range(polls):
        for chunk in files.poll():
            lines.extend(chunk.lines)
    return lines


def seqs(lines: list[bytes]) -> list[int]:
    return sorted(int(line.split(b",")[0].split(b":")[1]) for line in lines)


def test_appends_are_read_once_and_a_partial_line_waits(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    write(log, 0, 5)
    files = tracker(tmp_path)
    assert seqs(drain(files)) == [0, 1, 2, 3, 4]
    with log.open("a") as out:
        out.write('{"seq": 5, "msg": "half')
    assert drain(files) == []
    with log.open("a") as out:
        out.write(' a line"}\n')
    assert drain(files) == [b'{"seq": 5, "msg": "half a line"}']


def test_rename_and_create_rotation_loses_and_repeats_nothing(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    files = tracker(tmp_path)
    write(log, 0, 50)
    got = drain(files, 1)
    for rotation in range(3):
        write(log, 50 + rotation * 100, 50)  # written, not read yet, when the file is renamed
        for n in range(rotation + 1, 0, -1):
            if (tmp_path / "logs" / f"app.log.{n}").exists():
                os.rename(tmp_path / "logs" / f"app.log.{n}", tmp_path / "logs" / f"app.log.{n + 1}")
        os.rename(log, tmp_path / "logs" / "app.log.1")
        write(log, 100 + rotation * 100, 50)
        got += drain(files, 2)
    assert seqs(got) == list(range(350))


def test_copytruncate_rotation_finishes_the_copy_and_rereads_nothing(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    files = tracker(tmp_path)
    write(log, 0, 40)
    got = drain(files, 1)
    write(log, 40, 30)  # in the copy only: the tracker has not read them when the file is truncated
    shutil.copyfile(log, tmp_path / "logs" / "app.log.1")
    got += drain(files, 1)  # the copy is seen before the truncate: it must wait, not be read twice
    os.truncate(log, 0)
    write(log, 70, 30)
    got += drain(files)
    assert seqs(got) == list(range(100))


def test_positions_survive_a_restart_and_new_files_are_read_from_their_start(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    write(log, 0, 10)
    first = tracker(tmp_path, start_at="end")
    assert drain(first) == []  # start_at end: what was there before the first start is skipped
    write(log, 10, 10)
    got = drain(first)
    stored = [Position.from_json(p.as_json()) for p in first.positions()]
    first.close()
    write(log, 20, 10)
    os.rename(log, tmp_path / "logs" / "app.log.1")  # rotated while the tailer was down
    write(log, 30, 10)
    second = tracker(tmp_path, stored, start_at="end")
    got += drain(second)
    assert seqs(got) == list(range(10, 40))


def test_a_line_longer_than_the_limit_is_cut_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(b"x" * 2500 + b"\nshort\n")
    files = tracker(tmp_path, max_line_bytes=1024)
    assert drain(files) == [b"x" * 1024, b"x" * 1024, b"x" * 452, b"short"]


def test_a_deleted_file_is_drained_then_closed(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "app.log"
    write(log, 0, 3)
    files = tracker(tmp_path)
    got = drain(files, 1)
    with log.open("a") as out:
        log.unlink()
        out.write('{"seq": 3, "msg": "after the unlink"}\n')
    assert seqs(got + drain(files)) == [0, 1, 2, 3]
    assert files.open_files() == 0


def test_an_unreadable_file_is_reported_and_the_others_are_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "logs").mkdir()
    write(tmp_path / "logs" / "app.log", 0, 2)
    locked = tmp_path / "logs" / "app.log.1"
    write(locked, 100, 2)
    real_open = os.open

    def refuse(path: str, flags: int) -> int:  # as a mode-000 file would for a non-root user
        if path == str(locked):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags)

    monkeypatch.setattr(os, "open", refuse)
    files = tracker(tmp_path)
    assert seqs(drain(files)) == [0, 1]
    assert [r.message for r in caplog.records].count(
        f"cannot read {locked}: Permission denied; skipped until it can be read"
    ) == 1
    monkeypatch.setattr(os, "open", real_open)
    assert seqs(drain(files)) == [100, 101]


def test_excludes_match_names_or_whole_paths(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    for name in ("app.log", "app.log.1", "app.log.2.gz", "app.log.3"):
        write(tmp_path / "logs" / name, 0, 1)
    sources = [
        LogFileSource(include=["logs/app.log*"], exclude=["*.gz", "logs/app.log.3"], service_name="a"),
        LogFileSource(include=["logs/*"], service_name="b"),
    ]
    found = resolve_globs(sources, tmp_path)
    assert {Path(p).name: source for p, source in found.items()} == {
        "app.log": 0,
        "app.log.1": 0,
        "app.log.2.gz": 1,  # excluded from the first source, so the second takes it
        "app.log.3": 1,
    }


def test_files_that_only_start_alike_are_each_read(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    header = '{"type": "session", "version": 3}\n'
    files = tracker(tmp_path)
    (tmp_path / "logs" / "app.log").write_text(header)
    assert drain(files, 1) == [header.strip().encode()]
    (tmp_path / "logs" / "app.log.2").write_text(header)  # same first line, not (yet) told apart
    with (tmp_path / "logs" / "app.log").open("a") as out:
        out.write('{"seq": 1, "msg": "first session"}\n')
    with (tmp_path / "logs" / "app.log.2").open("a") as out:
        out.write('{"seq": 2, "msg": "second session"}\n')
    assert sorted(drain(files)) == [
        b'{"seq": 1, "msg": "first session"}',
        b'{"seq": 2, "msg": "second session"}',
        header.strip().encode(),
    ]

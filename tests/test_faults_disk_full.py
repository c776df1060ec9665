"""The data disk full: a Parquet write gives its space back and waits; the pipeline resumes by itself.

The small tests mount their own tiny tmpfs (root only, as CI runs); the stack test runs
bench.faults' disk scenario on its own private stack (ports apart from a bench run's), data dir on a tmpfs.
"""

from __future__ import annotations

import errno
import functools
import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.faults import fill, mount_tmpfs
from sinks.disk_full import when_space
from sinks.parquet import write_atomically
from tests.fault_runs import short_run


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disk"
    why = mount_tmpfs(folder, "1m")
    if why:
        pytest.skip(why)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # detached even if busy


def incompressible(rows: int) -> pa.Table:
    """Random bytes: about 2 MB of Parquet whatever the compression, more than the tiny disk."""
    values = np.random.default_rng(7).integers(0, 2**63, rows, dtype=np.int64)
    return pa.table({"value": values})


def test_a_write_to_a_full_disk_fails_and_leaves_nothing_behind(tiny_disk: Path) -> None:
    with pytest.raises(OSError) as raised:
        write_atomically(incompressible(250_000), tiny_disk / "date=x" / "a.parquet", 1024)
    assert raised.value.errno == errno.ENOSPC
    assert [p.name for p in tiny_disk.rglob("*") if p.is_file()] == []  # no partial temp file


def test_a_write_waits_for_space_then_lands_whole(tiny_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = incompressible(20_000)  # about 160 KB: fits once the filler is gone
    filler = fill(tiny_disk)
    path = tiny_disk / "date=x" / "a.parquet"
    told = threading.Event()

    class Told(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "data disk full" in record.getMessage():
                told.set()

    handler = Told()
    logging.getLogger("sinks.disk_full").addHandler(handler)
    writer = threading.Thread(
        target=when_space, args=(functools.partial(write_atomically, table, path, 1024), path)
    )
    try:
        with caplog.at_level(logging.WARNING, "sinks.disk_full"):
            writer.start()
            assert told.wait(60), "the full disk was never reported"
            assert not path.exists()
            filler.unlink()
            writer.join(60)
    finally:
        logging.getLogger("sinks.disk_full").removeHandler(handler)
    assert not writer.is_alive()
    assert pq.read_table(path).equals(table)
    assert any("has space again" in r.getMessage() for r in caplog.records)


def test_only_a_full_disk_is_waited_for(tmp_path: Path) -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise PermissionError(errno.EACCES, "read-only", str(tmp_path))

    with pytest.raises(PermissionError):
        when_space(refused, tmp_path)
    assert len(calls) == 1


@pytest.mark.integration
def test_ingest_stops_committing_on_a_full_disk_and_resumes_when_space_is_freed(tmp_path: Path) -> None:
    """Under SDK load the data disk fills, ingest is killed -9 while it is full, the filler goes:
    nothing committed while full, no temp or unreadable file, every acknowledged item once."""
    outcome = short_run("disk", tmp_path, "--disk-full", "25", "--warmup", "5", "--disk-size", "128m")
    assert any("committed nothing" in check for check in outcome.checks)

"""A bench past its time is interrupted, so that its cleanup (its stack's `down`) runs."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.bench_run import run_bench


def test_a_bench_past_its_time_gets_to_clean_up(tmp_path: Path) -> None:
    done = tmp_path / "down"
    lines = ["import time", "try:", "    print('up', flush=True)", "    time.sleep(60)", "finally:"]
    script = "\n".join([*lines, f"    open({str(done)!r}, 'w').close()"])
    run = run_bench([sys.executable, "-c", script], timeout=2)
    assert done.exists() and run.stdout == "up\n" and run.returncode != 0
    assert "timed out after 2s" in run.stderr


def test_a_bench_in_time_is_left_alone() -> None:
    run = run_bench([sys.executable, "-c", "import sys; print('ok'); sys.exit(3)"], timeout=30)
    assert (run.returncode, run.stdout) == (3, "ok\n")

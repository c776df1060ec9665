"""The host's clock stepped 30 s ahead and back under SDK load (bench.faults' clock scenario,
short: its own private stack). It sets the clock of the whole machine for 10 s and puts it back
by the monotonic time elapsed; skipped where the process may not set it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault_runs import short_run

pytestmark = pytest.mark.integration


def test_a_clock_step_ahead_and_back_loses_nothing_and_stalls_no_flow(tmp_path: Path) -> None:
    outcome = short_run("clock", tmp_path, "--clock-step", "30", "--clock-hold", "10", "--warmup", "5")
    checks = " | ".join(outcome.checks)
    for expected in ("stayed up", "pending': 1, 'firing': 1", "no dead letter", "every flow exited"):
        assert expected in checks, checks

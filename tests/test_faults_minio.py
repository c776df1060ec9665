"""MinIO away while the lifecycle mover runs with short tier ages, under SDK load (bench.faults'
minio scenario, short: its own private stack, on ports apart from a `bench.faults` run's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault_runs import short_run

pytestmark = pytest.mark.integration


def test_minio_away_deletes_nothing_uncopied_and_everything_moves_after(tmp_path: Path) -> None:
    outcome = short_run("minio", tmp_path, "--minio-away", "45", "--warmup", "5")  # recovered: all moved
    checks = " | ".join(outcome.checks)
    for expected in ("store_up 0", "overdue hot bytes grew", "each copied and verified before", "SHA-256"):
        assert expected in checks, checks

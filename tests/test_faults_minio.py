"""MinIO away while the lifecycle mover runs with short tier ages, under SDK load (bench.faults'
minio scenario, short: its own private stack, on ports apart from a `bench.faults` run's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import TEST_PORT_BASE, parser, run_scenario

pytestmark = pytest.mark.integration


def test_minio_away_deletes_nothing_uncopied_and_everything_moves_after(tmp_path: Path) -> None:
    args = parser().parse_args(["--minio-away", "45", "--warmup", "5", "--port-base", str(TEST_PORT_BASE)])
    outcome = run_scenario("minio", args, tmp_path)
    assert outcome.acked > 0 and outcome.lost == 0 and outcome.duplicated == 0, outcome
    assert outcome.problems == [] and outcome.refused == 0, outcome
    assert outcome.recovered_s is not None, "the hot files left when MinIO came back never moved"
    checks = " | ".join(outcome.checks)
    for expected in ("store_up 0", "overdue hot bytes grew", "each copied and verified before", "SHA-256"):
        assert expected in checks, checks

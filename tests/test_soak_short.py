"""The soak's machinery on a short run: every part sampled with all its processes, every flow's
lag read, and what every way in sent found in Parquet. No slope or time is asserted: slopes over
a minute or two are noise, and `bench.soak` exits 1 for them, so its exit code is not either.

bench.soak runs its own stack on ports 29750-29769 (the full soak's are 29500-29519).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.soak import PartFigures, Sample, lag_unbounded, part_figures, soak_settings
from schemas.config import LifecycleConfig, TalonflowConfig
from tests.bench_run import run_bench

EVERY_PART = {"kafka", "minio", "receiver", "ingest", "rollups", "alerts", "heartbeats", "scraper"}
EVERY_PART |= {"tailer", "lifecycle", "console", "supervisord"}


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the niced stack may take minutes to start on a loaded machine
def test_a_short_soak_samples_every_part_and_lands_what_it_sent(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.soak", "--minutes", "1.5", "--warmup", "30", "--every", "5"]
    command += ["--rate", "50", "--base-port", "29750", "--out", str(tmp_path)]
    run = run_bench(command, timeout=1700)
    assert run.returncode in (0, 1) and "way in" in run.stdout, run.stdout + run.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["programs"]) | {"supervisord"} == EVERY_PART

    with (tmp_path / "samples.csv").open() as handle:
        samples = list(csv.DictReader(handle))
    parts = {row["part"] for row in samples}
    assert parts == EVERY_PART
    for part in parts:
        mine = [row for row in samples if row["part"] == part]
        assert len(mine) >= 10, part  # 90 s every 5 s, from the first sample to the last
        assert all(float(r["rss_mb"]) > 0 and int(r["fds"]) > 0 for r in mine), part
        assert all(0 < float(r["anon_mb"]) < float(r["rss_mb"]) for r in mine), part  # code is file-backed
    scraper = [int(r["processes"]) for r in samples if r["part"] == "scraper"]
    assert max(scraper) == 3  # the parent and its two shard processes: children are summed in

    assert set(summary["lags"]) == {
        "talonflow-ingest",
        "talonflow-rollups",
        "talonflow-alerts",
        "talonflow-heartbeats",
    }
    assert all(len(series) >= 10 for series in summary["lags"].values())

    ways = {d["way"]: d for d in summary["deliveries"]}
    assert set(ways) == {
        "sdk spans",
        "sdk logs",
        "sdk points",
        "remote-write",
        "tailed lines",
        "scrapes (up)",
    }
    for way, delivery in ways.items():
        assert delivery["sent"] > 0 and delivery["landed"] >= delivery["sent"], (way, run.stdout)
        assert delivery["duplicated"] == 0, (way, run.stdout)


def sample(at: float, rss: float, pid: int = 1, cpu: float = 0.0) -> Sample:
    return Sample(at, "part", pid, 1, rss, cpu, 10, rss / 2)


def test_the_slope_is_per_ten_minutes_after_warm_up_and_cpu_skips_restarts() -> None:
    samples = [sample(0, 500.0)]  # warm-up: left out of the slope
    samples += [sample(60.0 * m, 100.0 + 0.5 * m, cpu=m) for m in range(1, 21)]
    samples.append(sample(1260, 111.0, pid=2, cpu=0.5))  # restarted: its CPU counts from here
    (figures,) = part_figures(samples, warmup=60)
    assert isinstance(figures, PartFigures)
    assert figures.slope == pytest.approx(5.0, rel=0.05)  # 0.5 MB a minute
    assert figures.anon_slope == pytest.approx(2.5, rel=0.05)  # half of it anonymous
    assert figures.rss_warm == 100.5 and figures.rss_end == 111.0 and figures.restarts == 1
    assert figures.cpu_percent == pytest.approx(100 * 19 / 1200)


def test_a_saw_tooth_lag_is_bounded_and_a_climbing_one_is_not() -> None:
    saw = [(float(t), (t % 10) * 30) for t in range(200)]
    climbing = [(float(t), t * 3 + (t % 10) * 30) for t in range(200)]
    assert not lag_unbounded(saw, warmup=20)
    assert lag_unbounded(climbing, warmup=20)
    assert not lag_unbounded(climbing[:3], warmup=0)  # too few samples to tell


def noisy(values: list[float], seed: int = 12) -> list[tuple[float, int]]:
    """One sample every 10 s, with up to ±20 records of noise, as the soak reads a lag."""
    jitter = np.random.default_rng(seed).integers(-20, 21, len(values)).tolist()
    return [(10.0 * i, max(0, round(v) + j)) for i, (v, j) in enumerate(zip(values, jitter, strict=True))]


def test_a_lag_that_steps_up_once_and_stays_flat_is_bounded() -> None:
    # An hour's soak as ingest's went (issue 12): 5-77 records, then 160-270 from minute 27 on.
    step = noisy([40.0] * 162 + [220.0] * 198)
    assert not lag_unbounded(step, warmup=900)
    assert not lag_unbounded(noisy([40.0] * 162 + [220.0 - i / 10 for i in range(198)]), warmup=900)


def test_a_lag_that_keeps_rising_is_unbounded_after_a_step_too() -> None:
    assert lag_unbounded(noisy([40.0 + i / 2 for i in range(360)]), warmup=900)  # 3 records a minute
    assert lag_unbounded(noisy([40.0] * 162 + [220.0 + i / 2 for i in range(198)]), warmup=900)


def test_a_saw_tooth_over_a_flat_level_is_bounded_whatever_its_noise() -> None:
    for seed in range(20):
        assert not lag_unbounded(noisy([100.0 + (i % 6) * 30 for i in range(360)], seed), warmup=900)


def test_hot_for_compacts_every_dataset_within_the_run_and_keeps_the_other_ages(tmp_path: Path) -> None:
    defaults = LifecycleConfig().policies
    shortened = TalonflowConfig.model_validate(soak_settings(tmp_path, 29750, 10.0, hot_for=60.0))
    assert set(shortened.lifecycle.policies) == set(defaults)
    for name, policy in shortened.lifecycle.policies.items():
        assert policy.hot_for == 60.0, name
        assert (policy.warm_for, policy.cold_for) == (defaults[name].warm_for, defaults[name].cold_for), name
    assert TalonflowConfig.model_validate(soak_settings(tmp_path, 29750, 10.0)).lifecycle.policies == defaults

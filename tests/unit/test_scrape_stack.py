"""`talonflow up` runs the scraper only with scrape_configs, and its health check sees every shard."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from schemas.config import TalonflowConfig
from talonflow.health import CHECKS
from talonflow.stack import Stack

JOB = {"job_name": "picoclaw", "static_configs": [{"targets": ["127.0.0.1:23699"]}]}
SETTINGS = {"processes": 2, "ops_port": 23600}


def test_no_scrape_configs_no_scraper_and_nothing_to_check(tmp_path: Path) -> None:
    config = TalonflowConfig.model_validate({"state_dir": str(tmp_path), "scrape": SETTINGS})
    assert "scraper" not in [p.name for p in Stack(config, tmp_path / "talonflow.yaml").programs()]
    assert CHECKS["scraper"](config, None) is None


def test_the_scraper_runs_a_process_per_shard_each_on_its_ops_port(tmp_path: Path) -> None:
    document = {"state_dir": str(tmp_path), "scrape": SETTINGS, "scrape_configs": [JOB]}
    config = TalonflowConfig.model_validate(document)
    [scraper] = [p for p in Stack(config, tmp_path / "talonflow.yaml").programs() if p.name == "scraper"]
    assert scraper.command == [sys.executable, "-m", "scrape", "--config", str(tmp_path / "talonflow.yaml")]
    assert "23600/healthz unreachable" in (CHECKS["scraper"](config, None) or "")

    # no Kafka at this address: the shards still serve, and the target's scrapes fail and are logged
    (tmp_path / "talonflow.yaml").write_text(
        yaml.safe_dump({**document, "kafka": {"bootstrap_servers": "127.0.0.1:23698"}})
    )
    process = subprocess.Popen(scraper.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90  # a generous bound: the machine may be loaded
        while CHECKS["scraper"](config, None) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert CHECKS["scraper"](config, None) is None  # both shards answer
    finally:
        process.terminate()
        assert process.wait(30) == 0  # SIGTERM stops every shard and is a clean exit


def test_the_compose_scraper_runs_as_up_runs_it_and_checks_its_ops_port() -> None:
    compose = Path(__file__).resolve().parents[2] / "compose"
    service = yaml.safe_load((compose / "docker-compose.yml").read_text())["services"]["scraper"]
    document = {"scrape_configs": [JOB]}
    native = Stack(TalonflowConfig.model_validate(document), Path("/etc/talonflow/talonflow.yaml")).programs()
    [scraper] = [p for p in native if p.name == "scraper"]
    assert service["command"] == ["python", *scraper.command[1:]]
    port = TalonflowConfig.model_validate(document).scrape.ops_port
    assert f"127.0.0.1:{port}/healthz" in service["healthcheck"]["test"][-1]
    assert service["profiles"] == ["scrape"]


def test_shards_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    """supervisord restarts a parent killed with SIGKILL; its old shards must not hold the ports."""
    settings = {"processes": 2, "ops_port": 30460}
    document = {
        "scrape": settings,
        "scrape_configs": [JOB],
        "kafka": {"bootstrap_servers": "127.0.0.1:30498"},
    }
    (tmp_path / "talonflow.yaml").write_text(yaml.safe_dump(document))
    config = TalonflowConfig.model_validate(document)
    process = subprocess.Popen(
        [sys.executable, "-m", "scrape", "--config", str(tmp_path / "talonflow.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while CHECKS["scraper"](config, None) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        shards = []
        for port in (30460, 30461):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                shards.append(int(answer.read().split()[-1]))
        process.kill()
        process.wait(30)
        deadline = time.monotonic() + 60
        while not all(gone(pid) for pid in shards) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(gone(pid) for pid in shards)
        assert CHECKS["scraper"](config, None) is not None  # their ports are free again
    finally:
        if process.poll() is None:
            process.kill()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False

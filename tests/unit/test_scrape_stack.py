"""`talonflow up` runs the scraper only with scrape_configs, and its health check sees every shard."""

from __future__ import annotations

import subprocess
import sys
import time
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
        deadline = time.monotonic() + 30
        while CHECKS["scraper"](config, None) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert CHECKS["scraper"](config, None) is None  # both shards answer
    finally:
        process.terminate()
        assert process.wait(30) == 0  # SIGTERM stops every shard and is a clean exit

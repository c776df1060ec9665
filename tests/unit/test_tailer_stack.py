"""`talonflow up` runs the tailer from the project's own files, and only when there are log files."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from schemas.config import TalonflowConfig
from talonflow.health import CHECKS
from talonflow.stack import Stack

SOURCE = {"include": ["logs/*.jsonl*"], "service_name": "email_processor"}


def test_no_log_files_no_tailer_and_nothing_to_check(tmp_path: Path) -> None:
    config = TalonflowConfig.model_validate({"state_dir": str(tmp_path)})
    assert "tailer" not in [p.name for p in Stack(config, tmp_path / "talonflow.yaml").programs()]
    assert CHECKS["tailer"](config, None) is None


def test_log_files_run_the_tailer_with_the_config_and_check_its_ops_port(tmp_path: Path) -> None:
    config = TalonflowConfig.model_validate(
        {"state_dir": str(tmp_path), "log_files": [SOURCE], "tailer": {"port": 24999}}
    )
    [tailer] = [p for p in Stack(config, tmp_path / "talonflow.yaml").programs() if p.name == "tailer"]
    assert tailer.command == [sys.executable, "-m", "tailer", "--config", str(tmp_path / "talonflow.yaml")]
    problem = CHECKS["tailer"](config, None)
    assert problem is not None and "127.0.0.1:24999/healthz unreachable" in problem


def test_the_compose_tailer_runs_as_up_runs_it_and_checks_its_ops_port() -> None:
    compose = Path(__file__).resolve().parents[2] / "compose"
    service = yaml.safe_load((compose / "docker-compose.yml").read_text())["services"]["tailer"]
    config = TalonflowConfig.model_validate({"log_files": [SOURCE]})
    [tailer] = [
        p for p in Stack(config, Path("/etc/talonflow/talonflow.yaml")).programs() if p.name == "tailer"
    ]
    assert service["command"] == ["python", *tailer.command[1:]]
    assert f"{config.tailer.address}/healthz" in service["healthcheck"]["test"][-1]
    assert service["profiles"] == ["logs"]

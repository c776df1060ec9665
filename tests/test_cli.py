"""The `talonflow` CLI as a user runs it: exit codes, stderr, --json, and the up/down life cycle."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from talonflow.stack import FLOWS
from tests.conftest import LocalStack

CLI = [sys.executable, "-m", "talonflow.cli"]


def run(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [*CLI, "--config", str(config)] if config else CLI
    return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=300, check=False)


def test_help_and_usage_errors() -> None:
    shown = run("--help")
    assert shown.returncode == 0 and "up" in shown.stdout and "status" in shown.stdout
    assert run("up", "--help").returncode == 0
    wrong = run("explode")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


def test_config_error_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("receiver:\n  grpc: {port: 0}\n")
    result = run("status", config=config)
    assert result.returncode == 2
    assert "receiver.grpc.port" in result.stderr and result.stdout == ""


def test_status_of_a_stack_that_is_not_running(tmp_path: Path) -> None:
    config = tmp_path / "idle.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state")}))
    assert run("status", config=config).returncode == 3
    as_json = run("status", "--json", config=config)
    assert as_json.returncode == 3 and json.loads(as_json.stdout) == {"running": False, "parts": []}
    stopped = run("down", config=config)
    assert stopped.returncode == 0 and "not running" in stopped.stderr


@pytest.mark.integration
def test_status_json_of_the_running_stack(local_stack: LocalStack) -> None:
    status = local_stack.status()
    assert status["running"] is True
    parts = {p["name"]: p for p in status["parts"]}
    # no scrape_configs and no log_files in the session config: no scraper, no tailer
    assert set(parts) == {"kafka", "minio", "receiver", *FLOWS, "lifecycle", "console"}
    assert all(p["healthy"] and p["state"] == "RUNNING" and p["pid"] for p in parts.values())
    table = local_stack.cli("status").stdout.splitlines()
    assert [line.split()[:2] for line in table[1:]] == [[p["name"], "RUNNING"] for p in status["parts"]]
    assert {line.index("RUNNING") for line in table[1:]} == {table[0].index("STATE")}  # columns align
    again = local_stack.cli("up", "--detach")  # idempotent: already running, still healthy
    assert again.returncode == 0 and "already running" in again.stderr


def sidecar_config(local_stack: LocalStack, tmp_path: Path, **receiver: Any) -> Path:
    """A stack that reuses the session's Kafka and MinIO and runs only its own receiver."""
    config = local_stack.config
    document = {
        "state_dir": str(tmp_path / "state"),
        "kafka": {"bootstrap_servers": config.kafka.bootstrap_servers, "managed": False},
        "minio": {"endpoint": {"port": config.minio.endpoint.port}, "managed": False, "bucket": "sidecar"},
        "lifecycle": {"ops": {"port": 17134}},
        "receiver": {"grpc": {"port": 17317}, "http": {"port": 17318}, "ops": {"port": 17133}, **receiver},
    }
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.integration
def test_up_fails_with_the_failing_part_and_its_log(local_stack: LocalStack, tmp_path: Path) -> None:
    # Not a taken port: `up` refuses those before starting anything (tests/test_up_ports.py).
    for name in ("bad.crt", "bad.key"):
        (tmp_path / name).write_text("not PEM\n")
    tls = {"cert_file": str(tmp_path / "bad.crt"), "key_file": str(tmp_path / "bad.key")}
    config = sidecar_config(local_stack, tmp_path, tls=tls)
    try:
        result = run("up", "--detach", "--timeout", "60", config=config)
        after = run("status", config=config)
    finally:
        run("down", config=config)
    assert result.returncode == 1
    # FATAL when it dies within startsecs, EXITED when a slow machine lets it run longer first
    assert re.search(r"receiver (is (FATAL|EXITED|BACKOFF)|not healthy)", result.stderr), result.stderr
    log = (tmp_path / "state" / "logs" / "receiver.log").read_text().splitlines()
    assert log and log[-1] in result.stderr  # the log tail shows why
    assert after.returncode == 3  # a failed `up` leaves nothing running


@pytest.mark.integration
def test_foreground_up_runs_until_interrupted(local_stack: LocalStack, tmp_path: Path) -> None:
    config = sidecar_config(local_stack, tmp_path)
    process = subprocess.Popen(
        [*CLI, "--config", str(config), "up"], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while run("status", config=config).returncode != 0:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "foreground stack never became healthy"
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in `make run` does
        assert process.wait(60) == 130
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert run("status", config=config).returncode == 3

"""`talonflow up` with someone else on its ports: it fails before starting anything and names them.

The issue's story: a second checkout's `make run` beside a running stack printed `kafka: healthy`
(the other stack's broker answered) while its own Kafka had died on "address already in use".
Ports here are this test's own range (26000-26099, below the ephemeral ports), never the session stack's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from schemas.config import TalonflowConfig, load_config
from talonflow.ports import port_problems
from talonflow.stack import planned_addresses

CONFIG = {
    "kafka": {"bootstrap_servers": "127.0.0.1:26092", "controller_port": 26093, "heap": "256m"},
    "minio": {"endpoint": {"port": 26000}, "console": {"port": 26001}},
    "receiver": {"grpc": {"port": 26017}, "http": {"port": 26018}, "ops": {"port": 26033}},
    "lifecycle": {"ops": {"port": 26034}},
    "console": {"port": 26030},
    "alerts": {"rule_files": []},
}


@pytest.fixture
def config(tmp_path: Path) -> Iterator[tuple[TalonflowConfig, Path]]:
    path = tmp_path / "talonflow.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "state_dir": str(tmp_path / "state")}))
    yield load_config(path), path
    down = [sys.executable, "-m", "talonflow.cli", "--config", str(path), "down"]
    subprocess.run(down, capture_output=True, check=False, timeout=300)  # only if the check failed


def _up(path: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "talonflow.cli",
        "--config",
        str(path),
        "up",
        "--detach",
        "--timeout",
        "60",
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def test_a_foreign_listener_stops_up_before_anything_starts(config: tuple[TalonflowConfig, Path]) -> None:
    settings, path = config
    with socket.create_server(("127.0.0.1", 26017)), socket.create_server(("0.0.0.0", 26093)):
        result = _up(path)
    assert result.returncode == 1, result.stderr
    mine = f"pid {os.getpid()}: {sys.executable}"
    lines = result.stderr.splitlines()
    assert lines[0] == "talonflow: cannot start, ports unavailable (nothing was started):"
    assert lines[1].startswith("  127.0.0.1:26093 (kafka controller): in use; held by " + mine)
    assert lines[2].startswith("  127.0.0.1:26017 (receiver otlp/grpc): in use; held by " + mine)
    assert len(lines) == 3
    # Nothing was written or started: no supervisor, no Kafka storage, and every port is free again.
    assert not (settings.state_dir / "supervisord.conf").exists()
    assert not (settings.state_dir / "kafka").exists()
    assert port_problems(planned_addresses(settings)) == []
    status = [sys.executable, "-m", "talonflow.cli", "--config", str(path), "status"]
    assert subprocess.run(status, capture_output=True, check=False, timeout=60).returncode == 3


def test_the_config_giving_two_parts_one_port_is_refused(config: tuple[TalonflowConfig, Path]) -> None:
    _, path = config
    text = yaml.safe_load(path.read_text())
    text["console"]["port"] = 26018  # the receiver's OTLP/HTTP port
    path.write_text(yaml.safe_dump(text))
    result = _up(path)
    assert result.returncode == 1
    assert "  port 26018 is configured for several parts: receiver otlp/http, console http" in result.stderr

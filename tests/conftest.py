"""Fixtures: one real local stack (Kafka, MinIO, receiver) per test session, started by the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from schemas.config import TalonflowConfig, load_config
from talonflow.stack import Stack

# Ports apart from the defaults so the suite can run beside a developer's `make run`.
TEST_CONFIG: dict[str, Any] = {
    "kafka": {
        "bootstrap_servers": "127.0.0.1:19092",
        "controller_port": 19093,
        "heap": "512m",
        "topics": {"partitions": 2},
    },
    "minio": {"endpoint": {"port": 19000}, "console": {"port": 19001}},
    "receiver": {
        "grpc": {"port": 14317},
        "http": {"port": 14318},
        "ops": {"port": 13133},
        "max_request_bytes": "1MiB",
        "retry_after": "2s",
    },
    "ingest": {"commit_interval": "1s"},
    "lifecycle": {"ops": {"port": 13134}},
    "console": {"port": 25300},
    "alerts": {
        "rule_files": [str(Path(__file__).parent / "alert_rules.yaml")],
        "evaluation_interval": "1s",
        "allowed_lateness": "0s",
        "commit_interval": "1s",
    },
    "notifications": {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname"],
            "group_wait": "100ms",
            "group_interval": "1s",
        },
        "receivers": [{"name": "hook", "webhook_configs": [{"url": "http://127.0.0.1:18099/alerts"}]}],
    },
    "heartbeats": {
        "components": {
            "stall_agent": {
                "match": {"service.name": "hb-stall"},
                "expected_interval": "2s",
                "grace_period": "3s",
            }
        },
        "tick": "250ms",
        "startup_grace": "2s",
        "commit_interval": "1s",
    },
    "rollups": {
        "allowed_lateness": "1s",
        "commit_interval": "1s",
        "resolutions": ["1m", "1h"],
        "prices": {"claude-sonnet": {"input": 3.0, "output": 15.0}},
    },
}


@dataclass
class LocalStack:
    config: TalonflowConfig
    config_file: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "talonflow.cli", "--config", str(self.config_file), *args]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=300)

    @property
    def stack(self) -> Stack:
        return Stack(self.config, self.config_file)

    @property
    def grpc_endpoint(self) -> str:
        return self.config.receiver.grpc.address

    @property
    def http_url(self) -> str:
        return f"http://{self.config.receiver.http.address}"

    @property
    def ops_url(self) -> str:
        return f"http://{self.config.receiver.ops.address}"

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json", check=False).stdout)

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            parts = self.status().get("parts", [])
            if parts and all(p["healthy"] for p in parts):
                return
            time.sleep(0.5)
        raise AssertionError(f"stack not healthy after {timeout}s: {self.status()}")

    def records(self, topic: str, key: bytes, count: int, timeout: float = 30) -> list[Message]:
        """Read `topic` from the start until `count` records with `key` were seen (or time runs out)."""
        return read_records(self.config.kafka.bootstrap_servers, topic, key, count, timeout)


def read_records(bootstrap: str, topic: str, key: bytes, count: int, timeout: float) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if message.key() == key:
                found.append(message)
        # a little longer, so that a test expecting `count` also sees an unexpected extra record
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            message = consumer.poll(0.2)
            if message is not None and not message.error() and message.key() == key:
                found.append(message)
        return found
    finally:
        consumer.close()


def stack_root(name: str = "talonflow-test-stack") -> Path:
    """One fixed folder per checkout, not pytest's temp dir: pytest deletes old temp dirs, and a stack
    left running by a killed session could then no longer be found to stop it (its ports would stay
    taken). The next session stops such a stack first, then starts afresh."""
    checkout = hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"{name}-{checkout}"
    leftover = root / "talonflow.yaml"
    if leftover.exists():
        down = [sys.executable, "-m", "talonflow.cli", "--config", str(leftover), "down"]
        subprocess.run(down, capture_output=True, check=False, timeout=300)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    root = stack_root()
    config_file = root / "talonflow.yaml"
    config_file.write_text(
        yaml.safe_dump({**TEST_CONFIG, "state_dir": str(root / "state"), "data_dir": str(root / "data")})
    )
    stack = LocalStack(load_config(config_file), config_file)
    started = stack.cli("up", "--detach", "--timeout", "240", check=False)
    if started.returncode != 0:
        stack.cli("down", check=False)
        pytest.fail(f"talonflow up failed ({started.returncode}):\n{started.stderr}")
    try:
        yield stack
    finally:
        stack.cli("down", check=False)


@pytest.fixture
def agent_key() -> tuple[str, str, bytes]:
    """A fresh (service.name, service.instance.id, Kafka key) so each test reads only its records."""
    instance = uuid.uuid4().hex[:12]
    return "test-agent", instance, f"test-agent/{instance}".encode()

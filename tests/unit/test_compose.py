"""compose/docker-compose.yml runs the pipeline `talonflow up` runs: same versions, topics and flows.

No Docker engine runs here, so the compose file is held to the native stack by reading it:
each setting it repeats is compared with the config and code it repeats.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.clock_watch import SUPERVISED_ENV
from schemas.config import TalonflowConfig, load_config
from schemas.topics import ALL_TOPICS
from talonflow.stack import FLOWS, NIO_BUFFER_CAP, PRETOUCH, Stack, pinned_versions

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
DOCKER_CONFIG = COMPOSE / "talonflow.docker.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"])


@pytest.fixture(scope="module")
def config() -> TalonflowConfig:
    return load_config(DOCKER_CONFIG)


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_flow_services_run_each_flow_as_talonflow_up_does(
    services: dict[str, Any], config: TalonflowConfig
) -> None:
    programs = [p for p in Stack(config, DOCKER_CONFIG).programs() if p.name in FLOWS]
    native = {p.name: p.command for p in programs}
    flows = {s["environment"]["FLOW"]: s for s in services.values() if "FLOW" in s.get("environment", {})}
    assert flows.keys() == native.keys() == set(FLOWS)
    for name, service in flows.items():
        assert service["environment"]["SNAPSHOT_SECONDS"] == option(native[name], "-s"), name
        assert service["environment"]["WORKERS"] == option(native[name], "-w"), name
        assert service["environment"]["TALONFLOW_CONFIG"] == "/etc/talonflow/talonflow.yaml"
        assert service["environment"][SUPERVISED_ENV] == "1", name  # restarted: may exit on a clock step
    assert all(dict(p.environment)[SUPERVISED_ENV] == "1" for p in programs)


def test_topics_are_created_with_the_configured_settings(
    services: dict[str, Any], config: TalonflowConfig
) -> None:
    script = services["topics"]["command"][-1]
    loop = re.search(r"for topic in (.+?); do", script)
    assert loop is not None
    assert tuple(loop.group(1).split()) == ALL_TOPICS
    topics = config.kafka.topics
    assert f"--partitions {topics.partitions} " in script
    assert f"--replication-factor {topics.replication_factor} " in script
    assert f"retention.ms={int(topics.retention * 1000)} " in script
    limit = str(config.kafka.record_limit_bytes)
    assert f"max.message.bytes={limit}\n" in script
    broker = services["kafka"]["environment"]
    assert broker["KAFKA_MESSAGE_MAX_BYTES"] == broker["KAFKA_REPLICA_FETCH_MAX_BYTES"] == limit
    assert broker["KAFKA_NUM_PARTITIONS"] == str(topics.partitions)
    assert config.kafka.bootstrap_servers in broker["KAFKA_ADVERTISED_LISTENERS"]


def test_images_and_ports_match_the_native_stack(services: dict[str, Any], config: TalonflowConfig) -> None:
    assert services["kafka"]["image"] == f"apache/kafka:{pinned_versions()['KAFKA_VERSION']}"
    receiver = config.receiver
    published = {f"127.0.0.1:{e.port}:{e.port}" for e in (receiver.grpc, receiver.http, receiver.ops)}
    assert set(services["receiver"]["ports"]) == published
    assert f":{receiver.ops.port}/readyz" in services["receiver"]["healthcheck"]["test"][-1]
    assert config.minio.endpoint.address == f"minio:{services['minio']['ports'][0].split(':')[-1]}"
    assert not (config.kafka.managed or config.minio.managed)


def test_console_service_runs_what_talonflow_up_runs_on_the_configured_port(
    services: dict[str, Any], config: TalonflowConfig
) -> None:
    [native] = [p.command for p in Stack(config, DOCKER_CONFIG).programs() if p.name == "console"]
    console = services["console"]
    assert ["python", *native[1:-1], "/etc/talonflow/talonflow.yaml"] == console["command"]
    port = config.console.port
    assert console["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"http://127.0.0.1:{port}/healthz" in console["healthcheck"]["test"][-1]
    assert services["grafana"]["depends_on"]["console"]["condition"] == "service_healthy"


def test_the_broker_gets_the_jvm_flags_talonflow_up_gives_it(services: dict[str, Any]) -> None:
    """A pretouched heap and freed large NIO buffers: flat RSS in the soak (README, "Soak")."""
    assert set(services["kafka"]["environment"]["KAFKA_OPTS"].split()) == {PRETOUCH, NIO_BUFFER_CAP}

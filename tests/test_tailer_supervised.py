"""The tailer and the scraper as `talonflow up` runs them, killed with SIGKILL and restarted by it.

A second stack (its own state, ports and supervisord) uses the session's Kafka and MinIO, with
`log_files:` and `scrape_configs:` in the config `up` runs. While two files are written and
rotated (by rename and by copytruncate), the supervised tailer is killed with SIGKILL twice; the
`logs` dataset of the session's ingest must hold every line once. The scraper runs as two shards
under one parent; the parent is killed with SIGKILL, and supervisord's restart must bring both
shards back, the orphaned ones gone (else their ports would block the new ones and their target
would be scraped twice).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import LocalStack
from tests.scrape_targets import seed_registry, serve_registry
from tests.test_scrape_prometheus import rows, time_ms, wait_until
from tests.test_tailer import WRITE_SECONDS, Writer, assert_every_line_once, writing
from tests.unit.test_scrape_stack import gone

pytestmark = pytest.mark.integration

# Ports of this test (range 30000-30499).
GRPC, HTTP, OPS, LIFECYCLE, CONSOLE, TAILER, SCRAPER_OPS, EXPORTER = (
    30417, 30418, 30433, 30434, 30400, 30440, 30445, 30450,
)  # fmt: skip
SHARDS = 2


@dataclass
class Sidecar:
    config: Path
    instance: str
    logs: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "talonflow.cli", "--config", str(self.config), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)

    def parts(self) -> dict[str, dict[str, Any]]:
        status = json.loads(self.cli("status", "--json").stdout or "{}")
        return {p["name"]: p for p in status.get("parts", [])}

    def kill(self, part: str) -> int:
        """SIGKILL the supervised process of `part`; its pid."""
        pid = int(self.parts()[part]["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def restarted(self, part: str, killed: int) -> int:
        """The pid of `part` once supervisord restarted it and it is healthy again."""

        def healthy_again() -> int | None:
            found = self.parts().get(part, {})
            fresh = found.get("pid") not in (None, killed) and found.get("healthy")
            return int(found["pid"]) if fresh else None

        return int(wait_until(healthy_again, 90, f"{part} restarted by supervisord"))


@pytest.fixture
def sidecar(local_stack: LocalStack, tmp_path: Path) -> Iterator[Sidecar]:
    instance = uuid.uuid4().hex[:12]
    (tmp_path / "logs").mkdir()
    config = local_stack.config
    sources = [
        {"include": ["logs/rename.log*"], "service_name": "supervised-rename"},
        {"include": ["logs/copy.log*"], "service_name": "supervised-copy"},
    ]
    document = {
        "state_dir": str(tmp_path / "state"),
        "data_dir": str(tmp_path / "data"),
        "kafka": {"bootstrap_servers": config.kafka.bootstrap_servers, "managed": False},
        "minio": {"endpoint": {"port": config.minio.endpoint.port}, "managed": False, "bucket": "supervised"},
        "receiver": {"grpc": {"port": GRPC}, "http": {"port": HTTP}, "ops": {"port": OPS}},
        "lifecycle": {"ops": {"port": LIFECYCLE}},
        "console": {"port": CONSOLE},
        "log_files": [{**s, "service_instance_id": instance, "start_at": "beginning"} for s in sources],
        "tailer": {"id": f"supervised-{instance}", "port": TAILER, "poll_interval": "100ms",
                   "rotate_wait": "2s"},
        "scrape": {"processes": SHARDS, "ops_port": SCRAPER_OPS},
        "scrape_configs": [
            {"job_name": f"supervised-{instance}", "scrape_interval": "1s", "scrape_timeout": "900ms",
             "static_configs": [{"targets": [f"127.0.0.1:{EXPORTER}"]}]},
        ],
    }  # fmt: skip
    (tmp_path / "talonflow.yaml").write_text(yaml.safe_dump(document))
    running = Sidecar(tmp_path / "talonflow.yaml", instance, tmp_path / "logs")
    exporter = serve_registry(seed_registry(), EXPORTER)
    try:
        started = running.cli("up", "--detach", "--timeout", "240")
        assert started.returncode == 0, started.stderr
        yield running
    finally:
        running.cli("down")
        exporter.shutdown()
        exporter.server_close()


def shard_pids() -> list[int]:
    """The pid each scraper shard's /healthz names; none while a shard does not answer."""
    pids = []
    for shard in range(SHARDS):
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{SCRAPER_OPS + shard}/healthz", timeout=2
            ) as answer:
                pids.append(int(answer.read().split()[-1]))
        except OSError:
            return []
    return pids


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def test_the_supervised_tailer_killed_twice_loses_and_duplicates_no_line(
    local_stack: LocalStack, sidecar: Sidecar
) -> None:
    writers = [Writer(sidecar.logs / "rename.log", "rename"), Writer(sidecar.logs / "copy.log", "copy")]
    with writing(*writers):
        for _ in range(2):
            time.sleep(WRITE_SECONDS / 3)
            killed = sidecar.kill("tailer")
            sidecar.restarted("tailer", killed)
        time.sleep(WRITE_SECONDS / 3)
    assert all(w.rotations >= 6 for w in writers), [w.rotations for w in writers]
    data = local_stack.config.data_dir
    for writer, service in zip(writers, ("supervised-rename", "supervised-copy"), strict=True):
        assert_every_line_once(data, writer, service, sidecar.instance)


def test_the_supervised_scraper_killed_comes_back_with_every_shard_and_no_orphan(
    local_stack: LocalStack, sidecar: Sidecar
) -> None:
    job = f"supervised-{sidecar.instance}"
    data = local_stack.config.data_dir
    wait_until(lambda: rows(data, f"service_name = '{job}' AND metric_name = 'up'"), 60, "a first scrape")
    old_shards = shard_pids()
    assert {parent_of(pid) for pid in old_shards} == {sidecar.parts()["scraper"]["pid"]}
    killed = sidecar.kill("scraper")
    parent = sidecar.restarted("scraper", killed)
    wait_until(lambda: all(gone(pid) for pid in old_shards), 30, "the orphaned shards to stop")

    def new_shards_serving() -> list[int] | None:
        pids = shard_pids()
        return pids if pids and not set(pids) & set(old_shards) else None

    new_shards = wait_until(new_shards_serving, 60, "the new shards serving")
    assert {parent_of(pid) for pid in new_shards} == {parent}
    back = time.time() * 1000
    ups = wait_until(
        lambda: [
            r for r in rows(data, f"service_name = '{job}' AND metric_name = 'up'") if time_ms(r) > back
        ],
        60,
        "scrapes after the restart",
    )
    assert {r["value"] for r in ups} == {1.0}
    log = (sidecar.config.parent / "state" / "logs" / "scraper.log").read_text()
    assert "parent process" in log and "is gone: stopping this shard" in log

"""The log tailer on the real stack: files → Kafka → the ingest flow → the `logs` dataset, exactly once.

A writer appends JSON lines (and some garbage) to two files at a steady rate while rotating one by
rename-and-create and the other by copytruncate; meanwhile the tailer is killed with SIGKILL,
restarted, stopped cleanly and restarted again. Every line written must be a row in Parquet once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_CONFIG, LocalStack
from tests.test_ingest import duck, scan, wait_for_rows

pytestmark = pytest.mark.integration

OPS_PORT = 24137  # this test's range: 24000-24999
WRITE_SECONDS = 12.0
LINES_PER_SECOND = 150  # per file
ROTATE_EVERY = 1.0  # seconds


@dataclass
class Tailer:
    config_file: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tailer", "--config", str(self.config_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{OPS_PORT}/healthz", timeout=1) as answer:
                    if answer.read().split()[-1] == str(self.process.pid).encode():
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"tailer not healthy:\n{self.log.read_text()[-3000:]}")

    def stop(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait(30)
        self.process = None


@pytest.fixture
def instance() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def tailer(local_stack: LocalStack, tmp_path: Path, instance: str) -> Iterator[Tailer]:
    logs = tmp_path / "logs"
    logs.mkdir()
    # written before the tailer's first start: a start_at end source skips these
    (logs / "late.log").write_text("".join(f'{{"msg": "before {i}"}}\n' for i in range(5)))
    sources: list[dict[str, Any]] = [
        {"include": ["logs/rename.log*"], "service_name": "tailer-rename", "start_at": "beginning"},
        {"include": ["logs/copy.log*"], "service_name": "tailer-copy", "start_at": "beginning"},
        {"include": ["logs/late.log"], "service_name": "tailer-late", "start_at": "end"},
        {
            "include": ["logs/mapping.jsonl"],
            "service_name": "tailer-mapping",
            "resource": {"deployment.environment": "test"},
        },
        {
            "include": ["logs/plain.log"],
            "service_name": "tailer-plain",
            "format": "regex",
            "regex": r"^(?P<time>\S+) (?P<level>[A-Z]+) \[(?P<session_id>[^\]]+)\] (?P<message>.*)$",
        },
    ]
    config = {
        **TEST_CONFIG,
        "state_dir": str(local_stack.config.state_dir),
        "data_dir": str(local_stack.config.data_dir),
        "log_files": [{**s, "service_instance_id": instance} for s in sources],
        "tailer": {"id": f"test-{instance}", "port": OPS_PORT, "poll_interval": "100ms", "rotate_wait": "2s"},
    }
    config_file = tmp_path / "talonflow.yaml"
    config_file.write_text(yaml.safe_dump(config))
    running = Tailer(config_file, tmp_path / "tailer.log")
    running.start()
    try:
        yield running
    finally:
        if running.process is not None:
            running.stop(signal.SIGKILL)


class Writer(threading.Thread):
    """Appends numbered lines to one file at a steady rate and rotates it every ROTATE_EVERY s.

    The writer rotates between its own writes, as logrotate does with a signalled or
    copytruncate-aware application, so the files hold exactly the lines counted in `written`.
    """

    def __init__(self, path: Path, how: str) -> None:
        super().__init__(daemon=True)
        self.path, self.how = path, how
        self.written = self.garbage = self.rotations = 0
        self.stop = threading.Event()

    def run(self) -> None:
        out = self.path.open("a")
        rotated_at = time.monotonic()
        while not self.stop.is_set():
            for _ in range(LINES_PER_SECOND // 10):
                # each file's lines differ from the other's: a tailer knows files by their first bytes
                if self.written % 97 == 13:
                    out.write(f"{self.how}: garbage line {self.written}, not json {{\n")
                    self.garbage += 1
                else:
                    line = {"writer": self.how, "seq": self.written, "msg": f"line {self.written}"}
                    out.write(json.dumps(line) + "\n")
                self.written += 1
            out.flush()
            if time.monotonic() - rotated_at >= ROTATE_EVERY:
                out = self._rotate(out)
                rotated_at = time.monotonic()
            time.sleep(0.1)
        out.close()

    def _rotate(self, out: Any) -> Any:
        self.rotations += 1
        rotated = self.path.with_name(f"{self.path.name}.{self.rotations}")
        if self.how == "rename":
            os.rename(self.path, rotated)
            out.close()
            return self.path.open("a")
        shutil.copyfile(self.path, rotated)
        os.truncate(self.path, 0)  # the writer appends (O_APPEND): its next line starts the file
        return out


def assert_every_line_once(data: Path, writer: Writer, service: str, instance: str) -> None:
    """Every line `writer` wrote is one row of `logs`, garbage lines included: none lost, none twice."""
    where = f"service_name = '{service}' AND service_instance_id = '{instance}'"
    rows, _ = wait_for_rows(data, "logs", where, writer.written, timeout=90)
    [(distinct, garbage)] = duck(
        "SELECT count(DISTINCT body), count(*) FILTER (WHERE attributes['log.parse_error'] IS NOT NULL)"
        f" FROM {scan(data, 'logs')} WHERE {where}"
    )
    assert (rows, distinct, garbage) == (writer.written, writer.written, writer.garbage), service


@contextmanager
def writing(*writers: Writer) -> Iterator[None]:
    """The writers write and rotate while the block runs; each has stopped when it ends."""
    for writer in writers:
        writer.start()
    try:
        yield
    finally:
        for writer in writers:
            writer.stop.set()
            writer.join()


def test_rotations_kill_9_and_restarts_lose_and_duplicate_no_line(
    local_stack: LocalStack, tailer: Tailer, tmp_path: Path, instance: str
) -> None:
    writers = [
        Writer(tmp_path / "logs" / "rename.log", "rename"),
        Writer(tmp_path / "logs" / "copy.log", "copy"),
    ]
    with writing(*writers):
        with (tmp_path / "logs" / "late.log").open("a") as late:
            late.writelines(f'{{"msg": "after {i}"}}\n' for i in range(7))
        time.sleep(WRITE_SECONDS / 3)
        tailer.stop(signal.SIGKILL)  # in the middle of a transaction, as likely as not
        time.sleep(1.0)
        tailer.start()
        time.sleep(WRITE_SECONDS / 3)
        tailer.stop(signal.SIGTERM)
        tailer.start()
        time.sleep(WRITE_SECONDS / 3)
    assert all(w.rotations >= 8 for w in writers), [w.rotations for w in writers]

    data = local_stack.config.data_dir
    for writer, service in zip(writers, ("tailer-rename", "tailer-copy"), strict=True):
        assert_every_line_once(data, writer, service, instance)
    late_source = f"service_name = 'tailer-late' AND service_instance_id = '{instance}'"
    assert sorted(r[0] for r in duck(f"SELECT body FROM {scan(data, 'logs')} WHERE {late_source}")) == [
        f"after {i}" for i in range(7)
    ]


def test_json_and_regex_lines_map_field_by_field(
    local_stack: LocalStack, tailer: Tailer, tmp_path: Path, instance: str
) -> None:
    now = int(time.time())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    lines = [
        {
            "ts": f"{stamp}.250Z",
            "level": "error",
            "msg": "browser crashed",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "correlation_id": f"c-{instance}",
            "request_id": "r-2",
            "session_id": f"s-{instance}",
            "agent_id": "browser_controller",
            "task_id": "t-5",
            "retries": 3,
        },
        {"timestamp": now * 1000, "severity": 40, "message": "slow tool"},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + "{broken json\n"
    (tmp_path / "logs" / "mapping.jsonl").write_text(text)
    (tmp_path / "logs" / "plain.log").write_text(
        f"{stamp}.5Z WARN [s-{instance}] queue is filling\nno match here\n"
    )
    data = local_stack.config.data_dir
    rows, _ = wait_for_rows(data, "logs", f"service_instance_id = '{instance}'", 5, timeout=60)
    assert rows == 5

    frame = local_stack.cli(
        "query",
        f"SELECT * FROM logs WHERE service_name = 'tailer-mapping' AND service_instance_id = '{instance}'"
        " ORDER BY body",
        "--format",
        "json",
    ).stdout
    got = [json.loads(line) for line in frame.splitlines()]
    assert [r["body"] for r in got] == ["browser crashed", "slow tool", "{broken json"]
    crashed, slow, broken = got
    assert crashed["time"].startswith(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + ".25")
    assert (crashed["severity_number"], crashed["severity_text"]) == (17, "error")
    assert (crashed["trace_id"], crashed["span_id"]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert crashed["resource_attributes"]["deployment.environment"] == "test"
    attributes = crashed["attributes"]
    assert {
        k: attributes[k] for k in ("correlation_id", "request_id", "session_id", "agent_id", "task_id")
    } == {
        "correlation_id": f"c-{instance}",
        "request_id": "r-2",
        "session_id": f"s-{instance}",
        "agent_id": "browser_controller",
        "task_id": "t-5",
    }
    assert attributes["retries"] == "3"
    assert attributes["log.file.name"] == "mapping.jsonl"
    assert (slow["severity_number"], slow["severity_text"]) == (13, "40")
    assert slow["time"].startswith(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)))
    assert "log.parse_error" in broken["attributes"]
    assert broken["severity_number"] == 0

    # the correlation ids are what a user filters on, across the JSON and the regex source
    by_session = local_stack.cli(
        "query",
        f"SELECT service_name, body FROM logs WHERE attributes['session_id'] = 's-{instance}'",
        "--format",
        "json",
    ).stdout
    assert sorted(json.loads(line)["body"] for line in by_session.splitlines()) == [
        "browser crashed",
        "queue is filling",
    ]

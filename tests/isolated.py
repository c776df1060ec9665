"""Dataflows run by a test itself, apart from the session stack, so that it can kill them."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import LocalStack


class Flows:
    """One dataflow as separate bytewax processes (`-i/-a`) or one process with `-w` workers."""

    def __init__(
        self, config_file: Path, recovery: Path, processes: int, workers: int, flow: str = "ingest"
    ) -> None:
        self.config_file, self.recovery, self.flow = config_file, recovery, flow
        self.processes, self.workers = processes, workers
        self.running: list[subprocess.Popen[bytes]] = []
        self.log = (recovery.parent / "flow.log").open("ab")

    def start(self) -> None:
        base = [
            sys.executable,
            "-m",
            "bytewax.run",
            f"flows.{self.flow}:flow",
            "-r",
            str(self.recovery),
            "-s",
            "1",
            "-b",
            "0",
        ]
        env = {**os.environ, "TALONFLOW_CONFIG": str(self.config_file)}
        if self.processes == 1:
            commands = [[*base, "-w", str(self.workers)]]
        else:
            ports = [random.randint(20000, 30000) for _ in range(self.processes)]
            addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
            commands = [[*base, "-i", str(i), "-a", addresses] for i in range(self.processes)]
        self.running = [subprocess.Popen(c, env=env, stdout=self.log, stderr=self.log) for c in commands]

    def kill(self) -> None:
        for process in self.running:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        self.kill()
        self.log.close()

    def log_tail(self, lines: int = 40) -> str:
        """What the flows printed, for a failure message."""
        if not self.log.closed:
            self.log.flush()
        text = (self.recovery.parent / "flow.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def isolated_flows(
    local_stack: LocalStack, tmp_path: Path, flow: str, settings: dict[str, Any], processes: int, workers: int
) -> tuple[Flows, Path]:
    """`flow` with its own config, data and recovery dirs, reading the session's Kafka: (flows, data dir)."""
    data = tmp_path / "data"
    config = tmp_path / "flow.yaml"
    kafka = {"bootstrap_servers": local_stack.config.kafka.bootstrap_servers}
    config.write_text(yaml.safe_dump({"kafka": kafka, "data_dir": str(data), **settings}))
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "4"], check=True)
    return Flows(config, recovery, processes, workers, flow=flow), data


def kill_during_stream(
    flows: Flows, stream: Callable[[threading.Event], None], kills: int, pause: tuple[float, float]
) -> None:
    """Start `flows` while `stream` runs in a thread, kill -9 and restart them `kills` times at
    random moments `pause` seconds apart, then let them run 2 s more and stop the stream."""
    stop = threading.Event()
    streamer = threading.Thread(target=stream, args=(stop,))
    streamer.start()
    try:
        flows.start()
        for _ in range(kills):
            time.sleep(random.uniform(*pause))
            flows.kill()
            flows.start()
        time.sleep(2)
    finally:
        stop.set()
        streamer.join()
